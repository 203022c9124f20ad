"""Evaluation: kNN, the linear probe, classifiers for fine-tuning, and
scripts/evaluate.py and scripts/finetune.py end to end on a prepared slice of
the real CIFAR-10."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_directcopy import evaluation, resnet20
from keras_directcopy.data import datasets as data
from keras_directcopy.data import offline as offline_data
from keras_directcopy.evaluation import knn, linear_probe
from keras_directcopy.evaluation.evaluate import compare_with_recorded_knn, random_init_metrics
from keras_directcopy.models.heads import build_linear_head
from keras_directcopy.presets import zoo
from keras_directcopy.utils.files import sha256_file
from tests.helpers import IMAGE_SIZE, tiny_encoder

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10"
METRICS_KEYS = {"dataset", "encoder", "preset", "knn", "linear_probe", "hardware", "git_commit",
                "wall_time_s"}
KNN_KEYS = {"top1", "k", "temperature", "train_split", "test_split", "train_examples",
            "test_examples"}
PROBE_KEYS = {"top1", "train_top1", "epochs", "batch_size", "optimizer", "learning_rate",
              "weight_decay", "feature_normalization", "final_epoch"}
# Mean RGB colour of each class of the toy image problem.
CLASS_COLOURS = np.array([[40, 40, 200], [200, 40, 40], [40, 200, 40], [200, 200, 40]], np.float32)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tfds")
    offline_data.prepare_cifar10(str(SHARED_CIFAR10), str(directory), max_examples_per_split=256)
    return str(directory)


@pytest.fixture(scope="module")
def saved_encoder(tmp_path_factory):
    """A tiny CIFAR ResNet-20 (16 features) saved as .keras, untrained."""
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("encoder") / "encoder.keras"
    resnet20(width_multiplier=0.25).save(path)
    return path


def colour_images(num_images, seed):
    """Noisy single-colour 8x8 images, four classes by colour: `(images, labels)`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASS_COLOURS), num_images)
    noise = rng.normal(0, 20, (num_images, IMAGE_SIZE, IMAGE_SIZE, 3))
    images = np.clip(CLASS_COLOURS[labels, None, None, :] + noise, 0, 255).astype(np.float32)
    return images, labels.astype(np.int64)


def mean_colour_encoder():
    """Images to their mean RGB colour (3 features), parameter-free."""
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    return keras.Model(images, keras.layers.GlobalAveragePooling2D()(images), name="mean_colour")


def batches(images, labels, batch_size=32):
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)


def run_script(name, *flags, env=None):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / name), *flags], capture_output=True,
        text=True, timeout=300, cwd=REPO_ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})},
    )


def cifar_features(encoder, data_dir, split):
    return knn.encode_dataset(
        encoder, data.evaluation_dataset("cifar10", data_dir, split, batch_size=64)
    )


# kNN (keras_directcopy.evaluation.knn)

def test_knn_scores_separable_features_perfectly():
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.normal(size=(32, 10)))[0].T  # 10 orthonormal class directions
    train_labels = rng.integers(0, 10, 500)
    test_labels = rng.integers(0, 10, 200)
    train = directions[train_labels] + 0.05 * rng.normal(size=(500, 32))
    test = directions[test_labels] + 0.05 * rng.normal(size=(200, 32))
    normalize = lambda x: tf.math.l2_normalize(x.astype(np.float32), axis=1).numpy()  # noqa: E731
    predictions = knn.knn_predict(normalize(train), train_labels, normalize(test), 10, k=20)
    assert np.mean(predictions == test_labels) == 1.0


def test_knn_on_random_features_is_near_chance():
    rng = np.random.default_rng(1)
    normalize = lambda x: tf.math.l2_normalize(x, axis=1).numpy()  # noqa: E731
    train = normalize(rng.normal(size=(3000, 64)).astype(np.float32))
    test = normalize(rng.normal(size=(2000, 64)).astype(np.float32))
    train_labels, test_labels = rng.integers(0, 10, 3000), rng.integers(0, 10, 2000)
    accuracy = np.mean(knn.knn_predict(train, train_labels, test, 10) == test_labels)
    # Chance is 0.1; the binomial std over 2000 test points is 0.0067.
    assert 0.07 < accuracy < 0.13


# Linear probe

