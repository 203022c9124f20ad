"""Fine-tuning (keras_directcopy.evaluation.finetune, scripts/finetune.py) on
a small labelled folder of PNG images: a frozen fine-tune learns as the
linear probe does, class-balanced label and validation subsets, the split
evaluated after every epoch and its label, resuming after kill -9, mirrored
replicas, no model-card warning on the user's own folder; and the progress
scripts/evaluate.py reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_directcopy.data import datasets as data
from keras_directcopy.evaluation.evaluate import evaluate_encoder
from keras_directcopy.evaluation.finetune import (
    FinetuneConfig,
    class_balanced_indices,
    finetune,
    select_training_images,
)
from keras_directcopy.models.fused_batchnorm import nested_layers
from keras_directcopy.presets import zoo
from tests.helpers import IMAGE_SIZE, kill_when_written, tiny_encoder
# A registry holding `tiny_imagenette`, a preset trained on Imagenette.
from tests.test_known_folders import bundled_registry

REPO_ROOT = Path(__file__).resolve().parents[1]
# Mean RGB colour of each class; the images are noisy copies of it.
CLASS_COLOURS = np.array([[40, 40, 200], [200, 40, 40], [40, 200, 40], [200, 200, 40]], np.float32)


def write_colour_folder(root, train_per_class, val_per_class, noise=40, seed=0):
    """`root/train/class<i>/` and `root/val/class<i>/` of noisy single-colour
    8 x 8 PNGs, one colour per class; `*_per_class` are sequences of counts."""
    rng = np.random.default_rng(seed)
    for split, counts in (("train", train_per_class), ("val", val_per_class)):
        for label, count in enumerate(counts):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = CLASS_COLOURS[label] + rng.normal(0, noise, (IMAGE_SIZE, IMAGE_SIZE, 3))
                png = tf.io.encode_png(np.clip(pixels, 0, 255).astype(np.uint8)).numpy()
                (folder / f"{index}.png").write_bytes(png)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """4 classes of 48 training and 16 test images."""
    return write_colour_folder(tmp_path_factory.mktemp("colours"), [48] * 4, [16] * 4)


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    """4 classes of 8 training and 4 test images, for the script runs."""
    return write_colour_folder(tmp_path_factory.mktemp("small"), [8] * 4, [4] * 4, seed=1)


@pytest.fixture(scope="module")
def saved_encoder(tmp_path_factory):
    """tests.helpers.tiny_encoder saved as .keras: 8 x 8 images to 6 features
    whose per-dimension standard deviation on these images is about 0.1,
    small as a pretrained encoder's can be."""
    path = tmp_path_factory.mktemp("encoder") / "encoder.keras"
    tiny_encoder(seed=0).save(path)
    return path


def run_finetune(*flags, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "finetune.py"), *flags], capture_output=True,
        text=True, timeout=timeout, cwd=REPO_ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})},
    )


# -- Which images ------------------------------------------------------------------


