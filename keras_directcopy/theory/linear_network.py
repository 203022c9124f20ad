"""Linear-network theory lab: which features DirectCopy and DirectPred keep.

A small, exact NumPy model of non-contrastive learning in which the learned
features can be predicted in closed form, and a simulator to check the
predictions: population gradient flow (expected gradients) and SGD on samples.

Setting
-------
Inputs `x ~ N(0, X)` of dimension `d`, with `X = sum_i x_i u_i u_i^T` in an
orthonormal basis `u_1..u_d`. The two views are `x + xi_1` and `x + xi_2`,
`xi ~ N(0, S)`, `S = sum_i sigma_i^2 u_i u_i^T` (augmentation variance in the
same basis). The online encoder is a matrix `W` of shape `(d_out, d)`, the
target is `sg(W)` (or its EMA `W_a`), and the loss is the unnormalized one

    L = 1/2 E||W_p W x_1 - sg(W_a x_2)||^2 + eta/2 ||W||^2.

`W_p` is not learned: it is set from the correlation of the online outputs,
`F = E[(W x~)(W x~)^T] = W (X + S) W^T`, by

* DirectCopy, `W_p = F + eps I` (`directcopy_matrix(F, eps, "none")`);
* DirectPred, `W_p = F^(1/2) + eps I` (`directpred_matrix`, rescaled).

Derivation
----------
With `E[x_1 x_1^T] = X + S` and `E[x_2 x_1^T] = X` (independent noises), the
gradient flow `dW/dt = -dL/dW` is

    dW/dt = W_p^T W_a X - W_p^T W_p W (X + S) - eta W.

Multiplying by `u_i` on the right, each column `W u_i` evolves linearly:

    d(W u_i)/dt = [x_i W_p - (x_i + sigma_i^2) W_p^2 - eta I] W u_i.

If the columns `W u_i` are mutually orthogonal (an "aligned" `W`), they are
the eigenvectors of `F`, with eigenvalues `s_i = ||W u_i||^2 (x_i + sigma_i^2)`,
and so of `W_p`, with eigenvalues `p_i = s_i + eps` (DirectCopy) or
`sqrt(s_i) + eps` (DirectPred). Each column then stays on its line, the
columns stay orthogonal, and the norm `w_i = ||W u_i||` obeys (target `sg(W)`)

    dw_i/dt = w_i g_i(p_i),   g_i(p) = p x_i - p^2 (x_i + sigma_i^2) - eta.

This is exact for an aligned `W`; from a generic `W`, the columns align
(in an output direction shared by two inputs, the one with the larger
`g_i(p)` grows relative to the other, so mixtures die out).

Because `p_i` increases with `w_i`, the flow of `p_i` is one-dimensional and
monotone: it moves in the direction of the sign of `g_i(p_i)` and stops at a
root of `g_i`. Hence:

* Growth from a small initialization (`p_i ~ eps`): direction `i` grows iff
  `g_i(eps) > 0`, i.e. `eps x_i - eps^2 (x_i + sigma_i^2) > eta`, i.e.

      sigma_i^2 < (eps x_i - eta) / eps^2 - x_i       (`growth_threshold`).

* Fixed points: `g_i(p) = 0` is the quadratic
  `(x_i + sigma_i^2) p^2 - x_i p + eta = 0`, with real roots
  `p_-  <= p_+` only if `x_i^2 >= 4 eta (x_i + sigma_i^2)`, i.e.

      sigma_i^2 <= x_i^2 / (4 eta) - x_i              (`fixed_point_threshold`).

  `g_i > 0` between the roots, so `p_+` is stable and `p_-` unstable. A
  direction that starts at `p_i(0)` ends at `p_+` if `p_+ > eps` and
  `p_i(0) > p_-`, and at `w_i = 0` otherwise (`predicted_final_norms`). From a
  small initialization that is the growth condition above; from a large one
  (`p_i(0) > p_+`) it is the existence of the fixed point with `p_+ > eps`.

* Weight decay is the threshold: with `eta = 0` the condition is
  `sigma_i^2 < x_i (1 - eps) / eps`, which every direction meets as
  `eps -> 0`; each unit of `eta` lowers the admissible augmentation variance
  by `1 / eps^2`.

* The same threshold holds with an EMA target `w_a <- tau w_a + (1 - tau) w`:
  near `w = 0` the step maps `(w, w_a)` linearly by a 2x2 matrix `M` with
  `det(M - I) = (1 - tau) lr (eps^2 (x + sigma^2) + eta - eps x)`, which is
  negative (an eigenvalue above 1: growth) exactly under the same condition
  (for small `lr`, decay otherwise); fixed points have `w_a = w` and are
  unchanged.

* Normalization matters: with the lambda_max-normalized predictors
  (DirectCopy `F / ||F||_2 + eps I`, or the library's DirectPred
  `sqrt(F / lambda_max) + eps I`), the top direction always has
  `p = 1 + eps`, so `g_top = (1 + eps) x - (1 + eps)^2 (x + sigma^2) - eta
  <= -eps (1 + eps) x - eta < 0`: the largest `s_i` decays exponentially,
  and every other `s_i` is below it, so every direction decays to zero under
  this unnormalized loss. That is why this lab uses the unnormalized rule.
  The deep-network training keeps the normalized rule together with the
  cosine (normalized MSE) loss, which does not depend on the scale of the
  outputs, so there `W_p` only has to set the relative eigenvalues.

The discrete updates used here (`W <- W - lr * grad`) have exactly the same
growth condition and fixed points: `w <- w (1 + lr g(p))` grows iff
`g(p) > 0`. They are stable when `lr` is below `stable_learning_rate`: the
fastest mode is a column's component along an output direction where `W_p`
has its largest eigenvalue `p_max`, decaying at a rate up to
`p_max^2 (x_j + sigma_j^2) + eta`, and explicit steps need `lr * rate < 2`.

Downstream sample complexity: `sample_complexity` fits a ridge regression of
a label that depends on chosen directions, on raw inputs or on features
`R x`, and returns the exact population test error of each fit.
"""

