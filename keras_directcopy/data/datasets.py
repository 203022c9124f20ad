"""Input pipelines: tfds datasets and image folders, two-view and evaluation.

Datasets are named as on the command line:

* `cifar10`, `cifar100`: pretrain on `train`, evaluate on `train` / `test`.
  `cifar100:coarse_label` is CIFAR-100 labelled by its 20 superclasses (the
  tfds `coarse_label` feature) instead of its 100 classes.
* `stl10`: pretrain on `train+unlabelled`, evaluate on `train` / `test`.
* `imagenet2012`: pretrain on `train`, evaluate on `train` / `validation`;
  tfds prepares it from the official tars in `<data_dir>/downloads/manual`.
* `folder:/path/to/images`, labelled: a folder holding `train/<class>/` and
  `val/<class>/` (or `test/<class>/`), the ImageNet / Imagenette layout.
  Classes are the sorted subfolder names of `train/`; pretraining reads
  `train` (labels ignored), evaluation `train` / `val` (or `test`, when there
  is no `val/`). A class folder may hold subfolders.
* `folder:/path/to/images`, unlabelled: any other folder; every image below
  it, recursively, is the single split `all` (pretraining only).
* A labelled folder with the class folders and image counts of a known
  folder dataset (`known_folders`: `imagenette`, fast.ai's imagenette2) is
  identified as it (`identify_folder`), and records name it
  (`identify_dataset`, which lists the folder once). The name alone,
  `imagenette`, is refused: it is read from a folder, `folder:ROOT`.

Folder images are the files ending in `.jpg`, `.jpeg` or `.png`, in any case;
grayscale and RGBA images are read as RGB. Every file's leading bytes are
checked when the folder is listed, and folders of at most
`FULL_CHECK_MAX_IMAGES` images are also decoded once, so that a bad file
fails by name before training. Folder datasets train by default at the
median shorter side of their images, capped at `MAX_DEFAULT_IMAGE_SIZE`
(see `measure_image_size`).

The pipelines read tfds datasets without downloading (`download=False`).
`ensure_prepared`, which the scripts call first, downloads a missing dataset
through tfds, as `tfds.load(download=True)` would, unless told not to
(`--nodownload`); without network, prepare it with `scripts/prepare_data.py`
from local files. Images come out as uint8 `(H, W, 3)`; the encoders
normalize them.
"""

import dataclasses
import hashlib
import json
import os
import re
import socket
import urllib.parse

import numpy as np
import tensorflow as tf
from absl import logging

