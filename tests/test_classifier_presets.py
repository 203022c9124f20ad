"""keras.applications conventions of `load_pretrained`: `weights=None` and
weights files, the shipped classifier heads with their class names, and
`decode_predictions`."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_directcopy as kdc
from keras_directcopy.data import offline as offline_data
from keras_directcopy.presets import zoo
from keras_directcopy.utils.files import sha256_file
from tests.test_zoo import images, tiny_model_folder

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPOSITORY.parent / "shared" / "data" / "cifar10"


def test_weights_none_is_random_initialization_as_weights_false():
    keras.utils.set_random_seed(3)
    none = kdc.load_pretrained("cifar10", weights=None)
    keras.utils.set_random_seed(3)
    false = kdc.load_pretrained("cifar10", weights=False)
    pretrained = kdc.load_pretrained("cifar10")
    assert none.get_config() == false.get_config()
    for a, b, c in zip(none.weights, false.weights, pretrained.weights):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(none.weights, pretrained.weights))
    # Random initialization needs no published weights.
    unpublished = next(p["name"] for p in kdc.list_pretrained() if not p["weights_available"])
    assert kdc.load_pretrained(unpublished, weights=None, input_shape=(32, 32, 3)).output_shape[0] is None


def test_weights_may_be_a_weights_file(tmp_path):
    pretrained = kdc.load_pretrained("cifar10")
    path = tmp_path / "mine.weights.h5"
    pretrained.save_weights(path)
    mine = kdc.load_pretrained("cifar10", weights=str(path))
    for a, b in zip(mine.weights, pretrained.weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="no such file"):
        kdc.load_pretrained("cifar10", weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match=r"the path of a Keras \.weights\.h5 file"):
        kdc.load_pretrained("cifar10", weights=str(tmp_path / "model.keras"))
    with pytest.raises(ValueError, match="does not fit this model"):
        kdc.load_pretrained("cifar100", weights=str(path), include_top=True, classifier_activation=None)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenette"])
def test_the_dataset_presets_ship_a_head_with_class_names_and_the_metrics_that_measured_it(name):
    preset = zoo.get_preset(name)
    assert preset["head"] and len(kdc.class_names(name)) == preset["num_classes"]
    # The head is the one whose accuracy the card reports.
    assert preset["metrics"]["linear_probe"]["head_sha256"] == preset["head"]["sha256"]
    assert sha256_file(zoo.resolve_file(preset, preset["head"])) == preset["head"]["sha256"]
    classifier = kdc.load_pretrained(name, include_top=True)
    scores = np.asarray(classifier(images(3, preset["input_shape"][0])))
    assert scores.shape == (3, preset["num_classes"])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)  # softmax, as keras.applications
    logits = kdc.load_pretrained(name, include_top=True, classifier_activation=None)
    np.testing.assert_allclose(keras.ops.softmax(logits(images(3, preset["input_shape"][0]))), scores,
                               rtol=1e-4, atol=1e-6)


def test_include_top_on_the_test_split_reproduces_the_cards_linear_probe(tmp_path):
    """The CIFAR-10 classifier on the 10,000 test images: the card's
    linear-probe top-1 within 0.3 points."""
    import tensorflow_datasets as tfds

    offline_data.prepare_cifar10(str(SHARED_CIFAR10), str(tmp_path))
    test = tfds.load("cifar10", split="test", data_dir=str(tmp_path), as_supervised=True, download=False)
    images_, labels = next(iter(tfds.as_numpy(test.batch(10_000).take(1))))
    classifier = kdc.load_pretrained("cifar10", include_top=True)
    predictions = classifier.predict(images_, batch_size=500, verbose=0)
    accuracy = float(np.mean(predictions.argmax(axis=1) == labels))
    card = zoo.get_preset("cifar10")["metrics"]["linear_probe"]["top1"]
    assert abs(accuracy - card) <= 0.003, (accuracy, card)
    decoded = kdc.decode_predictions(predictions[:2], "cifar10", top=3)
    assert len(decoded) == 2 and [len(d) for d in decoded] == [3, 3]
    names = kdc.class_names("cifar10")
    for row, scores in zip(decoded, predictions[:2]):
        assert [index for index, _, _ in row] == list(np.argsort(-scores)[:3])
        assert all(names[index] == name for index, name, _ in row)
        assert row[0][2] == pytest.approx(float(scores.max()))


def test_decode_predictions_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(N, 10\)"):
        kdc.decode_predictions(np.zeros((2, 100)), "cifar10")
    with pytest.raises(ValueError, match="top must be"):
        kdc.decode_predictions(np.zeros((2, 10)), "cifar10", top=11)
    folder = tmp_path / "model"
    tiny_model_folder(folder)
    with pytest.raises(ValueError, match="records no class names"):
        kdc.class_names(str(folder))
    config = json.loads((folder / "config.json").read_text())
    config["class_names"] = ["a", "b"]  # 10 classes
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="class_names"):
        kdc.class_names(str(folder))


def test_random_classifier_with_weights_none_needs_no_head_file():
    keras.utils.set_random_seed(0)
    classifier = kdc.load_pretrained("cifar10", include_top=True, weights=None)
    assert classifier.output_shape == (None, 10)
