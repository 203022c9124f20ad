"""The zoo, the predictor matrices and layers, and fine-tuning on Keras' JAX and PyTorch backends.

Keras fixes its backend when it is imported, and this process runs on
TensorFlow, so each check runs a script in a fresh interpreter with
`KERAS_BACKEND` set, offline (`HF_HUB_OFFLINE=1`: the CIFAR-10 preset is
bundled), and compares what it returns with this process's TensorFlow
results. Every script also reports whether TensorFlow was imported: on those
backends the package must not import it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_directcopy as kdc
from keras_directcopy import evaluation, models
from keras_directcopy.models import losses, non_contrastive, predictors, schedules
from keras_directcopy.utils.backend import BackendRequired, TensorFlowBackendRequired
from tests.test_predictor_matrices import random_psd, reference_directcopy, reference_directset
from tests.test_predictors import batches, reference_correlations

REPO_ROOT = Path(__file__).resolve().parents[1]
OTHER_BACKENDS = ("jax", "torch")
# Features of the same weights on the same images agree across backends to
# float32 rounding: each backend's convolutions (oneDNN, XLA, PyTorch) sum in
# their own order. The shipped encoder's features lie in [0, 1.5]; the largest
# difference measured on CPU was 3.3e-7 (PyTorch) and 2.7e-7 (JAX).
FEATURE_TOLERANCE = dict(rtol=1e-5, atol=1e-5)
# The float32 tolerance of tests/test_predictor_matrices.py.
MATRIX_TOLERANCE = 2e-5

REPORT_TENSORFLOW = (
    "def report(**values):\n"
    "    values['tensorflow_imported'] = 'tensorflow' in sys.modules\n"
    "    values['backend'] = keras.backend.backend()\n"
    "    print(json.dumps(values))\n"
)


def run_on_backend(backend, script, tmp_path, *arguments, environment=None, tensorflow_allowed=False):
    """Runs `script` (which ends by calling `report(...)`) under `backend`
    in a fresh interpreter, with `environment`'s variables added; returns the
    values it reported. Unless `tensorflow_allowed`, the script must not
    have imported TensorFlow."""
    environment = {**os.environ, "KERAS_BACKEND": backend, "HF_HUB_OFFLINE": "1", **(environment or {})}
    completed = subprocess.run(
        [sys.executable, "-c", "import json, sys\nimport keras\n" + REPORT_TENSORFLOW + script,
         *map(str, arguments)],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    reported = json.loads(completed.stdout.strip().splitlines()[-1])
    assert reported["backend"] == backend
    if not tensorflow_allowed:
        assert not reported["tensorflow_imported"], f"the package imported TensorFlow on {backend}"
    return reported


def cifar_images(count=8, seed=0):
    """Seeded uint8 CIFAR-size images, `(count, 32, 32, 3)`."""
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tensorflow_features():
    return kdc.load_pretrained("cifar10").predict(cifar_images(), verbose=0)


LOAD_SCRIPT = """
import shutil
import numpy as np
import keras_directcopy
from keras_directcopy.presets import zoo

images_path, features_path, folder = sys.argv[1:]
encoder = keras_directcopy.load_pretrained("cifar10")
np.save(features_path, encoder.predict(np.load(images_path), verbose=0))

# A folder whose config.json records another input normalization than its
# architecture file has: refused as on TensorFlow, by what it computes.
preset = zoo.get_preset("cifar10")
shutil.copytree(f"{preset['_registry_dir']}/{preset['name']}", folder)
config = {key: preset[key] for key in ("name", "backbone", "input_shape", "weights", "architecture")}
config["backbone_kwargs"] = {**preset["backbone_kwargs"], "input_normalization": "imagenet"}
with open(f"{folder}/config.json", "w") as file:
    json.dump(config, file)
try:
    keras_directcopy.load_pretrained(folder)
    refusal = None
except ValueError as error:
    refusal = str(error)
