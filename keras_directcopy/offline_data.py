"""Prepare standard TFDS data directories from local files, without network.

TensorFlow Datasets downloads its sources on first use. On machines without
internet access (air-gapped clusters) that fails, so this module
writes the very same data directory from files that were copied over by
hand. Afterwards the ordinary call works unchanged:

```python
tfds.load("cifar10", data_dir=DATA_DIR, download=False)
tfds.load("cifar100", data_dir=DATA_DIR, download=False)
```

Supported are CIFAR-10 and CIFAR-100, each from three `.npz` files described
in the README next to them (`x_train`/`y_train` in two parts, `x_test`/`y_test`
in the third, plus the class names; CIFAR-100 adds `y_*_coarse`). One reader
serves both: a `CifarSource` describes each dataset (its files, label keys,
class names, examples per class and how the files are verified), and the
loading, checking and building code is shared. The dataset is written by a
subclass of the upstream TFDS builder (`Cifar10`, `Cifar100`) that only swaps
where the examples come from, so features, label names, example ids, keys
(and therefore the on-disk order, which TFDS derives from the keys), version
and file layout are the upstream ones.

Verification. CIFAR-10 ships a `SHA256SUMS` file, and every source file is
checked against it. The CIFAR-100 arrays are built on each machine by
`build_cifar100.py` (`npz` files carry a time stamp, so their bytes vary), so
instead the sha256 of each array's content (`arr.tobytes()` of the complete
`x_train`, `y_train`, `x_test`, `y_test`) is checked against the digests that
script checks. Either way the complete files are verified, also for a partial
preparation.

Partial datasets. `max_examples_per_split=N` keeps the first N examples of
each split, for tests and quick trials. Such a directory is still a valid
TFDS directory (so `tfds.load` reads it), and it is told apart from a
full one in two places that survive copying the directory around:

- its `dataset_info.json` records the real split sizes, so
  `builder.info.splits["train"].num_examples` says e.g. 200, not 50000;
- a `metadata.json` (the standard TFDS metadata file, exposed as
  `builder.info.metadata`) records `"partial": true` and the N used, next to
  the source checksums. Full preparations write it too, with
  `"partial": false`.

`prepare` accepts an existing directory as "already prepared" only when
both the split sizes and the partial flag match what is asked for, so a full
preparation never reuses a partial directory: it replaces it (partial
directories made here are disposable), and it refuses to touch a directory
it cannot account for unless `overwrite=True`.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time

import numpy as np
from absl import logging

from keras_directcopy.io_utils import sha256_file

# Files of the CIFAR-10 source directory, in the order the splits use them.
CIFAR10_CHECKSUMS_FILE = "SHA256SUMS"
CIFAR10_TRAIN_FILES = ("cifar10_part1of3.npz", "cifar10_part2of3.npz")
CIFAR10_TEST_FILE = "cifar10_part3of3.npz"
CIFAR10_SOURCE_FILES = CIFAR10_TRAIN_FILES + (CIFAR10_TEST_FILE,)

CIFAR10_CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_NUM_EXAMPLES = {"train": 50000, "test": 10000}
CIFAR10_FIRST_LABELS = {
    "train": (6, 9, 9, 4, 1, 1, 2, 7, 8, 3),
    "test": (3, 8, 8, 0, 6, 6, 1, 6, 3, 1),
}

# Files of the CIFAR-100 source directory, as build_cifar100.py writes them.
CIFAR100_TRAIN_FILES = ("cifar100_part1of3.npz", "cifar100_part2of3.npz")
CIFAR100_TEST_FILE = "cifar100_part3of3.npz"
CIFAR100_SOURCE_FILES = CIFAR100_TRAIN_FILES + (CIFAR100_TEST_FILE,)
# Where the arrays come from, relative to the directory above the repository.
CIFAR100_README = os.path.join("shared", "data", "cifar100", "README.md")

# The official superclass table (Krizhevsky, 2009; the CIFAR web page): the
# 20 coarse classes in label order, each with its five fine classes. The
# names are those of the archive's coarse_label_names.txt and
# fine_label_names.txt, which upstream TFDS reads its label names from (it
# ships no list of its own).
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
CIFAR100_CLASS_NAMES = tuple(
    sorted(name for names in CIFAR100_SUPERCLASSES.values() for name in names)
)
# Fine label -> coarse label.
CIFAR100_FINE_TO_COARSE = tuple(
    CIFAR100_COARSE_CLASS_NAMES.index(coarse)
    for fine in CIFAR100_CLASS_NAMES
    for coarse, names in CIFAR100_SUPERCLASSES.items()
    if fine in names
)
CIFAR100_NUM_EXAMPLES = {"train": 50000, "test": 10000}
# sha256 of `arr.tobytes()` of the complete arrays, as build_cifar100.py
# checks them (its EXPECTED). Of the content, not of the .npz files: those
# carry a time stamp, so every build has other file bytes.
CIFAR100_CONTENT_SHA256 = {
    "x_train": "d197a4cb64f6f76a416eeba713eb2817ca358c234b4563894f779d77690a9004",
    "y_train": "dc8d8e2df0bd4b642f8fd623dc1a36a1ca475798802a4a921283c7d0e1723cc7",
    "x_test": "8e82e0978d3bd52ffeeca53ce2ea8b3042946987386ade6f98bb7d510a9e5e80",
    "y_test": "779255d640e630b22002368255f1aa72d7fad0e32df3b2fa5ac84caf503d8aba",
}


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """One label feature of a CIFAR dataset and the source arrays behind it.

    Attributes:
        key: TFDS feature name, `"label"` or `"coarse_label"`.
        array_suffix: the labels are the source arrays `y_<split><suffix>`.
        names_array: source array holding the class names, which must equal
            `names`.
        names: class names in label order, as TFDS's `ClassLabel` holds them.
        of_fine_label: None, or a table fine label -> this label that every
            example must follow (CIFAR-100's superclasses).
    """

    key: str
    array_suffix: str
    names_array: str
    names: tuple
    of_fine_label: tuple | None = None


@dataclasses.dataclass(frozen=True)
class CifarSource:
    """What tells the CIFAR datasets apart: files, labels and checks.

    Attributes:
        name: TFDS name, e.g. `"cifar10"`.
        title: name in messages, e.g. `"CIFAR-10"`.
        builder: the upstream builder class in
            `tensorflow_datasets.image_classification.cifar`, e.g. `"Cifar10"`.
        train_files: files of the training split, in order; each records its
            first example's position as `index_offset`.
        test_file: file of the test split.
        labels: the label features; the first is TFDS's `label` (the fine
            classes), the one whose examples per class are checked.
        num_examples: split -> number of examples of the complete dataset;
            each class of `labels[0]` has an equal share.
        checksums_file: a `sha256sum` file next to the source files that
            verifies them, or None.
        content_sha256: array name (`x_train`, `y_train`, `x_test`, `y_test`)
            -> sha256 of the complete array's `tobytes()`, or None.
        first_labels: split -> its first ten labels in the original order, or
            None where the files are not in the original order.
        readme: where the source files are described, for messages.
        restore: how to get correct files, ending the messages.
    """

    name: str
    title: str
    builder: str
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
        """The files that must be in the source directory, in order."""
        checksums = (self.checksums_file,) if self.checksums_file else ()
        return checksums + self.train_files + (self.test_file,)


CIFAR10 = CifarSource(
    name="cifar10",
    title="CIFAR-10",
    builder="Cifar10",
    train_files=CIFAR10_TRAIN_FILES,
    test_file=CIFAR10_TEST_FILE,
    labels=(LabelSpec("label", "", "class_names", CIFAR10_CLASS_NAMES),),
    num_examples=CIFAR10_NUM_EXAMPLES,
    checksums_file=CIFAR10_CHECKSUMS_FILE,
    first_labels=CIFAR10_FIRST_LABELS,
    readme="the README next to them",
    restore=f"restore the original files (and their {CIFAR10_CHECKSUMS_FILE})",
)
CIFAR100 = CifarSource(
    name="cifar100",
    title="CIFAR-100",
    builder="Cifar100",
    train_files=CIFAR100_TRAIN_FILES,
    test_file=CIFAR100_TEST_FILE,
    labels=(
        LabelSpec("label", "", "class_names", CIFAR100_CLASS_NAMES),
        LabelSpec(
            "coarse_label",
            "_coarse",
            "coarse_class_names",
            CIFAR100_COARSE_CLASS_NAMES,
            of_fine_label=CIFAR100_FINE_TO_COARSE,
        ),
    ),
    num_examples=CIFAR100_NUM_EXAMPLES,
    content_sha256=CIFAR100_CONTENT_SHA256,
    # The arrays are in a fixed pseudo-random order, not the official one.
    first_labels=None,
    readme=CIFAR100_README,
    restore=(
        "rebuild them with build_cifar100.py as that README describes "
        "(`python3 shared/data/cifar100/build_cifar100.py SOURCE_DIR OUT_DIR`)"
    ),
)

# The dataset descriptions, by TFDS name. Looked up on every call, so a test
# can swap in a description of its own (e.g. of a small synthetic source).
SOURCES = {source.name: source for source in (CIFAR10, CIFAR100)}
SUPPORTED_DATASETS = tuple(SOURCES)

# Name of the marker written by this module into `metadata.json`.
PREPARED_BY = "keras_directcopy.offline_data"

# Temporary build directories start with this, next to the destination. The
# leading dot keeps TFDS (which lists version directories) from seeing them.
_TMP_PREFIX = ".tmp-prepare-"

_LOG_EVERY_EXAMPLES = 10000


class SourceDataError(ValueError):
    """The local source files are not the expected, complete dataset."""


def prepare(dataset_name, source_dir, data_dir, **kwargs):
    """Writes a TFDS data directory for `dataset_name` from local files.

    Args:
        dataset_name: str. TFDS name of the dataset, `"cifar10"` or
            `"cifar100"` (see `SOURCES`).
        source_dir: str or path-like. Directory holding the local source files.
        data_dir: str or path-like. TFDS data directory to write into, the one
            later passed to `tfds.load(..., data_dir=data_dir)`.
        **kwargs: `max_examples_per_split` and `overwrite`, see
            `prepare_cifar10`.

    Returns:
        str, the prepared dataset directory
        (`<data_dir>/<name>/<version>`).

    Raises:
        ValueError: if `dataset_name` is not supported; the message says what
            to do instead.
        FileNotFoundError, SourceDataError, FileExistsError: see
            `prepare_cifar10`.
    """
    name = str(dataset_name).strip().lower()
    if name not in SOURCES:
        raise ValueError(_unsupported_message(name, data_dir))
    return _prepare(SOURCES[name], source_dir, data_dir, **kwargs)


def prepare_cifar10(source_dir, data_dir, max_examples_per_split=None, overwrite=False):
    """Writes the TFDS `cifar10` dataset from the local `.npz` files.

    The source checksums (`SHA256SUMS`) are verified first, always on the
    complete files. A full preparation then also checks the example counts
    (50000 train, 10000 test, 5000 and 1000 per class) and the first labels.
    The dataset is built in a temporary directory next to the destination and
    moved into place only once complete, so an interrupted or failed run
    never leaves a half-written dataset behind.

    Args:
        source_dir: str or path-like. Directory with `SHA256SUMS` and
            `cifar10_part{1,2,3}of3.npz`.
        data_dir: str or path-like. TFDS data directory (`~` is expanded);
            the dataset goes to `<data_dir>/cifar10/<version>`.
        max_examples_per_split: int or None. Keep only the first N examples
            of each split (for tests and quick trials). The result is marked
            as partial, see the module docstring. None, or an N at least as
            large as every split, prepares the full dataset.
        overwrite: bool. Replace an existing directory at the destination
            even when it was not made here or was made from other files.
            Partial directories made here are replaced without it.

    Returns:
        str, the dataset directory `<data_dir>/cifar10/<version>`.

    Raises:
        FileNotFoundError: if `source_dir` or one of its files is missing.
        SourceDataError: if a checksum, shape, label or count is wrong.
        FileExistsError: if the destination holds a dataset that does not
            match the request and `overwrite` is False.
        ValueError: if `max_examples_per_split` is not a positive integer.
    """
    return _prepare(SOURCES["cifar10"], source_dir, data_dir, max_examples_per_split, overwrite)


def prepare_cifar100(source_dir, data_dir, max_examples_per_split=None, overwrite=False):
    """Writes the TFDS `cifar100` dataset from the local `.npz` files.

    The files are those `build_cifar100.py` writes (see
    `shared/data/cifar100/README.md`). Every file is loaded and the content
    sha256 of the complete `x_train`, `y_train`, `x_test` and `y_test` is
    verified against `CIFAR100_CONTENT_SHA256`, also for a partial
    preparation; the class names must be the official ones, and every coarse
    label must be its fine label's superclass (`CIFAR100_SUPERCLASSES`; the
    content checksums do not cover the coarse labels). A full preparation
    also checks the counts (50000 train, 10000 test, 500 and 100 per fine
    class). Examples keep the order of the arrays, which is not the official
    one, so the `id` field (`train_00000`, ...) numbers positions in these
    arrays. Written atomically, as `prepare_cifar10`.

    Args:
        source_dir: str or path-like. Directory with
            `cifar100_part{1,2,3}of3.npz`.
        data_dir: str or path-like. TFDS data directory (`~` is expanded);
            the dataset goes to `<data_dir>/cifar100/<version>`.
        max_examples_per_split: int or None. As for `prepare_cifar10`.
        overwrite: bool. As for `prepare_cifar10`.

    Returns:
        str, the dataset directory `<data_dir>/cifar100/<version>`.

    Raises:
        FileNotFoundError: if `source_dir` or one of its files is missing.
        SourceDataError: if a checksum, shape, label, class name or count is
            wrong.
        FileExistsError: if the destination holds a dataset that does not
            match the request and `overwrite` is False.
        ValueError: if `max_examples_per_split` is not a positive integer.
    """
    return _prepare(SOURCES["cifar100"], source_dir, data_dir, max_examples_per_split, overwrite)


def _prepare(source, source_dir, data_dir, max_examples_per_split=None, overwrite=False):
    """Writes the dataset `source` describes; see `prepare_cifar10`."""
    start = time.time()
    source_dir = os.path.abspath(os.path.expanduser(os.fspath(source_dir)))
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    max_examples_per_split = _check_max_examples(max_examples_per_split, source)

    checksums, arrays = _verify_source(source, source_dir)

    from tensorflow_datasets.image_classification import cifar

    version = str(getattr(cifar, source.builder).VERSION)
    dataset_root = os.path.join(data_dir, source.name)
    destination = os.path.join(dataset_root, version)
    partial = max_examples_per_split is not None
    expected_counts = {
        split: min(count, max_examples_per_split) if partial else count
        for split, count in source.num_examples.items()
    }

    # Decide on the existing destination before the expensive build.
    existing = inspect_dataset_dir(destination)
    if existing is not None:
        if _matches(existing, expected_counts, partial, checksums):
            logging.info(
                "%s is already prepared at %s (%s); nothing to do.",
                source.name,
                destination,
                _describe(existing),
            )
            return destination
        _check_replaceable(existing, destination, expected_counts, overwrite)

    _warn_about_stale_tmp_dirs(dataset_root)
    if arrays is None:
        arrays = _load_arrays(source, source_dir)
    if not partial:
        for split, (_, labels) in arrays.items():
            _check_counts(source, source_dir, split, labels[source.labels[0].key])
    else:
        arrays = {
            split: (
                images[:max_examples_per_split],
                {key: values[:max_examples_per_split] for key, values in labels.items()},
            )
            for split, (images, labels) in arrays.items()
        }
        logging.warning(
            "Preparing a PARTIAL %s (first %d examples per split: %s). It is marked "
            "as partial in metadata.json and will be replaced by a later full preparation.",
            source.name,
            max_examples_per_split,
            expected_counts,
        )

    metadata = {
        "prepared_by": PREPARED_BY,
        "partial": partial,
        "max_examples_per_split": max_examples_per_split,
        "num_examples": expected_counts,
        "source_sha256": checksums,
    }
    created_root = not os.path.isdir(dataset_root)
    os.makedirs(dataset_root, exist_ok=True)
    # Same parent directory as the destination: the final move is then a
    # rename on one filesystem, which is atomic.
    tmp_dir = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{version}-", dir=dataset_root)
    try:
        built = _build(source, arrays, tmp_dir, metadata)
        _move_into_place(built, destination, tmp_dir, expected_counts, partial, checksums)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if created_root and not os.path.exists(destination):
            # Leave no empty `<name>/` behind after a failure either.
            _remove_if_empty(dataset_root)

    logging.info(
        "Prepared %s %s at %s in %.1f s (%s).",
        source.name,
        version,
        destination,
        time.time() - start,
        ", ".join(f"{split}: {count}" for split, count in expected_counts.items()),
    )
    return destination


def tfds_load_call(dataset_name, data_dir):
    """Returns the `tfds.load` call that reads a prepared directory.

    Args:
        dataset_name: str. TFDS name, e.g. `"cifar10"`.
        data_dir: str or path-like. The TFDS data directory passed to
            `prepare`.

    Returns:
        str, e.g. `tfds.load("cifar10", data_dir="/data/tfds", download=False)`.
    """
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    return f"tfds.load({json.dumps(dataset_name)}, data_dir={json.dumps(data_dir)}, download=False)"


def _check_max_examples(value, source):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"max_examples_per_split must be a positive integer or None, got {value!r}."
        )
    value = int(value)
    if value >= max(source.num_examples.values()):
        # Keeping the first N of every split is then the full dataset; treat
        # it as such so it gets the full checks and is not marked partial.
        logging.info(
            "max_examples_per_split=%d covers every split: preparing the full dataset.", value
        )
        return None
    return value


def _missing_source_message(source, source_dir, what):
    return (
        f"{what}. The {source.title} source directory must contain: "
        f"{', '.join(source.source_files)} (see {source.readme}; {source.restore}). "
        f"Point source_dir (--source_dir) at the directory that holds them; got {source_dir}."
    )


def _verify_source(source, source_dir):
    """Checks that the source files exist and are the expected ones.

    Returns:
        `(checksums, arrays)`: checksums is a dict, file or array name ->
        verified hex SHA-256; arrays is what `_load_arrays` returns when the
        verification had to load them (content checksums), else None.
    """
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(
            _missing_source_message(
                source, source_dir, f"Source directory {source_dir} does not exist"
            )
        )
    missing = [
        name for name in source.source_files if not os.path.isfile(os.path.join(source_dir, name))
    ]
    if missing:
        raise FileNotFoundError(
            _missing_source_message(
                source, source_dir, f"Missing in {source_dir}: {', '.join(missing)}"
            )
        )
    checksums, arrays = {}, None
    if source.checksums_file:
        checksums.update(_verify_file_checksums(source, source_dir))
    if source.content_sha256 is not None:
        # Content checksums need the arrays, so they are loaded here (once),
        # before the destination is looked at.
        arrays = _load_arrays(source, source_dir)
        checksums.update(_verify_content_checksums(source, source_dir, arrays))
    return checksums, arrays


def _read_checksums_file(source, source_dir):
    path = os.path.join(source_dir, source.checksums_file)
    expected = {}
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or len(parts[0]) != 64:
                raise SourceDataError(
                    f"{path}, line {line_number}: expected '<sha256>  <file name>' as written by "
                    f"sha256sum, got {line!r}. Restore the original {source.checksums_file}."
                )
            # sha256sum marks binary mode with a leading '*'.
            expected[parts[1].lstrip("*")] = parts[0].lower()
    return path, expected


def _verify_file_checksums(source, source_dir):
    """Checks the data files against the source's `sha256sum` file.

    Returns:
        dict, file name -> verified hex SHA-256.
    """
    sums_path, expected = _read_checksums_file(source, source_dir)
    verified = {}
    for name in source.train_files + (source.test_file,):
        if name not in expected:
            raise SourceDataError(
                f"{sums_path} has no checksum for {name}, so it cannot be verified. "
                f"Restore the original {source.checksums_file} that came with the files."
            )
        path = os.path.join(source_dir, name)
        logging.info("Verifying sha256 of %s", path)
        actual = sha256_file(path)
        if actual != expected[name]:
            raise SourceDataError(
                f"Checksum mismatch for {path}: expected sha256 {expected[name]} "
                f"(from {sums_path}), got {actual}. The file is corrupt or not the one "
                f"the checksums were made for; copy it again from the original source "
                f"and check with `sha256sum -c {source.checksums_file}` in {source_dir}."
            )
        verified[name] = actual
    return verified


def _verify_content_checksums(source, source_dir, arrays):
    """Checks the complete arrays against `source.content_sha256`.

    Returns:
        dict, array name -> verified hex SHA-256 of its bytes.
    """
    verified = {}
    for array_name, expected in source.content_sha256.items():
        kind, split = array_name.split("_", 1)
        images, labels = arrays[split]
        array = images if kind == "x" else labels[source.labels[0].key]
        actual = _content_sha256(array)
        if actual != expected:
            files = _split_files_text(source, source_dir, split)
            raise SourceDataError(
                f"Checksum mismatch for {array_name} ({files}): "
                f"expected sha256 {expected} of its content (arr.tobytes() of the complete "
                f"array), got {actual}. The arrays are corrupt or not the ones "
                f"{source.readme} describes; {source.restore}."
            )
        verified[array_name] = actual
    return verified


def _content_sha256(array):
    # tobytes() is C order whatever the memory layout, so the digest depends
    # only on the values, shape and dtype.
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _split_files_text(source, source_dir, split):
    files = source.train_files if split == "train" else (source.test_file,)
    return " + ".join(os.path.join(source_dir, name) for name in files)


def _source_error(source, path, problem):
    return SourceDataError(
        f"{path}: {problem}. These files do not hold the complete, original "
        f"{source.title} as {source.readme} describes; {source.restore}."
    )


def _load_npz_split(source, path, split, index_offset=None):
    """Loads and checks one file: its images and `{label key: labels}`."""
    label_arrays = {label.key: f"y_{split}{label.array_suffix}" for label in source.labels}
    with np.load(path, allow_pickle=False) as npz:
        keys = (f"x_{split}",) + tuple(label_arrays.values())
        keys += tuple(label.names_array for label in source.labels)
        missing = [key for key in keys if key not in npz.files]
        if missing:
            raise _source_error(
                source, path, f"missing arrays {missing}, found {sorted(npz.files)}"
            )
        images = npz[f"x_{split}"]
        labels = {key: npz[array] for key, array in label_arrays.items()}
        class_names = {
            label.key: tuple(str(name) for name in npz[label.names_array])
            for label in source.labels
        }
        offset = int(npz["index_offset"]) if "index_offset" in npz.files else None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise _source_error(
            source,
            path,
            f"x_{split} must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}",
        )
    for label in source.labels:
        values, array = labels[label.key], label_arrays[label.key]
        if values.shape != (len(images),) or values.dtype.kind not in "iu":
            raise _source_error(
                source,
                path,
                f"{array} must be integer ({len(images)},), got {values.dtype} {values.shape}",
            )
        if values.size and (values.min() < 0 or values.max() >= len(label.names)):
            raise _source_error(
                source, path, f"{array} has labels outside 0..{len(label.names) - 1}"
            )
        if class_names[label.key] != label.names:
            raise _source_error(
                source,
                path,
                f"{label.names_array} are {class_names[label.key]}, expected {label.names}",
            )
    fine_labels = labels[source.labels[0].key]
    for label in source.labels:
        if label.of_fine_label is not None:
            _check_follows_fine_labels(source, path, split, label, labels[label.key], fine_labels)
    if index_offset is not None and offset != index_offset:
        # The parts must be concatenated in their original order.
        raise _source_error(source, path, f"index_offset is {offset}, expected {index_offset}")
    return images, labels


def _check_follows_fine_labels(source, path, split, label, values, fine_values):
    """Checks every `values[i]` is `label.of_fine_label[fine_values[i]]`."""
    expected = np.asarray(label.of_fine_label)[fine_values]
    wrong = np.flatnonzero(values != expected)
    if wrong.size:
        index = int(wrong[0])
        fine, got, want = int(fine_values[index]), int(values[index]), int(expected[index])
        fine_names = source.labels[0].names
        raise _source_error(
            source,
            path,
            f"{wrong.size} {label.key}s disagree with their fine labels, e.g. example {index}: "
            f"y_{split}{label.array_suffix} is {got} ({label.names[got]}) but its fine class "
            f"{fine} ({fine_names[fine]}) belongs to {want} ({label.names[want]})",
        )


def _load_arrays(source, source_dir):
    """Loads the splits in their original order, with the per-file checks.

    Returns:
        dict, split -> (uint8 images (N, 32, 32, 3), {label key: labels (N,)}).
    """
    logging.info("Loading %s arrays from %s", source.title, source_dir)
    train_parts = []
    offset = 0
    for name in source.train_files:
        path = os.path.join(source_dir, name)
        images, labels = _load_npz_split(source, path, "train", index_offset=offset)
        train_parts.append((images, labels))
        offset += len(images)
    train_labels = {
        label.key: np.concatenate([labels[label.key] for _, labels in train_parts])
        for label in source.labels
    }
    return {
        "train": (np.concatenate([images for images, _ in train_parts]), train_labels),
        "test": _load_npz_split(source, os.path.join(source_dir, source.test_file), "test"),
    }


def _check_counts(source, source_dir, split, labels):
    """Checks a complete split's size, examples per class and first labels."""
    where = _split_files_text(source, source_dir, split)
    total = source.num_examples[split]
    if len(labels) != total:
        raise _source_error(source, where, f"{len(labels)} {split} examples, expected {total}")
    num_classes = len(source.labels[0].names)
    per_class = np.bincount(labels, minlength=num_classes).tolist()
    expected_per_class = total // num_classes
    if per_class != [expected_per_class] * num_classes:
        raise _source_error(
            source,
            where,
            f"{split} examples per class are {per_class}, expected {expected_per_class} each",
        )
    if source.first_labels is not None:
        first = tuple(int(label) for label in labels[:10])
        if first != source.first_labels[split]:
            raise _source_error(
                source,
                where,
                f"first ten {split} labels are {first}, expected "
                f"{source.first_labels[split]} (the original order)",
            )


