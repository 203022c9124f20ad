"""Quickstart: a short DirectCopy pretraining run of ResNet-20 on random tensors.

It exercises the whole model API (two views in, EMA target, DirectCopy
predictor, metrics, saving the encoder) in about a minute on two CPU cores.
Random tensors carry no signal: this checks the installation, it learns
nothing useful. Pretraining on real data comes with `scripts/pretrain.py`.

    python scripts/quickstart.py --output_dir runs/quickstart
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_directcopy as kdc  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/quickstart")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Two "views" per image, stacked: (N, 2, 32, 32, 3) uint8.
    views = rng.integers(0, 256, (args.images, 2, 32, 32, 3), dtype=np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices(views).batch(args.batch_size, drop_remainder=True)

    steps = args.epochs * (args.images // args.batch_size)
    model = kdc.DirectCopy(kdc.resnet20(), total_steps=steps, weight_decay=4e-4)
    model.compile(keras.optimizers.SGD(0.03, momentum=0.9), jit_compile=True)
    start = time.time()
    history = model.fit(dataset, epochs=args.epochs, verbose=2)
    elapsed = time.time() - start

    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "encoder.keras")
    model.encoder.save(path)
    encoder = keras.saving.load_model(path, safe_mode=True)
    features = encoder(views[:4, 0])
    print(
        f"trained {steps} steps in {elapsed:.0f} s; final loss "
        f"{history.history['loss'][-1]:.4f}, collapse_std "
        f"{history.history['collapse_std'][-1]:.4f} (healthy ~ {1 / np.sqrt(128):.3f}); "
        f"encoder saved to {path}, reloaded with safe_mode: features {tuple(features.shape)}"
    )


if __name__ == "__main__":
    main()
