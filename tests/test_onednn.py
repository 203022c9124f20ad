"""oneDNN on x86 CPUs (keras_directcopy/utils/onednn.py): the scripts turn it
on before TensorFlow loads unless the user chose, the library warns once
where it is off, and a training step computes the same with and without it."""

import ast
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from keras_directcopy.utils import onednn
from tests import training_cases
from tests.helpers import two_view_images
from tests.test_jax_training import assert_same_training

REPOSITORY = Path(__file__).resolve().parent.parent
SCRIPTS = REPOSITORY / "scripts"
# Modules that load TensorFlow when imported (keras_directcopy through Keras).
TENSORFLOW_IMPORTS = {"tensorflow", "keras", "keras_directcopy", "tensorflow_datasets", "keras_cv"}


def imported_roots(node):
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return {node.module.split(".")[0]}
    return set()


def test_every_script_that_loads_tensorflow_sets_its_environment_first():
    # Anywhere in the file (a script may import TensorFlow inside main), so
    # before any top-level import outside the standard library: the
    # neighbour modules it imports (encoder_flags, ...) may load TensorFlow.
    checked = []
    for path in sorted([*SCRIPTS.glob("*.py"), *REPOSITORY.glob("benchmarks/*/*.py")]):
        tree = ast.parse(path.read_text())
        runs_as_script = '__name__ == "__main__"' in path.read_text()  # not a neighbour module
        if not runs_as_script or not set().union(*map(imported_roots, ast.walk(tree))) & TENSORFLOW_IMPORTS:
            continue
        checked.append(path.name)
        top_level = [imported_roots(node) for node in tree.body]
        first_outside_stdlib = next(
            index for index, roots in enumerate(top_level) if roots - set(sys.stdlib_module_names))
        assert top_level[first_outside_stdlib] == {"runtime_defaults"}, f"{path.name}: import runtime_defaults first"
    assert {"pretrain.py", "evaluate.py", "finetune.py", "benchmark.py"} <= set(checked)


SCRIPT_STATE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import pretrain  # the script as a module: its imports run, app.run does not
from keras_directcopy.utils import onednn
print(json.dumps({"variable": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                  "uses_onednn": onednn.tensorflow_uses_onednn()}))
"""


def script_state(own_setting):
    environment = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if own_setting is not None:
        environment["TF_ENABLE_ONEDNN_OPTS"] = own_setting
    completed = subprocess.run([sys.executable, "-c", SCRIPT_STATE, str(SCRIPTS)], env=environment,
                               capture_output=True, text=True, timeout=300, cwd=REPOSITORY)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_script_runs_tensorflow_with_onednn_and_the_users_setting_wins():
    # TensorFlow's own answer after a script's imports. On x86 oneDNN is on
    # even where TensorFlow would leave it off (AVX2-only CPUs); elsewhere
    # the variable stays unset.
    default = script_state(None)
    if onednn.is_x86():
        assert default == {"variable": "1", "uses_onednn": True}
    else:
        assert default["variable"] is None
    assert script_state("0") == {"variable": "0", "uses_onednn": False}


def fit_tiny_model(steps=2):
    model = training_cases.compiled(training_cases.CASES["directcopy"]())
    for step in range(steps):
        training_cases.fit_steps(model, two_view_images(8, seed=step), 1, 8)


def test_fit_warns_once_where_tensorflow_runs_without_onednn(monkeypatch):
    # This machine's TensorFlow may run oneDNN by itself (CPUs with AVX-512
    # VNNI/BF16), so its answer is replaced by "off" here, and the CPU by an
    # x86 one; the next test takes TensorFlow's real answer.
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setattr(onednn, "tensorflow_uses_onednn", lambda: False)
    monkeypatch.setattr(onednn.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(onednn, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_tiny_model()
    advice = [w for w in caught if "TF_ENABLE_ONEDNN_OPTS=1" in str(w.message)]
    assert len(advice) == 1 and advice[0].category is UserWarning
    assert advice[0].filename.endswith("training_cases.py")  # the line that called fit()

    monkeypatch.setattr(onednn, "_warned", False)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # the user chose: no warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_tiny_model(1)
    assert not [w for w in caught if "oneDNN" in str(w.message)]


def test_fit_warns_by_tensorflows_real_state(monkeypatch):
    monkeypatch.setattr(onednn, "_warned", False)
    expected = onednn.advice(onednn.tensorflow_uses_onednn())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_tiny_model(1)
    got = [str(w.message) for w in caught if "oneDNN" in str(w.message)]
    assert got == ([expected] if expected else [])


RECORD_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from keras_directcopy.utils import onednn
from tests.training_cases import CASES, record_case
records = {name: record_case(name, f"{sys.argv[2]}/{name}.weights.h5") for name in CASES}
print(json.dumps({"uses_onednn": onednn.tensorflow_uses_onednn(), "cases": {
    name: {"losses": r["losses"], "names": r["names"], "weights": [w.tolist() for w in r["weights"]]}
    for name, r in records.items()}}))
"""


def recorded_training(weights_dir, **environment):
    completed = subprocess.run(
        [sys.executable, "-c", RECORD_SCRIPT, str(REPOSITORY), str(weights_dir)],
        env={**os.environ, "KERAS_BACKEND": "tensorflow", **environment},
        capture_output=True, text=True, timeout=300, cwd=REPOSITORY,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_training_with_onednn_on_avx2_computes_what_training_without_it_does(tmp_path):
    """Every training case (convolution, fused BatchNorm, the five methods'
    steps) for three steps from the same weights: with oneDNN on and its
    kernels held to AVX2 (`ONEDNN_MAX_CPU_ISA`, the kernels an AVX2-only CPU
    runs; on such a CPU the setting changes nothing), and without oneDNN
    (TensorFlow's Eigen kernels), agree to float32 rounding."""
    without = recorded_training(tmp_path, TF_ENABLE_ONEDNN_OPTS="0")
    with_avx2 = recorded_training(tmp_path, TF_ENABLE_ONEDNN_OPTS="1", ONEDNN_MAX_CPU_ISA="AVX2")
    assert without["uses_onednn"] is False and with_avx2["uses_onednn"] is True
    reference = {name: {**case, "weights": [np.asarray(w, dtype=np.float32) for w in case["weights"]]}
                 for name, case in without["cases"].items()}
    assert_same_training(with_avx2["cases"], reference)
