"""Where a result came from: the code's git commit and the machine it ran on.

Run records (`training.run_log`), evaluation metrics and model cards store
both, so every number names the commit and hardware that produced it.
"""

import os
import platform
import subprocess

import keras

from keras_directcopy.utils import onednn


def cpu_model():
    """The CPU's model name, family and model numbers, and whether it has
    AVX-512, from `/proc/cpuinfo`.

    Machines sold as the same kind differ several-fold in speed, and the
    model name and AVX-512 are what tells them apart; where a virtual
    machine shows a generic name ("Intel(R) Xeon(R) Processor"), the
    family and model numbers still name the generation. Returns
    `{"model": str, "family_model": str | None, "avx512": bool | None}`,
    `family_model` like `"family 6 model 207"` on x86 and None where
    `/proc/cpuinfo` has no such fields; off Linux the model is
    `platform.processor()` and the rest None (unknown).
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            lines = cpuinfo.read().splitlines()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "family_model": None, "avx512": None}
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    family, model = fields.get("cpu family"), fields.get("model")
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "family_model": f"family {family} model {model}" if family and model else None,
        "avx512": "avx512f" in fields.get("flags", "").split(),
    }


def hardware_summary():
    """CPU (model name, AVX-512), accelerators, library versions of this
    machine, and whether TensorFlow runs its oneDNN kernels (`onednn`: True,
    False, or None where TensorFlow does not say).

    Imports TensorFlow (for its devices and version), so call it from the
    TensorFlow-only parts (training, dataset evaluation): this module's other
    functions serve every Keras backend.
    """
    import tensorflow as tf

    cpu = cpu_model()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu["model"],
        "cpu_family_model": cpu["family_model"],
        "avx512": cpu["avx512"],
        "cpu_count": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "onednn": onednn.tensorflow_uses_onednn(),
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def git_commit(directory=None):
    """The commit of the checkout holding `directory` (default: this
    package), with `-dirty` appended when tracked files differ from it, so a
    run record never names a commit whose code did not run; `"unknown"`
    outside a git checkout (an installed wheel)."""
    directory = directory or os.path.dirname(os.path.abspath(__file__))

    def git(*arguments):
        return subprocess.run(
            ["git", *arguments], cwd=directory, capture_output=True, text=True, check=True,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"