def test_linear_probe_separates_toy_classes_and_reports_the_final_head():
    encoder = mean_colour_encoder()
    train_images, train_labels = colour_images(512, seed=0)
    test_images, test_labels = colour_images(256, seed=1)
    result = linear_probe.linear_probe(
        encoder, batches(train_images, train_labels), batches(test_images, test_labels), 4,
        epochs=20, batch_size=64, learning_rate=1e-2, return_head=True,
    )
    head = result.pop("head")
    assert set(result) == PROBE_KEYS
    assert result["final_epoch"] is True and result["epochs"] == 20 and result["batch_size"] == 64
    assert result["optimizer"] == "adam" and result["learning_rate"] == pytest.approx(1e-2)
    assert result["top1"] == 1.0 and result["train_top1"] == 1.0

    # The reported accuracies are those of the returned (final) head, evaluated independently.
    test_features = encoder.predict(test_images, verbose=0)
    logits = keras.ops.convert_to_numpy(head(test_features))
    assert np.mean(np.argmax(logits, axis=1) == test_labels) == result["top1"]
    # The head standardizes with the training split's statistics.
    mean, variance, _ = head.get_layer("standardize").get_weights()
    train_features = encoder.predict(train_images, verbose=0)
    np.testing.assert_allclose(mean, train_features.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(variance, train_features.var(axis=0), rtol=1e-4)


def test_linear_probe_accuracy_matches_an_independent_evaluation_when_imperfect():
    # Overlapping classes: the accuracy is neither 0 nor 1, so the check is not trivial.
    rng = np.random.default_rng(2)
    means = rng.normal(size=(5, 20))
    train_labels, test_labels = rng.integers(0, 5, 600), rng.integers(0, 5, 300)
    train = (means[train_labels] + 3.0 * rng.normal(size=(600, 20))) * 30 + 100
    test = (means[test_labels] + 3.0 * rng.normal(size=(300, 20))) * 30 + 100
    result = linear_probe.linear_probe_on_features(
        train, train_labels, test, test_labels, 5, epochs=10, batch_size=50, learning_rate=1e-2,
        return_head=True,
    )
    logits = keras.ops.convert_to_numpy(result["head"](test.astype(np.float32)))
    independent = np.mean(np.argmax(logits, axis=1) == test_labels)
    assert 0.4 < result["top1"] < 0.95
    assert result["top1"] == independent
    again = linear_probe.linear_probe_on_features(
        train, train_labels, test, test_labels, 5, epochs=10, batch_size=50, learning_rate=1e-2,
    )
    assert again["top1"] == result["top1"] and again["train_top1"] == result["train_top1"]


def test_linear_probe_rejects_out_of_range_labels():
    features = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="Labels must be in"):
        linear_probe.linear_probe_on_features(features, [0, 1, 2, 3], features, [0, 1, 2, 3], 3)


# Classifiers

