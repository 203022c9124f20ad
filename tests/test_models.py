"""NonContrastiveModel: train step against a NumPy reference, EMA target,
weight decay, collapse metric and errors."""

import json

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
    build_projector,
    collapse_std,
    target_momentum,
)
from keras_directcopy.models.predictors import LinearPredictor
from tests.helpers import tiny_encoder, two_view_images
from tests.training_cases import assert_moves_like_float32, fit_steps, mixed_precision_update, record_direct_steps
from tests.test_predictor_matrices import reference_directset

PROJECTOR = dict(projector_hidden_dim=16, projection_dim=8)


def compiled(model, learning_rate=0.1, momentum=0.0, **compile_kwargs):
    model.compile(keras.optimizers.SGD(learning_rate, momentum=momentum), **compile_kwargs)
    return model


def copy_of(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


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


def reference_direct_steps(online_outputs, target_outputs, method, update_order, rho=0.3):
    """Losses, F and W_p of a run, in NumPy, as the reference code orders them.

    luckmatters, ssl/real-dataset, byol_trainer.py: `BYOLTrainer.update`
    adds the batch's mean f f^T to `cum_corr` (the first batch's statistic
    taken as it is, `Accumulator.add`) and predicts with the predictor's
    current weight; after `optimizer.step()`, `regulate_predictor` sets the
    weight from `cum_corr`. So batch t is predicted with W_p(F_{t-1}); before
    any update our W_p is the identity. With "before_predict" F starts at
    zero and batch t is predicted with W_p(F_t).
    """
    alpha, eps = {"directcopy": (1.0, 0.1), "directpred": (0.5, 0.01)}[method]
    dim = online_outputs[0][0].shape[1]
    F = None if update_order == "after_step" else np.zeros((dim, dim))
    W = np.eye(dim)
    losses, correlations, matrices = [], [], []
    for (z1, z2), (t1, t2) in zip(online_outputs, target_outputs):
        both = np.concatenate([z1, z2])
        batch = both.T @ both / len(both)

        def update(F):
            F = batch if F is None else rho * F + (1 - rho) * batch
            return F, reference_directset(F, alpha, eps)

        if update_order == "before_predict":
            F, W = update(F)
        losses.append(numpy_loss(z1 @ W, z2 @ W, t1, t2))
        if update_order == "after_step":
            F, W = update(F)
        correlations.append(F)
        matrices.append(W)
    return losses, correlations, matrices


@pytest.mark.parametrize(
    "method, update_order, jit_compile",
    [
        ("directcopy", "after_step", False),
        ("directcopy", "after_step", True),
        ("directpred", "after_step", False),
        ("directcopy", "before_predict", False),
    ],
)
def test_direct_predictor_steps_match_the_numpy_reference(method, update_order, jit_compile):
    model = compiled(
        NonContrastiveModel(
            tiny_encoder(), predictor=method, predictor_options={"update_order": update_order},
            **PROJECTOR,
        ),
        jit_compile=jit_compile,
    )
    assert_matches_the_numpy_reference(record_direct_steps(model), method, update_order)


def assert_matches_the_numpy_reference(record, method, update_order):
    """`training_cases.record_direct_steps`' record (from any backend)
    against `reference_direct_steps` on the same projections."""
    online = [[np.asarray(v) for v in views] for views in record["online"]]
    target = [[np.asarray(v) for v in views] for views in record["target"]]
    losses, correlations, matrices = reference_direct_steps(online, target, method, update_order)
    np.testing.assert_allclose(record["losses"], losses, rtol=1e-5)
    np.testing.assert_allclose(record["first_F"], correlations[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(record["F"], correlations[-1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(record["W_p"], matrices[-1], rtol=1e-4, atol=1e-5)


def test_the_two_update_orders_predict_differently():
    # The NumPy reference itself: batch t is predicted with another W_p.
    rng = np.random.default_rng(0)
    outputs = [[rng.normal(size=(6, 4)) for _ in range(2)] for _ in range(3)]
    after = reference_direct_steps(outputs, outputs, "directcopy", "after_step")[0]
    before = reference_direct_steps(outputs, outputs, "directcopy", "before_predict")[0]
    assert not np.allclose(after, before)


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


def test_independent_target_draws_its_own_weights_then_follows_the_ema():
    # The reference code's target: its own random initialization (the
    # default), then the same EMA as a copied target.
    model = compiled(DirectCopy(tiny_encoder(), tau_base=0.9, **PROJECTOR))
    online, target = model.projector.trainable_variables, model.target_projector.trainable_variables
    kernels = [(o.numpy(), t.numpy()) for o, t in zip(online, target) if len(o.shape) == 2]
    for o, t in kernels:
        assert o.shape == t.shape and not np.allclose(o, t)
        assert t.std() == pytest.approx(o.std(), rel=0.3)  # same initializer
    before = [t.numpy() for t in target]
    fit_steps(model, two_view_images(8, seed=3), 1, 8)
    for t, b, o in zip(target, before, online):
        np.testing.assert_allclose(t.numpy(), 0.9 * b + 0.1 * o.numpy(), rtol=1e-5, atol=1e-7)


def test_optimizer_keeps_no_state_for_the_target():
    byol = compiled(BYOL(tiny_encoder(), total_steps=10, **PROJECTOR), momentum=0.9)
    fit_steps(byol, two_view_images(4), 1, 4)
    simsiam = compiled(SimSiam(tiny_encoder(), projector_bn_affine=True, **PROJECTOR), momentum=0.9)
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
    # Targets copied from the online networks, so both models see the same targets.
    plain = compiled(DirectPred(tiny_encoder(), target_init="copy", **PROJECTOR), learning_rate)
    decayed = compiled(
        DirectPred(
            copy_of(plain.encoder), projector=copy_of(plain.projector),
            weight_decay=decay, weight_decay_mode=mode, target_init="copy",
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
    byol = compiled(BYOL(tiny_encoder(), total_steps=10, **PROJECTOR))
    assert "pred_eig_max" not in fit_steps(byol, two_view_images(4), 1, 4)


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
    with pytest.raises(ValueError, match="weight_decay must be >= 0, got -0.0001"):
        DirectCopy(tiny_encoder(), weight_decay=-1e-4, **PROJECTOR)
    with pytest.raises(ValueError, match="total_steps must be a positive number of steps or None, got 0"):
        DirectCopy(tiny_encoder(), total_steps=0, **PROJECTOR)
    with pytest.raises(ValueError, match="Valid values: independent, copy"):
        DirectCopy(tiny_encoder(), target_init="zeros", **PROJECTOR)


def test_trained_encoder_saves_and_reloads_safely(tmp_path):
    model = compiled(DirectCopy(tiny_encoder(), **PROJECTOR))
    fit_steps(model, two_view_images(4), 1, 4)
    path = tmp_path / "encoder.keras"
    model.encoder.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = two_view_images(2)[:, 0]
    np.testing.assert_array_equal(loaded(images), model.encoder(images))


def test_constant_ema_keeps_the_momentum_at_tau_base():
    model = compiled(DirectCopy(tiny_encoder(), tau_base=0.9, total_steps=4, **PROJECTOR))
    assert model.ema_schedule == "constant"
    target = model.target_encoder.trainable_variables
    for step in range(2):
        before = [t.numpy() for t in target]
        history = fit_steps(model, two_view_images(4, seed=step), 1, 4)
        assert history["tau"][0] == pytest.approx(0.9)
        for t, b, online in zip(target, before, model.encoder.trainable_variables):
            np.testing.assert_allclose(t.numpy(), 0.9 * b + 0.1 * online.numpy(), rtol=1e-5, atol=1e-7)


def test_cosine_ema_without_total_steps_is_a_clear_error():
    assert BYOL(tiny_encoder(), **PROJECTOR).ema_schedule == "cosine"
    model = compiled(DirectCopy(tiny_encoder(), ema_schedule="cosine", **PROJECTOR))
    with pytest.raises(ValueError, match="needs the number of training steps: pass total_steps"):
        fit_steps(model, two_view_images(4), 1, 4)
    with pytest.raises(ValueError, match="Valid schedules: constant, cosine"):
        DirectCopy(tiny_encoder(), ema_schedule="linear", **PROJECTOR)


def test_projector_batchnorm_without_affine_parameters():
    affine = DirectCopy(tiny_encoder(), projector_bn_affine=True, **PROJECTOR)
    plain = DirectCopy(tiny_encoder(), **PROJECTOR)  # the reference's, by default
    bn = plain.projector.get_layer("projector_bn")
    assert not bn.center and not bn.scale and bn.trainable_weights == []
    # gamma and beta are gone from what the optimizer (and weight decay) sees.
    assert len(affine.online_variables) - len(plain.online_variables) == 2
    hidden = keras.Model(plain.projector.input, bn.output)
    features = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 6)).astype(np.float32)
    normalized = hidden(features, training=True).numpy()
    np.testing.assert_allclose(normalized.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalized.std(axis=0), 1.0, atol=1e-2)


def test_symmetric_linear_predictor_is_the_symmetrized_plain_step():
    # One step from the same weights: the symmetric predictor ends at
    # (W' + W'^T) / 2, W' the plain predictor's kernel after the same step.
    images = two_view_images(8, seed=5)
    plain = compiled(
        NonContrastiveModel(
            tiny_encoder(), predictor="linear", predictor_options={"symmetric": False},
            weight_decay=4e-4, target_init="copy", **PROJECTOR,
        )
    )
    symmetric = compiled(
        NonContrastiveModel(
            copy_of(plain.encoder), projector=copy_of(plain.projector),
            predictor=LinearPredictor(), weight_decay=4e-4, target_init="copy",
        )
    )
    symmetric.predictor.build((None, 8))
    symmetric.predictor.set_weights(plain.predictor.get_weights())
    fit_steps(plain, images, 1, 8)
    fit_steps(symmetric, images, 1, 8)
    stepped = plain.predictor.kernel.numpy()
    assert not np.allclose(stepped, stepped.T)
    np.testing.assert_allclose(symmetric.predictor.kernel.numpy(), (stepped + stepped.T) / 2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_step_moves_the_weights_like_float32(policy):
    """One step under a mixed policy changes the float32 online weights as
    a float32 step does, to within what the policy's significant bits allow
    (`training_cases.mixed_precision_bound`: 1/16 of the update for float16,
    1/2 for bfloat16). Without loss scaling the float16 update was ~2^15
    times too small. The float16 run starts its dynamic loss scale at 2^8:
    this tiny model's gradients overflow float16 at Keras' default 2^15, and
    that step would be skipped (as dynamic loss scaling does in the first
    steps of a real run)."""
    assert_moves_like_float32(mixed_precision_update(policy), policy)


def test_weight_decay_in_the_model_and_the_optimizer_is_rejected():
    model = DirectCopy(tiny_encoder(), weight_decay=1e-4, **PROJECTOR)  # coupled
    with pytest.raises(ValueError, match="applied twice"):
        model.compile(keras.optimizers.SGD(0.1, weight_decay=1e-4))
    model.compile(keras.optimizers.SGD(0.1))  # one place: accepted


def test_weights_are_trainable_plus_non_trainable():
    model = BYOL(tiny_encoder(batch_norm=True), **PROJECTOR)
    ids = lambda variables: sorted(id(v) for v in variables)  # noqa: E731
    assert ids(model.weights) == ids(model.trainable_weights + model.non_trainable_weights)
    target = model.target_encoder.weights + model.target_projector.weights
    assert set(ids(target)) <= set(ids(model.non_trainable_weights))


@pytest.mark.parametrize("predictor", ["directcopy", "linear", "mlp"])
def test_whole_model_saves_and_continues_training_identically(tmp_path, predictor):
    model = compiled(
        NonContrastiveModel(
            tiny_encoder(batch_norm=True), predictor=predictor, ema_schedule="cosine",
            total_steps=6, weight_decay=4e-4, **PROJECTOR,
        ),
        momentum=0.9,
    )
    batches = [two_view_images(8, seed=20 + step) for step in range(4)]
    for images in batches[:2]:
        fit_steps(model, images, 1, 8)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is NonContrastiveModel
    as_json = lambda config: json.loads(json.dumps(config))  # noqa: E731 (tuples become lists)
    assert as_json(loaded.get_config()) == as_json(model.get_config())
    assert int(loaded.optimizer.iterations.numpy()) == 2
    for images in batches[2:]:
        expected = fit_steps(model, images, 1, 8)
        got = fit_steps(loaded, images, 1, 8)
        assert got["loss"] == expected["loss"] and got["tau"] == expected["tau"]
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    for want, have in zip(model.weights + model.optimizer.variables, loaded.weights + loaded.optimizer.variables):
        np.testing.assert_array_equal(have.numpy(), want.numpy(), err_msg=want.path)


def test_model_checkpoint_callback_saves_the_training_model(tmp_path):
    model = compiled(DirectCopy(tiny_encoder(), **PROJECTOR))
    path = str(tmp_path / "checkpoint.keras")
    model.fit(
        two_view_images(8), batch_size=4, epochs=1, verbose=0,
        callbacks=[keras.callbacks.ModelCheckpoint(path)],
    )
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predictor.matrix.numpy(), model.predictor.matrix.numpy())
    np.testing.assert_array_equal(
        loaded.target_encoder.get_weights()[0], model.target_encoder.get_weights()[0]
    )
