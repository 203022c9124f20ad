"""The pretraining step of `NonContrastiveModel` on the TensorFlow backend.

Keras' TensorFlow trainer calls `model.train_step(data)` inside a
`tf.function` (and in each replica under `tf.distribute`); the model hands
it to `train_step` here. The step updates the variables in place.
"""

import tensorflow as tf

from keras_directcopy.models import distribute
from keras_directcopy.models.views import split_views


def train_step(model, data):
    """One step of `model` on a batch of two views; returns the logs."""
    view1, view2 = split_views(data)
    replicas = distribute.num_replicas()
    # The global batch, summed over replicas: each replica differentiates
    # its sum divided by it, so the SUM all-reduce of the gradients gives
    # the gradient of the global mean even when replicas hold unequal
    # shares (a partial last batch), as `tf.nn.compute_average_loss`
    # with the true global batch size would.
    global_batch = distribute.global_sum(tf.cast(tf.shape(view1)[0], tf.float32))
    step = tf.identity(model.optimizer.iterations)
    target1, target2 = (
        model._target_projections(view1, view2) if model.target_encoder else (None, None)
    )
    variables = model.online_variables
    with tf.GradientTape() as tape:
        per_example, z1, z2, features = model._online_loss(view1, view2, target1, target2)
        # Multiplied by the loss scale under mixed_float16 (1 otherwise)
        # so that small float16 gradients do not underflow; the
        # LossScaleOptimizer divides the gradients by it again.
        mean_loss = tf.reduce_sum(per_example) / tf.cast(global_batch, per_example.dtype)
        scaled_loss = model.optimizer.scale_loss(mean_loss)
    gradients = tape.gradient(scaled_loss, variables)
    # The name scopes below let `benchmarks/throughput/benchmark.py --profile` file
    # each part's op time; they change nothing in the computation.
    if model.weight_decay and model.weight_decay_mode == "coupled":
        with tf.name_scope("weight_decay"):
            # Divided by the replica count for the same SUM all-reduce, and
            # loss-scaled like the gradients it joins.
            decay = model.weight_decay / replicas
            gradients = [
                g + model.optimizer.scale_loss(decay * v)
                for g, v in zip(gradients, variables)
            ]
    model.optimizer.apply(gradients, variables)
    if hasattr(model.predictor, "after_optimizer_step"):
        with tf.name_scope("predictor_update"):
            model.predictor.after_optimizer_step(features)
    if model.target_encoder:
        with tf.name_scope("target_ema"):
            tau = model._target_momentum(step)
            model._update_target(tau)
    else:
        tau = tf.constant(0.0)
    with tf.name_scope("metrics"):
        return distribute.format_logs(model._logs(per_example, z1, z2, extra={"tau": tau}))


def test_step(model, data):
    """The loss and collapse indicator of `model` on a batch, in inference mode."""
    per_example, z1, z2 = model._inference_loss(*split_views(data))
    return distribute.format_logs(model._logs(per_example, z1, z2))
