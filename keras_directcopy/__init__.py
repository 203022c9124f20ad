"""keras-directcopy: non-contrastive self-supervised learning in Keras 3.

BYOL, SimSiam, DirectPred and DirectCopy models, ResNet encoders, the
closed-form predictor matrices, and pretrained encoders (`load_pretrained`).

Subpackages, in the order data flows through them (each imports only the
ones before it; `utils` serves all):

* `models`: backbones, heads, predictors, the non-contrastive model.
* `data`: datasets and the two-view augmentation.
* `configs`: the named pretraining recipes (read by training and model cards).
* `presets`: the registry of pretrained encoders, `load_pretrained`, Hub folders.
* `evaluation`: kNN, linear probe, fine-tuning classifier.
* `training`: the pretraining loop, strategies, callbacks, run log.
* `theory`: the linear-network lab (NumPy).

Importing the package loads `models` and `presets` only.
"""

from keras_directcopy.models import (
    BYOL,
    PREDICTOR_NAMES,
    DirectCopy,
    DirectPred,
    DirectPredictor,
    LinearPredictor,
    NonContrastiveModel,
    SimSiam,
    build_backbone,
    build_predictor,
    build_projector,
    collapse_std,
    directcopy_matrix,
    directpred_matrix,
    directset_matrix,
    resnet18,
    resnet20,
    resnet34,
    resnet50,
    target_momentum,
)
from keras_directcopy.presets.zoo import list_pretrained, load_pretrained
from keras_directcopy.version import __version__
