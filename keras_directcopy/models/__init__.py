"""Models: ResNet backbones, the projector and classification heads, the
predictors (closed-form equations in `predictor_matrices`, layers and registry
in `predictors`), the non-contrastive model (`non_contrastive`), the target
momentum schedule and the tf.distribute helpers of the train step.

The backbones, heads, predictor matrices, predictor layers, the loss and
collapse indicator and the target momentum schedule run on every Keras
backend. The non-contrastive model trains on TensorFlow and JAX
(`utils.backend.PRETRAINING_BACKENDS`): it is imported there only, and asking
for it on PyTorch raises `utils.backend.BackendRequired`.

The bottom layer: it imports nothing else from the package but `utils`.
"""

from keras_directcopy.models.backbones import build_backbone, resnet18, resnet20, resnet34, resnet50
from keras_directcopy.models.heads import build_projector
from keras_directcopy.models.losses import collapse_std
from keras_directcopy.models.predictor_matrices import directcopy_matrix, directpred_matrix, directset_matrix
from keras_directcopy.models.predictors import (
    PREDICTOR_NAMES,
    DirectPredictor,
    LinearPredictor,
    build_predictor,
)
from keras_directcopy.models.schedules import target_momentum
from keras_directcopy.utils import backend as _backend

# The names below run on the backends of `_backend.PRETRAINING_BACKENDS`.
PRETRAINING_ONLY = dict.fromkeys(
    ("BYOL", "DirectCopy", "DirectPred", "NonContrastiveModel", "SimSiam"), "pretraining"
)

if _backend.is_pretraining_backend():
    from keras_directcopy.models.non_contrastive import (
        BYOL,
        DirectCopy,
        DirectPred,
        NonContrastiveModel,
        SimSiam,
    )
else:
    __getattr__ = _backend.backend_only_getattr(__name__, PRETRAINING_ONLY, _backend.PRETRAINING_BACKENDS)
