"""The closed-form predictor matrices against a straightforward NumPy reference."""

import numpy as np
import pytest
import tensorflow as tf

from keras_directcopy.models.predictor_matrices import (
    default_start_vector,
    directcopy_matrix,
    directpred_matrix,
    directset_matrix,
)


# --- Independent reference, written from the papers' equations. -------------
def reference_directset(F, alpha, eps):
    s, U = np.linalg.eigh(np.asarray(F, np.float64))
    s = np.clip(s, 0.0, None)
    if s.max() <= 0:
        return eps * np.eye(len(s))
    return U @ np.diag((s / s.max()) ** alpha + eps) @ U.T


def reference_directcopy(F, eps, normalization):
    F = np.asarray(F, np.float64)
    if normalization == "none":
        return F + eps * np.eye(len(F))
    largest_entry = np.abs(F).max()
    if largest_entry == 0:
        return eps * np.eye(len(F))
    # Norm of F / max|F_ij| so that squares of tiny entries do not underflow.
    unit = F / largest_entry
    return unit / np.linalg.norm(unit, 2 if normalization == "spectral" else "fro") + eps * np.eye(
        len(F)
    )


def random_psd(dim, rank=None, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    rank = rank or 2 * dim
    features = rng.normal(size=(rank, dim))
    return scale * features.T @ features / rank


def relative_error(actual, expected):
    return np.abs(np.asarray(actual, np.float64) - expected).max() / np.abs(expected).max()


SIZES = [1, 2, 7, 32, 128]


@pytest.mark.parametrize("dim", SIZES)
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-9), (np.float32, 2e-5)])
def test_directpred_and_directset_match_reference(dim, dtype, tolerance):
    F = random_psd(dim, seed=dim).astype(dtype)
    assert relative_error(directpred_matrix(F), reference_directset(F, 0.5, 0.01)) < tolerance
    for alpha, eps in [(0.25, 0.1), (1.0, 0.0), (2.0, 0.3)]:
        actual = directset_matrix(F, alpha=alpha, eps=eps)
        assert relative_error(actual, reference_directset(F, alpha, eps)) < tolerance


@pytest.mark.parametrize("dim", SIZES)
@pytest.mark.parametrize("normalization", ["spectral", "frobenius", "none"])
def test_directcopy_matches_reference(dim, normalization):
    F = random_psd(dim, seed=100 + dim)
    actual = directcopy_matrix(F, eps=0.25, normalization=normalization)
    assert relative_error(actual, reference_directcopy(F, 0.25, normalization)) < 1e-6


