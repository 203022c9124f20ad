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
weights: they keep the running correlation ``F`` of the online projector
outputs of both views and set `W_p` from it. By default, as in the reference
code, the batch is predicted with the `W_p` of the previous step and `F` and
`W_p` are updated after the optimizer step (`DirectPredictor.update_order`).

The model trains on the TensorFlow and JAX backends: `train_step` hands the
batch to the step written for the backend, `train_step_tensorflow` (in place,
under `tf.function` and `tf.distribute`) or `train_step_jax` (stateless,
under `jax.jit` and `keras.distribution`). Both compute the same step from
the model's parts defined here (`tests/test_jax_training.py`).

`model.encoder` is a plain functional model: save and ship that. The whole
training model (online and target networks, predictor state, optimizer)
saves with `model.save(path)` and reloads with `keras.saving.load_model`.
"""

import keras
from keras import ops

from keras_directcopy.models.heads import build_projector, default_projector_dims
from keras_directcopy.models.predictors import (
    DirectPredictor,
    build_predictor,
    check_predictor_name,
)
from keras_directcopy.models.losses import collapse_std, replica_sum, symmetric_loss
from keras_directcopy.models.schedules import check_ema_schedule, target_momentum
from keras_directcopy.utils import backend, onednn

WEIGHT_DECAY_MODES = ("coupled", "decoupled")
# How the target network starts:
# * "copy": an exact copy of the online network, as in BYOL (Grill et al.
#   2020, section 3.1);
# * "independent": its own random initialization, drawn from the same
#   initializers, as in the DirectPred/DirectCopy reference code
#   (facebookresearch/luckmatters, ssl/real-dataset: main.py builds the
#   target ResNet separately, and byol_trainer.py, `BYOLTrainer.train`, has
#   its `self.initializes_target_network()` call commented out, also at the
#   commit the reference's README names for DirectPred).
TARGET_INITS = ("independent", "copy")


@keras.saving.register_keras_serializable(package="keras_directcopy")
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
        projector_hidden_dim: projector hidden width; by default 512 for
            images up to 96 px and 4096 above.
        projection_dim: projector output width; by default 128 for images
            up to 96 px and 256 above.
        predictor_hidden_dim: hidden width of the `"mlp"` predictor
            (default `projector_hidden_dim`).
        predictor_options: dict of predictor arguments: for the direct modes
            `DirectPredictor`'s (`rho`, `eps`, `alpha`, `normalization`,
            `update_every`, `update_order`, `spectrum_every`), for `"linear"`
            `LinearPredictor`'s (`symmetric`, `initializer`).
        projector_bn_affine: give the projector's BatchNorm a learned scale
            and offset. The reference code's projector has none
            (`has_bn_affine: false`, the default here); BYOL's has them.
        tau_base: EMA momentum of the target (at step 0 for the cosine
            schedule). `0` means no target copy: the target is the online
            network with stop-gradient (SimSiam).
        ema_schedule: `"constant"` keeps the momentum at `tau_base`, as the
            DirectPred/DirectCopy reference code does; `"cosine"` raises it
            to 1 over `total_steps`, as BYOL does. See `EMA_SCHEDULES`.
        target_init: `"independent"` (the reference code's: the target gets
            its own random initialization) or `"copy"` (BYOL's: it starts as
            a copy of the online network). See `TARGET_INITS`.
        total_steps: training steps of the cosine momentum schedule (needed
            by it). Settable later as an attribute.
        weight_decay: L2 weight-decay coefficient on every online trainable
            weight, >= 0.
        weight_decay_mode: `"coupled"` (default) adds `weight_decay * w` to
            the gradient before the optimizer's momentum, as PyTorch's SGD
            does and as the reference experiments ran. `"decoupled"` hands it
            to the Keras optimizer's own (decoupled, AdamW-style)
            `weight_decay` at `compile()`.
        synchronized_bn: synchronize the BatchNorm of heads this model
            builds (projector, MLP predictor) across replicas.
        fused_batchnorm: on the TensorFlow backend, compute the training
            calls of every (unsynchronized) BatchNormalization layer of the
            online and target networks, the given encoder's included, with
            TensorFlow's fused kernel: the same arithmetic as Keras' own
            op-by-op path, to float32 rounding, in less time (see
            `fused_batchnorm`). The layers stay built-in Keras layers.
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
        projector_bn_affine=False,
        tau_base=0.996,
        ema_schedule="constant",
        target_init="independent",
        total_steps=None,
        weight_decay=0.0,
        weight_decay_mode="coupled",
        synchronized_bn=False,
        fused_batchnorm=True,
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
        check_ema_schedule(ema_schedule)
        if target_init not in TARGET_INITS:
            raise ValueError(
                f"Unknown target_init {target_init!r}. Valid values: {', '.join(TARGET_INITS)}."
            )
        if not weight_decay >= 0.0:  # also rejects NaN
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"total_steps must be a positive number of steps or None, got {total_steps}.")
        self.encoder = encoder
        feature_dim = int(encoder.output_shape[-1])
        default_hidden, default_output = default_projector_dims(encoder.input_shape[1])
        hidden_dim = projector_hidden_dim or default_hidden
        self.projector = projector or build_projector(
            feature_dim, hidden_dim, projection_dim or default_output,
            synchronized_bn=synchronized_bn, bn_affine=projector_bn_affine,
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
        self.ema_schedule = ema_schedule
        self.target_init = target_init
        self.total_steps = total_steps
        self.weight_decay = float(weight_decay)
        self.weight_decay_mode = weight_decay_mode

        self.target_encoder = self.target_projector = None
        if self.tau_base > 0:
            copy_weights = target_init == "copy"
            self.target_encoder = _target_of(encoder, "target_encoder", copy_weights)
            self.target_projector = _target_of(self.projector, "target_projector", copy_weights)
        self.fused_batchnorm = bool(fused_batchnorm)
        if self.fused_batchnorm and backend.is_tensorflow_backend():
            from keras_directcopy.models.fused_batchnorm import use_fused_kernel

            for network in (self.encoder, self.projector, self.predictor,
                            self.target_encoder, self.target_projector):
                if network is not None:
                    use_fused_kernel(network)

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
    def non_trainable_weights(self):
        # Everything but the online variables, the target's among them, so
        # that `weights` is exactly trainable plus non-trainable.
        return self._without_online(super().weights)

    @property
    def non_trainable_variables(self):
        return self._without_online(super().variables)

    def _without_online(self, variables):
        online = {id(v) for v in self.online_variables}
        return [v for v in variables if id(v) not in online]

    @property
    def metrics(self):
        return [self.loss_tracker, self.collapse_tracker]

    def call(self, images, training=False):
        """Encoder features of `images`: `(N, H, W, C) -> (N, D)`."""
        return self.encoder(images, training=training)

    def compile(self, optimizer="sgd", **kwargs):
        """Configures the optimizer; see `keras.Model.compile`.

        With `weight_decay_mode="decoupled"` the model's `weight_decay` is set
        as the optimizer's decoupled `weight_decay`. Under the
        `"mixed_float16"` dtype policy Keras wraps the optimizer in a
        `LossScaleOptimizer`, and `train_step` scales the loss for it.

        Raises:
            ValueError: if weight decay would be applied twice: the model has
                a `weight_decay` and the optimizer has its own.
        """
        super().compile(optimizer=optimizer, **kwargs)
        if not self.weight_decay:
            return
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        current = inner.weight_decay
        if current not in (None, 0.0, self.weight_decay) or (
            current and self.weight_decay_mode == "coupled"
        ):
            raise ValueError(
                f"The optimizer already has weight_decay={current} and the model "
                f"weight_decay={self.weight_decay} ({self.weight_decay_mode}): decay would "
                "be applied twice. Set it in one place only: the model's weight_decay, or "
                "the optimizer's with the model's weight_decay=0."
            )
        if self.weight_decay_mode == "decoupled":
            inner.weight_decay = self.weight_decay

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`. On TensorFlow, first warns once per process
        where TensorFlow runs without its oneDNN kernels on an x86 CPU and
        `TF_ENABLE_ONEDNN_OPTS` is unset (`utils.onednn.warn_if_off`: the
        message gives the fix)."""
        if backend.is_tensorflow_backend():
            onednn.warn_if_off()
        return super().fit(*args, **kwargs)

    def compile_from_config(self, config):
        """Compiles from a saved compile config (when a saved model loads).

        Keras skips this for a model whose `compile` is overridden; this one
        takes Keras' arguments and only adds the weight-decay handling, so
        loading compiles as Keras' own would, optimizer state included.
        """
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Overrides a private Keras 3.15 method of its TensorFlow trainer; see
        # distribute.py, workaround 1. (The JAX trainer only builds the
        # optimizer here, for a model built in its constructor.)
        from keras_directcopy.models import distribute

        distribute.skip_symbolic_build(self)

    def train_step(self, *args):
        """One pretraining step, as the backend's Keras trainer calls it.

        TensorFlow: `train_step(data)`, see `train_step_tensorflow`; JAX:
        the stateless `train_step(state, data)`, see `train_step_jax`. Both
        compute the same step: the symmetric loss of the online predictions
        against the target projections, the optimizer step with coupled
        weight decay, the predictor's hooks and the target's EMA.
        """
        return _backend_steps().train_step(self, *args)

    def test_step(self, *args):
        """The loss and collapse indicator of a batch, in inference mode."""
        return _backend_steps().test_step(self, *args)

    def _target_momentum(self, step):
        if self.ema_schedule == "cosine" and self.total_steps is None:
            raise ValueError(
                "ema_schedule='cosine' needs the number of training steps: pass "
                "total_steps=epochs * steps_per_epoch to the model (or set model.total_steps "
                "before fit), or use ema_schedule='constant'."
            )
        return target_momentum(step, self.total_steps, self.tau_base, self.ema_schedule)

    def _online_loss(self, view1, view2, target1, target2):
        """The online branch of a training step and its loss.

        Projects both views (training mode), runs the predictor's
        `before_prediction` hook on the gradient-stopped projections,
        predicts, and compares with the targets (SimSiam: the online
        projections, gradient stopped, when `target1` is None). Both
        backends' steps call it where gradients are recorded.

        Returns:
            `(per_example_loss (B,), z1 (B, d), z2 (B, d), features (2B, d))`,
            `features` being the gradient-stopped projections of both views
            that the predictor's hooks take.
        """
        z1 = self.projector(self.encoder(view1, training=True), training=True)
        z2 = self.projector(self.encoder(view2, training=True), training=True)
        features = ops.stop_gradient(ops.concatenate([z1, z2], axis=0))
        if hasattr(self.predictor, "before_prediction"):
            with keras.name_scope("predictor_update"):
                self.predictor.before_prediction(features)
        p1 = self.predictor(z1, training=True)
        p2 = self.predictor(z2, training=True)
        if target1 is None:
            target1, target2 = ops.stop_gradient(z1), ops.stop_gradient(z2)
        return symmetric_loss(p1, p2, target1, target2), z1, z2, features

    def _inference_loss(self, view1, view2):
        """The per-example loss `(B,)` and online projections `(B, d)` of both
        views, in inference mode (the test step's)."""
        z1 = self.projector(self.encoder(view1, training=False), training=False)
        z2 = self.projector(self.encoder(view2, training=False), training=False)
        p1 = self.predictor(z1, training=False)
        p2 = self.predictor(z2, training=False)
        if self.target_encoder:
            target1 = self.target_projector(self.target_encoder(view1, training=False), training=False)
            target2 = self.target_projector(self.target_encoder(view2, training=False), training=False)
        else:
            target1, target2 = z1, z2
        return symmetric_loss(p1, p2, target1, target2), z1, z2

    def _target_projections(self, view1, view2):
        """The target branch's projections of both views (training mode), gradient stopped."""

        def project(view):
            features = self.target_encoder(view, training=True)
            return ops.stop_gradient(self.target_projector(features, training=True))

        return project(view1), project(view2)

    def _update_target(self, tau):
        online = self.encoder.trainable_variables + self.projector.trainable_variables
        target = self.target_encoder.trainable_variables + self.target_projector.trainable_variables
        for target_variable, online_variable in zip(target, online):
            target_variable.assign(tau * target_variable + (1.0 - tau) * online_variable)

    def get_config(self):
        """The architecture and training settings; see `keras.Model.get_config`.

        The encoder, projector and predictor are serialized whole, so
        `keras.saving.load_model(path, safe_mode=True)` rebuilds this model
        from built-in Keras layers and this package's registered classes.
        """
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "encoder": serialize(self.encoder),
            "projector": serialize(self.projector),
            "predictor": serialize(self.predictor),
            "tau_base": self.tau_base,
            "ema_schedule": self.ema_schedule,
            "target_init": self.target_init,
            "total_steps": self.total_steps,
            "weight_decay": self.weight_decay,
            "weight_decay_mode": self.weight_decay_mode,
            "fused_batchnorm": self.fused_batchnorm,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("encoder", "projector", "predictor"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)

    def _logs(self, per_example_loss, z1, z2, extra=None):
        """Updates the metrics from a step's per-example loss `(B,)` and
        projections `(B, d)`, and returns the logs: the metrics, `extra`
        and, for a direct predictor, its spectrum summary."""
        loss_sum, count = replica_sum(
            ops.sum(per_example_loss),
            ops.cast(ops.shape(per_example_loss)[0], per_example_loss.dtype),
        )
        self.loss_tracker.update_state(loss_sum / count)
        self.collapse_tracker.update_state(collapse_std(ops.concatenate([z1, z2], axis=0)))
        logs = {m.name: m.result() for m in self.metrics}
        logs.update(extra or {})
        if self.has_direct_predictor:
            spectrum = ops.convert_to_tensor(self.predictor.spectrum)
            logs.update(pred_eig_max=spectrum[0], pred_eig_min=spectrum[1], pred_eff_rank=spectrum[2])
        return logs


