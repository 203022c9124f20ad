"""Prepare standard TFDS data directories from local files, without network.

TensorFlow Datasets downloads its sources on first use, which fails on
machines without internet. This module writes the very same data directory
from files copied over by hand, after which the ordinary call works:

```python
tfds.load("cifar10", data_dir=DATA_DIR, download=False)
```

Supported are CIFAR-10 and CIFAR-100, each from three `.npz` files described
in the README next to them (`x_train`/`y_train` in two parts, `x_test`/`y_test`
in the third, plus the class names; CIFAR-100 adds `y_*_coarse`). A
`CifarSource` describes each. The dataset is written by the upstream TFDS
builder (`Cifar10`, `Cifar100`) with only `_split_generators` swapped to read
the arrays, so features, label names, ids, keys (hence the on-disk order),
version, `dataset_info.json` and file layout are upstream's.

Verification, always of the complete files: CIFAR-10 against its
`SHA256SUMS`; CIFAR-100, whose `.npz` bytes vary per build (time stamps),
by the sha256 of each array's content, as `build_cifar100.py` checks them.

Partial datasets (`max_examples_per_split=N`, TFDS's own option) keep the
first N examples of each split. `dataset_info.json` records the real split
sizes, and the standard `metadata.json` (`builder.info.metadata`) records
`"partial": true`, N and the source checksums (full ones `"partial": false`).
An existing directory is reused only when its sizes, partial flag and
checksums match the request; a partial one made here is replaced, anything
else only with `overwrite=True`. The new directory is built next to the
destination and renamed into place (`io_utils.atomic_save`), so a failed or
interrupted run never leaves a half-written dataset.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import time

import numpy as np
from absl import logging

from keras_directcopy.catalog import DATASET_DISPLAY_NAMES
from keras_directcopy.utils.files import atomic_save, sha256_array, sha256_file

CIFAR10_CHECKSUMS_FILE = "SHA256SUMS"
CIFAR10_TRAIN_FILES = ("cifar10_part1of3.npz", "cifar10_part2of3.npz")
CIFAR10_TEST_FILE = "cifar10_part3of3.npz"
CIFAR10_SOURCE_FILES = CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,)
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_FIRST_LABELS = {
    "train": (6, 9, 9, 4, 1, 1, 2, 7, 8, 3),
    "test": (3, 8, 8, 0, 6, 6, 1, 6, 3, 1),
}

CIFAR100_TRAIN_FILES = ("cifar100_part1of3.npz", "cifar100_part2of3.npz")
CIFAR100_TEST_FILE = "cifar100_part3of3.npz"
CIFAR100_SOURCE_FILES = CIFAR100_TRAIN_FILES + (CIFAR100_TEST_FILE,)
# Where the arrays come from, relative to the directory above the repository.
CIFAR100_README = os.path.join("shared", "data", "cifar100", "README.md")
# The official superclass table (Krizhevsky, 2009): the 20 coarse classes in
# label order, each with its five fine classes, named as in the archive's
# label files, which upstream TFDS reads its names from (it ships no list).
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_COARSE_CLASS_NAMES = tuple(CIFAR100_SUPERCLASSES)
# The official fine labels are in alphabetical order.
CIFAR100_CLASS_NAMES = tuple(sorted(n for names in CIFAR100_SUPERCLASSES.values() for n in names))
CIFAR100_FINE_TO_COARSE = tuple(
    next(i for i, names in enumerate(CIFAR100_SUPERCLASSES.values()) if fine in names)
    for fine in CIFAR100_CLASS_NAMES
)
# sha256 of `arr.tobytes()` of the complete arrays: build_cifar100.py's EXPECTED.
CIFAR100_CONTENT_SHA256 = {
    "x_train": "d197a4cb64f6f76a416eeba713eb2817ca358c234b4563894f779d77690a9004",
    "y_train": "dc8d8e2df0bd4b642f8fd623dc1a36a1ca475798802a4a921283c7d0e1723cc7",
    "x_test": "8e82e0978d3bd52ffeeca53ce2ea8b3042946987386ade6f98bb7d510a9e5e80",
    "y_test": "779255d640e630b22002368255f1aa72d7fad0e32df3b2fa5ac84caf503d8aba",
}


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """One label feature: TFDS `key`, source arrays `y_<split><array_suffix>`,
    the source array `names_array` that must hold `names` (label order), and
    optionally `of_fine_label`, the table fine label -> this label that every
    example must follow."""

    key: str
    array_suffix: str
    names_array: str
    names: tuple
    of_fine_label: tuple | None = None


@dataclasses.dataclass(frozen=True)
class CifarSource:
    """What tells the CIFAR datasets apart.

    Attributes:
        name: TFDS name; also the upstream builder's.
        title: name in messages.
        train_files: the training split's files, in order; each records its
            first example's position as `index_offset`.
        test_file: the test split's file.
        labels: `LabelSpec`s; the first is TFDS's `label`, whose examples
            per class are checked.
        num_examples: split -> size of the complete split; each class of
            `labels[0]` has an equal share.
        checksums_file: a `sha256sum` file verifying the files, or None.
        content_sha256: array name -> sha256 of its content, or None.
        first_labels: split -> its first ten labels in the original order,
            or None where the files are not in the original order.
        readme: where the files are described, for messages.
        restore: how to get correct files, ending the messages.
    """

    name: str
    title: str
    train_files: tuple
    test_file: str
    labels: tuple
    num_examples: dict
    checksums_file: str | None = None
    content_sha256: dict | None = None
    first_labels: dict | None = None
    readme: str = "the README next to them"
    restore: str = "restore the original files"

    @property
    def source_files(self):
        """The files that must be in the source directory."""
        return ((self.checksums_file,) if self.checksums_file else ()) + self.train_files + (
            self.test_file,
        )


CIFAR10 = CifarSource(
    name="cifar10",
    title=DATASET_DISPLAY_NAMES["cifar10"],
    train_files=CIFAR10_TRAIN_FILES,
    test_file=CIFAR10_TEST_FILE,
    labels=(LabelSpec("label", "", "class_names", CIFAR10_CLASS_NAMES),),
    num_examples={"train": 50000, "test": 10000},
    checksums_file=CIFAR10_CHECKSUMS_FILE,
    first_labels=CIFAR10_FIRST_LABELS,
    restore=f"restore the original files (and their {CIFAR10_CHECKSUMS_FILE})",
)
CIFAR100 = CifarSource(
    name="cifar100",
    title=DATASET_DISPLAY_NAMES["cifar100"],
    train_files=CIFAR100_TRAIN_FILES,
    test_file=CIFAR100_TEST_FILE,
    labels=(
        LabelSpec("label", "", "class_names", CIFAR100_CLASS_NAMES),
        LabelSpec("coarse_label", "_coarse", "coarse_class_names", CIFAR100_COARSE_CLASS_NAMES,
                  of_fine_label=CIFAR100_FINE_TO_COARSE),
    ),
    num_examples={"train": 50000, "test": 10000},
    content_sha256=CIFAR100_CONTENT_SHA256,
    # The arrays are in a fixed pseudo-random order, not the official one.
    first_labels=None,
    readme=CIFAR100_README,
    restore=(
        "rebuild them with build_cifar100.py as that README describes "
        "(`python3 shared/data/cifar100/build_cifar100.py SOURCE_DIR OUT_DIR`)"
    ),
)

# Looked up on every call, so a test can swap in a description of its own.
SOURCES = {source.name: source for source in (CIFAR10, CIFAR100)}
SUPPORTED_DATASETS = tuple(SOURCES)
# The `prepared_by` of the `metadata.json` written here.
PREPARED_BY = "keras_directcopy.data.offline"


class SourceDataError(ValueError):
    """The local source files are not the expected, complete dataset."""


def prepare(dataset_name, source_dir, data_dir, max_examples_per_split=None, overwrite=False):
    """Writes the TFDS dataset `dataset_name` from local `.npz` files.

    The sources are verified first, always the complete files (see the
    module docstring), together with their shapes, label ranges, class names,
    part order and, for CIFAR-100, that each coarse label is its fine label's
    superclass. A full preparation also checks the split sizes, the examples
    per class and (CIFAR-10) the first labels. The dataset is built next to
    the destination and renamed into place only once complete.

    Args:
        dataset_name: str. `"cifar10"` or `"cifar100"` (see `SOURCES`).
        source_dir: str or path-like. Directory with the source files
            (`CifarSource.source_files`).
        data_dir: str or path-like. TFDS data directory (`~` is expanded),
            later passed to `tfds.load(..., data_dir=data_dir)`.
        max_examples_per_split: int or None. Keep only the first N examples
            of each split (for tests and quick trials); marked as partial.
            None, or an N covering every split, prepares the full dataset.
        overwrite: bool. Replace an existing directory at the destination
            even when it was not made here or was made from other files.
            Partial directories made here are replaced without it.

    Returns:
        str, the dataset directory `<data_dir>/<name>/<version>`.

    Raises:
        ValueError: if `dataset_name` is not supported (the message says what
            to do instead), or `max_examples_per_split` is not a positive
            integer.
        FileNotFoundError: if `source_dir` or one of its files is missing.
        SourceDataError: if a checksum, shape, label, class name or count is
            wrong.
        FileExistsError: if the destination holds a dataset that does not
            match the request and `overwrite` is False.
    """
    start = time.time()
    name = str(dataset_name).strip().lower()
    if name not in SOURCES:
        raise ValueError(_unsupported_message(name, data_dir))
    source = SOURCES[name]
    source_dir = os.path.abspath(os.path.expanduser(os.fspath(source_dir)))
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    max_examples_per_split = _check_max_examples(max_examples_per_split, source)
    partial = max_examples_per_split is not None

    checksums, arrays = _verify_source(source, source_dir)
    if not partial:
        for split, (_, labels) in arrays.items():
            _check_counts(source, source_dir, split, labels[source.labels[0].key])

    import tensorflow_datasets as tfds

    dataset_root = os.path.join(data_dir, name)
    destination = os.path.join(dataset_root, str(tfds.builder_cls(name).VERSION))
    expected_counts = {
        split: min(count, max_examples_per_split or count)
        for split, count in source.num_examples.items()
    }
    if _already_prepared(destination, expected_counts, partial, checksums, overwrite):
        return destination
    if partial:
        logging.warning(
            "Preparing a PARTIAL %s (first %d examples per split). It is marked as partial "
            "in metadata.json and will be replaced by a later full preparation.",
            name, max_examples_per_split,
        )

    metadata = {
        "prepared_by": PREPARED_BY,
        "partial": partial,
        "max_examples_per_split": max_examples_per_split,
        "num_examples": expected_counts,
        "source_sha256": checksums,
    }
    created_root = not os.path.isdir(dataset_root)
    try:
        atomic_save(destination, lambda version_dir: _build(source, arrays, version_dir, metadata))
    except BaseException:
        if created_root:
            with contextlib.suppress(OSError):  # leave no empty `<name>/` behind
                os.rmdir(dataset_root)
        raise
    logging.info("Prepared %s at %s in %.1f s (%s).", name, destination, time.time() - start,
                 ", ".join(f"{split}: {count}" for split, count in expected_counts.items()))
    return destination


def prepare_cifar10(source_dir, data_dir, max_examples_per_split=None, overwrite=False):
    """`prepare("cifar10", ...)`: CIFAR-10 from `SHA256SUMS` and
    `cifar10_part{1,2,3}of3.npz` in `source_dir`."""
    return prepare("cifar10", source_dir, data_dir, max_examples_per_split, overwrite)


def tfds_load_call(dataset_name, data_dir):
    """The `tfds.load` call that reads a prepared directory, as a string, e.g.
    `tfds.load("cifar10", data_dir="/data/tfds", download=False)`."""
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    return f"tfds.load({json.dumps(dataset_name)}, data_dir={json.dumps(data_dir)}, download=False)"


def inspect_dataset_dir(destination):
    """Reads what a TFDS dataset directory holds, without TensorFlow.

    Args:
        destination: str or path-like, a dataset version directory such as
            `<data_dir>/cifar10/3.0.2`.

    Returns:
        None if it does not exist, else a dict with `counts` (split ->
        examples, from `dataset_info.json`; None if unreadable) and
        `metadata` (the parsed `metadata.json`, or None). A directory
        written with `max_examples_per_split` has `metadata["partial"]`.
    """
    if not os.path.exists(destination):
        return None
    counts = metadata = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        with open(os.path.join(destination, "dataset_info.json")) as file:
            counts = {
                split["name"]: sum(int(length) for length in split.get("shardLengths", []))
                for split in json.load(file).get("splits", [])
            }
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(destination, "metadata.json")) as file:
            metadata = json.load(file)
    return {"counts": counts, "metadata": metadata if isinstance(metadata, dict) else None}


def _check_max_examples(value, source):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"max_examples_per_split must be a positive integer or None, got {value!r}.")
    if value >= max(source.num_examples.values()):
        # The first N of every split is then the full dataset: check and mark it so.
        logging.info("max_examples_per_split=%d covers every split: preparing the full dataset.", value)
        return None
    return int(value)


# Verification ------------------------------------------------------------


def _verify_source(source, source_dir):
    """Checks and loads the source files.

    Returns:
        `(checksums, arrays)`: file or array name -> verified hex sha256, and
        split -> `(uint8 images (N, 32, 32, 3), {label key: labels (N,)})`.
    """
    missing = [name for name in source.source_files
               if not os.path.isfile(os.path.join(source_dir, name))]
    if missing:
        problem = (f"Source directory {source_dir} does not exist" if not os.path.isdir(source_dir)
                   else f"Missing in {source_dir}: {', '.join(missing)}")
        raise FileNotFoundError(
            f"{problem}. The {source.title} source directory must contain: "
            f"{', '.join(source.source_files)} (see {source.readme}; {source.restore}). "
            f"Point source_dir (--source_dir) at the directory that holds them; got {source_dir}."
        )
    checksums = _verify_file_checksums(source, source_dir) if source.checksums_file else {}
    logging.info("Loading %s arrays from %s", source.title, source_dir)
    arrays = _load_arrays(source, source_dir)
    for array_name, expected in (source.content_sha256 or {}).items():
        kind, split = array_name.split("_", 1)
        images, labels = arrays[split]
        actual = sha256_array(images if kind == "x" else labels[source.labels[0].key])
        if actual != expected:
            raise SourceDataError(
                f"Checksum mismatch for {array_name} ({_split_files_text(source, source_dir, split)}): "
                f"expected sha256 {expected} of its content (arr.tobytes() of the complete "
                f"array), got {actual}. The arrays are corrupt or not the ones "
                f"{source.readme} describes; {source.restore}."
            )
        checksums[array_name] = actual
    return checksums, arrays


def _verify_file_checksums(source, source_dir):
    """Checks the data files against the `sha256sum` file; returns name -> sha256."""
    sums_path = os.path.join(source_dir, source.checksums_file)
    with open(sums_path) as file:
        # `sha256sum` writes "<digest>  <name>", marking binary mode with "*".
        expected = {parts[1].lstrip("*"): parts[0].lower()
                    for parts in map(str.split, file) if len(parts) == 2}
    verified = {}
    for name in source.train_files + (source.test_file,):
        if name not in expected:
            raise SourceDataError(
                f"{sums_path} has no checksum for {name}, so it cannot be verified. "
                f"Restore the original {source.checksums_file} that came with the files."
            )
        path = os.path.join(source_dir, name)
        logging.info("Verifying sha256 of %s", path)
        verified[name] = sha256_file(path)
        if verified[name] != expected[name]:
            raise SourceDataError(
                f"Checksum mismatch for {path}: expected sha256 {expected[name]} "
                f"(from {sums_path}), got {verified[name]}. The file is corrupt or not the one "
                f"the checksums were made for; copy it again from the original source "
                f"and check with `sha256sum -c {source.checksums_file}` in {source_dir}."
            )
    return verified


def _load_arrays(source, source_dir):
    """Loads the splits, train parts concatenated in order; see `_verify_source`."""
    parts, offset = [], 0
    for name in source.train_files:
        parts.append(_load_npz_split(source, os.path.join(source_dir, name), "train", offset))
        offset += len(parts[-1][0])
    train_labels = {label.key: np.concatenate([labels[label.key] for _, labels in parts])
                    for label in source.labels}
    return {
        "train": (np.concatenate([images for images, _ in parts]), train_labels),
        "test": _load_npz_split(source, os.path.join(source_dir, source.test_file), "test"),
    }


def _load_npz_split(source, path, split, index_offset=None):
    """Loads and checks one file: `(images, {label key: labels})`."""
    arrays = {label.key: f"y_{split}{label.array_suffix}" for label in source.labels}
    with np.load(path, allow_pickle=False) as npz:
        keys = (f"x_{split}", *arrays.values(), *(label.names_array for label in source.labels))
        missing = [key for key in keys if key not in npz.files]
        _require(not missing, source, path, f"missing arrays {missing}, found {sorted(npz.files)}")
        images = npz[f"x_{split}"]
        labels = {key: npz[array] for key, array in arrays.items()}
        names = {label.key: tuple(map(str, npz[label.names_array])) for label in source.labels}
        offset = int(npz["index_offset"]) if "index_offset" in npz.files else None
    _require(images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3), source, path,
             f"x_{split} must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    for label in source.labels:
        values, array = labels[label.key], arrays[label.key]
        _require(values.shape == (len(images),) and values.dtype.kind in "iu", source, path,
                 f"{array} must be integer ({len(images)},), got {values.dtype} {values.shape}")
        _require(not values.size or 0 <= values.min() <= values.max() < len(label.names),
                 source, path, f"{array} has labels outside 0..{len(label.names) - 1}")
        _require(names[label.key] == label.names, source, path,
                 f"{label.names_array} are {names[label.key]}, expected {label.names}")
        if label.of_fine_label is not None:
            fine_values = labels[source.labels[0].key]
            _check_follows_fine_labels(source, path, split, label, values, fine_values)
    # The parts must be concatenated in their original order.
    _require(index_offset is None or offset == index_offset, source, path,
             f"index_offset is {offset}, expected {index_offset}")
    return images, labels


def _check_follows_fine_labels(source, path, split, label, values, fine_values):
    """Checks every `values[i]` is `label.of_fine_label[fine_values[i]]`."""
    expected = np.asarray(label.of_fine_label)[fine_values]
    wrong = np.flatnonzero(values != expected)
    if wrong.size:
        i = int(wrong[0])
        fine, got, want = int(fine_values[i]), int(values[i]), int(expected[i])
        raise _source_error(
            source, path,
            f"{wrong.size} {label.key}s disagree with their fine labels, e.g. example {i}: "
            f"y_{split}{label.array_suffix} is {got} ({label.names[got]}) but its fine class "
            f"{fine} ({source.labels[0].names[fine]}) belongs to {want} ({label.names[want]})",
        )


def _check_counts(source, source_dir, split, labels):
    """Checks a complete split's size, examples per class and first labels."""
    where = _split_files_text(source, source_dir, split)
    total, num_classes = source.num_examples[split], len(source.labels[0].names)
    _require(len(labels) == total, source, where, f"{len(labels)} {split} examples, expected {total}")
    per_class = np.bincount(labels, minlength=num_classes).tolist()
    _require(per_class == [total // num_classes] * num_classes, source, where,
             f"{split} examples per class are {per_class}, expected {total // num_classes} each")
    if source.first_labels is not None:
        first = tuple(int(label) for label in labels[:10])
        _require(first == source.first_labels[split], source, where,
                 f"first ten {split} labels are {first}, expected "
                 f"{source.first_labels[split]} (the original order)")


def _split_files_text(source, source_dir, split):
    files = source.train_files if split == "train" else (source.test_file,)
    return " + ".join(os.path.join(source_dir, name) for name in files)


def _require(condition, source, where, problem):
    if not condition:
        raise _source_error(source, where, problem)


def _source_error(source, where, problem):
    return SourceDataError(
        f"{where}: {problem}. These files do not hold the complete, original "
        f"{source.title} as {source.readme} describes; {source.restore}."
    )


# Building ----------------------------------------------------------------


def _local_builder_class(source):
    """The upstream builder with `_split_generators` reading local arrays;
    defined lazily to import TFDS only when needed."""
    import tensorflow_datasets as tfds

    upstream = tfds.builder_cls(source.name)  # the registered `Cifar10` / `Cifar100`

    class LocalCifar(upstream, skip_registration=True):
        """Upstream `Cifar10` / `Cifar100` whose examples come from arrays.

        `skip_registration` keeps the TFDS registry pointing at upstream;
        `name` is set because TFDS would derive it from this class's name.
        """

        name = source.name

        def __init__(self, *, arrays, **kwargs):
            self._local_arrays = arrays
            # dataset_info.json records the builder's module: name upstream's.
            # On the instance only: TFDS indexes classes by their own module.
            self.__module__ = upstream.__module__
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager):
            del dl_manager  # Nothing to download.
            # Upstream reads the names from the archive's label files.
            for label in source.labels:
                self.info.features[label.key].names = list(label.names)
            return {
                tfds.Split.TRAIN: _examples("train_", *self._local_arrays["train"]),
                tfds.Split.TEST: _examples("test_", *self._local_arrays["test"]),
            }

        def _log_download_done(self):
            pass  # Upstream names the scratch directory; `prepare` logs the real one.

    return LocalCifar


