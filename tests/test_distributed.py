"""MirroredStrategy over two logical CPUs reproduces single-device training.

The same global batch is trained for three steps on one device and on two
replicas; the loss of every step, then F, W_p, the target and the online
weights must agree to ~1e-5 relative, and every replica must hold identical
copies.
BatchNorm is synchronized, so the global batch statistics are the same.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_directcopy import NonContrastiveModel, build_predictor, build_projector
from tests.helpers import tiny_encoder, two_view_images

GLOBAL_BATCH = 8


def build_model(predictor_name, initial_weights=None):
    """The same small model, optionally with given initial weights."""
    encoder = tiny_encoder(batch_norm=True, synchronized_bn=True)
    projector = build_projector(6, 16, 8, synchronized_bn=True)
    predictor = build_predictor(predictor_name, 8, hidden_dim=16, synchronized_bn=True)
    if initial_weights:
        for part, weights in zip((encoder, projector, predictor), initial_weights):
            part.set_weights(weights)
    model = NonContrastiveModel(
        encoder, projector, predictor,
        tau_base=0.99, total_steps=3, weight_decay=5e-4, target_init="copy",
    )
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9))
    return model


def snapshot(model):
    """Every variable that training changes, by name, as NumPy."""
    parts = {
        "online": model.online_variables,
        "target": model.target_encoder.weights + model.target_projector.weights,
        "bn_stats": model.encoder.non_trainable_weights + model.projector.non_trainable_weights,
    }
    if hasattr(model.predictor, "correlation"):
        parts["F"] = [model.predictor.correlation]
        parts["W_p"] = [model.predictor.matrix]
    return {name: [v.numpy() for v in variables] for name, variables in parts.items()}


def replica_copies(variable):
    """The per-replica tf.Variables behind a Keras variable."""
    value = variable.value
    return [np.asarray(v) for v in getattr(value, "values", (value,))]


def train(model, steps, global_batch=GLOBAL_BATCH):
    """`steps` steps on the same global batch; one-step epochs, so the
    history holds the logs of every step."""
    dataset = tf.data.Dataset.from_tensor_slices(two_view_images(global_batch, seed=7))
    dataset = dataset.batch(global_batch).repeat()
    return model.fit(dataset, epochs=steps, steps_per_epoch=1, verbose=0).history


@pytest.fixture(params=["float64", "float32"])
def float_type(request):
    """Float64 leaves rounding far below the tolerance, so any logic error
    shows; float32 is the production type, run from a fixed initialization
    (summing over two replicas rounds differently, by ~5e-6 relative here)."""
    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(request.param)
    keras.config.set_dtype_policy(request.param)
    keras.utils.set_random_seed(0)
    yield request.param
    keras.config.set_floatx(previous[0])
    keras.config.set_dtype_policy(previous[1])


@pytest.mark.parametrize("predictor", ["directcopy", "directpred", "mlp"])
def test_two_replicas_match_one_device(mirrored_strategy, float_type, predictor, steps=3):
    tolerance = 1e-9 if float_type == "float64" else 1e-5
    single = build_model(predictor)
    initial = [part.get_weights() for part in (single.encoder, single.projector, single.predictor)]
    with mirrored_strategy.scope():
        mirrored = build_model(predictor, initial)
    assert mirrored.distribute_strategy.num_replicas_in_sync == 2

    single_history = train(single, steps)
    mirrored_history = train(mirrored, steps)

    # Logged values may pass through float32 on their way to the History.
    log_tolerance = max(tolerance, 1e-6)
    np.testing.assert_allclose(mirrored_history["loss"], single_history["loss"], rtol=log_tolerance)
    np.testing.assert_allclose(
        mirrored_history["collapse_std"], single_history["collapse_std"], rtol=log_tolerance
    )
    expected, actual = snapshot(single), snapshot(mirrored)
    assert expected.keys() == actual.keys()
    for name in expected:
        # Tolerance relative to the group's scale (weights are O(1)): a
        # gradient through synchronized BatchNorm sums in another order, and
        # the rounding shows in small entries.
        scale = max(np.abs(w).max() for w in expected[name])
        for want, got in zip(expected[name], actual[name]):
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * scale, err_msg=name)

    # Each replica holds the very same values.
    checked = mirrored.online_variables + mirrored.target_encoder.weights
    if hasattr(mirrored.predictor, "correlation"):
        checked += [mirrored.predictor.correlation, mirrored.predictor.matrix]
    for variable in checked:
        first, *others = replica_copies(variable)
        assert others, "expected a mirrored variable"
        for other in others:
            np.testing.assert_array_equal(other, first, err_msg=variable.path)


def test_unequal_replica_shares_weigh_every_example_equally(mirrored_strategy):
    """A global batch of 7 splits 4 + 3 over two replicas, as a user's partial
    last batch does; the step must still follow the mean over all 7
    examples, so each replica scales by the global batch, not its own."""
    keras.utils.set_random_seed(0)
    single = build_model("directcopy")
    initial = [part.get_weights() for part in (single.encoder, single.projector, single.predictor)]
    with mirrored_strategy.scope():
        mirrored = build_model("directcopy", initial)
    single_history = train(single, 2, global_batch=7)
    mirrored_history = train(mirrored, 2, global_batch=7)
    np.testing.assert_allclose(mirrored_history["loss"], single_history["loss"], rtol=1e-5)
    for want, got in zip(single.online_variables, mirrored.online_variables):
        scale = max(np.abs(want.numpy()).max(), 1.0)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5 * scale, err_msg=want.path)
