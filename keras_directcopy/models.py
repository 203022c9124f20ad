"""Non-contrastive self-supervised models: BYOL, SimSiam, DirectPred, DirectCopy.

One `keras.Model` subclass, `NonContrastiveModel`, implements the family; the
named classes are configurations of it.

For each batch of two augmented views ``v1, v2`` (stacked `(B, 2, H, W, C)`):

* online branch: ``z = g(f(v))`` (encoder, projector), ``p = h(z)``
  (predictor);
* target branch: ``z' = g'(f'(v))``, the exponential moving average (EMA) of
  the online encoder and projector, or, with ``tau_base = 0`` (SimSiam), the
  online ``z`` itself with its gradient stopped;
* loss, symmetric normalized MSE (Grill et al., 2020, eq. 2):
  ``2 - 2 cos(p(v1), sg(z'(v2))) + 2 - 2 cos(p(v2), sg(z'(v1)))``, averaged
  over the batch.

Direct predictors (DirectPred, DirectSet, DirectCopy) have no trainable
weights: on every step the correlation ``F`` of the online projector outputs
of both views is updated first, `W_p` is set from it, and the batch is then
predicted with that `W_p`.

`model.encoder` is a plain functional model: save and ship that.
"""

import keras
import tensorflow as tf

from keras_directcopy import distribute
from keras_directcopy.heads import build_projector, default_projector_dims
from keras_directcopy.predictors import (
    DIRECT_METHODS,
    DirectPredictor,
    build_predictor,
    check_predictor_name,
)
from keras_directcopy.schedules import target_momentum

WEIGHT_DECAY_MODES = ("coupled", "decoupled")


