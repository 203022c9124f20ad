"""Evaluation of a pretrained encoder: weighted kNN (`knn`), the linear probe
on frozen features (`linear_probe`), both on a labelled dataset with a
metrics record (`evaluate`), and a classifier to fine-tune (`classifier`).
Uses models, data and presets, never the training stack.

`build_classifier` runs on every Keras backend. kNN, the linear probe and
the dataset evaluation use TensorFlow ops and tfds: they are imported on the
TensorFlow backend only, and asking for one on another backend raises
`utils.backend.TensorFlowBackendRequired`.
"""

from keras_directcopy.evaluation.classifier import build_classifier
from keras_directcopy.utils import backend as _backend

# The names below that need the TensorFlow backend, and what they are for.
TENSORFLOW_ONLY = {
    "evaluate_encoder": "kNN and linear-probe evaluation on a tfds or folder dataset",
    "load_encoder": "the encoder loader of the dataset evaluation",
    "knn_accuracy": "kNN evaluation",
}

if _backend.is_tensorflow_backend():
    from keras_directcopy.evaluation.evaluate import evaluate_encoder, load_encoder
    from keras_directcopy.evaluation.knn import knn_accuracy
else:
    __getattr__ = _backend.backend_only_getattr(__name__, TENSORFLOW_ONLY)
