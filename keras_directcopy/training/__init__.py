"""Pretraining: the training loop (`loop.pretrain`), tf.distribute strategies,
callbacks, the run log and the command-line flags of the recipes.

The top layer: it uses models, data and evaluation (the kNN monitor); nothing
in the package imports it.
"""

from keras_directcopy.utils.backend import is_tensorflow_backend, tensorflow_backend_required

if not is_tensorflow_backend():
    # The loop, strategies and callbacks use TensorFlow ops and tf.distribute.
    raise tensorflow_backend_required("keras_directcopy.training (pretraining, scripts/pretrain.py)")

from keras_directcopy.training.loop import pretrain, save_encoder  # noqa: E402
