"""The Keras backend of this process, and the parts of the package that need a particular one.

* Every backend (TensorFlow, JAX, PyTorch): loading presets
  (`load_pretrained`), the backbones, heads, predictor matrices, the
  predictor layers (`build_predictor`), the target momentum schedule, the
  loss and collapse indicator and the classifier
  (`evaluation.build_classifier`), written with `keras` and `keras.ops` only.
* TensorFlow and JAX (`PRETRAINING_BACKENDS`): pretraining,
  `NonContrastiveModel` and its configurations, whose train step is written
  for each.
* TensorFlow only, Keras' default: `tf.distribute`, the tfds pipelines, the
  pretraining loop and scripts, and the kNN and linear-probe evaluation.

The package's `__init__` modules import each part on the backends it runs
on; on another backend they leave it unimported (so TensorFlow is not
imported on JAX or PyTorch) and answer a request for one of its names with
`BackendRequired` (`TensorFlowBackendRequired` for the TensorFlow-only ones).
"""

import keras

TENSORFLOW = "tensorflow"
JAX = "jax"
# The backends `NonContrastiveModel` trains on: its train step is written for
# each (models/train_step_tensorflow.py, models/train_step_jax.py).
PRETRAINING_BACKENDS = (TENSORFLOW, JAX)


class BackendRequired(ImportError):
    """A part of the package was requested on a Keras backend it does not run on.

    An `ImportError`, so `from keras_directcopy import DirectCopy` fails with
    this message rather than Python's generic "cannot import name".
    """


class TensorFlowBackendRequired(BackendRequired):
    """A TensorFlow-only part of the package was requested on another Keras backend."""


def is_tensorflow_backend():
    """True when Keras runs on TensorFlow, its default (`KERAS_BACKEND` may choose another)."""
    return keras.backend.backend() == TENSORFLOW


def is_pretraining_backend():
    """True when `NonContrastiveModel` can train on Keras' backend (`PRETRAINING_BACKENDS`)."""
    return keras.backend.backend() in PRETRAINING_BACKENDS


def backend_required(what, backends=(TENSORFLOW,)):
    """The error for `what`, requested on a backend not among `backends`.

    Args:
        what: the part, as a user knows it, e.g.
            `"keras_directcopy.DirectCopy (pretraining)"`.
        backends: the names of the Keras backends it runs on.

    Returns:
        A `BackendRequired` to raise (a `TensorFlowBackendRequired` when
        `backends` is TensorFlow alone), naming the backend in use and the fix.
    """
    backends = tuple(backends)
    error = TensorFlowBackendRequired if backends == (TENSORFLOW,) else BackendRequired
    choices = " or ".join(f"KERAS_BACKEND={name}" for name in backends)
    return error(
        f"{what} needs the {' or '.join(backends)} backend, and Keras runs on "
        f"{keras.backend.backend()!r} in this process. Set {choices} before "
        "importing keras to use it. On every backend you can load presets "
        "(keras_directcopy.load_pretrained), build backbones and fine-tune "
        "(keras_directcopy.evaluation.build_classifier)."
    )


def tensorflow_backend_required(what):
    """`backend_required(what)` for a TensorFlow-only part: a `TensorFlowBackendRequired`."""
    return backend_required(what, (TENSORFLOW,))


def backend_only_getattr(module_name, names, backends=(TENSORFLOW,)):
    """A module-level `__getattr__` (PEP 562) for `names` that need `backends`.

    A package defines it on the other backends, in place of importing those
    names: asking for one raises `backend_required`'s error, any other
    unknown name the usual `AttributeError`.

    Args:
        module_name: the package's `__name__`, for messages.
        names: a mapping from each such name to what it is for, e.g.
            `{"DirectCopy": "pretraining"}`.
        backends: the backends the names run on.

    Returns:
        The `__getattr__(name)` function to assign in the package.
    """

    def __getattr__(name):
        if name in names:
            raise backend_required(f"{module_name}.{name} ({names[name]})", backends)
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__