import dataclasses
import functools

import numpy as np
import tensorflow as tf

from keras_directcopy.models.predictor_matrices import directcopy_matrix, directpred_matrix

METHODS = ("directcopy", "directpred")
NORMALIZATIONS = ("none", "spectral")
INITS = ("aligned", "gaussian")


# ---------------------------------------------------------------------------
# Closed-form predictions.
# ---------------------------------------------------------------------------


def growth_rate(p, data_variance, augmentation_variance, weight_decay):
    """`g(p) = p x - p^2 (x + sigma^2) - eta`, the relative growth rate of `w`.

    Args:
        p: predictor eigenvalue(s) on the direction(s), scalar or array.
        data_variance: `x_i`, broadcastable with `p`.
        augmentation_variance: `sigma_i^2`, broadcastable with `p`.
        weight_decay: `eta`.

    Returns:
        `d ln w / dt`, broadcast shape of the inputs.
    """
    x = np.asarray(data_variance, np.float64)
    return p * x - p**2 * (x + np.asarray(augmentation_variance, np.float64)) - weight_decay


def growth_threshold(data_variance, weight_decay, eps):
    """Largest augmentation variance that grows from a small initialization.

    Direction `i` grows from `p_i ~ eps` iff
    `sigma_i^2 < (eps x_i - eta) / eps^2 - x_i`.

    Args:
        data_variance: `x_i`, scalar or array.
        weight_decay: `eta >= 0`.
        eps: predictor regularizer `eps > 0`.

    Returns:
        The threshold on `sigma_i^2`, same shape as `data_variance`.
    """
    x = np.asarray(data_variance, np.float64)
    return (eps * x - weight_decay) / eps**2 - x


def fixed_point_threshold(data_variance, weight_decay):
    """Largest augmentation variance with a non-zero fixed point:
    `x_i^2 / (4 eta) - x_i` (`inf` when `eta = 0`).

    Args:
        data_variance: `x_i`, scalar or array.
        weight_decay: `eta >= 0`.

    Returns:
        The bound on `sigma_i^2`, same shape as `data_variance`.
    """
    x = np.asarray(data_variance, np.float64)
    if weight_decay == 0:
        return np.full_like(x, np.inf)
    return x**2 / (4.0 * weight_decay) - x


