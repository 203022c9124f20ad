"""Pretraining: the training loop (`loop.pretrain`), its strategies
(`tf.distribute` on TensorFlow, `keras.distribution` on JAX), callbacks, the
run log and the command-line flags of the recipes. It runs on the TensorFlow
and JAX backends; the data pipelines are tf.data on both.

The top layer: it uses models, data and evaluation (the kNN monitor); nothing
in the package imports it.
"""

from keras_directcopy.utils import backend as _backend

if not _backend.is_pretraining_backend():
    # The loop's model trains on TensorFlow and JAX (see models/train_step_*.py).
    raise _backend.backend_required(
        "keras_directcopy.training (pretraining, scripts/pretrain.py)", _backend.PRETRAINING_BACKENDS
    )

from keras_directcopy.training.loop import pretrain, save_encoder  # noqa: E402
