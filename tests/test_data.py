"""Input pipelines on tfds mock data and on image folders; kNN evaluation."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_directcopy.data import datasets as data
from keras_directcopy.data.augment import TwoViewAugmenter, get_preset
from keras_directcopy.evaluation.knn import knn_predict


@pytest.mark.parametrize(
    "dataset, size", [("cifar10", 32), ("stl10", 96), ("imagenet2012", 224)]
)
def test_two_view_pipeline_on_mock_tfds(dataset, size):
    augmenter = TwoViewAugmenter(get_preset(dataset))
    with tfds.testing.mock_data(num_examples=8):
        batches = data.pretrain_dataset(dataset, None, 4, augmenter, seed=0, shuffle_buffer=8)
        batch = next(iter(batches))
    assert batch.dtype == tf.uint8
    assert batch.shape == (4, 2, size, size, 3)
    views = batch.numpy().astype(np.int32)
    assert all(np.any(views[i, 0] != views[i, 1]) for i in range(4)), "the two views must differ"
    assert not np.array_equal(views[0, 0], views[1, 0])


class CountingAugmenter(TwoViewAugmenter):
    """Records which path the pipeline traced: one image or a whole batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.paths = []

    def __call__(self, image, seed=None):
        self.paths.append("image")
        return super().__call__(image, seed)

    def augment_batch(self, images, seed=None):
        self.paths.append("batch")
        return super().augment_batch(images, seed)


@pytest.mark.parametrize(
    "dataset, batched_augmentation, path",
    [
        ("cifar10", None, "batch"),  # 32 px: by the batch by default
        ("cifar10", False, "image"),
        ("stl10", None, "image"),  # 96 px: per image by default, where it is faster
        ("stl10", True, "batch"),
    ],
)
def test_pipeline_augments_by_the_batch_where_it_pays(dataset, batched_augmentation, path):
    augmenter = CountingAugmenter(get_preset(dataset), seed=0)
    with tfds.testing.mock_data(num_examples=8):
        batches = data.pretrain_dataset(
            dataset, None, 4, augmenter, seed=0, shuffle_buffer=8,
            batched_augmentation=batched_augmentation,
        )
        batch = next(iter(batches))
    assert augmenter.paths == [path]
    size = get_preset(dataset).image_size
    assert batch.dtype == tf.uint8 and batch.shape == (4, 2, size, size, 3)
    views = batch.numpy().astype(np.int32)
    assert all(np.any(views[i, 0] != views[i, 1]) for i in range(4))


def test_batched_augmentation_of_an_image_folder_is_refused(tmp_path):
    write_images(tmp_path / "a", 4, ".png")
    augmenter = TwoViewAugmenter(get_preset("folder", image_size=16), seed=0)
    with pytest.raises(ValueError, match="one static size.*batched_augmentation=None"):
        data.pretrain_dataset(f"folder:{tmp_path}", None, 2, augmenter, batched_augmentation=True)
    batch = next(iter(data.pretrain_dataset(f"folder:{tmp_path}", None, 2, augmenter)))
    assert batch.shape == (2, 2, 16, 16, 3)


@pytest.mark.parametrize("dataset, size, split", [("cifar10", 32, "test"), ("imagenet2012", 224, "test")])
def test_evaluation_pipeline_has_labels_and_no_augmentation(dataset, size, split):
    with tfds.testing.mock_data(num_examples=5):
        images, labels = next(iter(data.evaluation_dataset(dataset, None, split, batch_size=5)))
        again, _ = next(iter(data.evaluation_dataset(dataset, None, split, batch_size=5)))
    assert images.shape == (5, size, size, 3) and images.dtype == tf.uint8
    assert labels.dtype == tf.int64 and labels.shape == (5,)
    assert np.all((labels.numpy() >= 0) & (labels.numpy() < data.get_dataset_spec(dataset).num_classes))
    np.testing.assert_array_equal(images, again)  # deterministic: no augmentation


def test_stl10_pretrains_on_train_plus_unlabelled():
    spec = data.get_dataset_spec("stl10")
    assert spec.pretrain_split == "train+unlabelled"
    assert (spec.train_split, spec.test_split, spec.image_size) == ("train", "test", 96)
    with tfds.testing.mock_data(num_examples=3):
        images = [image for image, _ in data.load_split("stl10", None, spec.pretrain_split)]
    assert images and all(image.shape == (96, 96, 3) for image in images)


