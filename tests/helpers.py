"""Small models and data shared by the model, distributed and multi-worker tests."""

import keras
import numpy as np

IMAGE_SIZE = 8


def tiny_encoder(seed=0, batch_norm=False, synchronized_bn=False, width=6, activation="relu"):
    """Conv -> [BN] -> activation (ReLU) -> pool -> Dense: `(N, 8, 8, 3)` -> `(N, width)`, seeded."""
    initializer = lambda offset: keras.initializers.GlorotUniform(seed=seed + offset)  # noqa: E731
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    # No bias before BatchNorm, whose mean subtraction would cancel it.
    x = keras.layers.Conv2D(
        4, 3, padding="same", use_bias=not batch_norm, kernel_initializer=initializer(1)
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(synchronized=synchronized_bn)(x)
    x = keras.layers.Activation(activation)(x) if activation != "relu" else keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(width, kernel_initializer=initializer(2))(x)
    return keras.Model(inputs, outputs, name="tiny_encoder")


def two_view_images(batch, seed=0):
    """Random 0..255 images as `(batch, 2, 8, 8, 3)` float32 (two views each)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, 2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def write_corrupted_copy(source, destination):
    """Writes `source` to `destination` with its middle byte flipped: the same
    size, a different sha256."""
    data = bytearray(open(source, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(destination, "wb") as file:
        file.write(bytes(data))


def kill_when_written(command, path, cwd, timeout=240):
    """Starts `command` (a script run, no GPU) and kills it with SIGKILL as
    soon as `path` exists, or when it ends or `timeout` seconds pass: the
    interruption the resume tests recover from."""
    import os
    import signal
    import subprocess
    import time

    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    deadline = time.time() + timeout
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


# What a worker of a multi-worker run logs when it outlives the chief, whose
# process hosts TensorFlow's coordination service (`strategies.end_process`).
OUTLIVED_THE_CHIEF = "Failed to send RPC to coordination service"