def _examples(split_prefix, images, labels):
    """Yields `(key, example)` as upstream does: keyed by the running index
    (TFDS orders the records by hashed keys, so the order is upstream's), ids
    `"train_00000"`, ...; `labels` maps label keys to arrays."""
    for index in range(len(images)):
        example = {"id": "{}{:05d}".format(split_prefix, index), "image": images[index]}
        example.update((key, int(values[index])) for key, values in labels.items())
        yield index, example


def _build(source, arrays, version_dir, metadata):
    """Writes the dataset's version directory at `version_dir` (which must
    not exist), with `metadata.json`."""
    import tensorflow_datasets as tfds

    scratch = f"{version_dir}.tfds"  # TFDS's data_dir, next to version_dir
    try:
        builder = _local_builder_class(source)(arrays=arrays, data_dir=scratch)
        builder.download_and_prepare(
            download_dir=os.path.join(scratch, "downloads"),
            download_config=tfds.download.DownloadConfig(
                try_download_gcs=False, max_examples_per_split=metadata["max_examples_per_split"]
            ),
        )
        # The standard TFDS metadata file: `builder.info.metadata` reads it back.
        tfds.core.MetadataDict(metadata).save_metadata(builder.data_dir)
        os.rename(builder.data_dir, version_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# What is already at the destination -------------------------------------


def _already_prepared(destination, expected_counts, partial, checksums, overwrite):
    """Whether `destination` holds the requested dataset already.

    Returns:
        True if it does; False if there is nothing, or something that may be
        replaced: a partial dataset made here, or anything with `overwrite`.

    Raises:
        FileExistsError: if it holds something else and `overwrite` is False.
    """
    existing = inspect_dataset_dir(destination)
    if existing is None:
        return False
    counts, metadata = existing["counts"], existing["metadata"] or {}
    made_here = metadata.get("prepared_by") == PREPARED_BY
    found = ("no readable dataset_info.json" if counts is None
             else ", ".join(f"{split}: {count}" for split, count in sorted(counts.items())))
    if made_here:
        found += f", {'partial' if metadata.get('partial') else 'full'}, made by {PREPARED_BY}"
    if counts == expected_counts and (
        (bool(metadata.get("partial")), metadata.get("source_sha256")) == (partial, checksums)
        if made_here
        # A full directory made elsewhere (e.g. `tfds build` on a connected
        # machine) is the real dataset; a partial request never matches it.
        else not partial
    ):
        logging.info("%s is already prepared (%s); nothing to do.", destination, found)
        return True
    if overwrite or (made_here and metadata.get("partial")):
        logging.warning("Replacing %s (%s) with the requested %s.", destination, found, expected_counts)
        return False
    raise FileExistsError(
        f"{destination} already holds a dataset that does not match the request (found "
        f"{found}; requested {expected_counts}). Refusing to replace it: pass overwrite=True "
        "(--overwrite) to replace it, or use another data_dir."
    )


def _unsupported_message(name, data_dir):
    data_dir = os.fspath(data_dir) if data_dir is not None else "DATA_DIR"
    if name in ("imagenet2012", "imagenet2012_subset", "imagenet2012_real"):
        how = (
            "TFDS never downloads ImageNet itself: put the official ILSVRC2012_img_train.tar "
            f"and ILSVRC2012_img_val.tar into {os.path.join(data_dir, 'downloads', 'manual')} "
            f"and run `tfds build {name} --data_dir={data_dir}`, which needs no network."
        )
    else:
        how = (
            f"On a machine with internet access run `tfds build {name} --data_dir=SOME_DIR`, "
            f"then copy SOME_DIR/{name} into {data_dir}/ here; "
            f'`tfds.load("{name}", data_dir="{data_dir}", download=False)` then reads it.'
        )
    return (f"Cannot prepare {name!r} from local files: supported are "
            f"{', '.join(SUPPORTED_DATASETS)}. {how}")