def test_center_crop():
    image = tf.cast(tf.reshape(tf.range(40 * 60 * 3) % 256, (40, 60, 3)), tf.uint8)
    assert data.center_crop(image, 32).shape == (32, 32, 3)
    same = tf.cast(tf.random.uniform((32, 32, 3), 0, 256, tf.int32), tf.uint8)
    np.testing.assert_array_equal(data.center_crop(same, 32), same)


def write_images(folder, count, extension):
    folder.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_png if extension == ".png" else tf.io.encode_jpeg
    for index in range(count):
        pixels = tf.cast(tf.fill((20 + index, 24, 3), 10 * index), tf.uint8)
        (folder / f"image{index}{extension}").write_bytes(encode(pixels).numpy())


def test_image_folder_source(tmp_path, capsys):
    write_images(tmp_path / "a", 3, ".png")
    write_images(tmp_path / "b" / "deeper", 2, ".JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    spec = data.get_dataset_spec(f"folder:{tmp_path}", image_size=16)
    assert spec.folder == str(tmp_path) and not spec.labelled and spec.image_size == 16
    examples = list(data.load_split(f"folder:{tmp_path}", None, "all"))
    assert "Found 5 images" in capsys.readouterr().out
    assert len(examples) == 5
    assert {tuple(image.shape) for image, _ in examples} == {(20 + i, 24, 3) for i in range(3)} | {
        (20, 24, 3), (21, 24, 3)
    }
    assert all(int(label) == -1 for _, label in examples)
    augmenter = TwoViewAugmenter(get_preset("folder", image_size=16))
    batch = next(iter(data.pretrain_dataset(f"folder:{tmp_path}", None, 5, augmenter)))
    assert batch.shape == (5, 2, 16, 16, 3)
    assert data.num_examples(f"folder:{tmp_path}", None, "all") == 5
    # Without --image_size, the size follows the data: the median shorter
    # side of 20, 21, 22 (png) and 20, 21 (jpg) px.
    assert data.get_dataset_spec(f"folder:{tmp_path}").image_size == 21
    # An unlabelled folder is one split, whatever its name; a slice takes part of it.
    assert data.num_examples(f"folder:{tmp_path}", None, "train[:3]") == 3


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_split(f"folder:{tmp_path / 'missing'}", None, "all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="Found no images"):
        data.load_split(f"folder:{tmp_path / 'empty'}", None, "all")
    write_images(tmp_path / "mixed", 2, ".png")
    bad = tmp_path / "mixed" / "broken.jpg"
    bad.write_text("this is text")
    with pytest.raises(ValueError, match=r"broken\.jpg.*not a JPEG or PNG"):
        data.load_split(f"folder:{tmp_path / 'mixed'}", None, "all")
    with pytest.raises(ValueError, match="no labels"):
        data.evaluation_dataset(f"folder:{tmp_path}", None, "test", 4)


def test_missing_dataset_offline_names_prepare_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not prepared.*scripts/prepare_data\.py"):
        data.load_split("cifar10", str(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match=r"prepare_data\.py"):
        data.num_examples("cifar100", str(tmp_path), "train")


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Valid datasets: cifar10, cifar100, stl10, imagenet2012, folder:PATH"):
        data.get_dataset_spec("cifar-10")


def reference_knn(train, train_labels, test, num_classes, k, temperature):
    predictions = []
    for query in test:
        similarity = train @ query
        nearest = np.argsort(-similarity, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for index in nearest:
            votes[train_labels[index]] += np.exp(similarity[index] / temperature)
        predictions.append(np.argmax(votes))
    return np.array(predictions)


def test_weighted_knn_matches_reference():
    rng = np.random.default_rng(0)
    normalize = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    train, test = normalize(rng.normal(size=(300, 16))), normalize(rng.normal(size=(50, 16)))
    labels = rng.integers(0, 5, 300)
    for k, temperature in [(200, 0.1), (7, 0.5), (1, 0.1)]:
        np.testing.assert_array_equal(
            knn_predict(train, labels, test, 5, k=k, temperature=temperature, chunk_size=16),
            reference_knn(train, labels, test, 5, k, temperature),
        )
    # Well-separated classes are recovered exactly.
    centers = normalize(rng.normal(size=(3, 16)) * 10)
    bank = normalize(np.repeat(centers, 20, axis=0) + 0.01 * rng.normal(size=(60, 16)))
    np.testing.assert_array_equal(knn_predict(bank, np.repeat(np.arange(3), 20), centers, 3, k=10), [0, 1, 2])
