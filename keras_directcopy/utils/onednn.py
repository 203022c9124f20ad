"""oneDNN for TensorFlow on x86 CPUs: on in the scripts, advice in the library.

TensorFlow's x86 wheels carry oneDNN (Intel's kernel library for
convolutions, matrix products and BatchNorm), but TensorFlow turns it on by
itself only on CPUs with AVX-512 VNNI, AVX-512 BF16, AVX-VNNI or AMX; on
other x86 CPUs (AVX2-only ones among them) it runs its Eigen kernels unless
the environment variable `TF_ENABLE_ONEDNN_OPTS=1` is set before TensorFlow
is imported. Set to `0`, it keeps oneDNN off everywhere.

* Scripts call `enable_by_default()` before they import TensorFlow: oneDNN
  on every x86 CPU, unless the user set the variable.
* The library cannot change a TensorFlow that is already imported;
  `NonContrastiveModel.fit` calls `warn_if_off()`, which tells the user once,
  with the fix, when TensorFlow runs without oneDNN on an x86 CPU and the
  variable was left unset.

This module imports nothing beyond the standard library until
`tensorflow_uses_onednn` is called, so a script can load it before
TensorFlow. `scripts/runtime_defaults.py` loads this file that way.
"""

import os
import platform
import warnings

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# platform.machine() of x86 CPUs: Linux and macOS, then Windows.
X86_MACHINES = ("x86_64", "i386", "i686", "amd64", "x86")

OFF_MESSAGE = (
    "TensorFlow runs without oneDNN on this x86 CPU (TensorFlow turns it on by itself only on CPUs "
    "with AVX-512 VNNI/BF16, AVX-VNNI or AMX), and its convolutions run slower without it. Set "
    f"{VARIABLE}=1 in the environment before Python imports TensorFlow (keras_directcopy's scripts "
    f"do so); set {VARIABLE}=0 to keep oneDNN off and silence this warning."
)

_warned = False


def is_x86(machine=None):
    """Whether `machine` (default: this one's `platform.machine()`) is an x86 CPU."""
    return (machine if machine is not None else platform.machine()).lower() in X86_MACHINES


def enable_by_default(environ=None, machine=None):
    """Sets `TF_ENABLE_ONEDNN_OPTS=1` in `environ` (default `os.environ`) on
    an x86 `machine`, unless the variable is already set: the user's own
    setting wins. Must run before TensorFlow is imported, which reads the
    variable once.

    Returns:
        True if this call set the variable.
    """
    environ = os.environ if environ is None else environ
    if VARIABLE in environ or not is_x86(machine):
        return False
    environ[VARIABLE] = "1"
    return True


def tensorflow_uses_onednn():
    """Whether the imported TensorFlow runs its oneDNN kernels (TensorFlow's
    own answer, which reflects `TF_ENABLE_ONEDNN_OPTS` and the CPU), or None
    where TensorFlow does not say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def advice(uses_onednn, environ=None, machine=None):
    """The warning for a TensorFlow that runs without oneDNN (`uses_onednn`
    False) on an x86 `machine` with `TF_ENABLE_ONEDNN_OPTS` unset in
    `environ`; None otherwise (oneDNN on, another CPU, a user who chose)."""
    environ = os.environ if environ is None else environ
    if uses_onednn is not False or VARIABLE in environ or not is_x86(machine):
        return None
    return OFF_MESSAGE


def warn_if_off():
    """Warns once per process (a `UserWarning`) with `advice`'s message when
    TensorFlow runs without oneDNN where it would help. Call it only on the
    TensorFlow backend: it imports TensorFlow."""
    global _warned
    if _warned:
        return
    message = advice(tensorflow_uses_onednn())
    if message:
        _warned = True
        warnings.warn(message, UserWarning, stacklevel=3)
