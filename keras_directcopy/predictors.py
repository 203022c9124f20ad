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

import keras
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
    degenerate = tf.logical_or(is_zero, largest <= _tiny(F.dtype))
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
    degenerate = tf.logical_or(is_zero, norm <= _tiny(F.dtype))
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
    tiny = _tiny(F.dtype)

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
    is_zero = largest <= _tiny(F.dtype)
    return F / tf.where(is_zero, tf.ones_like(largest), largest), is_zero


def _tiny(dtype):
    """Smallest positive normal number of `dtype`, as a tensor."""
    return tf.constant(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).tiny, dtype)


# ---------------------------------------------------------------------------
# Predictor layers and the registry of predictor modes.
# ---------------------------------------------------------------------------

DIRECT_METHODS = ("directcopy", "directpred", "directset")
PREDICTOR_NAMES = DIRECT_METHODS + ("linear", "mlp")

# When a direct predictor's matrix is set, relative to the batch it predicts:
# * "after_step": as the reference code does (facebookresearch/luckmatters,
#   ssl/real-dataset, byol_trainer.py: `BYOLTrainer.update` adds the batch to
#   the running correlation `cum_corr` and predicts with the current weight;
#   `BYOLTrainer.train` then calls `regulate_predictor` after
#   `optimizer.step()`, which sets the weight from `cum_corr`). Batch t is
#   predicted with `W_p(F_{t-1})`, and the first update sets `F` to the batch
#   statistic itself (`Accumulator.add` when `cumulated is None`).
# * "before_predict": this project's earlier step, kept to reproduce runs made
#   with it: `F` starts at zero, is updated with batch t, and batch t is
#   predicted with `W_p(F_t)`.
UPDATE_ORDERS = ("after_step", "before_predict")

# Initializations of the trainable linear predictor's kernel:
# * "pytorch": uniform in +-1/sqrt(d), PyTorch's default for `nn.Linear`,
#   which the reference code's linear predictor uses (it sets no initializer
#   of its own: models/mlp_head.py, `MLPHead.__init__`);
# * "glorot": Keras' default for `Dense` (Glorot uniform).
LINEAR_INITIALIZERS = ("pytorch", "glorot")

# Defaults, with their sources:
# * rho = 0.3 and eps = 0.01 for DirectPred: the settings `dyn_lambda=0.3`
#   (rho of eq. 19) and `dyn_eps=0.01` (eps of eq. 18) in the README command
#   of the DirectPred reference code (facebookresearch/luckmatters,
#   ssl/real-dataset), also used for DirectSet.
# * alpha = 0.5 for DirectSet makes it DirectPred (Tian et al. 2021, eq. 18).
# * eps = 0.25 for DirectCopy: the project's default. It is not read off a
#   published configuration (the reference code's `directcopy` mode adds
#   `dyn_eps` to an unnormalized F); it is larger than DirectPred's 0.01
#   because F / ||F|| is not square-rooted, so its small eigenvalues need a
#   larger floor. Pass `eps` to match a specific experiment.
# * the linear predictor: symmetrized after every optimizer step, as the
#   reference code's default `predictor_reg: "symmetric"`
#   (config/byol_config.yaml; byol_trainer.py, `regulate_predictor`), with
#   PyTorch's default initialization and no bias (the reference's DirectPred
#   command sets `predictor_params.has_bias=false`).
DEFAULT_RHO = 0.3
DEFAULT_EPS = {"directpred": 0.01, "directset": 0.01, "directcopy": 0.25}
DEFAULT_ALPHA = 0.5
DEFAULT_UPDATE_ORDER = "after_step"


def check_predictor_name(name):
    """Raises ValueError unless `name` is one of `PREDICTOR_NAMES`."""
    if name not in PREDICTOR_NAMES:
        raise ValueError(
            f"Unknown predictor {name!r}. Valid predictors: "
            f"{', '.join(PREDICTOR_NAMES)}."
        )