def test_frozen_classifier_trains_only_the_head_with_batchnorm_in_inference_mode():
    encoder = tiny_encoder(batch_norm=True)
    model = evaluation.build_classifier(encoder, 4, freeze_encoder=True)
    head = model.get_layer("logits")
    assert [id(w) for w in model.trainable_weights] == [id(w) for w in head.trainable_weights]
    batch_norm = next(l for l in encoder.layers if isinstance(l, keras.layers.BatchNormalization))
    moving_mean = batch_norm.moving_mean.numpy().copy()
    images, labels = colour_images(32, seed=3)
    # Even when the model is called in training mode, BatchNorm uses and keeps its moving statistics.
    np.testing.assert_allclose(model(images, training=True), model(images, training=False), atol=1e-6)
    encoder_weights = [w.copy() for w in encoder.get_weights()]
    head_kernel = head.kernel.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(batch_norm.moving_mean.numpy(), moving_mean)
    for before, after in zip(encoder_weights, encoder.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not np.allclose(head.kernel.numpy(), head_kernel)


def test_unfrozen_classifier_trains_the_encoder_and_its_batchnorm_statistics():
    encoder = tiny_encoder(batch_norm=True)
    encoder.trainable = False  # a previous freeze is undone
    model = evaluation.build_classifier(encoder, 4, freeze_encoder=False, dropout=0.1)
    assert len(model.trainable_weights) == len(encoder.trainable_weights) + 2
    assert len(encoder.trainable_weights) > 0
    batch_norm = next(l for l in encoder.layers if isinstance(l, keras.layers.BatchNormalization))
    moving_mean = batch_norm.moving_mean.numpy().copy()
    images, _ = colour_images(16, seed=4)
    model(images, training=True)
    assert not np.allclose(batch_norm.moving_mean.numpy(), moving_mean)


def test_frozen_classifier_stays_frozen_after_save_and_reload(tmp_path):
    model = evaluation.build_classifier(tiny_encoder(batch_norm=True), 4, freeze_encoder=True)
    model.save(tmp_path / "classifier.keras")
    reloaded = keras.saving.load_model(tmp_path / "classifier.keras", safe_mode=True)
    assert len(reloaded.trainable_weights) == 2
    images, _ = colour_images(8, seed=5)
    np.testing.assert_allclose(reloaded(images, training=True), model(images), atol=1e-5)


def test_encoder_with_probe_head_reloads_in_safe_mode_with_the_same_logits(tmp_path):
    encoder = tiny_encoder(batch_norm=True)
    train_images, train_labels = colour_images(128, seed=6)
    probe = linear_probe.linear_probe(
        encoder, batches(train_images, train_labels), batches(train_images, train_labels), 4,
        epochs=2, return_head=True,
    )
    head = probe["head"]
    images, _ = colour_images(16, seed=7)
    expected = keras.ops.convert_to_numpy(head(encoder(images, training=False)))
    classifier = evaluation.build_classifier(encoder, 4, head=head)
    np.testing.assert_allclose(classifier.predict(images, verbose=0), expected, atol=1e-5)

    classifier.save(tmp_path / "classifier.keras")
    reloaded = keras.saving.load_model(tmp_path / "classifier.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=1e-5)
    # The head's weights file holds the standardization too: a rebuilt head reloads it fully.
    head.save_weights(tmp_path / "head.weights.h5")
    rebuilt = build_linear_head(6, 4)
    rebuilt.load_weights(tmp_path / "head.weights.h5")
    features = encoder(images, training=False)
    np.testing.assert_allclose(rebuilt(features), head(features), atol=1e-5)


def test_build_classifier_rejects_a_head_of_the_wrong_size():
    with pytest.raises(ValueError, match="needs"):
        evaluation.build_classifier(tiny_encoder(), 4, head=build_linear_head(6, 3))


def test_fine_tuning_a_tiny_encoder_lowers_the_loss_and_moves_its_weights():
    keras.utils.set_random_seed(0)
    encoder = tiny_encoder(batch_norm=True)
    model = evaluation.build_classifier(encoder, 4, freeze_encoder=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = colour_images(64, seed=8)
    before = [w.copy() for w in encoder.get_weights()]
    history = model.fit(images, labels, epochs=8, batch_size=64, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0]
    changed = [not np.array_equal(b, a) for b, a in zip(before, encoder.get_weights())]
    assert all(changed)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_load_encoder_from_a_keras_file_and_from_a_pretrained_folder(saved_encoder, tmp_path):
    encoder, preset, dataset = evaluation.load_encoder(path=str(saved_encoder))
    assert encoder.name == "resnet20" and preset is None and dataset is None

    folder = tmp_path / "pretrained"
    folder.mkdir()
    encoder.save_weights(folder / "encoder.weights.h5")
    digest = hashlib.sha256((folder / "encoder.weights.h5").read_bytes()).hexdigest()
    (folder / "config.json").write_text(json.dumps({
        "name": "tiny", "backbone": "resnet20", "backbone_kwargs": {"width_multiplier": 0.25},
        "input_shape": [32, 32, 3], "weights": {"filename": "encoder.weights.h5", "sha256": digest},
    }))
    loaded, preset, dataset = evaluation.load_encoder(preset=str(folder))
    assert preset == str(folder) and dataset is None
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(images), encoder(images), atol=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        evaluation.load_encoder(preset=str(folder), path=str(saved_encoder))


# On real data, in process and through the scripts

def test_evaluate_encoder_knn_agrees_with_knn_accuracy(data_dir, saved_encoder):
    encoder = keras.saving.load_model(saved_encoder, safe_mode=True)
    metrics = evaluation.evaluate_encoder(
        encoder, "cifar10", data_dir, knn_k=20, linear_epochs=2, batch_size=64,
        max_train_examples=200, max_test_examples=100,
    )
    assert set(metrics) == METRICS_KEYS and set(metrics["knn"]) == KNN_KEYS
    expected = knn.knn_accuracy(
        encoder,
        data.evaluation_dataset("cifar10", data_dir, "train[:200]", 64),
        data.evaluation_dataset("cifar10", data_dir, "test[:100]", 64),
        10, k=20,
    )
    assert metrics["knn"]["top1"] == pytest.approx(expected, abs=1e-9)
    assert metrics["knn"]["train_examples"] == 200 and metrics["knn"]["test_examples"] == 100


@pytest.mark.slow
def test_evaluate_script_end_to_end(data_dir, saved_encoder, tmp_path):
    output, head_path = tmp_path / "out" / "metrics.json", tmp_path / "head.weights.h5"
    result = run_script(
        "evaluate.py", f"--encoder={saved_encoder}", "--dataset=cifar10", f"--data_dir={data_dir}",
        "--knn_k=20", "--linear_epochs=3", "--batch_size=64", "--max_train_examples=200",
        "--max_test_examples=100", f"--output={output}", f"--save_head={head_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(output.read_text())
    assert set(metrics) == METRICS_KEYS
    # With --save_head the probe's record names the head it measured.
    assert set(metrics["knn"]) == KNN_KEYS and set(metrics["linear_probe"]) == PROBE_KEYS | {"head_sha256"}
    assert metrics["dataset"] == "cifar10" and metrics["preset"] is None
    assert metrics["encoder"] == "resnet20"
    knn_metrics, probe = metrics["knn"], metrics["linear_probe"]
    assert knn_metrics["k"] == 20 and knn_metrics["temperature"] == pytest.approx(0.1)
    assert (knn_metrics["train_split"], knn_metrics["test_split"]) == ("train[:200]", "test[:100]")
    assert knn_metrics["train_examples"] == 200 and knn_metrics["test_examples"] == 100
    assert probe["epochs"] == 3 and probe["batch_size"] == 64 and probe["final_epoch"] is True
    assert 0.0 <= knn_metrics["top1"] <= 1.0 and 0.0 <= probe["top1"] <= 1.0
    assert metrics["hardware"]["cpu_count"] and metrics["git_commit"] and metrics["wall_time_s"] > 0
    assert not list(tmp_path.rglob(".partial*"))
    assert re.search(r"kNN \(k=20\) top-1 \d+\.\d\d%, linear probe top-1 \d+\.\d\d%", result.stdout)
    # Progress by default, in a log a line at a time: the images encoded, the probe's epochs.
    assert "Encoding the train[:200] split (200 images)..." in result.stdout
    assert "  the test[:100] split: 100/100 images encoded" in result.stdout
    assert "Epoch 3/3" in result.stdout

    digest = re.search(r"sha256 ([0-9a-f]{64})", result.stdout).group(1)
    assert digest == hashlib.sha256(head_path.read_bytes()).hexdigest() == probe["head_sha256"]
    # The saved head, on the saved encoder's features, scores the reported final-epoch accuracy.
    head = build_linear_head(16, 10)
    head.load_weights(head_path)
    encoder = keras.saving.load_model(saved_encoder, safe_mode=True)
    features, labels = cifar_features(encoder, data_dir, "test[:100]")
    assert linear_probe.top1_accuracy(head, features, labels) == pytest.approx(probe["top1"])

    # kNN alone (the quickstart's check of a shipped encoder), through a
    # registry preset of the same weights: the same kNN number, and the script
    # says what the registry records for it.
    registry = registered_copy(saved_encoder, tmp_path / "registry")
    knn_only_output = tmp_path / "knn_only.json"
    knn_only = run_script(
        "evaluate.py", "--preset=tiny_registered", f"--data_dir={data_dir}",
        "--knn_k=20", "--batch_size=64", "--max_train_examples=200", "--max_test_examples=100",
        "--nolinear_probe", f"--output={knn_only_output}", "--verbose=0", env={zoo.REGISTRY_ENV: str(registry)},
    )
    assert knn_only.returncode == 0, knn_only.stderr[-3000:]
    assert "Encoding" not in knn_only.stdout and "images encoded" not in knn_only.stdout
    knn_only_metrics = json.loads(knn_only_output.read_text())
    assert knn_only_metrics["linear_probe"] is None and knn_only_metrics["preset"] == "tiny_registered"
    assert knn_only_metrics["knn"]["top1"] == knn_metrics["top1"]
    assert "linear probe" not in knn_only.stdout
    assert "The registry records no kNN accuracy for tiny_registered yet." in knn_only.stdout


TINY_PRESET = {
    "name": "tiny_registered", "aliases": [], "dataset": "cifar10", "method": "directcopy",
    "backbone": "resnet20", "backbone_kwargs": {"width_multiplier": 0.25},
    "input_shape": [32, 32, 3], "num_classes": 10, "epochs": 1,
    "train_command": "python scripts/pretrain.py --config=quickstart --output_dir=runs/tiny",
    "hub": {"repo_id": "someorg/tiny-registered", "revision": "main"},
    "head": None, "metrics": None, "run": None, "reduced_scale": True, "notes": "",
}


def registered_copy(saved_encoder, registry, metrics=None):
    """A registry directory holding `saved_encoder`'s weights as preset `tiny_registered`."""
    (registry / "tiny_registered").mkdir(parents=True, exist_ok=True)
    weights = registry / "tiny_registered" / "encoder.weights.h5"
    keras.saving.load_model(saved_encoder, safe_mode=True).save_weights(weights)
    preset = {**TINY_PRESET, "metrics": metrics,
              "weights": {"filename": "encoder.weights.h5", "sha256": sha256_file(weights), "bundled": True}}
    (registry / "tiny_registered.json").write_text(json.dumps(preset))
    return registry


def test_the_registry_knn_is_set_beside_the_measured_one(data_dir, saved_encoder, tmp_path, monkeypatch):
    """On a registry preset, the kNN accuracy its model card records is set
    beside the one measured, when the protocols match."""
    registry = registered_copy(saved_encoder, tmp_path / "registry")
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(registry))

    def measure_knn(k, preset="tiny_registered", dataset=None):
        encoder, name, preset_dataset = evaluation.load_encoder(preset=preset)
        metrics = evaluation.evaluate_encoder(
            encoder, dataset or preset_dataset, data_dir, knn_k=k, linear_probe=False, batch_size=64,
            max_train_examples=200, max_test_examples=100, preset=name,
        )
        return metrics

    measured = measure_knn(20)
    assert measured["preset"] == "tiny_registered"
    assert compare_with_recorded_knn("tiny_registered", measured["knn"]) == (
        "The registry records no kNN accuracy for tiny_registered yet.")
    registered_copy(saved_encoder, registry, metrics=measured)

    recorded = f"{100 * measured['knn']['top1']:.2f}%"
    same = compare_with_recorded_knn("tiny_registered", measure_knn(20)["knn"])
    assert f"Model card of tiny_registered: kNN top-1 {recorded}; measured now: {recorded}" in same
    assert "(difference +0.00 points)" in same
    other_k = compare_with_recorded_knn("tiny_registered", measure_knn(10)["knn"])
    assert "another protocol, so the two are not comparable" in other_k

    # A folder has no registry record (the script compares registry presets
    # only); it loads the same weights.
    folder = registry / "tiny_registered"
    (folder / "config.json").write_text(json.dumps({**TINY_PRESET, "weights": {
        "filename": "encoder.weights.h5", "sha256": sha256_file(folder / "encoder.weights.h5")}}))
    assert not zoo.is_registry_name(str(folder))
    by_folder = measure_knn(20, preset=str(folder), dataset="cifar10")
    assert by_folder["knn"]["top1"] == measured["knn"]["top1"]


@pytest.mark.slow
def test_evaluate_script_random_init_floor(data_dir, tmp_path):
    output = tmp_path / "metrics.json"
    result = run_script(
        "evaluate.py", "--preset=cifar10", "--random_init", f"--data_dir={data_dir}",
        "--knn_k=20", "--linear_epochs=2", "--max_train_examples=128", "--max_test_examples=64",
        f"--output={output}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(output.read_text())
    # Random weights must never be reported as the preset's: the record says
    # they are a floor, with its seed, of the preset it names.
    assert metrics["random_init"] == {"seed": 0} and "random initialization (seed 0)" in metrics["encoder"]
    assert metrics["preset"] == zoo.get_preset("cifar10")["name"]
    assert metrics["dataset"] == "cifar10" and 0.0 <= metrics["knn"]["top1"] <= 1.0
    assert "random initialization" in result.stdout


@pytest.mark.slow
def test_evaluate_script_random_init_floor_of_a_backbone_at_its_training_size(data_dir, tmp_path):
    # A pilot trained at --image_size=16 has its floor at 16 px, not at the data's 32.
    output = tmp_path / "metrics.json"
    result = run_script(
        "evaluate.py", "--random_init", "--backbone=resnet18", "--width_multiplier=0.25",
        "--image_size=16", "--dataset=cifar10", f"--data_dir={data_dir}", "--nolinear_probe",
        "--knn_k=20", "--max_train_examples=128", "--max_test_examples=64", f"--output={output}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(output.read_text())
    assert metrics["encoder"] == (
        "resnet18 (width multiplier 0.25, 16 px) architecture, random initialization (seed 0)")
    assert metrics["preset"] is None and metrics["random_init"] == {"seed": 0}


def test_a_random_init_record_names_its_floor_seed_and_preset():
    """What scripts/evaluate.py --preset=NAME --random_init --seed=S writes:
    the preset whose architecture was drawn, and the mark and seed that keep
    it from passing for that preset's metrics."""
    measured = {"dataset": "cifar100", "encoder": "resnet18", "preset": "directcopy_resnet20_cifar100",
                "knn": {"top1": 0.1, "k": 200}, "linear_probe": None}
    floor = random_init_metrics(measured, 7, "directcopy_resnet20_cifar100")
    assert floor == {**measured, "random_init": {"seed": 7}, "encoder": (
        "directcopy_resnet20_cifar100 architecture, random initialization (seed 7)")}
    assert "random_init" not in measured  # the measured record is left as it was


def test_the_registry_knn_is_not_compared_across_label_sets():
    preset = zoo.get_preset("cifar10")
    recorded = preset["metrics"]["knn"]
    same = compare_with_recorded_knn(preset["name"], recorded, preset["metrics"]["dataset"])
    assert "(difference +0.00 points)" in same
    other = compare_with_recorded_knn(preset["name"], recorded, "cifar10:other_label")
    assert "this run used cifar10:other_label, so the two are not comparable" in other


@pytest.mark.slow
def test_evaluate_script_reports_bad_flags(saved_encoder, tmp_path):
    # Missing data: tests/test_download.py runs each script with --nodownload.
    both = run_script("evaluate.py", f"--encoder={saved_encoder}", "--preset=cifar10",
                      "--dataset=cifar10")
    assert both.returncode == 1 and "exactly one of --preset" in both.stderr
    sized = run_script("evaluate.py", f"--encoder={saved_encoder}", "--dataset=cifar10", "--image_size=64")
    assert sized.returncode == 1 and "--image_size is for --random_init --backbone" in sized.stderr


@pytest.mark.slow
def test_finetune_script_end_to_end(data_dir, saved_encoder, tmp_path):
    result = run_script(
        "finetune.py", f"--encoder={saved_encoder}", "--dataset=cifar10", f"--data_dir={data_dir}",
        "--epochs=2", "--batch_size=64", "--lr=0.05", "--max_train_examples=128",
        "--max_test_examples=100", f"--output_dir={tmp_path}", "--verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Final-epoch test top-1 accuracy on cifar10" in result.stdout
    # No held-out split asked for: each epoch is evaluated on the test split, and said so.
    assert "Top-1 accuracy after each epoch on the test split (test[:100]; no validation_split" in result.stdout
    run = json.loads((tmp_path / "finetune.json").read_text())
    assert run["steps"] == 2 * 2 and run["train_examples"] == 128 and run["final_epoch"] is True
    assert np.isfinite(run["final_train_loss"]) and not run["freeze_encoder"]
    assert not list(tmp_path.rglob(".partial*"))

    classifier = keras.saving.load_model(tmp_path / "classifier.keras", safe_mode=True)
    images, labels = next(iter(data.evaluation_dataset("cifar10", data_dir, "test[:100]", 100)))
    logits = classifier.predict(images, verbose=0)
    assert logits.shape == (100, 10) and np.all(np.isfinite(logits))
    # The printed accuracy is that of the saved (final) classifier.
    assert np.mean(np.argmax(logits, axis=1) == labels.numpy()) == pytest.approx(run["test_top1"])
    # The whole network was fine-tuned: the encoder's weights moved.
    original = keras.saving.load_model(saved_encoder, safe_mode=True)
    tuned = classifier.get_layer("resnet20")
    assert any(not np.allclose(a, b) for a, b in zip(original.get_weights(), tuned.get_weights()))


def test_a_data_dir_starting_with_a_tilde_is_the_home_directory(data_dir, monkeypatch):
    # A shell leaves the `~` of `--data_dir=~/tensorflow_datasets` alone.
    monkeypatch.setenv("HOME", os.path.dirname(data_dir))
    tilde = "~/" + os.path.basename(data_dir)
    data.ensure_prepared("cifar10", tilde, download=False)
    assert data.num_examples("cifar10", tilde, "test") == 256
    assert len(list(data.load_split("cifar10", tilde, "test").take(3))) == 3