@keras.saving.register_keras_serializable(package="keras_directcopy")
class BYOL(NonContrastiveModel):
    """BYOL (Grill et al., 2020): a target that starts as a copy of the online
    network and follows it on BYOL's cosine momentum schedule (pass
    `total_steps`), a projector with affine BatchNorm, and a trained MLP
    predictor."""

    def __init__(self, encoder, predictor="mlp", name="byol", **kwargs):
        kwargs.setdefault("ema_schedule", "cosine")
        kwargs.setdefault("target_init", "copy")
        kwargs.setdefault("projector_bn_affine", True)
        super().__init__(encoder, predictor=predictor, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_directcopy")
class SimSiam(NonContrastiveModel):
    """SimSiam (Chen & He, 2021): no EMA target (`tau_base=0`), MLP predictor."""

    def __init__(self, encoder, predictor="mlp", name="simsiam", **kwargs):
        kwargs.setdefault("tau_base", 0.0)
        super().__init__(encoder, predictor=predictor, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_directcopy")
class DirectPred(NonContrastiveModel):
    """DirectPred (Tian, Chen & Ganguli, 2021): predictor set by eigendecomposition."""

    def __init__(self, encoder, predictor="directpred", name="directpred", **kwargs):
        super().__init__(encoder, predictor=predictor, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_directcopy")
class DirectCopy(NonContrastiveModel):
    """DirectCopy (Wang, Chen, Du & Tian, 2021): predictor `F / ||F|| + eps I`."""

    def __init__(self, encoder, predictor="directcopy", name="directcopy", **kwargs):
        super().__init__(encoder, predictor=predictor, name=name, **kwargs)


def _target_of(model, name, copy_weights):
    """A functional model with `model`'s architecture, and its current weights
    when `copy_weights`, else weights drawn afresh from its initializers."""
    target = keras.models.clone_model(model)
    target.name = name
    if copy_weights:
        target.set_weights(model.get_weights())
    return target


def _backend_steps():
    """The module holding the train and test steps of Keras' backend."""
    name = keras.backend.backend()
    if name == backend.TENSORFLOW:
        from keras_directcopy.models import train_step_tensorflow

        return train_step_tensorflow
    if name == backend.JAX:
        from keras_directcopy.models import train_step_jax

        return train_step_jax
    raise backend.backend_required("NonContrastiveModel training (pretraining)", backend.PRETRAINING_BACKENDS)