class NonContrastiveModel(keras.Model):
    """BYOL-family self-supervised model with a pluggable predictor.

    Args:
        encoder: functional `keras.Model`, images `(N, H, W, C)` to features
            `(N, D)`. Should not be used by another model being trained.
        projector: optional head `(N, D) -> (N, d)`; by default
            `build_projector` with `projector_hidden_dim` and `projection_dim`.
        predictor: a name of `PREDICTOR_NAMES` (`"directcopy"`,
            `"directpred"`, `"directset"`, `"linear"`, `"mlp"`), or a layer
            `(N, d) -> (N, d)`.
        projector_hidden_dim, projection_dim: projector widths; by default
            512 -> 128 for images up to 96 px and 4096 -> 256 above.
        predictor_hidden_dim: hidden width of the `"mlp"` predictor
            (default `projector_hidden_dim`).
        predictor_options: dict of `DirectPredictor` arguments (`rho`, `eps`,
            `alpha`, `normalization`, `update_every`, `spectrum_every`).
        tau_base: EMA momentum of the target at step 0, rising to 1 on a
            cosine over `total_steps`. `0` means no target copy: the target is
            the online network with stop-gradient (SimSiam).
        total_steps: training steps for the momentum schedule; None keeps
            the momentum at `tau_base`. Settable later as an attribute.
        weight_decay: L2 weight-decay coefficient on every online trainable
            weight.
        weight_decay_mode: `"coupled"` (default) adds `weight_decay * w` to
            the gradient before the optimizer's momentum, as PyTorch's SGD
            does and as the reference experiments ran. `"decoupled"` hands it
            to the Keras optimizer's own (decoupled, AdamW-style)
            `weight_decay` at `compile()`.
        synchronized_bn: synchronize the BatchNorm of heads this model
            builds (projector, MLP predictor) across replicas.
        name: model name.
    """

    def __init__(
        self,
        encoder,
        projector=None,
        predictor="directcopy",
        *,
        projector_hidden_dim=None,
        projection_dim=None,
        predictor_hidden_dim=None,
        predictor_options=None,
        tau_base=0.996,
        total_steps=None,
        weight_decay=0.0,
        weight_decay_mode="coupled",
        synchronized_bn=False,
        name="non_contrastive",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise ValueError(
                f"Unknown weight_decay_mode {weight_decay_mode!r}. Valid modes: "
                f"{', '.join(WEIGHT_DECAY_MODES)}."
            )
        if not 0.0 <= tau_base < 1.0:
            raise ValueError(f"tau_base must be in [0, 1), got {tau_base}.")
        self.encoder = encoder
        feature_dim = int(encoder.output_shape[-1])
        default_hidden, default_output = default_projector_dims(encoder.input_shape[1])
        hidden_dim = projector_hidden_dim or default_hidden
        self.projector = projector or build_projector(
            feature_dim, hidden_dim, projection_dim or default_output,
            synchronized_bn=synchronized_bn,
        )
        dim = int(self.projector.output_shape[-1])
        if isinstance(predictor, str):
            check_predictor_name(predictor)
            predictor = build_predictor(
                predictor, dim, hidden_dim=predictor_hidden_dim or hidden_dim,
                synchronized_bn=synchronized_bn, **(predictor_options or {}),
            )
        elif predictor_options:
            raise ValueError("predictor_options only apply when predictor is given by name.")
        self.predictor = predictor
        self.tau_base = float(tau_base)
        self.total_steps = total_steps
        self.weight_decay = float(weight_decay)
        self.weight_decay_mode = weight_decay_mode

        self.target_encoder = self.target_projector = None
        if self.tau_base > 0:
            # The target starts as an exact copy of the online network.
            self.target_encoder = _copy_of(encoder, "target_encoder")
            self.target_projector = _copy_of(self.projector, "target_projector")

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.collapse_tracker = keras.metrics.Mean(name="collapse_std")
        self.built = True

    @property
    def has_direct_predictor(self):
        return isinstance(self.predictor, DirectPredictor)

    @property
    def online_variables(self):
        """Trainable variables of the online encoder, projector and predictor."""
        return (
            self.encoder.trainable_variables
            + self.projector.trainable_variables
            + self.predictor.trainable_variables
        )

    @property
    def trainable_weights(self):
        # The target is updated by EMA, never by the optimizer. Its layers stay
        # `trainable=True` so that its BatchNorm uses batch statistics in
        # training, as BYOL's target does; it is only hidden from here, so the
        # optimizer keeps no slots for it.
        return list(self.online_variables)

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def metrics(self):
        return [self.loss_tracker, self.collapse_tracker]

    def call(self, images, training=False):
        """Encoder features of `images`: `(N, H, W, C) -> (N, D)`."""
        return self.encoder(images, training=training)

    def compile(self, optimizer="sgd", **kwargs):
        """Configures the optimizer; see `keras.Model.compile`.

        With `weight_decay_mode="decoupled"` the model's `weight_decay` is set
        as the optimizer's decoupled `weight_decay`.
        """
        super().compile(optimizer=optimizer, **kwargs)
        if self.weight_decay_mode == "decoupled" and self.weight_decay:
            current = self.optimizer.weight_decay
            if current not in (None, 0.0, self.weight_decay):
                raise ValueError(
                    f"The optimizer already has weight_decay={current} and the model "
                    f"weight_decay={self.weight_decay}: set it in one place only."
                )
            self.optimizer.weight_decay = self.weight_decay

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Overrides a private Keras 3.15 method; see distribute.py, workaround 1.
        distribute.skip_symbolic_build(self)

    def train_step(self, data):
        view1, view2 = distribute.split_views(data)
        replicas = distribute.num_replicas()
        step = tf.identity(self.optimizer.iterations)
        target1, target2 = (
            self._target_projections(view1, view2) if self.target_encoder else (None, None)
        )
        variables = self.online_variables
        with tf.GradientTape() as tape:
            z1 = self.projector(self.encoder(view1, training=True), training=True)
            z2 = self.projector(self.encoder(view2, training=True), training=True)
            if self.has_direct_predictor:
                self.predictor.update(tf.concat([z1, z2], axis=0))
            p1 = self.predictor(z1, training=True)
            p2 = self.predictor(z2, training=True)
            if target1 is None:  # SimSiam: the online projection, gradient stopped.
                target1, target2 = tf.stop_gradient(z1), tf.stop_gradient(z2)
            per_example = _symmetric_loss(p1, p2, target1, target2)
            # The optimizer all-reduces gradients by SUM, so each replica
            # differentiates its share of the global mean.
            scaled_loss = tf.reduce_mean(per_example) / replicas
        gradients = tape.gradient(scaled_loss, variables)
        if self.weight_decay and self.weight_decay_mode == "coupled":
            # Divided by the replica count for the same SUM all-reduce.
            decay = self.weight_decay / replicas
            gradients = [g + decay * v for g, v in zip(gradients, variables)]
        self.optimizer.apply(gradients, variables)
        tau = target_momentum(step, self.total_steps, self.tau_base)
        if self.target_encoder:
            self._update_target(tau)
        return self._logs(per_example, z1, z2, extra={"tau": tau})

    def test_step(self, data):
        view1, view2 = distribute.split_views(data)
        z1 = self.projector(self.encoder(view1, training=False), training=False)
        z2 = self.projector(self.encoder(view2, training=False), training=False)
        p1 = self.predictor(z1, training=False)
        p2 = self.predictor(z2, training=False)
        if self.target_encoder:
            target1 = self.target_projector(self.target_encoder(view1, training=False), training=False)
            target2 = self.target_projector(self.target_encoder(view2, training=False), training=False)
        else:
            target1, target2 = z1, z2
        return self._logs(_symmetric_loss(p1, p2, target1, target2), z1, z2)

    def _target_projections(self, view1, view2):
        def project(view):
            features = self.target_encoder(view, training=True)
            return tf.stop_gradient(self.target_projector(features, training=True))

        return project(view1), project(view2)

    def _update_target(self, tau):
        online = self.encoder.trainable_variables + self.projector.trainable_variables
        target = self.target_encoder.trainable_variables + self.target_projector.trainable_variables
        for target_variable, online_variable in zip(target, online):
            target_variable.assign(tau * target_variable + (1.0 - tau) * online_variable)

    def _logs(self, per_example_loss, z1, z2, extra=None):
        loss_sum, count = distribute.global_sum(
            tf.reduce_sum(per_example_loss),
            tf.cast(tf.shape(per_example_loss)[0], per_example_loss.dtype),
        )
        self.loss_tracker.update_state(loss_sum / count)
        self.collapse_tracker.update_state(collapse_std(tf.concat([z1, z2], axis=0)))
        logs = {m.name: m.result() for m in self.metrics}
        logs.update(extra or {})
        if self.has_direct_predictor:
            spectrum = tf.identity(self.predictor.spectrum)
            logs.update(pred_eig_max=spectrum[0], pred_eig_min=spectrum[1], pred_eff_rank=spectrum[2])
        return distribute.format_logs(logs)


class BYOL(NonContrastiveModel):
    """BYOL (Grill et al., 2020): EMA target and a trained MLP predictor."""

    def __init__(self, encoder, predictor="mlp", name="byol", **kwargs):
        super().__init__(encoder, predictor=predictor, name=name, **kwargs)


class SimSiam(NonContrastiveModel):
    """SimSiam (Chen & He, 2021): no EMA target (`tau_base=0`), MLP predictor."""

    def __init__(self, encoder, predictor="mlp", name="simsiam", **kwargs):
        kwargs.setdefault("tau_base", 0.0)
        super().__init__(encoder, predictor=predictor, name=name, **kwargs)


class DirectPred(NonContrastiveModel):
    """DirectPred (Tian, Chen & Ganguli, 2021): predictor set by eigendecomposition."""

    def __init__(self, encoder, predictor="directpred", name="directpred", **kwargs):
        super().__init__(encoder, predictor=predictor, name=name, **kwargs)


class DirectCopy(NonContrastiveModel):
    """DirectCopy (Wang, Chen, Du & Tian, 2021): predictor `F / ||F|| + eps I`."""

    def __init__(self, encoder, predictor="directcopy", name="directcopy", **kwargs):
        super().__init__(encoder, predictor=predictor, name=name, **kwargs)


def collapse_std(z):
    """Mean over dimensions of the std over rows of l2-normalized `z`.

    About `1 / sqrt(d)` for healthy `(N, d)` outputs, 0 for collapsed ones
    (BYOL/SimSiam's collapse indicator). Under `tf.distribute` the statistics
    are of the global batch.
    """
    z = tf.math.l2_normalize(_at_least_float32(tf.convert_to_tensor(z)), axis=1)
    total, rows = distribute.global_sum(tf.reduce_sum(z, axis=0), tf.cast(tf.shape(z)[0], z.dtype))
    # Two passes (mean, then centered squares) so that identical rows give
    # exactly 0, where E[z^2] - E[z]^2 would leave rounding noise.
    centered_sq = distribute.global_sum(tf.reduce_sum(tf.square(z - total / rows), axis=0))
    variance = centered_sq / rows
    return tf.reduce_mean(tf.sqrt(variance))


def _symmetric_loss(p1, p2, target1, target2):
    """Per-example ``(2 - 2 cos(p1, t2)) + (2 - 2 cos(p2, t1))``, shape `(B,)`."""

    def normalized_mse(p, t):
        p = tf.math.l2_normalize(_at_least_float32(p), axis=1)
        t = tf.math.l2_normalize(tf.cast(tf.stop_gradient(t), p.dtype), axis=1)
        return 2.0 - 2.0 * tf.reduce_sum(p * t, axis=1)

    return normalized_mse(p1, target2) + normalized_mse(p2, target1)


def _at_least_float32(x):
    """`x` in float32 if it is float16/bfloat16 (mixed precision), else unchanged."""
    return tf.cast(x, tf.float32) if x.dtype.size < 4 else x


def _copy_of(model, name):
    """A functional model with `model`'s architecture and current weights."""
    copy = keras.models.clone_model(model)
    copy.name = name
    copy.set_weights(model.get_weights())
    return copy
