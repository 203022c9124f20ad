"""keras-directcopy: non-contrastive self-supervised learning in Keras 3.

BYOL, SimSiam, DirectPred and DirectCopy models, ResNet encoders and the
closed-form predictor matrices.
"""

from keras_directcopy.backbones import build_backbone, resnet18, resnet20, resnet34, resnet50
from keras_directcopy.heads import build_projector
from keras_directcopy.models import (
    BYOL,
    DirectCopy,
    DirectPred,
    NonContrastiveModel,
    SimSiam,
    collapse_std,
)
from keras_directcopy.predictors import (
    PREDICTOR_NAMES,
    DirectPredictor,
    LinearPredictor,
    build_predictor,
    directcopy_matrix,
    directpred_matrix,
    directset_matrix,
)
from keras_directcopy.schedules import target_momentum
from keras_directcopy.zoo import list_pretrained, load_pretrained

__version__ = "0.1.0"
