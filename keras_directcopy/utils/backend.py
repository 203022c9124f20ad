"""The Keras backend of this process, and the parts of the package that need TensorFlow's.

Loading presets (`load_pretrained`), the backbones, heads, predictor matrices,
the predictor layers (`build_predictor`), the target momentum schedule and
the classifier (`evaluation.build_classifier`) are written with `keras` and
`keras.ops` only, so they run on every Keras backend: TensorFlow, JAX and
PyTorch. Pretraining (`NonContrastiveModel` and its configurations),
`tf.distribute`, the tfds pipelines and the kNN and linear-probe evaluation
use TensorFlow ops, and are available on the TensorFlow backend only, Keras'
default.

The package's `__init__` modules import those parts on the TensorFlow backend
as before; on another backend they leave them unimported (so TensorFlow is
never imported) and answer a request for one with `TensorFlowBackendRequired`.
"""

import keras

TENSORFLOW = "tensorflow"


class TensorFlowBackendRequired(ImportError):
    """A TensorFlow-only part of the package was requested on another Keras backend.

    An `ImportError`, so `from keras_directcopy import DirectCopy` fails with
    this message rather than Python's generic "cannot import name".
    """


def is_tensorflow_backend():
    """True when Keras runs on TensorFlow, its default (`KERAS_BACKEND` may choose another)."""
    return keras.backend.backend() == TENSORFLOW


def tensorflow_backend_required(what):
    """The error for `what`, a TensorFlow-only part of the package, requested
    on another backend: it names the backend in use and the fix.

    Args:
        what: the part, as a user knows it, e.g.
            `"keras_directcopy.DirectCopy (pretraining)"`.

    Returns:
        A `TensorFlowBackendRequired` to raise.
    """
    return TensorFlowBackendRequired(
        f"{what} needs the TensorFlow backend today, and Keras runs on "
        f"{keras.backend.backend()!r} in this process. Set KERAS_BACKEND={TENSORFLOW} before "
        "importing keras to use it. On every backend you can load presets "
        "(keras_directcopy.load_pretrained), build backbones and fine-tune "
        "(keras_directcopy.evaluation.build_classifier)."
    )


def tensorflow_only_getattr(module_name, names):
    """A module-level `__getattr__` (PEP 562) for the TensorFlow-only `names`.

    A package defines it on backends other than TensorFlow, in place of
    importing those names: asking for one raises `TensorFlowBackendRequired`,
    any other unknown name the usual `AttributeError`.

    Args:
        module_name: the package's `__name__`, for messages.
        names: a mapping from each TensorFlow-only name to what it is for,
            e.g. `{"DirectCopy": "pretraining"}`.

    Returns:
        The `__getattr__(name)` function to assign in the package.
    """

    def __getattr__(name):
        if name in names:
            raise tensorflow_backend_required(f"{module_name}.{name} ({names[name]})")
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__
