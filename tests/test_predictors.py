"""The DirectPredictor layer (running correlation, W_p updates) and the registry."""

import numpy as np
import pytest

from keras_directcopy.models.predictors import (
    PREDICTOR_NAMES,
    DirectPredictor,
    LinearPredictor,
    build_predictor,
    spectrum_summary,
)
from tests.test_predictor_matrices import reference_directcopy, reference_directset


def batches(count, rows=12, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(rows, dim)).astype(np.float32) for _ in range(count)]


def reference_correlations(features, rho, update_order="after_step"):
    """Running correlations after each batch. With the reference code's
    order the first batch's statistic is taken as it is (luckmatters,
    ssl/real-dataset, byol_trainer.py, `Accumulator.add`); with
    "before_predict" the average starts from zero."""
    F = None if update_order == "after_step" else np.zeros((features[0].shape[1],) * 2)
    history = []
    for z in features:
        batch = (z.T.astype(np.float64) @ z) / len(z)
        F = batch if F is None else rho * F + (1 - rho) * batch
        history.append(F)
    return history


@pytest.mark.parametrize("update_order", ["after_step", "before_predict"])
@pytest.mark.parametrize("method", ["directcopy", "directpred", "directset"])
def test_running_correlation_and_matrix_follow_the_equations(method, update_order):
    predictor = build_predictor(method, 5, rho=0.3, alpha=0.7, update_order=update_order)
    features = batches(4)
    correlations = reference_correlations(features, 0.3, update_order)
    for step, (z, F) in enumerate(zip(features, correlations)):
        predictor.update(z)
        np.testing.assert_allclose(predictor.correlation.numpy(), F, rtol=1e-5, atol=1e-7)
        expected = {
            "directcopy": lambda: reference_directset(F, 1.0, 0.1),
            "directpred": lambda: reference_directset(F, 0.5, 0.01),
            "directset": lambda: reference_directset(F, 0.7, 0.01),
        }[method]()
        np.testing.assert_allclose(predictor.matrix.numpy(), expected, rtol=1e-4, atol=1e-5)
        assert int(predictor.num_updates.numpy()) == step + 1
        # The layer predicts with the matrix: p = z W_p.
        np.testing.assert_allclose(predictor(z).numpy(), z @ expected, rtol=1e-4, atol=1e-4)


def test_update_every_keeps_the_matrix_between_updates():
    predictor = build_predictor("directcopy", 5, update_every=3, normalization="frobenius")
    features = batches(4, seed=1)
    correlations = reference_correlations(features, 0.3)
    matrices = []
    for z in features:
        predictor.update(z)
        matrices.append(predictor.matrix.numpy())
    # Recomputed at updates 0 and 3, held at 1 and 2; F changes every time.
    np.testing.assert_allclose(matrices[0], reference_directcopy(correlations[0], 0.1, "frobenius"), rtol=1e-5)
    np.testing.assert_array_equal(matrices[1], matrices[0])
    np.testing.assert_array_equal(matrices[2], matrices[0])
    np.testing.assert_allclose(matrices[3], reference_directcopy(correlations[3], 0.1, "frobenius"), rtol=1e-5)
    np.testing.assert_allclose(predictor.correlation.numpy(), correlations[3], rtol=1e-5)


def test_predictor_matrix_starts_as_identity_and_has_no_trainable_weights():
    predictor = build_predictor("directcopy", 4)
    np.testing.assert_array_equal(predictor.matrix.numpy(), np.eye(4))
    assert predictor.trainable_weights == []


def test_update_hooks_follow_the_update_order():
    z = batches(1)[0]
    for order, hook_that_updates in [("after_step", "after_optimizer_step"), ("before_predict", "before_prediction")]:
        predictor = build_predictor("directcopy", 5, update_order=order)
        other = {"after_optimizer_step", "before_prediction"} - {hook_that_updates}
        getattr(predictor, other.pop())(z)
        assert int(predictor.num_updates.numpy()) == 0
        getattr(predictor, hook_that_updates)(z)
        assert int(predictor.num_updates.numpy()) == 1


def test_defaults_match_the_documented_ones():
    copy, pred = DirectPredictor("directcopy"), DirectPredictor("directpred")
    assert (copy.rho, copy.eps, copy.normalization, copy.update_every) == (0.3, 0.1, "spectral", 1)
    assert copy.update_order == pred.update_order == "after_step"
    linear = LinearPredictor()
    assert (linear.symmetric, linear.initializer) == (True, "pytorch")
    assert (pred.rho, pred.eps) == (0.3, 0.01)
    assert DirectPredictor("directset").alpha == 0.5


