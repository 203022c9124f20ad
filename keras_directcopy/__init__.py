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

Keras backends: TensorFlow is the default and runs everything. On JAX or
PyTorch (`KERAS_BACKEND=jax` or `torch`), loading presets, the backbones,
the predictor matrices, the predictor layers (`build_predictor`) and the
target momentum schedule work and TensorFlow is not imported. The
pretraining models (`NonContrastiveModel`, `DirectCopy`, ...) train on
TensorFlow and JAX; on PyTorch asking for one raises
`utils.backend.BackendRequired`, which names the backends to set.
"""

from keras_directcopy.models import PRETRAINING_ONLY as _PRETRAINING_ONLY
from keras_directcopy.models import (
    PREDICTOR_NAMES,
    DirectPredictor,
    LinearPredictor,
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
from keras_directcopy.presets.class_names import class_names, decode_predictions
from keras_directcopy.presets.zoo import list_pretrained, load_pretrained
from keras_directcopy.utils import backend as _backend
from keras_directcopy.version import __version__

if _backend.is_pretraining_backend():
    # The pretraining names, re-exported from `models`, whose table lists them.
    from keras_directcopy import models as _models

    globals().update({name: getattr(_models, name) for name in _PRETRAINING_ONLY})
else:
    __getattr__ = _backend.backend_only_getattr(__name__, _PRETRAINING_ONLY, _backend.PRETRAINING_BACKENDS)