def fixed_points(data_variance, augmentation_variance, weight_decay):
    """Roots `(p_-, p_+)` of `g(p) = 0`; NaN where there is no real root.

    Args:
        data_variance: `x_i`, array `(d,)` or scalar.
        augmentation_variance: `sigma_i^2`, broadcastable.
        weight_decay: `eta`.

    Returns:
        `(p_minus, p_plus)`, each of the broadcast shape; `p_plus` is stable.
    """
    x = np.asarray(data_variance, np.float64)
    total = x + np.asarray(augmentation_variance, np.float64)
    discriminant = x**2 - 4.0 * weight_decay * total
    root = np.sqrt(np.where(discriminant >= 0, discriminant, np.nan))
    return (x - root) / (2.0 * total), (x + root) / (2.0 * total)


def predictor_eigenvalue(norm, data_variance, augmentation_variance, eps, method):
    """Eigenvalue `p` of the unnormalized `W_p` on a direction of norm `w`.

    DirectCopy: `w^2 (x + sigma^2) + eps`; DirectPred: `w sqrt(x + sigma^2) + eps`.

    Args:
        norm: `w = ||W u_i||`, scalar or array.
        data_variance: `x_i`, broadcastable with `norm`.
        augmentation_variance: `sigma_i^2`, broadcastable with `norm`.
        eps: predictor regularizer.
        method: `"directcopy"` or `"directpred"`.

    Returns:
        `p`, broadcast shape of the inputs.
    """
    total = np.asarray(data_variance, np.float64) + augmentation_variance
    _check_method(method)
    if method == "directcopy":
        return np.square(norm) * total + eps
    return np.abs(norm) * np.sqrt(total) + eps


def norm_from_predictor_eigenvalue(p, data_variance, augmentation_variance, eps, method):
    """Inverse of `predictor_eigenvalue` for `p >= eps`: the norm `w >= 0`.

    Args: as `predictor_eigenvalue`, with `p` in place of `norm`; `p < eps`
    gives 0.
    """
    total = np.asarray(data_variance, np.float64) + augmentation_variance
    _check_method(method)
    excess = np.maximum(np.asarray(p, np.float64) - eps, 0.0)
    if method == "directcopy":
        return np.sqrt(excess / total)
    return excess / np.sqrt(total)


def predicted_final_norms(
    data_variance, augmentation_variance, weight_decay, eps, method, initial_norms
):
    """Limit of `||W u_i||` under the unnormalized population flow.

    Direction `i` converges to the stable root `p_+` when it exists, is above
    `eps`, and the start is above the unstable root (`p_i(0) > p_-`);
    otherwise it decays to zero (see the module docstring).

    Args:
        data_variance: `x_i`, scalar or `(d,)`.
        augmentation_variance: `sigma_i^2`, scalar or `(d,)`.
        weight_decay: `eta`.
        eps: predictor regularizer.
        method: `"directcopy"` or `"directpred"`.
        initial_norms: `||W_0 u_i||`, scalar or `(d,)`.

    Returns:
        `(d,)` array of limiting norms (0 for discarded directions).
    """
    x, sigma2 = np.broadcast_arrays(
        np.asarray(data_variance, np.float64), np.asarray(augmentation_variance, np.float64)
    )
    p_minus, p_plus = fixed_points(x, sigma2, weight_decay)
    p_start = predictor_eigenvalue(
        np.broadcast_to(initial_norms, x.shape), x, sigma2, eps, method
    )
    with np.errstate(invalid="ignore"):
        kept = np.isfinite(p_plus) & (p_plus > eps) & (p_start > p_minus)
    final = norm_from_predictor_eigenvalue(np.where(kept, p_plus, eps), x, sigma2, eps, method)
    return np.where(kept, final, 0.0)


