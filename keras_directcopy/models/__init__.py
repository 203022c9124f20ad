"""Models: ResNet backbones, the projector and classification heads, the
predictors (closed-form equations in `predictor_matrices`, layers and registry
in `predictors`), the non-contrastive model (`non_contrastive`), the target
momentum schedule and the tf.distribute helpers of the train step.

The backbones, heads, predictor matrices, predictor layers and the target
momentum schedule run on every Keras backend. The non-contrastive model uses
TensorFlow ops: it is imported on the TensorFlow backend only, and asking for
it on another backend raises `utils.backend.TensorFlowBackendRequired`.

The bottom layer: it imports nothing else from the package but `utils`.
"""

from keras_directcopy.models.backbones import build_backbone, resnet18, resnet20, resnet34, resnet50
from keras_directcopy.models.heads import build_projector
from keras_directcopy.models.predictor_matrices import directcopy_matrix, directpred_matrix, directset_matrix
from keras_directcopy.models.predictors import (
    PREDICTOR_NAMES,
    DirectPredictor,
    LinearPredictor,
    build_predictor,
)
from keras_directcopy.models.schedules import target_momentum
from keras_directcopy.utils import backend as _backend

# The names below that need the TensorFlow backend, and what they are for.
TENSORFLOW_ONLY = dict.fromkeys(
    ("BYOL", "DirectCopy", "DirectPred", "NonContrastiveModel", "SimSiam", "collapse_std"),
    "pretraining",
)

if _backend.is_tensorflow_backend():
    from keras_directcopy.models.non_contrastive import (
        BYOL,
        DirectCopy,
        DirectPred,
        NonContrastiveModel,
        SimSiam,
        collapse_std,
    )
else:
    __getattr__ = _backend.tensorflow_only_getattr(__name__, TENSORFLOW_ONLY)
