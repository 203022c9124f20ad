"""TensorFlow's process settings for every script; imported first, before TensorFlow.

* `TF_CPP_MIN_LOG_LEVEL=2`: TensorFlow's C++ info and warning lines stay out
  of the output, unless the user set the variable.
* `TF_ENABLE_ONEDNN_OPTS=1` on x86 CPUs, unless the user set the variable:
  TensorFlow otherwise leaves its oneDNN kernels off on CPUs without AVX-512
  VNNI/BF16, AVX-VNNI or AMX (`keras_directcopy.utils.onednn`).

Both must be in the environment before TensorFlow is imported, and importing
anything from `keras_directcopy` imports TensorFlow (through Keras), so the
oneDNN module is loaded from its file here, without its package.
"""

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _load_onednn_module():
    # find_spec of a top-level package locates it without importing it.
    package = importlib.util.find_spec("keras_directcopy")
    path = os.path.join(os.path.dirname(package.origin), "utils", "onednn.py")
    spec = importlib.util.spec_from_file_location("_keras_directcopy_onednn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_load_onednn_module().enable_by_default()
