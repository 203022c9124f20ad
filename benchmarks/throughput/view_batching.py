"""Would running both views through the encoder as one batch be faster?

Our training step runs each encoder (online and target) twice, once per
view, so that every BatchNorm layer normalizes each view with that view's
own batch statistics, as the reference code does. Concatenating the views
into one batch of `2B` halves the number of convolution calls, and larger
batches can use the cores better; but BatchNorm must then still normalize
each half with its own statistics, or the math changes.

`view_batching_throughput` times the encoders' share of the step (the
online encoder's forward and backward pass and SGD update, and the target
encoder's forward pass, both in training mode) three ways, alternating in
one process (`benchmarks/throughput/benchmark.py --view_batching`):

* `"two_batches"`: one call per view, as the training step does;
* `"one_batch"`: one call on the `2B` batch, BatchNorm over both views.
  Not our math: an upper bound of what batching the views could gain;
* `"one_batch_per_view_statistics"`: one call on the `2B` batch, each
  BatchNorm layer normalizing (and updating its moving statistics with)
  each view's half separately. The same math as `"two_batches"`
  (`tests/test_view_batching.py`).

The projector and predictor are left out: they are a few percent of the
step, and batching them changes nothing in the comparison.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from keras_directcopy.models.backbones import build_backbone
from keras_directcopy.models.fused_batchnorm import use_fused_kernel
from keras_directcopy.models.losses import symmetric_loss

VIEW_BATCHING_MODES = ("two_batches", "one_batch", "one_batch_per_view_statistics")


def normalize_views_separately(model):
    """Makes `model`'s BatchNorm layers treat a training batch as two views.

    Each training-mode call splits its input in two halves along the batch
    axis (view 1, then view 2), normalizes each with its own batch
    statistics, updates the moving statistics with view 1's and then view
    2's (as two calls would), and concatenates the results. Inference calls
    are unchanged. For measurement only: the layers are patched per instance
    and the model is not meant to be saved afterwards.

    Args:
        model: a functional backbone from `models.backbones`.

    Returns:
        The number of BatchNorm layers patched.
    """
    patched = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.call = _per_view_call(layer.call)
            patched += 1
    return patched


def _per_view_call(call):
    def per_view_call(inputs, training=None, mask=None):
        if not training:
            return call(inputs, training=training, mask=mask)
        halves = tf.split(inputs, 2, axis=0)
        return tf.concat([call(half, training=training, mask=mask) for half in halves], axis=0)

    return per_view_call


def encoder_step(mode, online, target, optimizer):
    """The encoders' share of a training step, with the views batched per `mode`.

    Args:
        mode: one of `VIEW_BATCHING_MODES`. For
            `"one_batch_per_view_statistics"`, both encoders must have gone
            through `normalize_views_separately`.
        online, target: two backbones of the same architecture.
        optimizer: a Keras optimizer, built for `online.trainable_variables`.

    Returns:
        A `tf.function` of `(view1, view2)`, each `(B, H, W, 3)`, that runs
        the target encoder on both views, the online encoder on both with
        gradients, the symmetric loss of the online features against the
        target's (of the other view), and one optimizer update; it returns
        the mean loss.
    """
    if mode not in VIEW_BATCHING_MODES:
        raise ValueError(f"Unknown view batching {mode!r}; use one of {', '.join(VIEW_BATCHING_MODES)}.")

    def both_views(encoder, view1, view2):
        if mode == "two_batches":
            return encoder(view1, training=True), encoder(view2, training=True)
        return tuple(tf.split(encoder(tf.concat([view1, view2], axis=0), training=True), 2, axis=0))

    @tf.function(jit_compile=False)
    def step(view1, view2):
        target1, target2 = both_views(target, view1, view2)
        with tf.GradientTape() as tape:
            online1, online2 = both_views(online, view1, view2)
            loss = tf.reduce_mean(symmetric_loss(online1, online2, target1, target2))
        gradients = tape.gradient(loss, online.trainable_variables)
        optimizer.apply_gradients(zip(gradients, online.trainable_variables))
        return loss

    return step


def view_batching_throughput(backbone, batch_size, warmup_steps, steps, rounds=2, image_size=32,
                             modes=VIEW_BATCHING_MODES):
    """Times `encoder_step` per mode, alternating, on one random batch.

    Every mode gets its own pair of encoders with TensorFlow's fused
    BatchNorm kernel (training's default), built from the same seed. Modes
    take turns for `rounds` rounds of `steps` timed steps, after
    `warmup_steps` untimed ones each (tracing included).

    Args:
        backbone: a backbone name.
        batch_size: images per view.
        warmup_steps, steps: untimed and timed steps per mode (per round, for
            `steps`).
        rounds: alternating rounds.
        image_size: the side of the random views.
        modes: a subset of `VIEW_BATCHING_MODES`.

    Returns:
        `{mode: [pairs per second, one per round]}`.
    """
    rng = np.random.default_rng(0)
    view1, view2 = (
        tf.constant(rng.integers(0, 256, (batch_size, image_size, image_size, 3)).astype(np.float32))
        for _ in range(2)
    )
    steps_by_mode = {}
    for mode in modes:
        keras.utils.set_random_seed(0)
        online, target = (build_backbone(backbone, (image_size, image_size, 3)) for _ in range(2))
        for encoder in (online, target):
            use_fused_kernel(encoder)
            if mode == "one_batch_per_view_statistics":
                normalize_views_separately(encoder)
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        optimizer.build(online.trainable_variables)
        steps_by_mode[mode] = encoder_step(mode, online, target, optimizer)
        for _ in range(warmup_steps):
            float(steps_by_mode[mode](view1, view2))
    throughput = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode in modes:
            start = time.perf_counter()
            for _ in range(steps):
                loss = steps_by_mode[mode](view1, view2)
            float(loss)  # waits for the last step
            throughput[mode].append(batch_size * steps / (time.perf_counter() - start))
    return throughput
