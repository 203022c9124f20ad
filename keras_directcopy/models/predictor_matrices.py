"""Closed-form predictor matrices: DirectPred, DirectSet and DirectCopy.

Each function maps a symmetric positive semi-definite correlation matrix
``F`` of shape ``(d, d)`` to the predictor matrix ``W_p`` of shape ``(d, d)``.

* DirectPred (Tian, Chen & Ganguli, ICML 2021, eq. 18):
  ``F = U diag(s) U^T``, ``p_j = sqrt(s_j / max(s)) + eps``,
  ``W_p = U diag(p) U^T``.
* DirectSet(alpha) (same paper's family; Wang, Chen, Du & Tian 2021):
  ``p_j = (s_j / max(s)) ** alpha + eps``. DirectPred is ``alpha=0.5``.
* DirectCopy (Wang, Chen, Du & Tian 2021): ``W_p = F / ||F|| + eps * I``,
  with no eigendecomposition. With the spectral norm it equals
  DirectSet(alpha=1).

Degenerate input is defined, never NaN: negative eigenvalues (numerical noise
of a PSD estimate) are clipped to zero, and when the largest eigenvalue is zero
(``F = 0``) or below the smallest normal float of the dtype, the result is
exactly ``eps * I``.

The functions accept NumPy arrays or tensors of the Keras backend, and are
written with ``keras.ops``, so they run on TensorFlow, JAX and PyTorch alike.
NumPy in gives NumPy out; a tensor in gives a tensor out, so they also run
inside ``tf.function`` and XLA (and ``jax.jit``). NumPy input is computed in
its own precision where the backend has it: JAX computes float64 only with
``jax_enable_x64``, and float32 otherwise. Non-finite values can only be checked
when ``F`` holds concrete values (NumPy, or a tensor outside a traced
function); inside a traced function a non-finite ``F`` comes from a
non-finite loss, which the training loop reports.
"""

import keras
import numpy as np
from keras import ops

NORMALIZATIONS = ("spectral", "frobenius", "none")

# Default eps of each closed form; `models.predictors.DEFAULT_EPS` documents
# their sources. DirectCopy's 0.1 is the best of the README's CIFAR-10
# comparison (round 2), which screened 0.05 to 0.5.
DIRECTPRED_DEFAULT_EPS = 0.01
DIRECTCOPY_DEFAULT_EPS = 0.1

# Power iteration stops when the Rayleigh quotient changes by less than this
# relative amount, or after the iteration cap. The error of the estimated top
# eigenvalue is then at most about min(lambda_1 - lambda_2, tol / (1 - r^2))
# relative, r = lambda_2 / lambda_1, which keeps DirectCopy within 1e-4 of
# DirectSet(alpha=1) for any eigen-gap.
POWER_ITERATION_TOLERANCE = 1e-7
POWER_ITERATION_MAX_STEPS = 500


def directpred_matrix(F, eps=DIRECTPRED_DEFAULT_EPS):
    """DirectPred predictor: ``U diag(sqrt(s / max(s)) + eps) U^T``.

    Args:
        F: symmetric PSD matrix, shape `(d, d)`, NumPy array or tensor.
        eps: added to every eigenvalue after normalization and square root.

    Returns:
        `W_p`, shape `(d, d)`, same kind (NumPy or tensor) as `F`.

    Raises:
        ValueError: if `F` is not square or holds NaN/Inf, or `eps < 0`.
    """
    return directset_matrix(F, alpha=0.5, eps=eps)


def directset_matrix(F, alpha=0.5, eps=DIRECTPRED_DEFAULT_EPS):
    """DirectSet(alpha) predictor: ``U diag((s / max(s))**alpha + eps) U^T``.

    Args:
        F: symmetric PSD matrix, shape `(d, d)`, NumPy array or tensor.
        alpha: exponent applied to the normalized eigenvalues; `0.5` is
            DirectPred, `1.0` is the spectral-norm DirectCopy.
        eps: added to every eigenvalue after the power.

    Returns:
        `W_p`, shape `(d, d)`, same kind (NumPy or tensor) as `F`.

    Raises:
        ValueError: if `F` is not square or holds NaN/Inf, `alpha <= 0` or
            `eps < 0`.
    """
    check_eps_and_alpha(eps, alpha)
    matrix, to_numpy = _validated_matrix(F)
    result = directset_tensor(matrix, alpha=alpha, eps=eps)[0]
    return ops.convert_to_numpy(result) if to_numpy else result