def test_spectrum_summary():
    summary = spectrum_summary(np.array([4.0, 1.0, 0.0, -1e-3], np.float32)).numpy()
    q = np.array([0.8, 0.2])
    np.testing.assert_allclose(summary, [4.0, -1e-3, np.exp(-(q * np.log(q)).sum())], rtol=1e-5)
    np.testing.assert_allclose(spectrum_summary(np.ones(7, np.float32)).numpy()[2], 7.0, rtol=1e-5)


def test_spectrum_is_reported_after_an_update():
    predictor = build_predictor("directpred", 5)
    predictor.update(batches(1)[0])
    largest, smallest, effective_rank = predictor.spectrum.numpy()
    eigenvalues = np.linalg.eigvalsh(predictor.matrix.numpy())
    np.testing.assert_allclose([largest, smallest], [eigenvalues.max(), eigenvalues.min()], rtol=1e-4)
    assert largest == pytest.approx(1.01, rel=1e-5) and 1.0 < effective_rank <= 5.0


def test_trainable_predictors():
    linear = build_predictor("linear", 6)
    assert [tuple(w.shape) for w in linear.trainable_weights] == [(6, 6)]  # no bias
    z = batches(1, dim=6)[0]
    np.testing.assert_allclose(linear(z).numpy(), z @ linear.kernel.numpy(), rtol=1e-5)
    mlp = build_predictor("mlp", 6, hidden_dim=10)
    layer_types = [type(layer).__name__ for layer in mlp.layers[1:]]
    assert layer_types == ["Dense", "BatchNormalization", "ReLU", "Dense"]
    assert mlp.output_shape == (None, 6)


def test_unknown_predictor_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        build_predictor("directcpy", 8)
    message = str(error.value)
    assert "'directcpy'" in message
    for name in PREDICTOR_NAMES:
        assert name in message


@pytest.mark.parametrize("dim", [8, 128])
def test_linear_predictor_initialization_is_pytorchs_by_default(dim):
    # PyTorch's nn.Linear draws from U(-1/sqrt(d), 1/sqrt(d)): the bound
    # holds and the spread fills it (a uniform's std is bound / sqrt(3)).
    bound = 1 / np.sqrt(dim)
    kernel = build_predictor("linear", dim).kernel.numpy()
    assert np.abs(kernel).max() <= bound
    assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.15 if dim == 8 else 0.02)
    glorot = build_predictor("linear", dim, initializer="glorot").kernel.numpy()
    assert np.abs(glorot).max() > bound  # Glorot's limit sqrt(6 / 2d) is larger


def test_linear_predictor_symmetrizes_after_the_optimizer_step():
    z = batches(1, dim=5)[0]
    symmetric = build_predictor("linear", 5)
    plain = build_predictor("linear", 5, symmetric=False)
    kernel, plain_kernel = symmetric.kernel.numpy(), plain.kernel.numpy()
    assert not np.allclose(kernel, kernel.T)
    for predictor in (symmetric, plain):
        predictor.after_optimizer_step(z)
    np.testing.assert_allclose(symmetric.kernel.numpy(), (kernel + kernel.T) / 2, rtol=1e-6)
    np.testing.assert_array_equal(plain.kernel.numpy(), plain_kernel)


def test_invalid_predictor_options_are_rejected():
    with pytest.raises(ValueError, match="takes no options"):
        build_predictor("mlp", 4, rho=0.5)
    with pytest.raises(ValueError, match="symmetric and initializer"):
        build_predictor("linear", 4, rho=0.5)
    with pytest.raises(ValueError, match="Valid initializers: pytorch, glorot"):
        build_predictor("linear", 4, initializer="he")
    with pytest.raises(ValueError, match="Valid orders: after_step, before_predict"):
        build_predictor("directcopy", 4, update_order="before")
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got -0.1"):
        build_predictor("directcopy", 4, eps=-0.1)
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0, got 0"):
        build_predictor("directset", 4, alpha=0)
    with pytest.raises(ValueError, match="rho must be in"):
        build_predictor("directcopy", 4, rho=1.5)
    with pytest.raises(ValueError, match="normalization"):
        build_predictor("directcopy", 4, normalization="l1")