def stable_learning_rate(
    data_variance,
    augmentation_variance,
    weight_decay,
    eps,
    method="directcopy",
    normalization="none",
    initial_norms=0.0,
):
    """Largest stable step of the full-matrix updates, `2 / (p_max^2 max(x + sigma^2) + eta)`.

    `p_max` is the largest predictor eigenvalue the run can reach: `1 + eps`
    with the normalized rule; otherwise the largest of `eps`, the stable
    roots `p_+` and the initial eigenvalues.

    Args:
        data_variance: `x_i`, `(d,)` or scalar.
        augmentation_variance: `sigma_i^2`, `(d,)`.
        weight_decay: `eta`.
        eps: predictor regularizer.
        method: `"directcopy"` or `"directpred"`.
        normalization: `"none"` or `"spectral"`.
        initial_norms: `||W_0 u_i||`, scalar or `(d,)`.

    Returns:
        The bound on the learning rate (a float).
    """
    x, sigma2 = np.broadcast_arrays(
        np.asarray(data_variance, np.float64), np.asarray(augmentation_variance, np.float64)
    )
    if normalization == "spectral":
        largest = 1.0 + eps
    else:
        _, p_plus = fixed_points(x, sigma2, weight_decay)
        start = predictor_eigenvalue(
            np.broadcast_to(initial_norms, x.shape), x, sigma2, eps, method
        )
        largest = np.nanmax(np.concatenate([[eps], np.ravel(p_plus), np.ravel(start)]))
    return float(2.0 / (largest**2 * np.max(x + sigma2) + weight_decay))


def empirical_threshold(augmentation_variance, kept):
    """Threshold on `sigma^2` read off simulated outcomes.

    Args:
        augmentation_variance: `sigma_i^2`, `(d,)`.
        kept: boolean `(d,)`, which directions were kept.

    Returns:
        The midpoint between the largest kept and the smallest discarded
        `sigma^2`, or None unless every kept direction has a smaller
        `sigma^2` than every discarded one (and both kinds occur).
    """
    sigma2 = np.asarray(augmentation_variance, np.float64)
    kept = np.asarray(kept, bool)
    if kept.all() or not kept.any():
        return None
    largest_kept, smallest_discarded = sigma2[kept].max(), sigma2[~kept].min()
    if largest_kept >= smallest_discarded:
        return None
    return float((largest_kept + smallest_discarded) / 2.0)


def eigen_dynamics(
    data_variance,
    augmentation_variance,
    weight_decay,
    eps,
    method,
    initial_norms,
    learning_rate,
    steps,
    target_momentum=0.0,
    record_every=1,
):
    """Iterates the per-direction equation `w <- w + lr (p x w_a - p^2 (x + sigma^2) w - eta w)`.

    This is the gradient-descent discretization, in the eigenbasis, of the
    full-matrix update of `simulate_population` from an aligned `W`; the two
    agree to rounding error.

    Args:
        data_variance: `x_i`, scalar or `(d,)`.
        augmentation_variance: `sigma_i^2`, scalar or `(d,)`.
        weight_decay: `eta`.
        eps: predictor regularizer.
        method: `"directcopy"` or `"directpred"` (unnormalized).
        initial_norms: scalar or `(d,)`.
        learning_rate: step size `lr` (time per step).
        steps: number of updates.
        target_momentum: EMA momentum `tau` of the target (0: `sg(W)`).
        record_every: keep the norms every this many steps (and the last).

    Returns:
        `(recorded_steps, norms)`: int array `(T,)` and array `(T, d)`.
    """
    x, sigma2 = np.broadcast_arrays(
        np.asarray(data_variance, np.float64), np.asarray(augmentation_variance, np.float64)
    )
    w = np.array(np.broadcast_to(initial_norms, x.shape), np.float64)
    w_target = w.copy()
    recorded, history = [0], [w.copy()]
    for step in range(1, steps + 1):
        p = predictor_eigenvalue(w, x, sigma2, eps, method)
        w = w + learning_rate * (p * x * w_target - p**2 * (x + sigma2) * w - weight_decay * w)
        w_target = target_momentum * w_target + (1.0 - target_momentum) * w
        if step % record_every == 0 or step == steps:
            recorded.append(step)
            history.append(np.abs(w))
    return np.asarray(recorded), np.stack(history)


