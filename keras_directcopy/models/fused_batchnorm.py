"""TensorFlow's fused BatchNorm kernel for Keras' `BatchNormalization` in training.

On the TensorFlow backend, Keras 3's `BatchNormalization` computes a training
call op by op: the batch moments (`ops.moments`: a mean, a squared
difference, another mean), the moving-average updates, then
`tf.nn.batch_normalization` (a handful of element-wise ops), and the gradient
flows back through each of them, a large share of a CPU step
(`benchmarks/throughput/README.md`).
TensorFlow's `FusedBatchNormV3` computes the same normalization in one kernel,
and its gradient in one (`FusedBatchNormGradV3`).

`use_fused_kernel(model)` makes the eligible `BatchNormalization` layers of a
model compute their training-mode calls with that kernel. The layers stay
what they are, `keras.layers.BatchNormalization` with the same configuration
and variables, so an encoder saved after training is still made of built-in
Keras layers and loads anywhere; only the kernel of the computation changes,
not its arithmetic:

* outputs: ``gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the
  batch mean and biased variance over every axis but the last, as Keras
  computes it;
* moving statistics: ``moving * momentum + batch * (1 - momentum)`` with the
  biased batch variance, as Keras updates them (the kernel returns the
  unbiased variance, which is rescaled by ``(n - 1) / n``).

Results agree with Keras' own path to float32 rounding
(`tests/test_fused_batchnorm.py`). A call the kernel cannot compute exactly
as Keras does falls back to Keras' own path: inference calls (which use the
moving statistics), masks, synchronized or renormalized BatchNorm, a
normalized axis other than the last, inputs of rank other than 2 or 4, a
compute dtype other than float32 (float16/bfloat16 inputs are computed in
float32, as Keras does), or an `epsilon` below the kernel's minimum. Other
backends are left unchanged.
"""

import types

import keras
import tensorflow as tf

# FusedBatchNormV3 raises smaller epsilons to this value (tf.nn.fused_batch_norm).
MIN_FUSED_EPSILON = 1.001e-5


def use_fused_kernel(model):
    """Switches `model`'s eligible BatchNorm layers to the fused training kernel.

    Every `keras.layers.BatchNormalization` inside `model` (nested models
    included) whose normalized axis is the last and that is neither
    synchronized nor renormalized computes its training-mode calls with
    `FusedBatchNormV3` from then on, wherever it is called, with the results
    of Keras' own computation (see the module docstring). Calling it again
    is harmless.

    Args:
        model: a `keras.Layer`, typically a functional model.

    Returns:
        The number of layers switched (0 on a backend other than TensorFlow).
    """
    if keras.backend.backend() != "tensorflow":
        return 0
    switched = 0
    for layer in nested_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and _is_eligible_layer(layer):
            if not uses_fused_kernel(layer):
                # An instance attribute, so the layer's class (and with it its
                # serialization) stays Keras' built-in BatchNormalization.
                layer.call = types.MethodType(_fused_call, layer)
            switched += 1
    return switched


def uses_fused_kernel(layer):
    """Whether `use_fused_kernel` switched this BatchNormalization layer."""
    call = layer.__dict__.get("call")
    return isinstance(call, types.MethodType) and call.__func__ is _fused_call


def nested_layers(layer):
    """`layer` and every layer inside it, depth first (nested models included)."""
    yield layer
    for child in getattr(layer, "layers", []) or []:
        yield from nested_layers(child)


def _is_eligible_layer(layer):
    # Whether the normalized axis is the last depends on each call's rank.
    return not layer.synchronized and not layer.renorm and isinstance(layer.axis, int)


def _fused_call(layer, inputs, training=None, mask=None):
    """`BatchNormalization.call` of `layer`, with the fused kernel in training."""
    keras_call = type(layer).call
    rank = len(inputs.shape)
    compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
    if (
        not (training and layer.trainable)
        or mask is not None
        or rank not in (2, 4)
        or layer.axis not in (-1, rank - 1)
        or compute_dtype != "float32"
        or layer.epsilon < MIN_FUSED_EPSILON
    ):
        return keras_call(layer, inputs, training=training, mask=mask)

    x = tf.cast(inputs, tf.float32)
    channels = x.shape[-1]
    # The kernel wants NHWC: a (N, C) batch is normalized as (N, 1, 1, C).
    x4 = x if rank == 4 else tf.reshape(x, (-1, 1, 1, channels))
    scale = tf.cast(layer.gamma, tf.float32) if layer.scale else tf.ones((channels,), tf.float32)
    offset = tf.cast(layer.beta, tf.float32) if layer.center else tf.zeros((channels,), tf.float32)
    y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
        x4, scale, offset, epsilon=layer.epsilon, data_format="NHWC", is_training=True
    )
    # The kernel returns the batch variance with Bessel's correction; Keras
    # keeps the biased one in its moving average.
    count = tf.cast(tf.reduce_prod(tf.shape(x4)[:3]), tf.float32)
    variance = unbiased_variance * (count - 1.0) / tf.maximum(count, 1.0)
    momentum = layer.momentum
    layer.moving_mean.assign(
        tf.cast(layer.moving_mean, tf.float32) * momentum + tf.stop_gradient(mean) * (1.0 - momentum)
    )
    layer.moving_variance.assign(
        tf.cast(layer.moving_variance, tf.float32) * momentum
        + tf.stop_gradient(variance) * (1.0 - momentum)
    )
    if rank == 2:
        y = tf.reshape(y, tf.shape(x))
    return tf.cast(y, layer.compute_dtype)
