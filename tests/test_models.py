"""NonContrastiveModel: train step against a NumPy reference, EMA target,
weight decay, collapse metric and errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_directcopy import (
    BYOL,
    DirectCopy,
    DirectPred,
    NonContrastiveModel,
    SimSiam,
    collapse_std,
    target_momentum,
)
from tests.helpers import tiny_encoder, two_view_images
from tests.test_predictor_matrices import reference_directset

PROJECTOR = dict(projector_hidden_dim=16, projection_dim=8)


def compiled(model, learning_rate=0.1, momentum=0.0, **compile_kwargs):
    model.compile(keras.optimizers.SGD(learning_rate, momentum=momentum), **compile_kwargs)
    return model


def copy_of(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def fit_steps(model, images, steps, batch_size):
    return model.fit(
        images, batch_size=batch_size, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0
    ).history


def test_target_momentum_schedule():
    assert target_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert target_momentum(50, 100, 0.996) == pytest.approx(0.998)
    assert target_momentum(100, 100, 0.996) == pytest.approx(1.0)
    assert target_momentum(150, 100, 0.996) == pytest.approx(1.0)
    assert target_momentum(25, 100, 0.99) == pytest.approx(1 - 0.01 * (np.cos(np.pi / 4) + 1) / 2)
    assert target_momentum(10, None, 0.99) == 0.99
    for step in [0, 13, 77, 100]:
        assert float(target_momentum(tf.constant(step), 100, 0.9)) == pytest.approx(
            target_momentum(step, 100, 0.9), rel=1e-6
        )


def numpy_loss(p1, p2, t1, t2):
    def normalized_mse(p, t):
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        t = t / np.linalg.norm(t, axis=1, keepdims=True)
        return 2 - 2 * (p * t).sum(axis=1)

    return float(np.mean(normalized_mse(p1, t2) + normalized_mse(p2, t1)))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_first_directcopy_step_matches_numpy_reference(jit_compile):
    images = two_view_images(8)
    model = compiled(DirectCopy(tiny_encoder(), **PROJECTOR), jit_compile=jit_compile)
    v1, v2 = images[:, 0], images[:, 1]
    # Before the step the target equals online, so the reference can use
    # the online network for both branches (BatchNorm in training mode).
    z1 = model.projector(model.encoder(v1, training=True), training=True).numpy().astype(np.float64)
    z2 = model.projector(model.encoder(v2, training=True), training=True).numpy().astype(np.float64)
    both = np.concatenate([z1, z2])
    F = (1 - 0.3) * both.T @ both / len(both)  # rho = 0.3, F starts at 0
    W = reference_directset(F, 1.0, 0.25)
    expected_loss = numpy_loss(z1 @ W, z2 @ W, z1, z2)

    history = fit_steps(model, images, 1, 8)
    assert history["loss"][0] == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(model.predictor.correlation.numpy(), F, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.predictor.matrix.numpy(), W, rtol=1e-4, atol=1e-5)


def test_target_starts_as_copy_then_follows_the_ema():
    images = two_view_images(8, seed=1)
    model = compiled(BYOL(tiny_encoder(), total_steps=10, tau_base=0.9, **PROJECTOR))
    online_before = [v.numpy() for v in model.encoder.trainable_variables]
    target = model.target_encoder.trainable_variables
    for t, o in zip(target, online_before):
        np.testing.assert_array_equal(t.numpy(), o)
    assert not set(map(id, target)) & set(map(id, model.trainable_weights))

    history = fit_steps(model, images, 1, 8)
    tau = target_momentum(0, 10, 0.9)
    assert history["tau"][0] == pytest.approx(tau)
    for t, before, after in zip(target, online_before, model.encoder.trainable_variables):
        assert not np.allclose(after.numpy(), before)
        np.testing.assert_allclose(t.numpy(), tau * before + (1 - tau) * after.numpy(), rtol=1e-5, atol=1e-7)


def test_optimizer_keeps_no_state_for_the_target():
    byol = compiled(BYOL(tiny_encoder(), **PROJECTOR), momentum=0.9)
    fit_steps(byol, two_view_images(4), 1, 4)
    simsiam = compiled(SimSiam(tiny_encoder(), **PROJECTOR), momentum=0.9)
    fit_steps(simsiam, two_view_images(4), 1, 4)
    # Same online networks, so the same optimizer state: none for the target.
    assert len(byol.optimizer.variables) == len(simsiam.optimizer.variables)
    assert len(byol.trainable_weights) == len(simsiam.trainable_weights)


def test_simsiam_uses_the_stop_gradient_online_projection_as_target():
    images = two_view_images(6, seed=2)
    model = compiled(SimSiam(tiny_encoder(), predictor="linear", **PROJECTOR))
    assert model.target_encoder is None and model.tau_base == 0
    v1, v2 = images[:, 0], images[:, 1]
    z1 = model.projector(model.encoder(v1, training=True), training=True).numpy()
    z2 = model.projector(model.encoder(v2, training=True), training=True).numpy()
    W = model.predictor.kernel.numpy()
    history = fit_steps(model, images, 1, 6)
    assert history["loss"][0] == pytest.approx(numpy_loss(z1 @ W, z2 @ W, z1, z2), rel=1e-5)


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_weight_decay_adds_lr_times_decay_times_weight(mode):
    images = two_view_images(4, seed=3)
    learning_rate, decay = 0.1, 0.05
    plain = compiled(DirectPred(tiny_encoder(), **PROJECTOR), learning_rate)
    decayed = compiled(
        DirectPred(
            copy_of(plain.encoder), projector=copy_of(plain.projector),
            weight_decay=decay, weight_decay_mode=mode,
        ),
        learning_rate,
    )
    initial = [v.numpy() for v in plain.online_variables]
    fit_steps(plain, images, 1, 4)
    fit_steps(decayed, images, 1, 4)
    for w0, without, with_decay in zip(initial, plain.online_variables, decayed.online_variables):
        np.testing.assert_allclose(
            with_decay.numpy() - without.numpy(), -learning_rate * decay * w0, rtol=1e-4, atol=1e-7
        )


def test_decoupled_weight_decay_set_twice_is_rejected():
    model = DirectCopy(tiny_encoder(), weight_decay=1e-4, weight_decay_mode="decoupled", **PROJECTOR)
    with pytest.raises(ValueError, match="one place"):
        model.compile(keras.optimizers.SGD(0.1, weight_decay=1e-3))


def test_collapse_metric():
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=(4096, 128)).astype(np.float32)
    assert float(collapse_std(healthy)) == pytest.approx(1 / np.sqrt(128), rel=0.02)
    constant = np.tile(rng.normal(size=(1, 128)), (64, 1)).astype(np.float32)
    assert float(collapse_std(constant)) < 1e-6


def test_model_reports_collapse_for_a_constant_output_encoder():
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    constant = keras.layers.Dense(6, kernel_initializer="zeros", bias_initializer="ones")(pooled)
    collapsed = DirectCopy(keras.Model(inputs, constant), **PROJECTOR)
    healthy = DirectCopy(tiny_encoder(), **PROJECTOR)
    # Per-image brightness makes an untrained encoder's outputs differ.
    brightness = np.random.default_rng(4).uniform(0, 1, (16, 1, 1, 1, 1)).astype(np.float32)
    images = two_view_images(16, seed=4) * brightness
    for model in (collapsed, healthy):
        model.compile(keras.optimizers.SGD(0.0))
    collapsed_std = collapsed.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    healthy_std = healthy.evaluate(images, batch_size=16, verbose=0, return_dict=True)
    assert collapsed_std["collapse_std"] < 1e-6
    assert healthy_std["collapse_std"] > 1e-3


def test_spectrum_metrics_are_logged_for_direct_predictors():
    history = fit_steps(compiled(DirectPred(tiny_encoder(), **PROJECTOR)), two_view_images(8), 2, 4)
    assert history["pred_eig_max"][0] == pytest.approx(1.01, rel=1e-4)
    assert 1.0 <= history["pred_eff_rank"][0] <= 8.0
    assert "pred_eig_max" not in fit_steps(compiled(BYOL(tiny_encoder(), **PROJECTOR)), two_view_images(4), 1, 4)


def test_views_can_be_a_pair_of_tensors():
    images = two_view_images(4)
    dataset = tf.data.Dataset.from_tensor_slices((images[:, 0], images[:, 1])).batch(4)
    history = compiled(DirectCopy(tiny_encoder(), **PROJECTOR)).fit(dataset, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_wrong_view_shape_is_rejected_clearly():
    model = compiled(DirectCopy(tiny_encoder(), **PROJECTOR))
    with pytest.raises(ValueError, match=r"two augmented views.*\(batch, 2, height, width, channels\)"):
        model.fit(np.zeros((4, 8, 8, 3), np.float32), verbose=0)


def test_bad_arguments_are_rejected_clearly():
    with pytest.raises(ValueError, match="Valid predictors: directcopy, directpred, directset, linear, mlp"):
        NonContrastiveModel(tiny_encoder(), predictor="direct_copy", **PROJECTOR)
    with pytest.raises(ValueError, match="Valid modes: coupled, decoupled"):
        DirectCopy(tiny_encoder(), weight_decay_mode="adamw", **PROJECTOR)
    with pytest.raises(ValueError, match="tau_base"):
        DirectCopy(tiny_encoder(), tau_base=1.0, **PROJECTOR)


def test_trained_encoder_saves_and_reloads_safely(tmp_path):
    model = compiled(DirectCopy(tiny_encoder(), **PROJECTOR))
    fit_steps(model, two_view_images(4), 1, 4)
    path = tmp_path / "encoder.keras"
    model.encoder.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = two_view_images(2)[:, 0]
    np.testing.assert_array_equal(loaded(images), model.encoder(images))