# ---------------------------------------------------------------------------
# The setting and the predictor.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LinearSetting:
    """Data and augmentation covariances, diagonal in a shared basis.

    Attributes:
        data_variance: `x_i > 0`, shape `(d,)`.
        augmentation_variance: `sigma_i^2 >= 0`, shape `(d,)`.
        basis: orthonormal `(d, d)` matrix whose column `i` is `u_i`.
    """

    data_variance: np.ndarray
    augmentation_variance: np.ndarray
    basis: np.ndarray

    @property
    def dim(self):
        return len(self.data_variance)

    def data_covariance(self):
        """`X = U diag(x) U^T`, shape `(d, d)`."""
        return (self.basis * self.data_variance) @ self.basis.T

    def augmentation_covariance(self):
        """`S = U diag(sigma^2) U^T`, shape `(d, d)`."""
        return (self.basis * self.augmentation_variance) @ self.basis.T

    def sample(self, rng, num_samples):
        """Draws `num_samples` inputs and two noises, each `(num_samples, d)`."""
        shape = (num_samples, self.dim)
        x = (rng.standard_normal(shape) * np.sqrt(self.data_variance)) @ self.basis.T
        noise_scale = np.sqrt(self.augmentation_variance)
        xi_1 = (rng.standard_normal(shape) * noise_scale) @ self.basis.T
        xi_2 = (rng.standard_normal(shape) * noise_scale) @ self.basis.T
        return x, xi_1, xi_2


def make_setting(data_variance, augmentation_variance, seed=None):
    """Builds a `LinearSetting`.

    Args:
        data_variance: `x_i`, scalar or `(d,)`, broadcast to the shape of
            `augmentation_variance`.
        augmentation_variance: `sigma_i^2`, shape `(d,)`.
        seed: with a seed, the basis `u_i` is a random rotation (so nothing
            is axis-aligned by accident); without, the identity.

    Returns:
        A `LinearSetting`.
    """
    sigma2 = np.asarray(augmentation_variance, np.float64).reshape(-1)
    x = np.array(np.broadcast_to(np.asarray(data_variance, np.float64), sigma2.shape))
    if np.any(x <= 0) or np.any(sigma2 < 0):
        raise ValueError("Data variances must be > 0 and augmentation variances >= 0.")
    if seed is None:
        basis = np.eye(len(x))
    else:
        basis = random_orthogonal(len(x), np.random.default_rng(seed))
    return LinearSetting(x, sigma2, basis)