def _local_builder_class(source):
    """Returns the builder class; defined lazily to import TFDS only when needed."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import cifar

    upstream = getattr(cifar, source.builder)

    class LocalCifar(upstream, skip_registration=True):
        """Upstream `Cifar10` / `Cifar100` whose examples come from in-memory arrays.

        `skip_registration` keeps the TFDS registry pointing at the upstream
        class; `name` is set explicitly because TFDS would otherwise derive
        it from this class's name and write a differently named dataset.
        """

        name = source.name

        def __init__(self, *, arrays, **kwargs):
            self._local_arrays = arrays
            # dataset_info.json records the builder's module; name upstream's
            # so the written metadata matches an upstream build. Set on the
            # instance only: TFDS indexes classes by their own module.
            self.__module__ = upstream.__module__
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager):
            del dl_manager  # Nothing to download.
            # Upstream reads the names from the archive's label files; the
            # same names here (the arrays' own were checked against them).
            for label in source.labels:
                self.info.features[label.key].names = list(label.names)
            return {
                tfds.Split.TRAIN: _examples("train_", *self._local_arrays["train"]),
                tfds.Split.TEST: _examples("test_", *self._local_arrays["test"]),
            }

        def _log_download_done(self):
            # Upstream prints the temporary path as the final location; the
            # caller reports the real one after the move.
            pass

    return LocalCifar


def _examples(split_prefix, images, labels):
    """Yields `(key, example)` exactly as the upstream builder does.

    Upstream keys examples by their running index within the split and uses
    ids "train_00000", "test_00000", ...; TFDS shuffles the written records by
    hashing the keys, so equal keys give the same on-disk order as upstream.

    Args:
        split_prefix: `"train_"` or `"test_"`.
        images: uint8 array (N, 32, 32, 3).
        labels: dict, label key (`"label"`, `"coarse_label"`) -> array (N,).
    """
    for index in range(len(images)):
        if index and index % _LOG_EVERY_EXAMPLES == 0:
            logging.info("  %s: %d of %d examples", split_prefix.rstrip("_"), index, len(images))
        example = {"id": "{}{:05d}".format(split_prefix, index), "image": images[index]}
        example.update((key, int(values[index])) for key, values in labels.items())
        yield index, example


def _build(source, arrays, tmp_dir, metadata):
    """Writes the dataset under `tmp_dir` and returns its version directory."""
    import tensorflow_datasets as tfds

    builder = _local_builder_class(source)(arrays=arrays, data_dir=tmp_dir)
    logging.info("Writing TFDS files to temporary directory %s", builder.data_dir)
    builder.download_and_prepare(
        # Keep TFDS's scratch space inside the temporary directory too.
        download_dir=os.path.join(tmp_dir, "downloads"),
        download_config=tfds.download.DownloadConfig(try_download_gcs=False),
    )
    built = os.fspath(builder.data_dir)
    got = {split: builder.info.splits[split].num_examples for split in metadata["num_examples"]}
    if got != metadata["num_examples"]:
        raise RuntimeError(
            f"TFDS wrote {got} examples, expected {metadata['num_examples']}; nothing was moved."
        )
    # Standard TFDS metadata file: `builder.info.metadata` reads it back.
    tfds.core.MetadataDict(metadata).save_metadata(built)
    return built


def _move_into_place(built, destination, tmp_dir, expected_counts, partial, checksums):
    """Renames the finished build to `destination`, replacing what is there."""
    if os.path.exists(destination):
        # Only reached when the caller decided the old directory may go. Move
        # it aside first (a rename, instant) so the new one can be renamed in;
        # it is deleted together with tmp_dir.
        logging.info("Replacing %s", destination)
        os.rename(destination, os.path.join(tmp_dir, "replaced"))
    try:
        os.rename(built, destination)
    except OSError:
        # Another process moved its own build in meanwhile; accept it if it
        # is what was asked for, since the outcome is the same.
        existing = inspect_dataset_dir(destination)
        if existing is not None and _matches(existing, expected_counts, partial, checksums):
            logging.info("%s was prepared concurrently by another process; using it.", destination)
            return
        raise


def inspect_dataset_dir(destination):
    """Reads what a TFDS dataset directory holds, without TensorFlow.

    Args:
        destination: str or path-like. A dataset version directory such as
            `<data_dir>/cifar10/3.0.2`.

    Returns:
        None if the directory does not exist, else a dict with `counts`
        (split name -> number of examples from `dataset_info.json`, or None
        if that file is missing or unreadable) and `metadata` (the parsed
        `metadata.json`, or None). A directory written by this module with
        `max_examples_per_split` has `metadata["partial"] == True`.
    """
    if not os.path.exists(destination):
        return None
    counts = None
    info_path = os.path.join(destination, "dataset_info.json")
    try:
        with open(info_path) as f:
            info = json.load(f)
        counts = {
            split["name"]: sum(int(length) for length in split.get("shardLengths", []))
            for split in info.get("splits", [])
        }
    except (OSError, ValueError, KeyError, TypeError):
        pass  # Not a readable TFDS directory: reported as unknown below.
    metadata = None
    try:
        with open(os.path.join(destination, "metadata.json")) as f:
            metadata = json.load(f)
    except (OSError, ValueError):
        pass
    if not isinstance(metadata, dict):
        metadata = None
    return {"counts": counts, "metadata": metadata}


def _made_here(existing):
    metadata = existing["metadata"]
    return metadata is not None and metadata.get("prepared_by") == PREPARED_BY


def _matches(existing, expected_counts, partial, checksums):
    if existing["counts"] != expected_counts:
        return False
    if _made_here(existing):
        meta = existing["metadata"]
        return bool(meta.get("partial")) == partial and meta.get("source_sha256") == checksums
    # A full directory made elsewhere (e.g. `tfds build` on a connected
    # machine) is the real dataset; a partial request never matches it.
    return not partial


def _describe(existing):
    counts = existing["counts"]
    if counts is None:
        return "no readable dataset_info.json"
    text = ", ".join(f"{split}: {count}" for split, count in sorted(counts.items()))
    if _made_here(existing):
        text += ", partial" if existing["metadata"].get("partial") else ", full"
        text += f", made by {PREPARED_BY}"
    return text


def _check_replaceable(existing, destination, expected_counts, overwrite):
    if overwrite:
        logging.warning("overwrite=True: replacing %s (%s).", destination, _describe(existing))
        return
    if _made_here(existing) and existing["metadata"].get("partial"):
        logging.warning(
            "%s holds a PARTIAL dataset (%s); replacing it with the requested %s.",
            destination,
            _describe(existing),
            expected_counts,
        )
        return
    raise FileExistsError(
        f"{destination} already holds a dataset that does not match the request "
        f"(found {_describe(existing)}; requested {expected_counts}). Refusing to replace it: "
        "pass overwrite=True (--overwrite) to replace it, or use another data_dir."
    )


def _warn_about_stale_tmp_dirs(dataset_root):
    if not os.path.isdir(dataset_root):
        return
    stale = [name for name in os.listdir(dataset_root) if name.startswith(_TMP_PREFIX)]
    if stale:
        # Not deleted automatically: another preparation may be running.
        logging.warning(
            "Found temporary directories in %s from earlier, interrupted runs: %s. "
            "They are safe to delete when no preparation is running.",
            dataset_root,
            ", ".join(sorted(stale)),
        )


def _remove_if_empty(path):
    try:
        os.rmdir(path)
    except OSError:
        pass


def _unsupported_message(name, data_dir):
    supported = ", ".join(SUPPORTED_DATASETS)
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
    return f"Cannot prepare {name!r} from local files: supported are {supported}. {how}"
