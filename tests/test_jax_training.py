"""Pretraining on the JAX backend: its train step (models/train_step_jax.py)
against the TensorFlow step on the same weights and batches, and against the
NumPy reference of the DirectCopy step; then under
`keras.distribution.DataParallel` on two (virtual) CPU devices.

JAX runs in a subprocess (a process has one Keras backend); the TensorFlow
runs are recorded here, by the same code (tests/training_cases.py).
"""

import re
from pathlib import Path

import numpy as np
import pytest

from tests import training_cases
from tests.test_backends import run_on_backend
from tests.test_models import assert_matches_the_numpy_reference

REPOSITORY = Path(__file__).resolve().parent.parent
RECORD_SCRIPT = f"""
sys.path.insert(0, {str(REPOSITORY)!r})
from tests.training_cases import record_all
report(**record_all(sys.argv[1], data_parallel=sys.argv[2] == "data_parallel"))
"""
# Both steps compute in float32, with their own convolution and BatchNorm
# kernels (oneDNN and TensorFlow's fused BatchNorm; XLA), which sum in their
# own orders; after three steps of SGD with momentum 0.9 at learning rate
# 0.1 the largest difference measured was about 1e-6. A wrong step (a sign,
# a missed weight decay or EMA, the other update order) moves the weights by
# 1e-3 or more.
LOSS_TOLERANCE = dict(rtol=1e-5, atol=1e-6)
WEIGHT_TOLERANCE = dict(rtol=1e-4, atol=2e-5)


@pytest.fixture(scope="module")
def tensorflow_records(tmp_path_factory):
    """Each case run on TensorFlow; its starting weights saved for JAX."""
    weights_dir = tmp_path_factory.mktemp("weights")
    records = {
        name: training_cases.record_case(name, str(weights_dir / f"{name}.weights.h5"))
        for name in training_cases.CASES
    }
    return weights_dir, records


def jax_records(weights_dir, tmp_path, devices):
    environment = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    mode = "data_parallel" if devices > 1 else "single"
    # Keras itself imports TensorFlow, when installed, to serialize layer
    # configurations, as `keras.models.clone_model` does for the target network.
    reported = run_on_backend(
        "jax", RECORD_SCRIPT, tmp_path, weights_dir, mode, environment=environment, tensorflow_allowed=True
    )
    assert reported["devices"] == devices
    return reported


def unnumbered(path):
    """A variable path without Keras' automatic layer-name suffixes: `conv2d_18/kernel` -> `conv2d/kernel`."""
    return re.sub(r"_\d+(?=/)", "", path)


def assert_same_training(jax_cases, tensorflow_records):
    assert set(jax_cases) == set(tensorflow_records)
    for name, expected in tensorflow_records.items():
        got = jax_cases[name]
        np.testing.assert_allclose(got["losses"], expected["losses"], **LOSS_TOLERANCE, err_msg=f"{name} losses")
        # The same variables in the same order (layer names aside, whose
        # numeric suffixes count the layers a process has made before).
        assert [unnumbered(path) for path in got["names"]] == [unnumbered(path) for path in expected["names"]]
        for path, value, reference in zip(got["names"], got["weights"], expected["weights"]):
            value = np.asarray(value, dtype=reference.dtype)
            if path.endswith("top_eigenvector"):
                # The power iteration's warm start: an iterate that stops at
                # a tolerance, so its rounding differences grow to ~1e-4;
                # W_p, computed with it, is compared like every other weight.
                cosine = value @ reference / np.linalg.norm(value) / np.linalg.norm(reference)
                assert cosine > 0.9999, f"{name}: {path}"
                continue
            np.testing.assert_allclose(value, reference, **WEIGHT_TOLERANCE, err_msg=f"{name}: {path}")


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2])
def test_jax_steps_match_tensorflow_and_the_numpy_reference(tensorflow_records, tmp_path, devices):
    # With two devices, keras.distribution.DataParallel splits the global
    # batch over them: the same loss, BatchNorm statistics, predictor
    # correlation and gradients as on one device.
    weights_dir, records = tensorflow_records
    reported = jax_records(weights_dir, tmp_path, devices)
    assert_same_training(reported["cases"], records)
    assert_matches_the_numpy_reference(reported["direct"], "directcopy", "after_step")
    if devices == 1:
        # Mixed precision: a step under each policy moves the weights as a
        # float32 step does (the bounds of tests/test_models.py).
        assert set(reported["mixed"]) == {"mixed_float16", "mixed_bfloat16"}
        for policy, result in reported["mixed"].items():
            training_cases.assert_moves_like_float32(result, policy)


def test_the_tensorflow_records_train():
    # The comparison above means something only if the cases' weights move.
    model = training_cases.compiled(training_cases.CASES["directcopy"]())
    before = [np.array(w) for w in model.get_weights()]
    training_cases.fit_steps(model, training_cases.two_view_images(8, seed=1), 1, 8)
    moved = [not np.allclose(a, b) for a, b in zip(before, model.get_weights())]
    assert sum(moved) >= len(moved) // 2