report(name=encoder.name, output_shape=list(encoder.output_shape), refusal=refusal)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_the_shipped_encoder_gives_the_tensorflow_features(backend, tensorflow_features, tmp_path):
    np.save(tmp_path / "images.npy", cifar_images())
    reported = run_on_backend(
        backend, LOAD_SCRIPT, tmp_path, tmp_path / "images.npy", tmp_path / "features.npy", tmp_path / "folder"
    )
    assert reported["name"] == "resnet20" and reported["output_shape"] == [None, 64]
    features = np.load(tmp_path / "features.npy")
    assert features.shape == tensorflow_features.shape == (8, 64)
    np.testing.assert_allclose(features, tensorflow_features, **FEATURE_TOLERANCE)
    assert np.abs(tensorflow_features).max() > 0.1  # real features, not a vacuous match
    assert "is not the resnet20 its entry records" in reported["refusal"]
    assert "computes other features" in reported["refusal"]
    assert "nothing was loaded" in reported["refusal"]


FINETUNE_SCRIPT = """
import numpy as np
import keras_directcopy
from keras_directcopy.evaluation import build_classifier

images = np.load(sys.argv[1])
labels = np.arange(len(images)) % 10


def values(weights):
    return [keras.ops.convert_to_numpy(weight).copy() for weight in weights]


def largest_change(before, after):
    return max(float(np.abs(a - b).max()) for a, b in zip(before, after))


results = {}
for freeze_encoder in (True, False):
    encoder = keras_directcopy.load_pretrained("cifar10")
    model = build_classifier(encoder, num_classes=10, freeze_encoder=freeze_encoder)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    head = model.get_layer("logits")
    # BatchNorm's moving statistics, and every other weight of the encoder.
    statistics = [w for w in encoder.weights if "moving" in w.path]
    parameters = [w for w in encoder.weights if "moving" not in w.path]
    before = {
        "encoder": values(parameters),
        "statistics": values(statistics),
        "head": values(head.weights),
        "logits": model.predict(images, verbose=0),
    }
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    after = {
        "encoder": values(parameters),
        "statistics": values(statistics),
        "head": values(head.weights),
        "logits": model.predict(images, verbose=0),
    }
    results["frozen" if freeze_encoder else "fine_tuned"] = {
        "losses": [float(loss) for loss in history.history["loss"]],
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "trainable_encoder_weights": len(encoder.trainable_weights),
        "change": {key: largest_change(before[key], after[key]) for key in before},
    }
report(**results)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_build_classifier_fine_tunes_with_numpy_input(backend, tmp_path):
    np.save(tmp_path / "images.npy", cifar_images(count=8, seed=1))
    reported = run_on_backend(backend, FINETUNE_SCRIPT, tmp_path, tmp_path / "images.npy")
    frozen, fine_tuned = reported["frozen"], reported["fine_tuned"]
    for run in (frozen, fine_tuned):
        assert run["steps"] == 2  # 8 images, batch 4, one epoch
        assert run["losses"] and all(np.isfinite(run["losses"]))
        assert run["change"]["head"] > 0
        assert run["change"]["logits"] > 1e-4
    # Frozen: nothing of the encoder moves, not even BatchNorm's statistics.
    assert frozen["trainable_encoder_weights"] == 0
    assert frozen["change"]["encoder"] == 0 and frozen["change"]["statistics"] == 0
    # Fine-tuned: the encoder's weights train and BatchNorm uses batch statistics.
    assert fine_tuned["trainable_encoder_weights"] > 0
    assert fine_tuned["change"]["encoder"] > 0 and fine_tuned["change"]["statistics"] > 0


API_SCRIPT = """
import numpy as np
import keras_directcopy
from keras_directcopy.utils.backend import BackendRequired