@pytest.mark.parametrize("dim", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_directcopy_spectral_equals_directset_alpha_one(dim, dtype):
    for seed in range(3):
        F = random_psd(dim, seed=seed).astype(dtype)
        copy = directcopy_matrix(F, eps=0.25)
        direct_set = directset_matrix(F, alpha=1, eps=0.25)
        assert relative_error(copy, np.asarray(direct_set, np.float64)) < 1e-4


def test_directcopy_needs_no_eigengap():
    # Two equal top eigenvalues: power iteration cannot single out a vector,
    # yet the eigenvalue, and so W_p, is exact.
    F = np.diag([3.0, 3.0, 1.0, 0.5])
    assert relative_error(directcopy_matrix(F), reference_directcopy(F, 0.1, "spectral")) < 1e-6


DEGENERATE = {
    "zero": np.zeros((6, 6)),
    "rank_one": random_psd(6, rank=1, seed=3),
    "rank_half": random_psd(8, rank=4, seed=4),
    "tiny": random_psd(6, seed=5, scale=1e-30),
    "tiny_float64": random_psd(6, seed=6, scale=1e-300),
    "slightly_negative_eigenvalues": random_psd(6, rank=2, seed=7) - 1e-9 * np.eye(6),
    "orthogonal_to_ones": np.array([[1.0, -1.0], [-1.0, 1.0]]),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_degenerate_input_is_finite_and_defined(case):
    F = DEGENERATE[case]
    dim = len(F)
    results = {
        "directpred": (directpred_matrix(F), reference_directset(F, 0.5, 0.01)),
        "directset": (directset_matrix(F, alpha=0.7), reference_directset(F, 0.7, 0.01)),
        "directcopy": (directcopy_matrix(F), reference_directset(F, 1.0, 0.1)),
        "frobenius": (
            directcopy_matrix(F, normalization="frobenius"),
            reference_directcopy(F, 0.1, "frobenius"),
        ),
    }
    for name, (actual, expected) in results.items():
        assert np.all(np.isfinite(actual)), name
        assert actual.shape == (dim, dim)
        assert relative_error(actual, expected) < 1e-6, name


def test_zero_matrix_gives_eps_identity():
    zero = np.zeros((5, 5))
    np.testing.assert_array_equal(directpred_matrix(zero), 0.01 * np.eye(5))
    np.testing.assert_array_equal(directset_matrix(zero, alpha=1, eps=0.2), 0.2 * np.eye(5))
    for normalization in ["spectral", "frobenius", "none"]:
        np.testing.assert_array_equal(
            directcopy_matrix(zero, normalization=normalization), 0.1 * np.eye(5)
        )


def test_numpy_in_numpy_out_tensor_in_tensor_out():
    F = random_psd(4)
    assert isinstance(directcopy_matrix(F), np.ndarray)
    assert isinstance(directpred_matrix(F.tolist()), np.ndarray)
    tensor = tf.constant(F, tf.float32)
    for result in [directcopy_matrix(tensor), directpred_matrix(tensor), directset_matrix(tensor)]:
        assert tf.is_tensor(result) and result.dtype == tf.float32


def test_runs_compiled_with_xla():
    F = random_psd(16).astype(np.float32)

    @tf.function(jit_compile=True)
    def both(matrix):
        return directcopy_matrix(matrix), directpred_matrix(matrix)

    copy, pred = both(tf.constant(F))
    assert relative_error(copy.numpy(), reference_directset(F, 1.0, 0.1)) < 1e-4
    assert relative_error(pred.numpy(), reference_directset(F, 0.5, 0.01)) < 1e-4


@pytest.mark.parametrize("function", [directpred_matrix, directset_matrix, directcopy_matrix])
def test_non_square_matrix_is_rejected_with_its_shape(function):
    with pytest.raises(ValueError, match=r"square.*\(3, 4\)"):
        function(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"square.*\(2, 2, 2\)"):
        function(np.ones((2, 2, 2)))


@pytest.mark.parametrize("function", [directpred_matrix, directset_matrix, directcopy_matrix])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_matrix_is_rejected_with_the_value(function, bad):
    F = np.eye(3)
    F[1, 2] = bad
    with pytest.raises(ValueError, match=rf"F\[1, 2\] = {bad}"):
        function(F)
    with pytest.raises(ValueError, match="finite"):
        function(tf.constant(F))


def test_unknown_normalization_lists_valid_ones():
    with pytest.raises(ValueError, match="spectral, frobenius, none"):
        directcopy_matrix(np.eye(2), normalization="nuclear")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda F: directcopy_matrix(F, eps=-0.1), "eps must be a finite number >= 0, got -0.1"),
        (lambda F: directpred_matrix(F, eps=float("inf")), "eps must be a finite number >= 0, got inf"),
        (lambda F: directset_matrix(F, alpha=-1.0), "alpha must be a finite number > 0, got -1.0"),
        (lambda F: directset_matrix(F, eps="0.1"), "eps must be a number, got '0.1'"),
    ],
)
def test_invalid_eps_and_alpha_are_rejected(call, message):
    with pytest.raises(ValueError) as error:
        call(random_psd(4))
    assert message in str(error.value)


def test_a_matrix_of_unknown_size_is_rejected_when_traced():
    """The fixed start vector of the power iteration, and `eye`, need `d`."""

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def copy(matrix):
        return directcopy_matrix(matrix)

    with pytest.raises(ValueError, match=r"square \(d, d\) correlation matrix with d known.*\(None, None\)"):
        copy.get_concrete_function()


def test_the_power_iteration_starts_from_one_fixed_unit_vector():
    first, second = default_start_vector(7, "float32"), default_start_vector(7, tf.float32)
    np.testing.assert_array_equal(first, second)
    assert abs(np.linalg.norm(first) - 1.0) < 1e-6
    assert np.all(np.asarray(first) != 0)
