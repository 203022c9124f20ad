"""Predictors of the non-contrastive model: the registry of predictor modes,
the trainable `LinearPredictor` and the closed-form `DirectPredictor`.

`build_predictor(name, dim, ...)` builds any of `PREDICTOR_NAMES`. The
closed-form equations themselves (DirectPred, DirectSet, DirectCopy) are plain
functions in `keras_directcopy.models.predictor_matrices`.

The layers are written with `keras.ops`, so they run on every Keras backend.
Only the cross-replica all-reduce of the direct predictor's update is
TensorFlow's (`tf.distribute`); it is taken on the TensorFlow backend alone,
and imports TensorFlow there.
"""

import keras
from keras import ops

from keras_directcopy.catalog import DIRECT_METHODS
from keras_directcopy.models.predictor_matrices import (
    DIRECTCOPY_DEFAULT_EPS,
    DIRECTPRED_DEFAULT_EPS,
    check_eps_and_alpha,
    check_normalization,
    default_start_vector,
    directcopy_tensor,
    directset_tensor,
    smallest_normal,
)
from keras_directcopy.utils.backend import is_tensorflow_backend

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
# * eps = 0.1 for DirectCopy, spectral normalization, rho = 0.3: the best
#   DirectCopy setting of this project's CIFAR-10 comparison (README,
#   "Equal-budget comparison", round 2: a screen of eps 0.05 to 0.5,
#   spectral and Frobenius norm, rho 0.3 and 0.5, then three seeds against
#   DirectPred). It is not read off a published configuration: the reference
#   code's `directcopy` mode adds `dyn_eps` to an unnormalized F.
# * the linear predictor: symmetrized after every optimizer step, as the
#   reference code's default `predictor_reg: "symmetric"`
#   (config/byol_config.yaml; byol_trainer.py, `regulate_predictor`), with
#   PyTorch's default initialization and no bias (the reference's DirectPred
#   command sets `predictor_params.has_bias=false`).
DEFAULT_RHO = 0.3
DEFAULT_EPS = {
    "directpred": DIRECTPRED_DEFAULT_EPS,
    "directset": DIRECTPRED_DEFAULT_EPS,
    "directcopy": DIRECTCOPY_DEFAULT_EPS,
}
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
        from keras_directcopy.models.heads import mlp_head

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
        return ops.matmul(z, ops.cast(self.kernel, z.dtype))

    def after_optimizer_step(self, features):
        """Symmetrizes the kernel, when `symmetric`; `features` are unused."""
        del features
        if self.symmetric:
            kernel = ops.convert_to_tensor(self.kernel)
            self.kernel.assign((kernel + ops.transpose(kernel)) / 2.0)

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
        start = ops.convert_to_numpy(default_start_vector(dim, "float32"))
        self.top_eigenvector = self.add_weight(
            shape=(dim,), initializer=keras.initializers.Constant(start),
            name="top_eigenvector", **state,
        )
        # int32 on JAX, whose default configuration has no 64-bit integers.
        self.num_updates = self.add_weight(
            shape=(), initializer="zeros", dtype="int64" if is_tensorflow_backend() else "int32",
            name="num_updates", **state,
        )
        # [largest eigenvalue, smallest eigenvalue, effective rank] of W_p.
        self.spectrum = self.add_weight(
            shape=(3,), initializer="zeros", name="spectrum", **state
        )

    def call(self, z):
        return ops.matmul(z, ops.cast(self.matrix, z.dtype))

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
        features = ops.cast(ops.stop_gradient(ops.convert_to_tensor(features)), dtype)
        outer_sum = ops.matmul(ops.transpose(features), features)
        rows = ops.cast(ops.shape(features)[0], dtype)
        if is_tensorflow_backend():
            outer_sum, rows = _sum_over_replicas(outer_sum, rows)
        batch_correlation = outer_sum / rows
        correlation = self.rho * self.correlation + (1.0 - self.rho) * batch_correlation
        num_updates = ops.convert_to_tensor(self.num_updates)
        if self.update_order == "after_step":
            # The reference's running average starts from the first batch's
            # statistic, not from zero (byol_trainer.py, `Accumulator.add`).
            correlation = ops.where(ops.equal(num_updates, 0), batch_correlation, correlation)
        self.correlation.assign(correlation)

        due = ops.equal(num_updates % self.update_every, 0)
        spectrum_due = ops.logical_and(
            due,
            ops.equal((num_updates // self.update_every) % self.spectrum_every, 0),
        )
        # Both branches are traced (tf.cond, jax.lax.cond), so each returns
        # the same three tensors; the kept ones are read, not recomputed.
        matrix, vector, spectrum = ops.cond(
            due,
            lambda: self._matrix_and_spectrum(correlation, spectrum_due),
            lambda: (
                ops.convert_to_tensor(self.matrix),
                ops.convert_to_tensor(self.top_eigenvector),
                ops.convert_to_tensor(self.spectrum),
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
                initial_vector=ops.convert_to_tensor(self.top_eigenvector),
            )
            spectrum = ops.cond(
                spectrum_due,
                lambda: spectrum_summary(_symmetric_eigenvalues(matrix)),
                lambda: ops.convert_to_tensor(self.spectrum),
            )
            return matrix, vector, spectrum
        alpha = 0.5 if self.method == "directpred" else self.alpha
        matrix, eigenvalues = directset_tensor(correlation, alpha, self.eps)
        return matrix, ops.convert_to_tensor(self.top_eigenvector), spectrum_summary(eigenvalues)

    def get_config(self):
        config = super().get_config()
        config.update(
            method=self.method, rho=self.rho, eps=self.eps, alpha=self.alpha,
            normalization=self.normalization, update_every=self.update_every,
            update_order=self.update_order, spectrum_every=self.spectrum_every,
        )
        return config


def _sum_over_replicas(outer_sum, rows):
    """Sums the batch term over the replicas of a `tf.distribute` strategy.

    TensorFlow only: inside a replica context with several replicas, every
    replica gets the sums over all of them, so all hold the same `F` and
    `W_p`; otherwise (one device, or no strategy) the values come back as
    they are. Imports TensorFlow, so call it on the TensorFlow backend only.
    """
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        outer_sum, rows = context.all_reduce("SUM", [outer_sum, rows])
    return outer_sum, rows


def _symmetric_eigenvalues(matrix):
    """Eigenvalues of a symmetric `(d, d)` tensor, ascending, shape `(d,)`.

    `keras.ops` has `eigh` only, which also computes the eigenvectors. On
    TensorFlow this takes `tf.linalg.eigvalsh`, which does not, as the
    DirectCopy spectrum monitor always did there (DirectCopy exists to avoid
    that cost on the other steps).
    """
    if is_tensorflow_backend():
        import tensorflow as tf

        return tf.linalg.eigvalsh(matrix)
    return ops.eigh(matrix)[0]


def spectrum_summary(eigenvalues):
    """`[max, min, effective rank]` of a `(d,)` eigenvalue vector.

    The effective rank is ``exp(H(q))`` with ``q = s / sum(s)`` over the
    eigenvalues clipped at zero (Roy & Vetterli, 2007): `d` for a flat
    spectrum, 1 for a rank-one one.

    Args:
        eigenvalues: `(d,)` float NumPy array or tensor.

    Returns:
        A `(3,)` tensor of the Keras backend, in the eigenvalues' dtype.
    """
    eigenvalues = ops.convert_to_tensor(eigenvalues)
    clipped = ops.maximum(eigenvalues, 0.0)
    q = clipped / ops.maximum(ops.sum(clipped), smallest_normal(eigenvalues.dtype))
    entropy = -ops.sum(ops.where(q > 0, q * ops.log(ops.maximum(q, 1e-30)), 0.0))
    return ops.stack([ops.max(eigenvalues), ops.min(eigenvalues), ops.exp(entropy)])