def random_orthogonal(dim, rng):
    """Haar-random orthogonal `(dim, dim)` matrix (QR with sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def predictor_matrix(F, method, eps, normalization="none"):
    """The predictor `W_p` from the output correlation `F`, through the
    library's predictor functions.

    * DirectCopy: `directcopy_matrix(F, eps, normalization)`: `F + eps I`
      (`"none"`) or `F / ||F||_2 + eps I` (`"spectral"`).
    * DirectPred: `"spectral"` is the library's `directpred_matrix`,
      `sqrt(F / lambda_max) + eps I`; `"none"` is `F^(1/2) + eps I`, i.e.
      `sqrt(lambda_max) * directpred_matrix(F, eps=0) + eps I`.

    Args:
        F: symmetric PSD `(d_out, d_out)`, NumPy array.
        method: one of `METHODS`.
        eps: regularizer added to every eigenvalue.
        normalization: one of `NORMALIZATIONS`.

    Returns:
        `W_p`, NumPy float64 array `(d_out, d_out)`.
    """
    return _compiled_predictor(method, float(eps), normalization)(
        tf.constant(np.asarray(F, np.float64))
    ).numpy()


@functools.lru_cache(maxsize=None)
def _compiled_predictor(method, eps, normalization):
    # The simulations call the predictor thousands of times on small
    # matrices; a traced function costs a fraction of the eager op dispatch.
    _check_method(method)
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}."
        )

    # Traced once per matrix size: the predictor matrices need a known `d`.
    @tf.function(autograph=False)
    def predictor(F):
        if method == "directcopy":
            return directcopy_matrix(F, eps=eps, normalization=normalization)
        if normalization == "spectral":
            return directpred_matrix(F, eps=eps)
        largest = tf.maximum(tf.reduce_max(tf.linalg.eigvalsh(F)), 0.0)
        identity = tf.eye(tf.shape(F)[0], dtype=F.dtype)
        return tf.sqrt(largest) * directpred_matrix(F, eps=0.0) + eps * identity

    return predictor


# ---------------------------------------------------------------------------
# Simulation.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class SimulationResult:
    """Trajectory and end state of a simulation.

    Attributes:
        steps: recorded step indices, int `(T,)` (0 first, the last step last).
        norms: `||W u_i||` at those steps, `(T, d)`.
        weights: final `W`, `(d_out, d)`.
        predictor: final `W_p`, `(d_out, d_out)`.
        setting: the `LinearSetting` simulated.
        learning_rate: step size, so that time is `steps * learning_rate`.
    """

    steps: np.ndarray
    norms: np.ndarray
    weights: np.ndarray
    predictor: np.ndarray
    setting: LinearSetting
    learning_rate: float

    @property
    def times(self):
        """Gradient-flow time of each record, `(T,)`."""
        return self.steps * self.learning_rate

    @property
    def final_norms(self):
        """`||W u_i||` at the end, `(d,)`."""
        return self.norms[-1]

    def kept(self, level):
        """Boolean `(d,)`: directions whose final norm is above `level`."""
        return self.final_norms > level

    def learned_subspace(self, level):
        """Orthonormal `(d, k)` basis of the input subspace `W` keeps: the
        right singular vectors of `W` with singular value above `level`."""
        _, singular_values, vt = np.linalg.svd(self.weights, full_matrices=False)
        return vt[singular_values > level].T


def subspace_distance(a, b):
    """Sine of the largest principal angle between the column spans of two
    orthonormal bases `(d, k)`; 1 if the dimensions differ."""
    if a.shape[1] != b.shape[1]:
        return 1.0
    if a.shape[1] == 0:
        return 0.0
    cosines = np.linalg.svd(a.T @ b, compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - cosines.min() ** 2)))


def initial_weights(setting, output_dim, init, init_scale, rng):
    """Initial encoder `W_0`, `(output_dim, d)`.

    Args:
        setting: the `LinearSetting`.
        output_dim: `d_out`; at least `d` for `"aligned"`.
        init: `"aligned"`: `W_0 u_i = n_i q_i` with orthonormal random `q_i`,
            so the columns are exactly decoupled; `"gaussian"`: i.i.d.
            `N(0, n^2 / d_out)` entries, so `E||W_0 u_i||^2 = n^2` but the
            columns are not orthogonal.
        init_scale: `n`, scalar, or `(d,)` per direction for `"aligned"`.
        rng: NumPy generator.

    Returns:
        `W_0`, float64 `(output_dim, d)`.
    """
    dim = setting.dim
    if init not in INITS:
        raise ValueError(f"Unknown init {init!r}; valid: {', '.join(INITS)}.")
    if init == "aligned":
        if output_dim < dim:
            raise ValueError(f"An aligned init needs output_dim >= {dim}, got {output_dim}.")
        outputs = random_orthogonal(output_dim, rng)[:, :dim]
        return (outputs * np.broadcast_to(init_scale, (dim,))) @ setting.basis.T
    if np.ndim(init_scale) != 0:
        raise ValueError("A gaussian init takes a scalar init_scale.")
    return rng.standard_normal((output_dim, dim)) * (init_scale / np.sqrt(output_dim))


def simulate_population(
    setting,
    method="directcopy",
    weight_decay=0.0,
    eps=0.2,
    normalization="none",
    learning_rate=None,
    steps=1000,
    init="aligned",
    init_scale=1e-3,
    output_dim=None,
    target_momentum=0.0,
    record_every=10,
    seed=0,
):
    """Gradient descent on the expected loss (population gradient flow).

    Each step sets `F = W (X + S) W^T`, `W_p = predictor_matrix(F)`, and

        W <- W - lr [W_p^T (W_p W (X + S) - W_a X) + eta W],
        W_a <- tau W_a + (1 - tau) W.

    Args:
        setting: `LinearSetting`.
        method: `"directcopy"` or `"directpred"`.
        weight_decay: `eta`.
        eps: predictor regularizer.
        normalization: `"none"` (the rule the theory covers) or `"spectral"`.
        learning_rate: `lr`; default half of `stable_learning_rate`.
        steps: number of updates.
        init: `"aligned"` or `"gaussian"`, see `initial_weights`.
        init_scale: initial norm of each `W u_i`.
        output_dim: `d_out` (default `d`).
        target_momentum: `tau`; 0 is the stop-gradient target `sg(W)`.
        record_every: record the norms every this many steps.
        seed: seed of the initialization.

    Returns:
        `SimulationResult`.
    """
    rng = np.random.default_rng(seed)
    weights = initial_weights(setting, output_dim or setting.dim, init, init_scale, rng)
    if learning_rate is None:
        learning_rate = 0.5 * stable_learning_rate(
            setting.data_variance, setting.augmentation_variance, weight_decay, eps,
            method, normalization, init_scale,
        )
    data_cov = setting.data_covariance()
    view_cov = data_cov + setting.augmentation_covariance()

    def gradient(weights, target):
        correlation = weights @ view_cov @ weights.T
        predictor = predictor_matrix(correlation, method, eps, normalization)
        residual = predictor @ weights @ view_cov - target @ data_cov
        return predictor.T @ residual + weight_decay * weights, predictor

    return _run(setting, weights, gradient, learning_rate, steps, target_momentum, record_every)


def simulate_sgd(
    setting,
    method="directcopy",
    weight_decay=0.0,
    eps=0.2,
    normalization="none",
    learning_rate=None,
    steps=2000,
    batch_size=256,
    rho=0.3,
    init="gaussian",
    init_scale=1e-3,
    output_dim=None,
    target_momentum=0.0,
    record_every=10,
    seed=0,
):
    """SGD on sampled pairs of views, with `F` a running estimate, as in training.

    Each step draws `batch_size` inputs and two augmentation noises, updates
    `F <- rho F + (1 - rho) mean(f f^T)` over the online outputs of both views
    (as `DirectPredictor.update`), sets `W_p` from `F`, and takes a step on
    the symmetrized batch loss (both views as online input), whose
    expectation is the gradient of `simulate_population`.

    Args:
        setting: `LinearSetting`.
        method, weight_decay, eps, normalization, steps, init, init_scale,
            output_dim, target_momentum, record_every: as in
            `simulate_population`.
        batch_size: pairs per step.
        rho: weight of the old `F` in the running average.
        learning_rate: default a quarter of `stable_learning_rate`, as the
            batch covariances fluctuate around the population one.
        seed: seed of the initialization and of the samples.

    Returns:
        `SimulationResult`.
    """
    rng = np.random.default_rng(seed)
    weights = initial_weights(setting, output_dim or setting.dim, init, init_scale, rng)
    if learning_rate is None:
        learning_rate = 0.25 * stable_learning_rate(
            setting.data_variance, setting.augmentation_variance, weight_decay, eps,
            method, normalization, init_scale,
        )
    correlation = np.zeros((weights.shape[0],) * 2)

    def gradient(weights, target):
        nonlocal correlation
        x, xi_1, xi_2 = setting.sample(rng, batch_size)
        views = (x + xi_1, x + xi_2)
        online = [v @ weights.T for v in views]
        both = np.concatenate(online)
        correlation = rho * correlation + (1.0 - rho) * both.T @ both / len(both)
        predictor = predictor_matrix(correlation, method, eps, normalization)
        grad = np.zeros_like(weights)
        for first, second in ((0, 1), (1, 0)):
            residual = online[first] @ predictor.T - views[second] @ target.T
            grad += predictor.T @ residual.T @ views[first]
        return grad / (2 * batch_size) + weight_decay * weights, predictor

    return _run(setting, weights, gradient, learning_rate, steps, target_momentum, record_every)


def _run(setting, weights, gradient, learning_rate, steps, target_momentum, record_every):
    target = weights.copy()
    recorded, history = [0], [np.linalg.norm(weights @ setting.basis, axis=0)]
    predictor = np.eye(weights.shape[0])
    for step in range(1, steps + 1):
        grad, predictor = gradient(weights, target)
        weights = weights - learning_rate * grad
        target = target_momentum * target + (1.0 - target_momentum) * weights
        if step % record_every == 0 or step == steps:
            recorded.append(step)
            history.append(np.linalg.norm(weights @ setting.basis, axis=0))
        if not np.all(np.isfinite(weights)):
            raise FloatingPointError(
                f"The weights diverged at step {step}: lower the learning rate."
            )
    return SimulationResult(
        np.asarray(recorded), np.stack(history), weights, predictor, setting, learning_rate
    )


# ---------------------------------------------------------------------------
# Downstream sample complexity.
# ---------------------------------------------------------------------------


def ridge_fit(features, labels, ridge):
    """Ridge regression without intercept, penalty relative to feature scale.

    Minimizes `mean((features a - labels)^2) + lam * m * ||a||^2`, with `m`
    the mean squared feature value, so the fit does not depend on the scale
    of the features. Given several `lam`, picks the one with the smallest
    leave-one-out error (exact for ridge: residual / (1 - leverage)), so no
    representation is favoured by a hand-picked penalty.

    Args:
        features: `(n, p)`.
        labels: `(n,)`.
        ridge: relative penalty `lam >= 0`, or a sequence of candidates.

    Returns:
        Coefficients `a`, shape `(p,)`.
    """
    n, p = features.shape
    scale = max(np.sum(features**2) / (n * p), np.finfo(np.float64).tiny)
    u, s, vt = np.linalg.svd(features, full_matrices=False)
    projected = u.T @ labels
    best = None
    for lam in np.atleast_1d(ridge):
        penalty = n * lam * scale
        shrink = s**2 / (s**2 + penalty) if penalty > 0 else (s > 0).astype(np.float64)
        fitted = u @ (shrink * projected)
        leverage = np.sum(u**2 * shrink, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            # An interpolating fit has leverage 1: its leave-one-out error is
            # unbounded, never the best.
            loo = np.mean(((labels - fitted) / (1.0 - leverage)) ** 2)
            if not np.isfinite(loo):
                loo = np.inf
            if best is None or loo < best[0]:
                inverse = np.where(s > 0, shrink / s, 0.0)
                best = (loo, vt.T @ (inverse * projected))
    return best[1]


def sample_complexity(
    setting,
    representations,
    coefficients,
    sample_sizes,
    trials=50,
    noise_std=0.1,
    ridge=tuple(10.0 ** np.arange(-4, 2.5, 0.5)),
    seed=0,
):
    """Test error of ridge regression on each representation against `n`.

    The label is `y = sum_i c_i <u_i, x> + noise` on clean inputs. For each
    `n`, `trials` training sets of `n` samples are drawn (shared by all
    representations); the fit on features `R x` is the input-space predictor
    `v = R^T a`, and its error is exact, not estimated on a test set:
    `(v - t)^T X (v - t) / t^T X t` with `t = U c` (0: perfect, 1: as bad as
    predicting 0).

    Args:
        setting: `LinearSetting` of the inputs.
        representations: dict name -> matrix `R` `(k, d)` mapping `x` to
            features `R x` (the identity for raw inputs).
        coefficients: `c`, `(d,)`, in the `u_i` basis.
        sample_sizes: labelled-set sizes `n`.
        trials: training sets per size.
        noise_std: label noise standard deviation.
        ridge: relative ridge penalty, or candidates chosen by leave-one-out,
            see `ridge_fit`.
        seed: seed of the samples.

    Returns:
        dict name -> `(mean, std)` arrays of shape `(len(sample_sizes),)`.
    """
    rng = np.random.default_rng(seed)
    data_cov = setting.data_covariance()
    truth = setting.basis @ np.asarray(coefficients, np.float64)
    signal = truth @ data_cov @ truth
    errors = {name: np.zeros((len(sample_sizes), trials)) for name in representations}
    for i, n in enumerate(sample_sizes):
        for trial in range(trials):
            x, _, _ = setting.sample(rng, n)
            y = x @ truth + noise_std * rng.standard_normal(n)
            for name, matrix in representations.items():
                predictor = matrix.T @ ridge_fit(x @ matrix.T, y, ridge)
                diff = predictor - truth
                errors[name][i, trial] = diff @ data_cov @ diff / signal
    return {name: (e.mean(axis=1), e.std(axis=1)) for name, e in errors.items()}


def samples_to_reach(sample_sizes, mean_errors, target):
    """Smallest `n` in `sample_sizes` from which the mean error stays below
    `target`; None if it never does."""
    below = np.asarray(mean_errors) < target
    for i in range(len(below)):
        if below[i:].all():
            return int(sample_sizes[i])
    return None


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; valid: {', '.join(METHODS)}.")