def build_predictor(name, dim, *, hidden_dim=None, synchronized_bn=False, **options):
    """Builds a predictor head by name.

    Args:
        name: one of `PREDICTOR_NAMES`.
        dim: projector output width `d`; the predictor maps `(N, d) -> (N, d)`.
        hidden_dim: hidden width of the `"mlp"` predictor (default `dim`).
        synchronized_bn: synchronize the `"mlp"` predictor's BatchNorm
            across replicas.
        **options: `DirectPredictor` arguments (`rho`, `eps`, `alpha`,
            `normalization`, `update_every`, `update_order`,
            `spectrum_every`) for the direct modes; `LinearPredictor`
            arguments (`symmetric`, `initializer`) for `"linear"`.

    Returns:
        A built Keras layer or model taking `(N, d)` and returning `(N, d)`.

    Raises:
        ValueError: on an unknown name or options a mode does not take.
    """
    check_predictor_name(name)
    if name in DIRECT_METHODS:
        layer = DirectPredictor(method=name, **options)
    elif name == "linear":
        unknown = sorted(set(options) - {"symmetric", "initializer"})
        if unknown:
            raise ValueError(
                f"The linear predictor takes the options symmetric and initializer, "
                f"not {unknown}; {', '.join(DIRECT_METHODS)} take the others."
            )
        layer = LinearPredictor(**options)
    else:
        if options:
            raise ValueError(
                f"Predictor {name!r} takes no options {sorted(options)}; they apply to "
                f"{', '.join(DIRECT_METHODS)} and linear."
            )
        from keras_directcopy.heads import mlp_head

        return mlp_head(
            dim, hidden_dim or dim, dim,
            synchronized_bn=synchronized_bn, name="predictor",
        )
    layer.build((None, dim))
    return layer


# A predictor layer may define two hooks that `NonContrastiveModel.train_step`
# calls with the gradient-stopped projector outputs of both views, `(2B, d)`:
# `before_prediction(features)` before the batch is predicted, and
# `after_optimizer_step(features)` after the optimizer has updated the
# weights. Layers without them are plain trained predictors.


@keras.saving.register_keras_serializable(package="keras_directcopy")
class LinearPredictor(keras.layers.Layer):
    """A trainable linear predictor `p = z W`, optionally kept symmetric.

    The reference code's baseline for DirectPred and DirectCopy: a bias-free
    linear layer trained with the encoder's optimizer, learning rate and
    weight decay, and set to `(W + W^T) / 2` after every optimizer step
    (facebookresearch/luckmatters, ssl/real-dataset, byol_trainer.py,
    `BYOLTrainer.regulate_predictor` with `predictor_reg: "symmetric"`).

    Args:
        symmetric: symmetrize `W` after every optimizer step.
        initializer: `"pytorch"` (uniform in +-1/sqrt(d), as the reference)
            or `"glorot"`; see `LINEAR_INITIALIZERS`.

    Call arguments:
        z: `(N, d)` projector outputs. Returns `(N, d)` predictions `z W`.
    """

    def __init__(self, symmetric=True, initializer="pytorch", **kwargs):
        kwargs.setdefault("name", "predictor")
        super().__init__(**kwargs)
        if initializer not in LINEAR_INITIALIZERS:
            raise ValueError(
                f"Unknown linear predictor initializer {initializer!r}. Valid initializers: "
                f"{', '.join(LINEAR_INITIALIZERS)}."
            )
        self.symmetric = bool(symmetric)
        self.initializer = initializer

    def build(self, input_shape):
        dim = int(input_shape[-1])
        if self.initializer == "pytorch":
            # VarianceScaling's uniform limit is sqrt(3 * scale / fan_in):
            # scale 1/3 gives PyTorch's 1/sqrt(fan_in).
            initializer = keras.initializers.VarianceScaling(
                1.0 / 3.0, mode="fan_in", distribution="uniform"
            )
        else:
            initializer = keras.initializers.GlorotUniform()
        self.kernel = self.add_weight(shape=(dim, dim), initializer=initializer, name="kernel")

    def call(self, z):
        return tf.matmul(z, tf.cast(self.kernel, z.dtype))

    def after_optimizer_step(self, features):
        """Symmetrizes the kernel, when `symmetric`; `features` are unused."""
        del features
        if self.symmetric:
            kernel = tf.convert_to_tensor(self.kernel)
            self.kernel.assign((kernel + tf.transpose(kernel)) / 2.0)

    def get_config(self):
        config = super().get_config()
        config.update(symmetric=self.symmetric, initializer=self.initializer)
        return config