F = np.load(sys.argv[1])
matrices = {
    "directcopy": keras_directcopy.directcopy_matrix(F, eps=0.25),
    "frobenius": keras_directcopy.directcopy_matrix(F, eps=0.25, normalization="frobenius"),
    "directpred": keras_directcopy.directpred_matrix(F, eps=0.01),
    "directset": keras_directcopy.directset_matrix(F, alpha=0.7, eps=0.1),
    "directcopy_tensor_in": keras.ops.convert_to_numpy(
        keras_directcopy.directcopy_matrix(keras.ops.convert_to_tensor(F))
    ),
}
if keras.backend.backend() == "jax":
    import jax

    matrices["directcopy_jit"] = np.asarray(jax.jit(keras_directcopy.directcopy_matrix)(F))
    matrices["directpred_jit"] = np.asarray(jax.jit(keras_directcopy.directpred_matrix)(F))
kinds = {
    "numpy": type(keras_directcopy.directcopy_matrix(F)).__name__,
    "tensor": keras.ops.is_tensor(keras_directcopy.directpred_matrix(keras.ops.convert_to_tensor(F))),
}

statements = [
    "keras_directcopy.DirectCopy",
    "from keras_directcopy import NonContrastiveModel",
    "from keras_directcopy.evaluation import knn_accuracy",
]
if keras.backend.backend() != "jax":
    # On JAX the training package imports (and with it TensorFlow, for tf.data):
    # tests/test_pretrain.py runs scripts/pretrain.py --backend=jax.
    statements.append("import keras_directcopy.training")
errors = {}
for statement in statements:
    try:
        exec(statement)
        errors[statement] = None
    except BackendRequired as error:
        errors[statement] = f"{type(error).__name__}: {error}"
try:
    keras_directcopy.no_such_name
    missing = None
except AttributeError as error:
    missing = str(error)
report(matrices={name: matrix.tolist() for name, matrix in matrices.items()}, kinds=kinds,
       errors=errors, missing=missing)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_predictor_matrices_run_and_backend_only_names_say_which_backends(backend, tmp_path):
    F = random_psd(16, seed=3).astype(np.float32)
    np.save(tmp_path / "F.npy", F)
    reported = run_on_backend(backend, API_SCRIPT, tmp_path, tmp_path / "F.npy")
    expected = {
        "directcopy": reference_directset(F, 1.0, 0.25),
        "frobenius": reference_directcopy(F, 0.25, "frobenius"),
        "directpred": reference_directset(F, 0.5, 0.01),
        "directset": reference_directset(F, 0.7, 0.1),
        "directcopy_tensor_in": reference_directset(F, 1.0, 0.1),
        "directcopy_jit": reference_directset(F, 1.0, 0.1),
        "directpred_jit": reference_directset(F, 0.5, 0.01),
    }
    matrices = reported["matrices"]
    assert set(matrices) == set(expected) - ({"directcopy_jit", "directpred_jit"} if backend == "torch" else set())
    for name, matrix in matrices.items():
        error = np.abs(np.asarray(matrix) - expected[name]).max() / np.abs(expected[name]).max()
        assert error < MATRIX_TOLERANCE, (name, error)
    assert reported["kinds"] == {"numpy": "ndarray", "tensor": True}

    errors = reported["errors"]
    knn = errors.pop("from keras_directcopy.evaluation import knn_accuracy")
    assert knn.startswith("TensorFlowBackendRequired: keras_directcopy.evaluation.knn_accuracy (kNN evaluation)")
    assert "needs the tensorflow backend" in knn and f"runs on {backend!r}" in knn
    assert "KERAS_BACKEND=tensorflow before" in knn
    if backend == "jax":  # pretraining runs on JAX
        assert errors == {"keras_directcopy.DirectCopy": None, "from keras_directcopy import NonContrastiveModel": None}
    else:
        for statement, message in errors.items():
            assert message is not None, f"{statement} did not raise on {backend}"
            assert message.startswith("BackendRequired: ")
            assert "needs the tensorflow or jax backend" in message and f"runs on {backend!r}" in message
            assert "KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax" in message
        assert "keras_directcopy.DirectCopy (pretraining)" in errors["keras_directcopy.DirectCopy"]
        assert "keras_directcopy.training (pretraining, scripts/pretrain.py)" in (
            errors["import keras_directcopy.training"]
        )
    assert reported["missing"] == "module 'keras_directcopy' has no attribute 'no_such_name'"


