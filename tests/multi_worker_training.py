"""One worker of the multi-worker test (run as a subprocess, not collected).

Usage: python -m tests.multi_worker_training OUTPUT.npz
with TF_CONFIG set by the parent test. Trains a small DirectCopy model with
`fit()` under MultiWorkerMirroredStrategy and saves every variable it changes,
the logged losses and the number of workers.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_directcopy import DirectCopy  # noqa: E402
from tests.helpers import tiny_encoder, two_view_images  # noqa: E402


def main(output_path):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = DirectCopy(
            tiny_encoder(batch_norm=True, synchronized_bn=True),
            projector_hidden_dim=16, projection_dim=8, synchronized_bn=True,
            weight_decay=5e-4, total_steps=4,
        )
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9))
    # A single stacked tensor per element, as fit() under this strategy needs.
    dataset = tf.data.Dataset.from_tensor_slices(two_view_images(32, seed=3)).batch(8).repeat()
    history = model.fit(dataset, epochs=2, steps_per_epoch=2, verbose=0).history
    variables = (
        model.online_variables
        + model.target_encoder.weights
        + model.target_projector.weights
        + model.encoder.non_trainable_weights
        + [model.predictor.correlation, model.predictor.matrix]
    )
    np.savez(
        output_path,
        loss=np.asarray(history["loss"], np.float64).reshape(-1),
        num_replicas=strategy.num_replicas_in_sync,
        **{f"variable_{i}": v.numpy() for i, v in enumerate(variables)},
    )


if __name__ == "__main__":
    main(sys.argv[1])