def test_class_balanced_indices_take_the_fraction_of_every_class():
    labels = np.repeat([0, 1, 2], [40, 20, 3])
    chosen = class_balanced_indices(labels, 0.1, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [4, 2, 1]  # at least one of each class
    assert np.all(np.diff(chosen) > 0)
    assert np.array_equal(chosen, class_balanced_indices(labels, 0.1, seed=0))
    assert not np.array_equal(class_balanced_indices(labels, 0.5, seed=0), class_balanced_indices(labels, 0.5, seed=1))
    # A held-out split leaves every class something to train on.
    assert np.bincount(labels[class_balanced_indices(labels, 0.9, 0, keep_one_out=True)]).tolist() == [36, 18, 2]
    with pytest.raises(ValueError, match="Class 1 has a single training image.*leave out --validation_split"):
        class_balanced_indices(np.array([0, 0, 1]), 0.5, 0, keep_one_out=True)


def test_held_out_and_trained_images_are_disjoint_class_balanced_subsets():
    labels = np.repeat([0, 1, 2, 3], [40, 40, 20, 20])
    train, validation = select_training_images(labels, validation_split=0.25, labels_fraction=0.2, seed=3)
    assert np.bincount(labels[validation]).tolist() == [10, 10, 5, 5]
    # A fifth of each class's remaining 30, 30, 15, 15 images.
    assert np.bincount(labels[train]).tolist() == [6, 6, 3, 3]
    assert not set(train) & set(validation)
    everything, none = select_training_images(labels)
    assert np.array_equal(everything, np.arange(120)) and none is None


# -- The recipe -----------------------------------------------------------------------


def test_a_frozen_finetune_learns_at_least_as_well_as_the_linear_probe(folder, saved_encoder, tmp_path):
    """The same encoder, data, epochs and batch size: the defaults of a
    frozen fine-tune must suit an encoder whose features are small (SGD at
    0.05 on the raw features of this one stays near chance)."""
    epochs, batch_size = 3, 32
    encoder = keras.saving.load_model(saved_encoder)
    probe = evaluate_encoder(encoder, f"folder:{folder}", None, knn_k=20, linear_epochs=epochs,
                             batch_size=batch_size)["linear_probe"]
    results = finetune(
        keras.saving.load_model(saved_encoder), f"folder:{folder}", None, str(tmp_path),
        FinetuneConfig(epochs=epochs, batch_size=batch_size, freeze_encoder=True), verbose=0,
    )
    assert results["test_top1"] >= probe["top1"], (
        f"frozen fine-tune {100 * results['test_top1']:.2f}% < linear probe {100 * probe['top1']:.2f}% "
        f"after {epochs} epochs on the same images"
    )
    # The linear probe's optimizer, weight decay and features, recorded; a larger step, decayed.
    assert (results["optimizer"], results["weight_decay"], results["feature_normalization"]) == (
        probe["optimizer"], probe["weight_decay"], probe["feature_normalization"])
    assert (results["learning_rate"], results["lr_schedule"]) == (pytest.approx(10 * probe["learning_rate"]), "cosine")


def test_each_mode_takes_its_documented_defaults():
    frozen = FinetuneConfig(freeze_encoder=True).resolved()
    assert (frozen.optimizer, frozen.lr, frozen.lr_schedule, frozen.weight_decay) == (
        "adam", pytest.approx(3e-3), "cosine", 1e-3)
    full = FinetuneConfig().resolved()
    assert (full.optimizer, full.lr, full.lr_schedule, full.weight_decay) == ("sgd", 0.05, "cosine", 0.0)
    assert full.batchnorm_momentum == 0.9
    # Given values win; SGD chosen by hand for a frozen encoder brings no decay.
    mine = FinetuneConfig(freeze_encoder=True, optimizer="sgd", lr=0.1).resolved()
    assert (mine.optimizer, mine.lr, mine.weight_decay) == ("sgd", 0.1, 0.0)
    for bad, message in (({"labels_fraction": 0.0}, "labels_fraction must be in"),
                         ({"validation_split": 1.0}, "validation_split must be in"),
                         ({"optimizer": "rmsprop"}, "optimizer must be one of adam, sgd")):
        with pytest.raises(ValueError, match=message):
            FinetuneConfig(**bad)


def test_every_epoch_is_evaluated_on_the_held_out_split_or_the_test_split_labelled_so(
        small_folder, saved_encoder, tmp_path):
    base = {"epochs": 2, "batch_size": 8, "freeze_encoder": True}
    on_test = finetune(keras.saving.load_model(saved_encoder), f"folder:{small_folder}", None,
                       str(tmp_path / "test"), FinetuneConfig(**base), verbose=0)
    assert on_test["epoch_evaluation"]["split"] == "test"
    assert on_test["epoch_evaluation"]["label"].startswith("test split (val;")
    assert [record["epoch"] for record in on_test["history"]] == [1, 2]
    assert all("test_accuracy" in record and "val_accuracy" not in record for record in on_test["history"])
    assert on_test["history"][-1]["test_accuracy"] == pytest.approx(on_test["test_top1"])
    assert (tmp_path / "test" / "history.jsonl").read_text().count("\n") == 2
    assert list((tmp_path / "test" / "tensorboard").rglob("events.out.tfevents.*"))

    held_out = finetune(keras.saving.load_model(saved_encoder), f"folder:{small_folder}", None,
                        str(tmp_path / "validation"), FinetuneConfig(**base, validation_split=0.25), verbose=0)
    evaluated = held_out["epoch_evaluation"]
    assert evaluated["split"] == "validation" and evaluated["label"].startswith("held-out validation split")
    assert held_out["examples_per_class"] == {"train": [6] * 4, "validation": [2] * 4}
    assert held_out["train_examples"] == 24 and held_out["validation_examples"] == 8
    assert all("val_accuracy" in record and "test_accuracy" not in record for record in held_out["history"])
    # The final epoch's validation accuracy is the saved classifier's on the held-out images.
    _, validation = select_training_images(data.split_labels(f"folder:{small_folder}", None, "train"), 0.25)
    images = data.evaluation_dataset(f"folder:{small_folder}", None, "train", 64, indices=validation)
    classifier = keras.saving.load_model(tmp_path / "validation" / "classifier.keras", safe_mode=True)
    correct = [np.argmax(classifier.predict(x, verbose=0), axis=1) == y.numpy() for x, y in images]
    assert np.mean(np.concatenate(correct)) == pytest.approx(held_out["history"][-1]["val_accuracy"])


def test_a_full_finetune_sets_the_momentum_of_the_encoders_batchnorm_statistics(folder, tmp_path):
    """Keras' 0.99 would leave the test-time statistics of a short fine-tune
    describing the encoder before it; the encoder's BatchNorm layers, nested
    ones included, get `batchnorm_momentum`, and a frozen encoder's keep theirs."""
    encoder = tiny_encoder(seed=0, batch_norm=True)
    batchnorms = [layer for layer in nested_layers(encoder) if isinstance(layer, keras.layers.BatchNormalization)]
    assert batchnorms and {layer.momentum for layer in batchnorms} == {0.99}
    finetune(encoder, f"folder:{folder}", None, str(tmp_path / "full"),
             FinetuneConfig(epochs=1, batch_size=32, batchnorm_momentum=0.8), verbose=0)
    classifier = keras.saving.load_model(tmp_path / "full" / "classifier.keras", safe_mode=True)
    saved = [layer.momentum for layer in nested_layers(classifier) if isinstance(layer, keras.layers.BatchNormalization)]
    assert saved == [0.8] * len(batchnorms)

    frozen = tiny_encoder(seed=0, batch_norm=True)
    finetune(frozen, f"folder:{folder}", None, str(tmp_path / "frozen"),
             FinetuneConfig(epochs=1, batch_size=32, freeze_encoder=True, batchnorm_momentum=0.8), verbose=0)
    assert {layer.momentum for layer in nested_layers(frozen)
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.99}
    with pytest.raises(ValueError, match=r"batchnorm_momentum must be in \[0, 1\)"):
        FinetuneConfig(batchnorm_momentum=1.0)


def test_labels_fraction_trains_on_a_class_balanced_subset(folder, saved_encoder, tmp_path):
    results = finetune(keras.saving.load_model(saved_encoder), f"folder:{folder}", None, str(tmp_path),
                       FinetuneConfig(epochs=1, batch_size=8, freeze_encoder=True, labels_fraction=0.25),
                       verbose=0)
    assert results["examples_per_class"] == {"train": [12] * 4}
    assert results["train_examples"] == 48 and results["labels_fraction"] == 0.25
    assert results["steps"] == 6


def test_split_labels_and_indices_select_examples_of_a_tfds_split(tmp_path):
    from keras_directcopy.data import offline as offline_data

    offline_data.prepare_cifar10(str(REPO_ROOT.parent / "shared" / "data" / "cifar10"), str(tmp_path),
                                 max_examples_per_split=64)
    labels = data.split_labels("cifar10", str(tmp_path), "train")
    everything = list(data.load_split("cifar10", str(tmp_path), "train"))
    assert labels.tolist() == [int(label) for _, label in everything]
    chosen = [3, 10, 63]
    selected = list(data.load_split("cifar10", str(tmp_path), "train", indices=chosen))
    assert [int(label) for _, label in selected] == labels[chosen].tolist()
    for (image, _), index in zip(selected, chosen):
        assert np.array_equal(image.numpy(), everything[index][0].numpy())


# -- scripts/finetune.py --------------------------------------------------------------


@pytest.mark.slow
def test_finetune_script_on_a_folder_with_mirrored_replicas_and_no_card_warning(small_folder, tmp_path):
    """A preset trained on Imagenette, fine-tuned on a folder that is not
    Imagenette: the user's own data, so no warning about the model card."""
    env = {zoo.REGISTRY_ENV: str(bundled_registry(tmp_path / "registry"))}
    output_dir = tmp_path / "run"
    result = run_finetune(
        "--preset=tiny_imagenette", f"--dataset=folder:{small_folder}", f"--output_dir={output_dir}",
        "--freeze_encoder", "--epochs=2", "--batch_size=8", "--validation_split=0.25",
        "--labels_fraction=0.5", "--strategy=mirrored", "--logical_cpus=2", env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning:" not in result.stderr and "not comparable" not in result.stderr, result.stderr[-3000:]
    # The default progress in a log: a line per epoch, with the held-out accuracy.
    assert "Epoch 2/2" in result.stdout and " - val_accuracy: " in result.stdout
    assert "Top-1 accuracy after each epoch on the held-out validation split (8 training images" in result.stdout
    assert "Final-epoch test top-1 accuracy on folder:" in result.stdout
    run = json.loads((output_dir / "finetune.json").read_text())
    assert run["num_replicas"] == 2 and run["preset"] == "tiny_imagenette"
    assert run["examples_per_class"] == {"train": [3] * 4, "validation": [2] * 4}
    assert run["labels_fraction"] == 0.5 and run["validation_split"] == 0.25
    assert list((output_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert not list(output_dir.rglob(".partial*"))
    classifier = keras.saving.load_model(output_dir / "classifier.keras", safe_mode=True)
    assert classifier.output_shape == (None, 4)


@pytest.mark.slow
def test_finetune_script_resumes_after_kill_minus_nine_and_does_not_retrain_a_finished_run(
        small_folder, saved_encoder, tmp_path):
    epochs = 40
    flags = [f"--encoder={saved_encoder}", f"--dataset=folder:{small_folder}", f"--output_dir={tmp_path}",
             f"--epochs={epochs}", "--batch_size=8", "--freeze_encoder", "--verbose=2"]
    metadata = tmp_path / "backup" / "training_metadata.json"
    kill_when_written([sys.executable, str(REPO_ROOT / "scripts" / "finetune.py"), *flags], metadata, REPO_ROOT)
    assert metadata.exists(), "no backup was written before the kill"
    assert not (tmp_path / "finetune.json").exists(), "the first run finished before it was killed"

    resumed = run_finetune(*flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = int(resumed.stdout.split(f"Resuming from the backup in {tmp_path / 'backup'} after epoch ")[1].split()[0])
    assert 1 <= after < epochs
    assert f"Epoch {after + 1}/{epochs}" in resumed.stdout and f"Epoch {after}/{epochs}\n" not in resumed.stdout
    run = json.loads((tmp_path / "finetune.json").read_text())
    # Every epoch recorded once, those before the kill included.
    assert [record["epoch"] for record in run["history"]] == list(range(1, epochs + 1))
    classifier = (tmp_path / "classifier.keras").read_bytes()

    again = run_finetune(*flags)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"holds all {epochs} epochs: nothing to train" in again.stdout
    assert "Epoch " not in again.stdout
    rerun = json.loads((tmp_path / "finetune.json").read_text())
    assert rerun["history"] == run["history"] and rerun["test_top1"] == run["test_top1"]
    weights = [keras.saving.load_model(tmp_path / "classifier.keras").get_weights()]
    (tmp_path / "before.keras").write_bytes(classifier)
    weights.append(keras.saving.load_model(tmp_path / "before.keras").get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights))

    changed = run_finetune(*flags[:-1], "--epochs=41", "--verbose=2")
    assert changed.returncode == 1
    assert "was written by another recipe (epochs 40 there, 41 now)" in changed.stderr


# -- Progress of scripts/evaluate.py --------------------------------------------------------


def test_evaluation_reports_its_progress_unless_silent(folder, saved_encoder, capsys):
    encoder = keras.saving.load_model(saved_encoder)
    evaluate_encoder(encoder, f"folder:{folder}", None, knn_k=20, linear_epochs=2, batch_size=32, verbose=2)
    out = capsys.readouterr().out
    assert "Encoding the train split (192 images)..." in out and "Encoding the val split (64 images)..." in out
    assert "  the train split: 96/192 images encoded" in out and "  the train split: 192/192 images encoded" in out
    assert "Linear probe: 2 epochs on the features of 192 training images." in out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out

    evaluate_encoder(encoder, f"folder:{folder}", None, knn_k=20, linear_epochs=2, batch_size=32, verbose=0)
    assert capsys.readouterr().out == ""