def test_on_tensorflow_every_backend_only_name_is_the_real_object():
    """The tables of pretraining-only and TensorFlow-only names match what the
    packages import on TensorFlow, so another backend refuses exactly those."""
    assert keras.backend.backend() == "tensorflow"
    sources = {**vars(non_contrastive), **vars(predictors), **vars(schedules), **vars(losses)}
    for name in models.PRETRAINING_ONLY:
        assert getattr(models, name) is getattr(kdc, name) is sources[name]
    for name in PREDICTOR_AND_SCHEDULE_NAMES:  # on every backend, so not in the table
        assert name not in models.PRETRAINING_ONLY
        assert getattr(models, name) is getattr(kdc, name) is sources[name]
    for name in evaluation.TENSORFLOW_ONLY:
        assert callable(getattr(evaluation, name))
    assert issubclass(TensorFlowBackendRequired, BackendRequired) and issubclass(BackendRequired, ImportError)


# The predictor layers, the schedule and the collapse indicator, exported on every backend.
PREDICTOR_AND_SCHEDULE_NAMES = (
    "PREDICTOR_NAMES", "DirectPredictor", "LinearPredictor", "build_predictor", "target_momentum",
    "collapse_std",
)
# The direct predictors' (alpha, eps) in the DirectSet(alpha) reference: the
# spectral DirectCopy is DirectSet(alpha=1), DirectPred DirectSet(alpha=0.5).
DIRECT_REFERENCES = {"directcopy": (1.0, 0.1), "directpred": (0.5, 0.01), "directset": (0.7, 0.01)}
# The float32 tolerances of tests/test_predictors.py: F is a running mean of
# float32 outer products; W_p adds an eigendecomposition or a power iteration.
CORRELATION_TOLERANCE = dict(rtol=1e-5, atol=1e-7)
PREDICTOR_MATRIX_TOLERANCE = dict(rtol=1e-4, atol=1e-5)
MOMENTUM_STEPS = (0, 7, 25, 50, 100, 150)

PREDICTOR_SCRIPT = """
import numpy as np
from keras_directcopy import target_momentum
from keras_directcopy.models import build_predictor

features = np.load(sys.argv[1])
dim = features.shape[-1]
to_numpy = keras.ops.convert_to_numpy


def state(predictor, z):
    return {
        "F": to_numpy(predictor.correlation).tolist(),
        "W_p": to_numpy(predictor.matrix).tolist(),
        "prediction": to_numpy(predictor(z)).tolist(),
        "num_updates": int(to_numpy(predictor.num_updates)),
    }


histories = {}
for method in ("directcopy", "directpred", "directset"):
    for order in ("after_step", "before_predict"):
        predictor = build_predictor(method, dim, rho=0.3, alpha=0.7, update_order=order)
        history = []
        for z in features:
            # The train step calls both hooks; only the one of the order updates.
            predictor.before_prediction(z)
            predictor.after_optimizer_step(z)
            history.append(state(predictor, z))
        histories[f"{method}/{order}"] = history

if keras.backend.backend() == "jax":
    # As a JAX train step would run it: traced by jax.jit, the state passed
    # in and out through a StatelessScope.
    import jax

    predictor = build_predictor("directcopy", dim, rho=0.3)
    variables = predictor.non_trainable_variables

    def update(values, z):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            predictor.update(z)
        return [scope.get_current_value(variable) for variable in variables]

    values, history = [variable.value for variable in variables], []
    jitted = jax.jit(update)
    for z in features:
        values = jitted(values, z)
        for variable, value in zip(variables, values):
            variable.assign(value)
        history.append(state(predictor, z))
    histories["directcopy/after_step/jit"] = history

linear = {}
for symmetric in (True, False):
    layer = build_predictor("linear", dim, symmetric=symmetric)
    before = to_numpy(layer.kernel)
    prediction = to_numpy(layer(features[0]))
    layer.after_optimizer_step(features[0])
    linear[str(symmetric)] = {
        "before": before.tolist(), "after": to_numpy(layer.kernel).tolist(),
        "prediction": prediction.tolist(), "trainable": len(layer.trainable_weights),
    }
mlp = build_predictor("mlp", dim, hidden_dim=10)

momentum = {}
for schedule in ("constant", "cosine"):
    momentum[schedule] = {
        "python": [target_momentum(step, 100, 0.99, schedule) for step in STEPS],
        "tensor": [
            float(to_numpy(target_momentum(keras.ops.convert_to_tensor(step), 100, 0.99, schedule)))
            for step in STEPS
        ],
    }
report(histories=histories, linear=linear, mlp_shape=list(mlp(features[0]).shape), momentum=momentum)
""".replace("STEPS", repr(MOMENTUM_STEPS))