from keras_directcopy.catalog import FOLDER_PREFIX, OTHER_LABELS
from keras_directcopy.data import batch_augment, known_folders

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Leading bytes of the image formats the folder source reads.
_MAGIC_BYTES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
# Subfolders that make a folder labelled; the first evaluation split present wins.
TRAIN_FOLDER = "train"
EVALUATION_FOLDERS = ("val", "test")
UNLABELLED_SPLIT = "all"
# Folders of at most this many images are fully decoded once, in parallel, when
# listed (Imagenette: about 13,000); larger ones (ImageNet) only have their
# leading bytes checked, since decoding them all costs an epoch.
FULL_CHECK_MAX_IMAGES = 20_000
# Images whose shorter side is measured for the default folder image size.
SIZE_SAMPLE = 256
# The default folder size never exceeds the ImageNet recipes' 224 px: larger
# photos are cropped and resized down to it, as ImageNet's are.
MAX_DEFAULT_IMAGE_SIZE = 224
MIN_DEFAULT_IMAGE_SIZE = 8  # configs.MIN_IMAGE_SIZE, the smallest --image_size
# Datasets of images up to this side are cached decoded in memory by the
# training pipelines (CIFAR's 50,000 images: 150 MB).
CACHE_MAX_IMAGE_SIZE = 64
# Fine-tuning's random crop pads the image by this fraction of its side
# (4 px at 32 px), and its shuffle buffer holds this many images.
PAD_FRACTION = 1 / 8
SUPERVISED_SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Splits and sizes of a named dataset.

    Attributes:
        name: tfds name, or `"folder"`.
        pretrain_split: split (tfds split expression) used for pretraining.
        train_split, test_split: labelled splits for kNN / linear evaluation,
            or None where there are no labels.
        num_classes: number of classes (0 if unlabelled).
        image_size: side of the square images the recipes train at.
        folder: the image folder, for `folder:` datasets.
        label_key: the tfds feature used as the label.
        class_names: the class names of a labelled `folder:` dataset.
    """

    name: str
    pretrain_split: str
    train_split: str | None
    test_split: str | None
    num_classes: int
    image_size: int
    folder: str | None = None
    label_key: str = "label"
    class_names: tuple = ()

    @property
    def labelled(self):
        return self.train_split is not None

    @property
    def dataset_name(self):
        """The dataset name this spec is resolved from, as `get_dataset_spec`
        takes it (a folder's path with `~` expanded); for messages."""
        if self.folder is not None:
            return FOLDER_PREFIX + self.folder
        return self.name if self.label_key == "label" else f"{self.name}:{self.label_key}"


TFDS_DATASETS = {
    "cifar10": DatasetSpec("cifar10", "train", "train", "test", 10, 32),
    "cifar100": DatasetSpec("cifar100", "train", "train", "test", 100, 32),
    "stl10": DatasetSpec("stl10", "train+unlabelled", "train", "test", 10, 96),
    "imagenet2012": DatasetSpec("imagenet2012", "train", "train", "validation", 1000, 224),
}
DATASET_NAMES = tuple(TFDS_DATASETS) + (FOLDER_PREFIX + "PATH",)


def get_dataset_spec(dataset, image_size=None):
    """The `DatasetSpec` of a dataset name (see the module docstring).

    The pipelines below take a name or a spec: an entry point resolves the
    name once, here, and passes the spec down, so a folder is listed (and
    its image size measured) once.

    Args:
        dataset: a name of `TFDS_DATASETS`, `NAME:LABEL_KEY` of
            `OTHER_LABELS` (e.g. `cifar100:coarse_label`), or `folder:/path`.
        image_size: training size for `folder:` datasets; None measures it
            from the images (`measure_image_size`).

    Raises:
        ValueError: on an unknown name, listing the valid ones; on the name of
            a known folder dataset (`imagenette`), which is read from
            `folder:ROOT` (the message says where to get it); or on a
            labelled folder whose classes are inconsistent (see
            `folder_classes`).
        FileNotFoundError: on a missing folder, or one without images.
    """
    if known_folders.is_known_folder(dataset):
        # What is recorded as a known dataset is decided by the folder's
        # content, so the name alone names no images to read.
        raise ValueError(known_folders.folder_required_message(dataset))
    if dataset.startswith(FOLDER_PREFIX):
        folder = os.path.expanduser(dataset[len(FOLDER_PREFIX):])
        if not folder:
            raise ValueError("Give the image folder after 'folder:', e.g. folder:/data/images.")
        return _folder_spec(folder, image_size)
    name, _, label_key = dataset.partition(":")
    if label_key in OTHER_LABELS.get(name, {}):
        num_classes = OTHER_LABELS[name][label_key]
        return dataclasses.replace(
            TFDS_DATASETS[name], label_key=label_key, num_classes=num_classes
        )
    if dataset not in TFDS_DATASETS:
        other = ", ".join(f"{base}:{key}" for base, keys in OTHER_LABELS.items() for key in keys)
        raise ValueError(
            f"Unknown dataset {dataset!r}. Valid datasets: {', '.join(DATASET_NAMES)} "
            f"(and, with another label feature, {other})."
        )
    return TFDS_DATASETS[dataset]


def _folder_spec(folder, image_size):
    """The spec of `folder:FOLDER`, labelled if it has a `train/` subfolder."""
    _check_folder_exists(folder)
    if not os.path.isdir(os.path.join(folder, TRAIN_FOLDER)):
        size = image_size or measure_image_size(find_images(folder))
        return DatasetSpec("folder", UNLABELLED_SPLIT, None, None, 0, size, folder=folder)
    class_names, test_split = folder_classes(folder)
    if image_size is None:
        image_size = _measure_train_size(folder, class_names, test_split)
    return DatasetSpec(
        "folder", TRAIN_FOLDER,
        # Without val/ or test/ the folder can be pretrained on, not evaluated.
        TRAIN_FOLDER if test_split else None, test_split,
        len(class_names), image_size, folder=folder, class_names=class_names,
    )


def _measure_train_size(folder, class_names, test_split):
    """The default image size of a labelled folder: that of its `train/` images."""
    return measure_image_size(_list_split(folder, TRAIN_FOLDER, class_names, test_split)[0])


def _read_spec(dataset):
    """The spec to read `dataset` with: a `DatasetSpec` as it is, a name
    resolved once. Reading needs no image size, so a folder named is not
    measured (its spec has `MAX_DEFAULT_IMAGE_SIZE`)."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    return get_dataset_spec(dataset, image_size=MAX_DEFAULT_IMAGE_SIZE)


def _name_of(dataset):
    """`dataset`, a name or a `DatasetSpec`, as messages name it: a name as given."""
    return dataset.dataset_name if isinstance(dataset, DatasetSpec) else dataset


def folder_classes(folder):
    """Class names and evaluation split of a labelled image folder.

    Args:
        folder: a folder with a `train/` subfolder.

    Returns:
        `(class_names, test_split)`: the sorted subfolder names of `train/`,
        and `"val"`, `"test"` or None, the first evaluation folder present.

    Raises:
        FileNotFoundError: if `train/` has no class subfolders.
        ValueError: if the evaluation folder has a class that `train/` lacks.
    """
    train = os.path.join(folder, TRAIN_FOLDER)
    class_names = tuple(_subfolders(train))
    if not class_names:
        raise FileNotFoundError(
            f"{train!r} has no class subfolders. Put each class's images in "
            f"{os.path.join(train, '<class>')}/, or remove {train!r} to use the folder unlabelled."
        )
    test_split = next(
        (name for name in EVALUATION_FOLDERS if os.path.isdir(os.path.join(folder, name))), None
    )
    if test_split:
        unknown = sorted(set(_subfolders(os.path.join(folder, test_split))) - set(class_names))
        if unknown:
            raise ValueError(
                f"Class folder(s) {', '.join(repr(name) for name in unknown)} of "
                f"{os.path.join(folder, test_split)!r} are not in {train!r}, so they have no "
                "training images and no label. Add them to train/ or remove them from "
                f"{test_split}/."
            )
    return class_names, test_split


def count_folder_images(folder):
    """Image counts per split and class folder of a labelled image folder.

    Files are listed, not read or decoded, as `list_folder_split` lists them
    (`.jpg`, `.jpeg`, `.png` in any case, recursively), so this is cheap on
    any folder and fails on none.

    Args:
        folder: an image folder.

    Returns:
        `{split: {class folder: number of images}}` for `train/` and each
        evaluation folder (`val/`, `test/`) present; empty if there is no
        `train/`.
    """
    if not os.path.isdir(os.path.join(folder, TRAIN_FOLDER)):
        return {}
    counts = {}
    for split in (TRAIN_FOLDER,) + EVALUATION_FOLDERS:
        split_folder = os.path.join(folder, split)
        if os.path.isdir(split_folder):
            counts[split] = {
                name: len(_image_paths(os.path.join(split_folder, name)))
                for name in _subfolders(split_folder)
            }
    return counts


def identify_folder(folder):
    """The known folder dataset (`known_folders`) an image folder is, by content.

    Args:
        folder: an image folder (`~` is expanded).

    Returns:
        Its name (e.g. `"imagenette"`) if the folder has exactly that
        dataset's class folders and per-class image counts in each of its
        splits, else None.
    """
    return known_folders.identify(count_folder_images(os.path.expanduser(folder)))


@dataclasses.dataclass(frozen=True)
class DatasetIdentity:
    """What a dataset is recorded as, and what to print about it.

    Attributes:
        record: what a record (run.json, a metrics or fine-tuning JSON)
            stores: `{"dataset": name}` for tfds datasets; for folders
            `{"dataset": "imagenette" or "folder:/abs/path", "data_folder": "/abs/path"}`.
        description: for a folder identified as a known dataset, a line
            saying so; for one that shares class folders with a known dataset
            without being it, a line saying what differs (it is then recorded
            as `folder:PATH`); None for other folders and for tfds datasets.
        contents_sha256: for a folder, the sha256 of its class folders and
            per-class image counts in each split (`count_folder_images`),
            which stay the same when the folder moves; None for tfds datasets.
    """

    record: dict
    description: str | None
    contents_sha256: str | None = None


def identify_dataset(dataset):
    """What `dataset` is recorded as, and the line the scripts print about it.

    A folder is recorded by the name of the known dataset it is identified
    as (`known_folders`: exactly its class folders and per-class image
    counts), else as `folder:` and its absolute path, and in both cases its
    absolute path as `data_folder`. The folder's files are listed once.

    Args:
        dataset: a dataset name, see `get_dataset_spec`.

    Returns:
        A `DatasetIdentity`.
    """
    if not dataset.startswith(FOLDER_PREFIX):
        return DatasetIdentity({"dataset": dataset}, None)
    folder = folder_path(dataset)
    counts = count_folder_images(folder)
    contents_sha256 = hashlib.sha256(json.dumps(counts, sort_keys=True).encode()).hexdigest()
    name = known_folders.identify(counts)
    record = {"dataset": name or FOLDER_PREFIX + folder, "data_folder": folder}
    if name:
        return DatasetIdentity(record, (
            f"{folder} has the class folders and image counts of "
            f"{known_folders.get_known_folder(name).display_name}: recorded as dataset {name!r}."),
            contents_sha256)
    lines = [
        f"{folder} shares class folders with {known_folders.get_known_folder(known).display_name} but is "
        f"not it ({'; '.join(known_folders.differences(counts, known))}): recorded as "
        f"{FOLDER_PREFIX + folder!r}."
        for known in known_folders.related(counts)
    ]
    return DatasetIdentity(record, "\n".join(lines) or None, contents_sha256)


def dataset_record(dataset):
    """What a record (run.json, a metrics or fine-tuning JSON) stores for
    `dataset`: `identify_dataset(dataset).record`."""
    return identify_dataset(dataset).record


def folder_path(dataset):
    """The absolute path of the folder of a `folder:PATH` dataset name (`~` expanded)."""
    return os.path.abspath(os.path.expanduser(dataset[len(FOLDER_PREFIX):]))


def _subfolders(folder):
    return sorted(
        entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")
    )


def list_folder_split(folder, split):
    """Image paths and labels of one split of a labelled folder, checked.

    Args:
        folder: a labelled image folder (see `folder_classes`).
        split: `"train"`, or the folder's evaluation split (`"val"`/`"test"`).

    Returns:
        `(paths, labels)`: sorted by class, then path; labels index the
        sorted class names of `train/`.

    Raises:
        FileNotFoundError: if a class folder of the split has no images.
        ValueError: on an unknown split, a class missing from `train/`, or an
            unreadable image (see `check_images`).
    """
    return _list_split(folder, split, *folder_classes(folder))


def _list_split(folder, split, class_names, test_split):
    """`list_folder_split` with the folder's `folder_classes` already read."""
    valid = (TRAIN_FOLDER,) + ((test_split,) if test_split else ())
    if split not in valid:
        raise ValueError(
            f"Image folder {folder!r} has the splits {', '.join(valid)}, not {split!r}"
            + ("" if test_split else f"; add a {' or '.join(EVALUATION_FOLDERS)}/ folder to evaluate")
            + "."
        )
    paths, labels = [], []
    split_folder = os.path.join(folder, split)
    for label, name in enumerate(class_names):
        class_folder = os.path.join(split_folder, name)
        if split != TRAIN_FOLDER and not os.path.isdir(class_folder):
            continue  # an evaluation split may lack a class
        class_paths = _image_paths(class_folder)
        if not class_paths:
            raise FileNotFoundError(
                f"Class folder {class_folder!r} has no images ({', '.join(IMAGE_EXTENSIONS)}). "
                "Add its images, or remove the folder (from train/ and the evaluation split)."
            )
        paths += class_paths
        labels += [label] * len(class_paths)
    check_images(paths)
    return paths, labels


def load_split(dataset, data_dir, split, *, shuffle_seed=False, indices=None):
    """Loads one split as `(image, label)` pairs, without augmentation.

    Args:
        dataset: dataset name, see `get_dataset_spec`, or its `DatasetSpec`.
        data_dir: tfds data directory (None: the tfds default); ignored for
            `folder:` datasets.
        split: tfds split expression, e.g. `"train"` or `"train+unlabelled"`;
            labelled `folder:` datasets have `"train"` and `"val"` (or
            `"test"`), unlabelled ones the single split `"all"` (any name
            reads it); a folder
            split takes a slice, e.g. `"train[:1000]"` (see `_folder_split`).
        shuffle_seed: for `folder:` datasets, which are sorted by class: False
            keeps that order; otherwise the file names are shuffled each
            epoch, before decoding, with this seed (None: random). tfds
            datasets are shuffled when prepared and ignore it.
        indices: None for every example; else the positions in the split
            (0-based, in its order, as `split_labels` lists them) of the
            examples to keep, in the split's order. Only those are decoded;
            a tfds split is still read up to the last of them.

    Returns:
        A `tf.data.Dataset` of `(uint8 (H, W, 3), int64 scalar)`; the label
        (the spec's `label_key` feature) is -1 for unlabelled images.

    Raises:
        FileNotFoundError: if the dataset is not prepared in `data_dir`, or the
            folder has no images; the message names the fix.
        ValueError: on an unknown dataset or split, an inconsistent labelled
            folder, or an unreadable image file.
    """
    spec = _read_spec(dataset)
    if spec.folder:
        paths, labels = _folder_split(spec, split)
        if indices is not None:
            paths, labels = [paths[i] for i in indices], [labels[i] for i in indices]
        return _folder_dataset(paths, labels, shuffle_seed=shuffle_seed)
    if indices is None:
        return _tfds_split(spec, data_dir, split)
    # The images are decoded after the selection, so the others cost only their reading.
    encoded, decode = _tfds_split(spec, data_dir, split, decode_images=False)
    wanted = np.zeros(max(indices, default=-1) + 1, bool)
    wanted[np.asarray(indices, np.int64)] = True
    return (
        encoded.take(len(wanted)).enumerate()
        .filter(lambda index, example: tf.gather(wanted, index))
        .map(lambda index, example: (decode(example[0]), example[1]))
    )


def split_labels(dataset, data_dir, split):
    """The labels of a labelled split, in the split's order, without decoding an image.

    Args:
        dataset: dataset name, see `get_dataset_spec`, or its `DatasetSpec`.
        data_dir: tfds data directory.
        split: a split name or tfds split expression, as `load_split` reads it.

    Returns:
        An int64 `(N,)` NumPy array; position `i` is the example `indices=[i]`
        of `load_split` selects.

    Raises:
        FileNotFoundError: as `load_split`.
    """
    spec = _read_spec(dataset)
    if spec.folder:
        return np.asarray(_folder_split(spec, split)[1], np.int64)
    encoded, _ = _tfds_split(spec, data_dir, split, decode_images=False)
    labels = [batch.numpy() for batch in encoded.map(lambda image, label: label).batch(8192)]
    return np.concatenate(labels) if labels else np.zeros(0, np.int64)


def _tfds_split(spec, data_dir, split, decode_images=True):
    """A tfds split as `(image, int64 label)` pairs; with `decode_images=False`
    the images are the encoded bytes, and `(pairs, decode)` is returned, where
    `decode` turns those bytes into the image tfds would have decoded."""
    import tensorflow_datasets as tfds

    # The supervised pairs carry `label`; another label needs the full example.
    supervised = spec.label_key == "label"
    decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
    try:
        images, info = tfds.load(
            spec.name, split=split, data_dir=_expand(data_dir), download=False, as_supervised=supervised,
            decoders=decoders, with_info=True,
        )
    except (AssertionError, tfds.core.DatasetNotFoundError) as error:
        raise FileNotFoundError(
            _not_prepared_message(spec.name, data_dir, f", and reading does not download ({error})")
        ) from error
    if not supervised:
        images = images.map(lambda example: (example["image"], example[spec.label_key]))
    images = images.map(lambda image, label: (image, tf.cast(label, tf.int64)))
    return images if decode_images else (images, info.features["image"].decode_example)


def ensure_prepared(dataset, data_dir, download=True):
    """Makes sure a tfds dataset is in `data_dir`, downloading it if allowed.

    What `tfds.load(download=True)` does on first use: a dataset already
    there (however it was prepared, partial ones included) is used as it is;
    a missing one is downloaded and prepared by its tfds builder, atomically.
    `folder:` datasets are local files and never downloaded.

    Args:
        dataset: dataset name, see `get_dataset_spec`, or its `DatasetSpec`.
        data_dir: tfds data directory (None: the tfds default).
        download: False fails on a missing dataset instead of downloading it.

    Raises:
        FileNotFoundError: if the dataset is missing and `download` is False,
            or its download failed (e.g. no network); the message names
            `scripts/prepare_data.py`, which prepares it from local files.
        ValueError: on an unknown dataset name.
    """
    # A folder name is not resolved: the folder is read, and checked, where it is used.
    if dataset.folder if isinstance(dataset, DatasetSpec) else dataset.startswith(FOLDER_PREFIX):
        return
    name = _read_spec(dataset).name
    data_dir = _expand(data_dir)
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return
    if not download:
        raise FileNotFoundError(
            _not_prepared_message(name, data_dir, ", and downloading is switched off (--nodownload)")
        )
    unreachable = _unresolvable_host(builder)
    if unreachable:
        # Fail at once: offline, tfds' own retries take about 3.5 minutes
        # before the same failure.
        raise FileNotFoundError(_not_prepared_message(
            name, data_dir, f", and its download host {unreachable} cannot be resolved (no network?)"
        ))
    print(f"Dataset {name!r} is not in {_location(data_dir)}: downloading it through tfds.")
    try:
        builder.download_and_prepare()
    except (OSError, AssertionError, tfds.download.DownloadError) as error:
        # OSError covers requests' ConnectionError (no network); tfds raises
        # AssertionError for data it cannot download (ImageNet's manual tars).
        raise FileNotFoundError(
            _not_prepared_message(name, data_dir, f", and downloading it failed ({error})")
        ) from error


def _unresolvable_host(builder):
    """The first host of the builder's download URLs that DNS cannot
    resolve, or None (all resolve, or the builder lists no URLs)."""
    for url in builder.url_infos or ():
        host = urllib.parse.urlparse(url).hostname
        try:
            socket.getaddrinfo(host, None)
        except OSError:
            return host
    return None


def _expand(data_dir):
    """`data_dir` with a leading `~` expanded (a shell leaves the one in
    `--data_dir=~/...` alone); None stays None, the tfds default."""
    return data_dir and os.path.expanduser(data_dir)


def _location(data_dir):
    return data_dir or "the default tfds data directory (~/tensorflow_datasets)"


def _not_prepared_message(name, data_dir, reason):
    """Says that `name` is missing from `data_dir` because of `reason`, and how
    to prepare it: offline from local files, or by a download."""
    return (
        f"Dataset {name!r} is not prepared in {_location(data_dir)}{reason}. Without network, "
        f"prepare it from local files: `python scripts/prepare_data.py --dataset={name} "
        f"--data_dir={data_dir or '~/tensorflow_datasets'}` (it reads CIFAR-10 from "
        "../shared/data/cifar10 and CIFAR-100 from --source_dir, see "
        "../shared/data/cifar100/README.md; for other datasets it says what to do). With "
        "network, run the script without --nodownload (it downloads the dataset on first use) "
        f"or `tfds build {name} --data_dir=...`. Then pass the same --data_dir."
    )


def pretrain_dataset(
    dataset,
    data_dir,
    global_batch_size,
    augmenter,
    *,
    seed=None,
    shuffle_buffer=10_000,
    cache=None,
    input_context=None,
    batched_augmentation=None,
):
    """The two-view pretraining pipeline.

    Each image is augmented twice, independently (with draws of its own,
    never shared across a batch, also where the augmentation runs by the
    batch), and the views are stacked, so a batch is one tensor
    `(batch, 2, S, S, 3)` uint8 — the form `fit()` accepts under every
    `tf.distribute` strategy. Batches drop the remainder.

    Args:
        dataset: dataset name, see `get_dataset_spec`, or its `DatasetSpec`.
        data_dir: tfds data directory.
        global_batch_size: batch size summed over all replicas.
        augmenter: callable, one uint8 `(H, W, 3)` image to `(2, S, S, 3)`
            (`keras_directcopy.data.augment.TwoViewAugmenter`, which also
            augments whole batches).
        seed: shuffle seed (None: random).
        shuffle_buffer: images in the shuffle buffer.
        cache: keep the decoded images in memory; by default only for
            datasets of at most 64 px (CIFAR: 150 MB for 50,000 images).
        input_context: `tf.distribute.InputContext` when built through
            `strategy.distribute_datasets_from_function`: the data are then
            sharded per input pipeline (worker) and batched per replica.
        batched_augmentation: augment whole batches with
            `augmenter.augment_batch` (the same augmentation, each image with
            its own draws, in far fewer ops; see `data/batch_augment.py`)
            rather than mapping `augmenter` over single images. None: where
            the augmenter offers it for these images (a `TwoViewAugmenter`
            and images of one static size, not image folders) and it is the
            faster path, for views of at most
            `batch_augment.BATCHED_BY_DEFAULT_MAX_SIZE` px (CIFAR); True
            also for larger views (STL-10); True where it is not offered is
            an error.

    Returns:
        A `tf.data.Dataset` yielding uint8 `(batch, 2, S, S, 3)`, where batch
        is the global batch, or the per-replica batch under `input_context`.
    """
    # A folder's training size is the augmenter's: a name is not measured here.
    spec = _read_spec(dataset)
    stored_size = spec.image_size
    batch_size = global_batch_size
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    if spec.folder:
        paths, labels = _folder_split(spec, spec.pretrain_split)
        if cache is None:
            # Caching holds the decoded images at the size they are stored.
            stored_size = measure_image_size(paths, announce=False)
        if input_context is not None:
            # Shard the files before shuffling, so that workers see disjoint images.
            step, first = input_context.num_input_pipelines, input_context.input_pipeline_id
            paths, labels = paths[first::step], labels[first::step]
        # Folders are sorted by class: shuffle all the file names (cheap)
        # before decoding, which a buffer of decoded images cannot do for
        # ImageNet's 1,300 images per class.
        images = _folder_dataset(paths, labels, shuffle_seed=seed, with_labels=False)
    else:
        images = load_split(spec, data_dir, spec.pretrain_split).map(lambda image, label: image)
        if input_context is not None:
            # Shard before shuffling, so that workers see disjoint images.
            images = images.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if cache if cache is not None else stored_size <= CACHE_MAX_IMAGE_SIZE:
        images = images.cache()
    images = images.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    supports_batches = getattr(augmenter, "supports_batches", None)
    batch_ready = supports_batches is not None and supports_batches(images.element_spec.shape)
    if batched_augmentation and not batch_ready:
        raise ValueError(
            f"batched_augmentation=True needs a TwoViewAugmenter whose config it supports and images "
            f"of one static size; {_name_of(dataset)!r} gives images of shape {images.element_spec.shape}. "
            "Leave batched_augmentation=None to augment one image at a time there."
        )
    if batched_augmentation is None:
        batched_augmentation = batch_ready and (
            augmenter.config.image_size <= batch_augment.BATCHED_BY_DEFAULT_MAX_SIZE
        )
    if batched_augmentation:
        views = images.batch(batch_size, drop_remainder=True).map(
            augmenter.augment_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False
        )
    else:
        views = images.map(augmenter, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        views = views.batch(batch_size, drop_remainder=True)
    views = views.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    if input_context is not None:
        # Sharded by hand above; do not let tf.distribute shard again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return views.with_options(options)


def evaluation_dataset(dataset, data_dir, split, batch_size, image_size=None, indices=None):
    """Labelled, unaugmented images for kNN and linear evaluation.

    Images are resized so that the shorter side is `image_size / 0.875` and
    center-cropped to `image_size` (the standard ImageNet evaluation
    transform), or passed through unchanged when they already have that
    size (CIFAR at 32 px, STL-10 at 96 px).

    Args:
        dataset: dataset name with labels, see `get_dataset_spec`, or its
            `DatasetSpec`.
        data_dir: tfds data directory.
        split: `"train"` or `"test"` (mapped to the dataset's own split
            names, e.g. ImageNet's `validation`), or a tfds split expression.
        batch_size: batch size.
        image_size: output side; by default the spec's, or for a name the
            dataset's (a folder's measured from its images).
        indices: only these examples of the split (see `load_split`).

    Returns:
        A `tf.data.Dataset` of `(uint8 (batch, S, S, 3), int64 (batch,))`, in
        the split's order, keeping the last partial batch.

    Raises:
        ValueError: if the dataset has no labels.
    """
    named = not isinstance(dataset, DatasetSpec)
    # A name is resolved once; a folder's size is measured only once it is
    # known to be labelled.
    spec = get_dataset_spec(dataset, image_size=image_size or MAX_DEFAULT_IMAGE_SIZE) if named else dataset
    if not spec.labelled:
        raise ValueError(
            f"Dataset {_name_of(dataset)!r} has no labels, so it cannot be evaluated; evaluate "
            "on a labelled dataset, e.g. --eval_dataset=cifar10, or a folder laid out as "
            "train/<class>/ and val/<class>/."
        )
    split = {"train": spec.train_split, "test": spec.test_split}.get(split, split)
    if image_size is None and named and spec.folder:
        image_size = _measure_train_size(spec.folder, spec.class_names, spec.test_split)
    image_size = image_size or spec.image_size
    images = load_split(spec, data_dir, split, indices=indices)
    transform = lambda image, label: (center_crop(image, image_size), label)  # noqa: E731
    return images.map(transform, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(
        tf.data.AUTOTUNE
    )


def supervised_train_dataset(dataset, data_dir, split, batch_size, image_size, seed=0, indices=None):
    """Endless augmented `(images, labels)` batches for supervised training
    (fine-tuning): center crop to `image_size` as `evaluation_dataset`, then
    a random crop of the image zero-padded by `PAD_FRACTION` of its side and
    a random horizontal flip (the CIFAR recipe of lightly's fine-tune
    benchmark, after SimCLR).

    Every image gets its own crop and flip: a stream of seeds is zipped with
    the repeated images, so augmentations differ between epochs and a run is
    reproducible from `seed`.

    Args:
        dataset: a labelled dataset name, see `get_dataset_spec`, or its
            `DatasetSpec`.
        data_dir: tfds data directory.
        split: a split name or tfds split expression, e.g. `"train[:1000]"`.
        batch_size: batch size; the last partial batch of each pass is dropped.
        image_size: output side.
        seed: seed of the shuffle and the augmentation.
        indices: train on these examples of the split only (see `load_split`).

    Returns:
        An endless `tf.data.Dataset` of `(uint8 (batch, S, S, 3), int64 (batch,))`.
    """
    # A folder is sorted by class: its file names are shuffled before the buffer.
    images = load_split(dataset, data_dir, split, shuffle_seed=seed, indices=indices)
    if image_size <= CACHE_MAX_IMAGE_SIZE:
        images = images.cache()
    images = images.repeat().shuffle(SUPERVISED_SHUFFLE_BUFFER, seed=seed)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    padded = image_size + 2 * max(1, round(image_size * PAD_FRACTION))

    def augment(example, pair_seed):
        image, label = example
        image = center_crop(image, image_size)
        image = tf.image.resize_with_crop_or_pad(image, padded, padded)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(pair_seed, 2))
        image = tf.image.stateless_random_crop(image, (image_size, image_size, 3), seed=crop_seed)
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image, label

    return (
        tf.data.Dataset.zip((images, seeds))
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def center_crop(image, size, crop_fraction=0.875):
    """Resize-then-center-crop of one uint8 `(H, W, 3)` image to `(size, size, 3)`.

    The shorter side is resized to `size / crop_fraction`, then the central
    `size` x `size` is kept. An image that is already `size` x `size` is
    returned unchanged.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]

    def resize_and_crop():
        target = tf.cast(tf.math.ceil(size / crop_fraction), tf.float32)
        scale = target / tf.cast(tf.minimum(height, width), tf.float32)
        new_size = tf.cast(
            tf.math.ceil(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32
        )
        resized = tf.image.resize(image, new_size, method="bicubic", antialias=True)
        top = (new_size[0] - size) // 2
        left = (new_size[1] - size) // 2
        cropped = resized[top:top + size, left:left + size]
        return tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8)

    already_sized = tf.logical_and(tf.equal(height, size), tf.equal(width, size))
    result = tf.cond(already_sized, lambda: tf.cast(image, tf.uint8), resize_and_crop)
    return tf.ensure_shape(result, (size, size, 3))


def _check_folder_exists(folder):
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Image folder {folder!r} does not exist. Pass --dataset=folder:/path/to/images "
            "with a directory that contains .jpg or .png files."
        )


def _image_paths(folder):
    """Sorted paths of the images below `folder`, recursively (extension in any case)."""
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder, followlinks=True)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )


def find_images(folder):
    """All image files below `folder`, recursively, sorted, checked readable.

    See `check_images` for the checks, so that a bad file fails here, by
    name, not later inside the input pipeline.

    Returns:
        The sorted list of paths.

    Raises:
        FileNotFoundError: if the folder does not exist or has no images.
        ValueError: naming the first file that is unreadable or not an image.
    """
    _check_folder_exists(folder)
    paths = _image_paths(folder)
    if not paths:
        raise FileNotFoundError(
            f"Found no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder!r} or its "
            "subfolders. Point --dataset=folder:... at the directory holding them."
        )
    check_images(paths)
    logging.info("Found %d images in %s.", len(paths), folder)
    print(f"Found {len(paths)} images in {folder}.")
    return paths


# Digest of (paths, sizes, modification times) -> shapes of the checked
# images, so that a folder listed again (spec, count, each split's pipeline)
# is not read again, yet a changed file is.
_checked = {}


def check_images(paths):
    """Checks that image files are readable JPEG or PNG images.

    Every file's leading bytes are read; when there are at most
    `FULL_CHECK_MAX_IMAGES`, every image is also decoded, in parallel, so a
    truncated or corrupt file fails here, by name, rather than as a
    nameless decoding error inside the training loop. Larger folders are
    decoded only as read; a file that is corrupt past its leading bytes then
    fails in the pipeline with TensorFlow's error. Results are remembered
    until a file changes.

    Returns:
        The `(height, width)` of each decoded image (empty if not decoded).

    Raises:
        ValueError: naming the first unreadable, non-image or corrupt file,
            and the fix.
    """
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as error:
            raise ValueError(f"Cannot read image file {path!r}: {error}. Fix or remove it.") from error
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    key = digest.hexdigest()
    if key in _checked:
        return _checked[key]
    for path in paths:
        try:
            with open(path, "rb") as file:
                header = file.read(8)
        except OSError as error:
            raise ValueError(f"Cannot read image file {path!r}: {error}. Fix or remove it.") from error
        if not any(header.startswith(magic) for magic in _MAGIC_BYTES):
            raise ValueError(
                f"{path!r} is not a JPEG or PNG image (it starts with {header!r}). "
                "Fix or remove it."
            )
    shapes = _decoded_shapes(paths) if len(paths) <= FULL_CHECK_MAX_IMAGES else []
    _checked[key] = shapes
    return shapes


def _decode(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.ensure_shape(image, (None, None, 3))


def _decoded_shapes(paths):
    """`(height, width)` of each image, decoded in parallel; names a corrupt one."""
    if not paths:
        return []
    shapes = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: tf.shape(_decode(path))[:2], num_parallel_calls=tf.data.AUTOTUNE
    ).batch(1024)
    try:
        return [tuple(shape) for batch in shapes.as_numpy_iterator() for shape in batch.tolist()]
    except tf.errors.OpError:
        pass
    # TensorFlow's error does not say which file: find it, one at a time.
    for path in paths:
        try:
            _decode(tf.constant(path))
        except tf.errors.OpError as error:
            message = error.message.strip().splitlines()[0] if error.message else type(error).__name__
            raise ValueError(
                f"Cannot decode image file {path!r} ({message}): it is corrupt or truncated. "
                "Fix, re-save or remove it."
            ) from None
    raise ValueError(f"Cannot decode the images of {os.path.dirname(paths[0])!r}.")


def measure_image_size(paths, announce=True):
    """The default training size of a folder: its images' median shorter side.

    The median is taken over all the images when they were decoded by
    `check_images` (at most `FULL_CHECK_MAX_IMAGES`), else over `SIZE_SAMPLE`
    of them spread evenly over the sorted list (so over every class), and
    capped at `MAX_DEFAULT_IMAGE_SIZE` (224): a folder of 64 px images
    trains at 64 px, one of photos at 224 px. The choice is printed; pass
    an image size (`--image_size`) to override it.

    Args:
        paths: the image paths (non-empty).
        announce: print and log the choice (once per folder). False when the
            size is only looked at, not trained at.

    Returns:
        The side, an int in `[MIN_DEFAULT_IMAGE_SIZE, MAX_DEFAULT_IMAGE_SIZE]`.
    """
    shapes = check_images(paths)
    if not shapes:
        step = max(1, len(paths) // SIZE_SAMPLE)
        sample = tuple(paths[::step][:SIZE_SAMPLE])
        if sample not in _sample_shapes:  # each run asks for the spec several times
            _sample_shapes[sample] = _decoded_shapes(list(sample))
        shapes = _sample_shapes[sample]
    shorter = sorted(min(shape) for shape in shapes)
    median = shorter[len(shorter) // 2]
    size = int(max(MIN_DEFAULT_IMAGE_SIZE, min(MAX_DEFAULT_IMAGE_SIZE, median)))
    message = (
        f"Image size {size} px: the median shorter side of {len(shorter)} images of "
        f"{os.path.commonpath(paths) if len(paths) > 1 else paths[0]} is {median} px"
        + (f", capped at {MAX_DEFAULT_IMAGE_SIZE}" if median > MAX_DEFAULT_IMAGE_SIZE else "")
        + ". Set --image_size to override."
    )
    if announce and _measured.get(tuple(paths[:1] + paths[-1:])) != size:
        _measured[tuple(paths[:1] + paths[-1:])] = size
        logging.info(message)
        print(message)
    return size


_measured = {}  # prints each folder's measured size once
_sample_shapes = {}  # sample of a large folder -> its decoded shapes


_SPLIT_SLICE = re.compile(r"^(\w+)(?:\[(-?\d*):(-?\d*)\])?$")


def _folder_split(spec, split):
    """`(paths, labels)` of a folder split, e.g. `"val"` or `"train[:1000]"`.

    A slice takes a fixed pseudo-random subset (seed 0), not the first files:
    those are sorted by class.
    """
    match = _SPLIT_SLICE.match(split or "")
    if not match:
        raise ValueError(
            f"Invalid split {split!r} of image folder {spec.folder!r}; e.g. train or train[:1000]."
        )
    name, start, stop = match.groups()
    if spec.class_names:
        paths, labels = _list_split(spec.folder, name, spec.class_names, spec.test_split)
    else:
        # An unlabelled folder is one split, whatever it is called (callers
        # such as show_augmentations.py pass their default, "train").
        paths = find_images(spec.folder)
        labels = [-1] * len(paths)
    if match.group(2) is not None or match.group(3) is not None:
        order = np.random.default_rng(0).permutation(len(paths))
        order = order[slice(int(start) if start else None, int(stop) if stop else None)]
        paths, labels = [paths[i] for i in order], [labels[i] for i in order]
    return paths, labels


def _folder_dataset(paths, labels, shuffle_seed=False, with_labels=True):
    """Decoded images (and int64 labels) of the files `paths`, in parallel.

    Args:
        shuffle_seed: False keeps the order; otherwise the file names are
            shuffled every epoch, with this seed (None: random).
        with_labels: False yields images alone.
    """
    files = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant(labels, tf.int64))
    )
    if shuffle_seed is not False:
        files = files.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    if with_labels:
        return files.map(lambda path, label: (_decode(path), label), num_parallel_calls=tf.data.AUTOTUNE)
    return files.map(lambda path, label: _decode(path), num_parallel_calls=tf.data.AUTOTUNE)


def num_examples(dataset, data_dir, split):
    """Number of images in a split (a tfds split expression, or a folder's split).

    Args:
        dataset: dataset name, see `get_dataset_spec`, or its `DatasetSpec`.
        data_dir: tfds data directory.
        split: a split name or tfds split expression.

    Raises:
        FileNotFoundError: as `load_split`, if the data are not prepared.
    """
    spec = _read_spec(dataset)
    if spec.folder:
        return len(_folder_split(spec, split)[0])
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(spec.name, data_dir=_expand(data_dir))
        return builder.info.splits[split].num_examples
    except (AssertionError, KeyError, tfds.core.DatasetNotFoundError):
        # Same message as loading would give.
        load_split(spec, data_dir, split)
        raise
