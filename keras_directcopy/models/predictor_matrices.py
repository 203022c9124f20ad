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

The functions accept NumPy arrays or tensors. NumPy in gives NumPy out; a
tensor in gives a tensor out, so they also run inside ``tf.function`` and XLA.
Non-finite values can only be checked when ``F`` holds concrete values (NumPy
or eager); inside a traced function a non-finite ``F`` comes from a non-finite
loss, which the training loop reports.
"""

import numpy as np
import tensorflow as tf

NORMALIZATIONS = ("spectral", "frobenius", "none")

# Power iteration stops when the Rayleigh quotient changes by less than this
# relative amount, or after the iteration cap. The error of the estimated top
# eigenvalue is then at most about min(lambda_1 - lambda_2, tol / (1 - r^2))
# relative, r = lambda_2 / lambda_1, which keeps DirectCopy within 1e-4 of
# DirectSet(alpha=1) for any eigen-gap.
POWER_ITERATION_TOLERANCE = 1e-7
POWER_ITERATION_MAX_STEPS = 500


def directpred_matrix(F, eps=0.01):
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


def directset_matrix(F, alpha=0.5, eps=0.01):
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
    return result.numpy() if to_numpy else result


def directcopy_matrix(F, eps=0.25, normalization="spectral"):
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
    return result.numpy() if to_numpy else result


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
    """Graph-safe core of `directset_matrix`.

    Args:
        F: float tensor, shape `(d, d)`, already validated.
        alpha: exponent of the normalized eigenvalues.
        eps: added to every eigenvalue.

    Returns:
        `(W_p, eigenvalues)`: the `(d, d)` predictor and its `(d,)` eigenvalues
        `p`, which the spectrum monitor reuses.
    """
    dim = tf.shape(F)[0]
    # The result depends only on ratios of eigenvalues, so scaling F by its
    # largest entry changes nothing but keeps eigh away from under/overflow.
    scaled, is_zero = _scale_by_max_abs(F)
    eigenvalues, eigenvectors = tf.linalg.eigh(scaled)
    eigenvalues = tf.maximum(eigenvalues, 0.0)
    largest = tf.reduce_max(eigenvalues)
    degenerate = tf.logical_or(is_zero, largest <= smallest_normal(F.dtype))
    safe_largest = tf.where(degenerate, tf.ones_like(largest), largest)
    p = tf.pow(eigenvalues / safe_largest, alpha) + eps
    p = tf.where(degenerate, tf.fill([dim], tf.cast(eps, F.dtype)), p)
    matrix = tf.matmul(eigenvectors * p[tf.newaxis, :], eigenvectors, transpose_b=True)
    matrix = tf.where(degenerate, eps * tf.eye(dim, dtype=F.dtype), matrix)
    return matrix, p


def directcopy_tensor(F, eps, normalization, initial_vector=None):
    """Graph-safe core of `directcopy_matrix`.

    Args:
        F: float tensor, shape `(d, d)`, already validated.
        eps: weight of the identity.
        normalization: one of `NORMALIZATIONS`.
        initial_vector: optional `(d,)` start for the power iteration, e.g.
            the previous training step's top eigenvector (warm start).

    Returns:
        `(W_p, top_eigenvector)`. The eigenvector is the power-iteration
        result for `"spectral"` and `initial_vector` (or a fixed start
        vector) otherwise.
    """
    dim = tf.shape(F)[0]
    identity = tf.eye(dim, dtype=F.dtype)
    vector = default_start_vector(dim, F.dtype) if initial_vector is None else initial_vector
    if normalization == "none":
        return F + eps * identity, vector
    scaled, is_zero = _scale_by_max_abs(F)
    if normalization == "frobenius":
        norm = tf.norm(scaled)
    else:
        norm, vector = top_eigenpair(scaled, vector)
    degenerate = tf.logical_or(is_zero, norm <= smallest_normal(F.dtype))
    safe_norm = tf.where(degenerate, tf.ones_like(norm), norm)
    matrix = tf.where(degenerate, eps * identity, scaled / safe_norm + eps * identity)
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
    tiny = smallest_normal(F.dtype)

    def normalize(v):
        return v / tf.maximum(tf.norm(v), tiny)

    def step(i, v, value, previous):
        product = tf.linalg.matvec(F, v)
        return i + 1, normalize(product), tf.tensordot(v, product, 1), value

    def not_converged(i, v, value, previous):
        change = tf.abs(value - previous)
        return tf.logical_and(
            i < POWER_ITERATION_MAX_STEPS,
            change > POWER_ITERATION_TOLERANCE * tf.abs(value),
        )

    v0 = normalize(tf.cast(initial_vector, F.dtype))
    minus_one = tf.constant(-1.0, F.dtype)
    _, v, _, _ = tf.while_loop(
        not_converged, step, (tf.constant(0), v0, minus_one, minus_one - 1.0)
    )
    # Rayleigh quotient of the final unit vector: its error is quadratic in
    # the eigenvector's error.
    eigenvalue = tf.tensordot(v, tf.linalg.matvec(F, v), 1)
    return tf.maximum(eigenvalue, 0.0), v


def default_start_vector(dim, dtype):
    """Fixed pseudo-random unit vector `(dim,)` that starts the power iteration.

    A constant vector can be exactly orthogonal to the top eigenvector of a
    structured matrix (e.g. ``[[1, -1], [-1, 1]]``); a fixed random one almost
    surely is not, and being fixed it is identical on every replica.
    """
    vector = tf.random.stateless_normal([dim], seed=[1234, 5678], dtype=dtype)
    return vector / tf.norm(vector)


def _validated_matrix(F):
    """Converts `F` to a float tensor and checks it is square and finite.

    Returns:
        `(tensor, to_numpy)` where `to_numpy` says the caller passed
        something other than a tensor and wants NumPy back.
    """
    to_numpy = not tf.is_tensor(F)
    if to_numpy:
        array = np.asarray(F)
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)
        matrix = tf.convert_to_tensor(array)
    else:
        matrix = F if F.dtype.is_floating else tf.cast(F, tf.float32)
    shape = matrix.shape
    if shape.rank != 2 or (
        shape[0] is not None and shape[1] is not None and shape[0] != shape[1]
    ):
        raise ValueError(
            f"F must be a square (d, d) correlation matrix, got shape {tuple(shape)}."
        )
    if hasattr(matrix, "numpy"):  # concrete values: eager tensor or NumPy
        values = matrix.numpy()
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


def _scale_by_max_abs(F):
    """Returns `(F / max|F_ij|, is_zero)`; `F` unchanged when it is all zero."""
    largest = tf.reduce_max(tf.abs(F))
    is_zero = largest <= smallest_normal(F.dtype)
    return F / tf.where(is_zero, tf.ones_like(largest), largest), is_zero


def smallest_normal(dtype):
    """Smallest positive normal number of `dtype`, as a tensor."""
    return tf.constant(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).tiny, dtype)