@keras.saving.register_keras_serializable(package="keras_directcopy")
class DirectPredictor(keras.layers.Layer):
    """A linear predictor `p = W_p z` whose matrix is set, not learned.

    Keeps the running correlation of the online projector outputs,
    ``F <- rho * F + (1 - rho) * mean(f f^T)``, and sets `W_p` from it every
    `update_every` updates with DirectPred, DirectSet or DirectCopy.

    Under `tf.distribute`, the update all-reduces the batch term (a weighted
    mean over every replica's rows) first, so every replica holds the same
    `F` and `W_p`. The state lives in non-trainable variables, saved with
    the model's checkpoints.

    Args:
        method: `"directcopy"`, `"directpred"` or `"directset"`.
        rho: weight of the old `F` in the running average.
        eps: eigenvalue/identity regularizer, >= 0; default per method,
            `DEFAULT_EPS`.
        alpha: DirectSet exponent, > 0 (ignored by the other methods).
        normalization: DirectCopy normalization, one of `NORMALIZATIONS`.
        update_every: recompute `W_p` every this many updates (`F` itself is
            updated on every call).
        update_order: `"after_step"` (the reference code's: the batch is
            predicted with the matrix of the previous step, and `F` and `W_p`
            are updated after the optimizer step; the first update sets `F`
            to the batch statistic) or `"before_predict"` (`F` starts at zero
            and is updated, and `W_p` set, before the batch is predicted).
            See `UPDATE_ORDERS`.
        spectrum_every: recompute the spectrum summary (largest and smallest
            eigenvalue and effective rank of `W_p`) every this many matrix
            updates; it costs an eigendecomposition, which DirectCopy
            otherwise avoids.

    Call arguments:
        z: `(N, d)` projector outputs. Returns `(N, d)` predictions `z W_p`
        (`W_p` is symmetric). Before the first update `W_p` is the identity.
    """

    def __init__(
        self,
        method="directcopy",
        rho=DEFAULT_RHO,
        eps=None,
        alpha=DEFAULT_ALPHA,
        normalization="spectral",
        update_every=1,
        update_order=DEFAULT_UPDATE_ORDER,
        spectrum_every=10,
        **kwargs,
    ):
        kwargs.setdefault("name", "predictor")
        super().__init__(**kwargs)
        if method not in DIRECT_METHODS:
            raise ValueError(
                f"Unknown direct predictor method {method!r}. Valid methods: "
                f"{', '.join(DIRECT_METHODS)}."
            )
        check_normalization(normalization)
        if update_order not in UPDATE_ORDERS:
            raise ValueError(
                f"Unknown update_order {update_order!r}. Valid orders: {', '.join(UPDATE_ORDERS)}."
            )
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho}.")
        eps = DEFAULT_EPS[method] if eps is None else eps
        check_eps_and_alpha(eps, alpha)
        if update_every < 1 or spectrum_every < 1:
            raise ValueError(
                "update_every and spectrum_every must be >= 1, got "
                f"{update_every} and {spectrum_every}."
            )
        self.method = method
        self.rho = float(rho)
        self.eps = float(eps)
        self.alpha = float(alpha)
        self.normalization = normalization
        self.update_every = int(update_every)
        self.update_order = update_order
        self.spectrum_every = int(spectrum_every)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        # All-reduced values are written with ONLY_FIRST_REPLICA, so replicas
        # cannot drift apart even by rounding (an aggregation-NONE mirrored
        # variable assigned per replica silently diverges).
        state = dict(trainable=False, aggregation="only_first_replica")
        self.correlation = self.add_weight(
            shape=(dim, dim), initializer="zeros", name="correlation", **state
        )
        self.matrix = self.add_weight(
            shape=(dim, dim), initializer="identity", name="matrix", **state
        )
        start = default_start_vector(dim, tf.float32).numpy()
        self.top_eigenvector = self.add_weight(
            shape=(dim,), initializer=keras.initializers.Constant(start),
            name="top_eigenvector", **state,
        )
        self.num_updates = self.add_weight(
            shape=(), initializer="zeros", dtype="int64", name="num_updates", **state
        )
        # [largest eigenvalue, smallest eigenvalue, effective rank] of W_p.
        self.spectrum = self.add_weight(
            shape=(3,), initializer="zeros", name="spectrum", **state
        )

    def call(self, z):
        return tf.matmul(z, tf.cast(self.matrix, z.dtype))

    def before_prediction(self, features):
        """Updates `F` and `W_p` from the batch when `update_order="before_predict"`."""
        if self.update_order == "before_predict":
            self.update(features)

    def after_optimizer_step(self, features):
        """Updates `F` and `W_p` from the batch when `update_order="after_step"`."""
        if self.update_order == "after_step":
            self.update(features)

    def update(self, features):
        """Updates `F` from a batch and, when due, `W_p` and the spectrum.

        Call in replica context (inside `train_step`), on the gradient-stopped
        online projector outputs of both views, shape `(2B, d)`. The model's
        train step calls it through `before_prediction` or
        `after_optimizer_step`, as `update_order` says.
        """
        dtype = self.correlation.dtype
        features = tf.cast(tf.stop_gradient(features), dtype)
        outer_sum = tf.matmul(features, features, transpose_a=True)
        rows = tf.cast(tf.shape(features)[0], dtype)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            outer_sum, rows = context.all_reduce("SUM", [outer_sum, rows])
        batch_correlation = outer_sum / rows
        correlation = self.rho * self.correlation + (1.0 - self.rho) * batch_correlation
        if self.update_order == "after_step":
            # The reference's running average starts from the first batch's
            # statistic, not from zero (byol_trainer.py, `Accumulator.add`).
            correlation = tf.where(tf.equal(self.num_updates, 0), batch_correlation, correlation)
        self.correlation.assign(correlation)

        due = tf.equal(self.num_updates % self.update_every, 0)
        spectrum_due = tf.logical_and(
            due,
            tf.equal((self.num_updates // self.update_every) % self.spectrum_every, 0),
        )
        matrix, vector, spectrum = tf.cond(
            due,
            lambda: self._matrix_and_spectrum(correlation, spectrum_due),
            lambda: (
                tf.identity(self.matrix),
                tf.identity(self.top_eigenvector),
                tf.identity(self.spectrum),
            ),
        )
        self.matrix.assign(matrix)
        self.top_eigenvector.assign(vector)
        self.spectrum.assign(spectrum)
        self.num_updates.assign_add(1)

    def _matrix_and_spectrum(self, correlation, spectrum_due):
        if self.method == "directcopy":
            # Warm start: F changes little between steps, so last step's top
            # eigenvector makes the power iteration converge in a few steps.
            matrix, vector = directcopy_tensor(
                correlation, self.eps, self.normalization,
                initial_vector=tf.identity(self.top_eigenvector),
            )
            spectrum = tf.cond(
                spectrum_due,
                lambda: spectrum_summary(tf.linalg.eigvalsh(matrix)),
                lambda: tf.identity(self.spectrum),
            )
            return matrix, vector, spectrum
        alpha = 0.5 if self.method == "directpred" else self.alpha
        matrix, eigenvalues = directset_tensor(correlation, alpha, self.eps)
        return matrix, tf.identity(self.top_eigenvector), spectrum_summary(eigenvalues)

    def get_config(self):
        config = super().get_config()
        config.update(
            method=self.method, rho=self.rho, eps=self.eps, alpha=self.alpha,
            normalization=self.normalization, update_every=self.update_every,
            update_order=self.update_order, spectrum_every=self.spectrum_every,
        )
        return config


def spectrum_summary(eigenvalues):
    """`[max, min, effective rank]` of a `(d,)` eigenvalue vector.

    The effective rank is ``exp(H(q))`` with ``q = s / sum(s)`` over the
    eigenvalues clipped at zero (Roy & Vetterli, 2007): `d` for a flat
    spectrum, 1 for a rank-one one.
    """
    clipped = tf.maximum(eigenvalues, 0.0)
    q = clipped / tf.maximum(tf.reduce_sum(clipped), _tiny(eigenvalues.dtype))
    entropy = -tf.reduce_sum(tf.where(q > 0, q * tf.math.log(tf.maximum(q, 1e-30)), 0.0))
    return tf.stack(
        [tf.reduce_max(eigenvalues), tf.reduce_min(eigenvalues), tf.exp(entropy)]
    )
