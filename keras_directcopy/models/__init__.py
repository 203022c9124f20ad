"""Models: ResNet backbones, the projector and classification heads, the
predictors (closed-form equations in `predictor_matrices`, layers and registry
in `predictors`), the non-contrastive model (`non_contrastive`), the target
momentum schedule and the tf.distribute helpers of the train step.

The backbones, heads and predictor matrices run on every Keras backend. The
non-contrastive model, the predictor layers and the schedule use TensorFlow
ops: they are imported on the TensorFlow backend only, and asking for one on
another backend raises `utils.backend.TensorFlowBackendRequired`.

The bottom layer: it imports nothing else from the package but `utils`.
"""

from keras_directcopy.models.backbones import build_backbone, resnet18, resnet20, resnet34, resnet50
from keras_directcopy.models.heads import build_projector
from keras_directcopy.models.predictor_matrices import directcopy_matrix, directpred_matrix, directset_matrix
from keras_directcopy.utils import backend as _backend

# The names below that need the TensorFlow backend, and what they are for.
TENSORFLOW_ONLY = {
    **dict.fromkeys(
        ("BYOL", "DirectCopy", "DirectPred", "NonContrastiveModel", "SimSiam", "collapse_std"),
        "pretraining",
    ),
    **dict.fromkeys(
        ("PREDICTOR_NAMES", "DirectPredictor", "LinearPredictor", "build_predictor"),
        "the predictor layers of pretraining",
    ),
    "target_momentum": "the target momentum schedule of pretraining",
}

if _backend.is_tensorflow_backend():
    from keras_directcopy.models.non_contrastive import (
        BYOL,
        DirectCopy,
        DirectPred,
        NonContrastiveModel,
        SimSiam,
        collapse_std,
    )
    from keras_directcopy.models.predictors import (
        PREDICTOR_NAMES,
        DirectPredictor,
        LinearPredictor,
        build_predictor,
    )
    from keras_directcopy.models.schedules import target_momentum
else:
    __getattr__ = _backend.tensorflow_only_getattr(__name__, TENSORFLOW_ONLY)
