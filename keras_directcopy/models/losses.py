"""The non-contrastive objective and the collapse indicator, in `keras.ops`.

Both run on every Keras backend. Under `tf.distribute` their batch
statistics are of the global batch: sums are all-reduced over the replicas
(`replica_sum`). Under JAX's `keras.distribution.DataParallel` the arrays of
a jitted step already hold the global batch, so no reduction is needed.
"""

import keras
from keras import ops

from keras_directcopy.utils.backend import is_tensorflow_backend

# tf.math.l2_normalize's floor on the squared norm.
_SQUARED_NORM_FLOOR = 1e-12


def l2_normalize(x, axis=-1):
    """`x / sqrt(max(||x||^2, 1e-12))` along `axis`, as `tf.math.l2_normalize` computes it."""
    squared_norm = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared_norm, _SQUARED_NORM_FLOOR))


def symmetric_loss(p1, p2, target1, target2):
    """Per-example symmetric normalized MSE (Grill et al., 2020, eq. 2).

    ``(2 - 2 cos(p1, t2)) + (2 - 2 cos(p2, t1))``, with the gradient of the
    targets stopped, computed in at least float32.

    Args:
        p1, p2: `(B, d)` predictions of the online branch for views 1 and 2.
        target1, target2: `(B, d)` target projections of views 1 and 2.

    Returns:
        A `(B,)` tensor.
    """

    def normalized_mse(p, t):
        p = l2_normalize(at_least_float32(p), axis=1)
        t = l2_normalize(ops.cast(ops.stop_gradient(t), p.dtype), axis=1)
        return 2.0 - 2.0 * ops.sum(p * t, axis=1)

    return normalized_mse(p1, target2) + normalized_mse(p2, target1)


def collapse_std(z):
    """Mean over dimensions of the std over rows of l2-normalized `z`.

    About `1 / sqrt(d)` for healthy `(N, d)` outputs, 0 for collapsed ones
    (BYOL/SimSiam's collapse indicator). Under `tf.distribute` the statistics
    are of the global batch.
    """
    z = l2_normalize(at_least_float32(ops.convert_to_tensor(z)), axis=1)
    total, rows = replica_sum(ops.sum(z, axis=0), ops.cast(ops.shape(z)[0], z.dtype))
    # Two passes (mean, then centered squares) so that identical rows give
    # exactly 0, where E[z^2] - E[z]^2 would leave rounding noise.
    centered_sq = replica_sum(ops.sum(ops.square(z - total / rows), axis=0))
    return ops.mean(ops.sqrt(centered_sq / rows))


def replica_sum(*values):
    """Sums tensors over the replicas of a `tf.distribute` strategy.

    The identity outside a multi-replica TensorFlow run, and on other
    backends, whose distributed arrays are global. Returns one value for one
    argument, else a tuple.
    """
    if is_tensorflow_backend():
        from keras_directcopy.models import distribute

        return distribute.global_sum(*values)
    return values if len(values) > 1 else values[0]


def at_least_float32(x):
    """`x` in float32 if it is float16/bfloat16 (mixed precision), else unchanged."""
    low_precision = keras.backend.standardize_dtype(x.dtype) in ("float16", "bfloat16")
    return ops.cast(x, "float32") if low_precision else x
