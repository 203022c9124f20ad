"""Pretraining: the training loop (`loop.pretrain`), tf.distribute strategies,
callbacks, the run log and the command-line flags of the recipes.

The top layer: it uses models, data and evaluation (the kNN monitor); nothing
in the package imports it.
"""

from keras_directcopy.training.loop import pretrain, save_encoder
