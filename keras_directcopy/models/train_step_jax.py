"""The pretraining step of `NonContrastiveModel` on the JAX backend.

Keras' JAX trainer keeps the model's state outside its variables and calls
`model.train_step(state, data)` as a pure function under `jax.jit`, with
`state = (trainable, non_trainable, optimizer, metrics)` value lists in the
order of `model.trainable_variables`, `model.non_trainable_variables`,
`model.optimizer.variables` and `model.metrics_variables`; it returns the
logs and the new state.

The step here computes what the TensorFlow step (`train_step_tensorflow`)
computes, in the same order, by running the model's own layers and hooks
inside `keras.StatelessScope`s, which read the variables from the state and
record what they assign:

1. the target projections of both views (training mode, so the target's
   BatchNorm uses batch statistics and updates its moving averages);
2. the online projections, the predictor's `before_prediction` hook, the
   predictions and the symmetric loss, differentiated with `jax.grad`
   with respect to the online (trainable) variables;
3. coupled weight decay added to the gradients, and the optimizer step;
4. the predictor's `after_optimizer_step` hook and the target's EMA, on the
   updated weights; then the metrics.

Under `keras.distribution.DataParallel` the batch is sharded across the
devices and the jitted step is compiled for the global batch (XLA's SPMD
partitioner inserts the all-reduces), so the loss, the predictor's
correlation and BatchNorm's statistics are those of the global batch with
no explicit reduction. (BatchNorm statistics are therefore global, as with
synchronized BatchNorm under `tf.distribute`.)
"""

import jax
import keras
from keras import ops

from keras_directcopy.models.views import split_views


def train_step(model, state, data):
    """One stateless step of `model`; returns `(logs, new_state)`."""
    trainable, non_trainable, optimizer_values, metrics_values = state
    view1, view2 = split_views(data)
    optimizer = model.optimizer
    trainable_variables = model.trainable_variables
    non_trainable_variables = model.non_trainable_variables
    optimizer_mapping = list(zip(optimizer.variables, optimizer_values))

    def scaled_loss_and_updates(trainable_values, non_trainable_values):
        mapping = (
            list(zip(trainable_variables, trainable_values))
            + list(zip(non_trainable_variables, non_trainable_values))
            + optimizer_mapping
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            target1, target2 = (
                model._target_projections(view1, view2) if model.target_encoder else (None, None)
            )
            per_example, z1, z2, features = model._online_loss(view1, view2, target1, target2)
            # The mean over the global batch (see the module docstring),
            # multiplied by the loss scale under mixed_float16.
            scaled_loss = optimizer.scale_loss(ops.mean(per_example))
        updated = _current_values(scope, non_trainable_variables, non_trainable_values)
        return scaled_loss, (per_example, z1, z2, features, updated)

    gradient_function = jax.value_and_grad(scaled_loss_and_updates, has_aux=True)
    (_, (per_example, z1, z2, features, non_trainable)), gradients = gradient_function(
        trainable, non_trainable
    )
    with keras.StatelessScope(state_mapping=optimizer_mapping):
        step = ops.convert_to_tensor(optimizer.iterations)
        if model.weight_decay and model.weight_decay_mode == "coupled":
            # Loss-scaled like the gradients it joins.
            gradients = [
                g + optimizer.scale_loss(model.weight_decay * v)
                for g, v in zip(gradients, trainable)
            ]
    trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, gradients, trainable)

    metrics_variables = model.metrics_variables
    mapping = (
        list(zip(trainable_variables, trainable))
        + list(zip(non_trainable_variables, non_trainable))
        + list(zip(metrics_variables, metrics_values))
    )
    with keras.StatelessScope(state_mapping=mapping) as scope:
        if hasattr(model.predictor, "after_optimizer_step"):
            model.predictor.after_optimizer_step(features)
        if model.target_encoder:
            tau = model._target_momentum(step)
            model._update_target(tau)
        else:
            tau = ops.convert_to_tensor(0.0)
        logs = model._logs(per_example, z1, z2, extra={"tau": tau})
    new_state = (
        _current_values(scope, trainable_variables, trainable),
        _current_values(scope, non_trainable_variables, non_trainable),
        optimizer_values,
        _current_values(scope, metrics_variables, metrics_values),
    )
    return logs, new_state


def test_step(model, state, data):
    """The loss and collapse indicator of a batch, in inference mode; returns
    `(logs, new_state)` with `state = (trainable, non_trainable, metrics)`."""
    trainable, non_trainable, metrics_values = state
    metrics_variables = model.metrics_variables
    mapping = (
        list(zip(model.trainable_variables, trainable))
        + list(zip(model.non_trainable_variables, non_trainable))
        + list(zip(metrics_variables, metrics_values))
    )
    with keras.StatelessScope(state_mapping=mapping) as scope:
        per_example, z1, z2 = model._inference_loss(*split_views(data))
        logs = model._logs(per_example, z1, z2)
    return logs, (trainable, non_trainable, _current_values(scope, metrics_variables, metrics_values))


def _current_values(scope, variables, values):
    """The values of `variables` at the end of `scope`: those assigned in it,
    else the ones they had (`values`)."""
    current = []
    for variable, value in zip(variables, values):
        assigned = scope.get_current_value(variable)
        current.append(value if assigned is None else assigned)
    return current