def reference_momentum(step, total_steps, tau_base, schedule):
    """BYOL's cosine schedule (Grill et al. 2020), or the constant one, in NumPy."""
    if schedule == "constant":
        return tau_base
    return 1 - (1 - tau_base) * (np.cos(np.pi * min(step, total_steps) / total_steps) + 1) / 2


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_predictor_layers_and_target_momentum_follow_the_numpy_references(backend, tmp_path):
    features = np.stack(batches(4))
    np.save(tmp_path / "features.npy", features)
    reported = run_on_backend(backend, PREDICTOR_SCRIPT, tmp_path, tmp_path / "features.npy")

    histories = reported["histories"]
    expected_runs = {f"{m}/{o}" for m in DIRECT_REFERENCES for o in ("after_step", "before_predict")}
    assert set(histories) == expected_runs | ({"directcopy/after_step/jit"} if backend == "jax" else set())
    for run, history in histories.items():
        method, order = run.split("/")[:2]
        alpha, eps = DIRECT_REFERENCES[method]
        correlations = reference_correlations(list(features), 0.3, order)
        assert len(history) == len(correlations) == 4
        for step, (state, F, z) in enumerate(zip(history, correlations, features)):
            np.testing.assert_allclose(state["F"], F, **CORRELATION_TOLERANCE, err_msg=f"{run} F, step {step}")
            W = reference_directset(F, alpha, eps)
            np.testing.assert_allclose(state["W_p"], W, **PREDICTOR_MATRIX_TOLERANCE, err_msg=f"{run} W_p, step {step}")
            np.testing.assert_allclose(state["prediction"], z @ W, rtol=1e-4, atol=1e-4)
            assert state["num_updates"] == step + 1
    # The two orders differ from the first step: "after_step" takes the first
    # batch's statistic as F, "before_predict" averages it with zero.
    assert not np.allclose(histories["directcopy/after_step"][0]["F"], histories["directcopy/before_predict"][0]["F"])

    symmetric, plain = (
        {key: np.asarray(value) for key, value in reported["linear"][name].items()} for name in ("True", "False")
    )
    assert not np.allclose(symmetric["before"], symmetric["before"].T)
    np.testing.assert_allclose(symmetric["after"], (symmetric["before"] + symmetric["before"].T) / 2, rtol=1e-6)
    np.testing.assert_array_equal(plain["after"], plain["before"])
    np.testing.assert_allclose(symmetric["prediction"], features[0] @ symmetric["before"], rtol=1e-5, atol=1e-6)
    assert symmetric["trainable"] == plain["trainable"] == 1  # the kernel, no bias
    assert reported["mlp_shape"] == [12, 5]

    for schedule, values in reported["momentum"].items():
        expected = [reference_momentum(step, 100, 0.99, schedule) for step in MOMENTUM_STEPS]
        assert values["python"] == pytest.approx(expected, rel=1e-12)  # Python floats in, out
        assert values["tensor"] == pytest.approx(expected, rel=1e-6)  # float32 tensors
