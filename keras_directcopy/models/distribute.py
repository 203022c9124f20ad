"""Helpers for training under `tf.distribute` with Keras 3.

Keras 3.15's `fit()` under `MultiWorkerMirroredStrategy` needs two
workarounds (tensorflow/tensorflow#72388), both kept here so they can be
dropped together once Keras fixes it:

1. Before training, `fit()` pulls one batch and all-reduces it across
   replicas for a "symbolic build" of the model. Under this strategy that
   fails for a nested batch (a tuple of views) and for uint8 images, which
   collectives do not take. `NonContrastiveModel` creates all its state in its
   constructor, so `skip_symbolic_build` replaces that step: it only builds
   the optimizer. (The stacked `(B, 2, H, W, C)` views that `views.split_views`
   accepts were the other way around the nested-batch failure.)
2. Logged scalars must be rank-1: Keras reduces logs with
   `strategy.reduce("MEAN", value, axis=0)` for multi-worker runs, which fails
   on a scalar. `format_logs` reshapes them to `[1]` under that strategy only.
"""

import tensorflow as tf


def global_sum(*values):
    """Sums tensors over all replicas (identity outside a multi-replica run)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values if len(values) > 1 else values[0]
    reduced = context.all_reduce("SUM", list(values))
    return tuple(reduced) if len(values) > 1 else reduced[0]


def num_replicas():
    """Number of replicas in sync under the current strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def skip_symbolic_build(model):
    """Builds `model.optimizer` in the strategy scope; stands in for Keras'
    symbolic build of a model whose state already exists (workaround 1)."""
    if model.optimizer is not None and not model.optimizer.built:
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)


def format_logs(logs):
    """Makes `train_step` logs acceptable to `fit()` under every strategy.

    Under `MultiWorkerMirroredStrategy` scalars become shape `[1]`
    (workaround 2 above); elsewhere the logs are returned unchanged.
    """
    if not isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return {key: tf.reshape(value, [1]) for key, value in logs.items()}