def directcopy_matrix(F, eps=DIRECTCOPY_DEFAULT_EPS, normalization="spectral"):
    """DirectCopy predictor: ``F / ||F|| + eps * I``, no eigendecomposition.

    Args:
        F: symmetric PSD matrix, shape `(d, d)`, NumPy array or tensor.
        eps: weight of the identity added after normalization.
        normalization: `"spectral"` divides by the largest eigenvalue,
            estimated by power iteration; `"frobenius"` by the Frobenius norm;
            `"none"` uses `F` as it is (the reference code's `directcopy`).

    Returns:
        `W_p`, shape `(d, d)`, same kind (NumPy or tensor) as `F`.

    Raises:
        ValueError: if `F` is not square or holds NaN/Inf, if `eps < 0`, or
            if `normalization` is unknown.
    """
    check_eps_and_alpha(eps)
    check_normalization(normalization)
    matrix, to_numpy = _validated_matrix(F)
    result = directcopy_tensor(matrix, eps=eps, normalization=normalization)[0]
    return ops.convert_to_numpy(result) if to_numpy else result


def check_normalization(normalization):
    """Raises ValueError unless `normalization` is one of `NORMALIZATIONS`."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown DirectCopy normalization {normalization!r}. "
            f"Valid normalizations: {', '.join(NORMALIZATIONS)}."
        )


def check_eps_and_alpha(eps, alpha=None):
    """Raises ValueError unless `eps` is a finite number >= 0 and `alpha`
    (when given) a finite number > 0.

    A negative `eps` can make `W_p` indefinite, so the predictor would flip
    directions it should keep; `alpha <= 0` would boost the weakest
    eigen-directions as much as or more than the strongest.
    """
    for name, value, lowest, inclusive in (("eps", eps, 0.0, True), ("alpha", alpha, 0.0, False)):
        if name == "alpha" and alpha is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValueError(f"{name} must be a number, got {value!r}.")
        if not np.isfinite(value) or value < lowest or (value == lowest and not inclusive):
            bound = ">= 0" if inclusive else "> 0"
            raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")


def directset_tensor(F, alpha, eps):
    """Traceable core of `directset_matrix` (`tf.function`, XLA, `jax.jit`).

    Args:
        F: float tensor, shape `(d, d)` with `d` known, already validated.
        alpha: exponent of the normalized eigenvalues.
        eps: added to every eigenvalue.

    Returns:
        `(W_p, eigenvalues)`: the `(d, d)` predictor and its `(d,)` eigenvalues
        `p`, which the spectrum monitor reuses.
    """
    dim, dtype = _size_and_dtype(F)
    # The result depends only on ratios of eigenvalues, so scaling F by its
    # largest entry changes nothing but keeps eigh away from under/overflow.
    scaled, is_zero = _scale_by_max_abs(F)
    eigenvalues, eigenvectors = ops.eigh(scaled)
    eigenvalues = ops.maximum(eigenvalues, 0.0)
    largest = ops.max(eigenvalues)
    degenerate = ops.logical_or(is_zero, largest <= smallest_normal(dtype))
    safe_largest = ops.where(degenerate, ops.ones_like(largest), largest)
    p = ops.power(eigenvalues / safe_largest, alpha) + eps
    p = ops.where(degenerate, ops.full((dim,), eps, dtype=dtype), p)
    matrix = ops.matmul(eigenvectors * p[None, :], ops.transpose(eigenvectors))
    matrix = ops.where(degenerate, eps * ops.eye(dim, dtype=dtype), matrix)
    return matrix, p


def directcopy_tensor(F, eps, normalization, initial_vector=None):
    """Traceable core of `directcopy_matrix` (`tf.function`, XLA, `jax.jit`).

    Args:
        F: float tensor, shape `(d, d)` with `d` known, already validated.
        eps: weight of the identity.
        normalization: one of `NORMALIZATIONS`.
        initial_vector: optional `(d,)` start for the power iteration, e.g.
            the previous training step's top eigenvector (warm start).

    Returns:
        `(W_p, top_eigenvector)`. The eigenvector is the power-iteration
        result for `"spectral"` and `initial_vector` (or a fixed start
        vector) otherwise.
    """
    dim, dtype = _size_and_dtype(F)
    identity = ops.eye(dim, dtype=dtype)
    vector = default_start_vector(dim, dtype) if initial_vector is None else initial_vector
    if normalization == "none":
        return F + eps * identity, vector
    scaled, is_zero = _scale_by_max_abs(F)
    if normalization == "frobenius":
        norm = ops.norm(scaled)
    else:
        norm, vector = top_eigenpair(scaled, vector)
    degenerate = ops.logical_or(is_zero, norm <= smallest_normal(dtype))
    safe_norm = ops.where(degenerate, ops.ones_like(norm), norm)
    matrix = ops.where(degenerate, eps * identity, scaled / safe_norm + eps * identity)
    return matrix, vector


def top_eigenpair(F, initial_vector):
    """Largest eigenvalue and its eigenvector of a PSD matrix by power iteration.

    Iterates until the Rayleigh quotient changes by less than
    `POWER_ITERATION_TOLERANCE` (relative) or `POWER_ITERATION_MAX_STEPS`.

    Args:
        F: float tensor `(d, d)`, symmetric PSD, entries of order one.
        initial_vector: `(d,)` start vector, not orthogonal to the top
            eigenvector (the fixed pseudo-random default almost surely is not).

    Returns:
        `(eigenvalue, unit_eigenvector)`; the eigenvalue is 0 when `F v = 0`.
    """
    dtype = keras.backend.standardize_dtype(F.dtype)
    tiny = smallest_normal(dtype)

    def normalize(v):
        return v / ops.maximum(ops.norm(v), tiny)

    def step(i, v, value, previous):
        product = ops.matmul(F, v)
        return i + 1, normalize(product), ops.tensordot(v, product, 1), value

    def not_converged(i, v, value, previous):
        change = ops.abs(value - previous)
        return ops.logical_and(
            i < POWER_ITERATION_MAX_STEPS,
            change > POWER_ITERATION_TOLERANCE * ops.abs(value),
        )

    v0 = normalize(ops.cast(initial_vector, dtype))
    minus_one = ops.convert_to_tensor(-1.0, dtype)
    _, v, _, _ = ops.while_loop(
        not_converged, step, (ops.convert_to_tensor(0, "int32"), v0, minus_one, minus_one - 1.0)
    )
    # Rayleigh quotient of the final unit vector: its error is quadratic in
    # the eigenvector's error.
    eigenvalue = ops.tensordot(v, ops.matmul(F, v), 1)
    return ops.maximum(eigenvalue, 0.0), v


# The start vector's seed. NumPy's `RandomState` stream is frozen (NEP 19), so
# the vector is the same with every NumPy version and on every backend.
START_VECTOR_SEED = 1234


def default_start_vector(dim, dtype):
    """Fixed pseudo-random unit vector `(dim,)` that starts the power iteration.

    A constant vector can be exactly orthogonal to the top eigenvector of a
    structured matrix (e.g. ``[[1, -1], [-1, 1]]``); a fixed random one almost
    surely is not, and being fixed it is identical on every replica.

    Args:
        dim: int, the vector's size `d`.
        dtype: its float dtype (a name or a backend dtype).

    Returns:
        A `(dim,)` tensor of the Keras backend.
    """
    vector = np.random.RandomState(START_VECTOR_SEED).standard_normal(int(dim))
    return ops.convert_to_tensor(vector / np.linalg.norm(vector), keras.backend.standardize_dtype(dtype))


def _validated_matrix(F):
    """Converts `F` to a float tensor and checks it is square and finite.

    Returns:
        `(tensor, to_numpy)` where `to_numpy` says the caller passed
        something other than a tensor and wants NumPy back.
    """
    to_numpy = not ops.is_tensor(F)
    if to_numpy:
        array = np.asarray(F)
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)
        matrix = ops.convert_to_tensor(array)
    else:
        matrix = F if keras.backend.is_float_dtype(F.dtype) else ops.cast(F, "float32")
    shape = tuple(matrix.shape)
    if len(shape) != 2 or shape[0] is None or shape[0] != shape[1]:
        raise ValueError(
            f"F must be a square (d, d) correlation matrix with d known, got shape {shape}."
        )
    values = _concrete_values(matrix)
    if values is not None:
        bad = ~np.isfinite(values)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"F must be finite, but {int(bad.sum())} of its {values.size} "
                f"entries are NaN or Inf (F{list(index)} = {values[index]}). "
                "A non-finite correlation usually means the training loss "
                "diverged: lower the learning rate."
            )
    return matrix, to_numpy


def _concrete_values(tensor):
    """`tensor`'s values as a NumPy array, or None while a function is being
    traced (`tf.function`, `jax.jit`), where it holds no values yet."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # Eager tensors have values; the symbolic ones of a tf.function have no `numpy`.
        return tensor.numpy() if hasattr(tensor, "numpy") else None
    if backend == "jax":
        import jax

        return None if isinstance(tensor, jax.core.Tracer) else np.asarray(tensor)
    return ops.convert_to_numpy(tensor)


def _size_and_dtype(F):
    """`(d, dtype name)` of a validated `(d, d)` float tensor."""
    return int(F.shape[0]), keras.backend.standardize_dtype(F.dtype)


def _scale_by_max_abs(F):
    """Returns `(F / max|F_ij|, is_zero)`; `F` unchanged when it is all zero."""
    largest = ops.max(ops.abs(F))
    is_zero = largest <= smallest_normal(F.dtype)
    return F / ops.where(is_zero, ops.ones_like(largest), largest), is_zero


def smallest_normal(dtype):
    """Smallest positive normal number of `dtype` (a name or a backend dtype), as a tensor."""
    name = keras.backend.standardize_dtype(dtype)
    return ops.convert_to_tensor(np.finfo(name).tiny, name)
