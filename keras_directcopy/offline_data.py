"""Prepare standard TFDS data directories from local files, without network.

TensorFlow Datasets downloads its sources on first use. On machines without
internet access (air-gapped clusters) that fails, so this module
writes the very same data directory from files that were copied over by
hand. Afterwards the ordinary call works unchanged:

```python
tfds.load("cifar10", data_dir=DATA_DIR, download=False)
```

Only CIFAR-10 from the three `.npz` files described in its source README is
supported. The dataset is written by a subclass of the upstream TFDS
`Cifar10` builder that only swaps where the examples come from, so features,
label names, example ids, keys (and therefore the on-disk order, which TFDS
derives from the keys), version and file layout are the upstream ones.

Partial datasets. `max_examples_per_split=N` keeps the first N examples of
each split, for tests and quick trials. Such a directory is still a valid
`cifar10` directory (so `tfds.load` reads it), and it is told apart from a
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

# Name of the marker written by this module into `metadata.json`.
PREPARED_BY = "keras_directcopy.offline_data"

SUPPORTED_DATASETS = ("cifar10",)

# Temporary build directories start with this, next to the destination. The
# leading dot keeps TFDS (which lists version directories) from seeing them.
_TMP_PREFIX = ".tmp-prepare-"

_LOG_EVERY_EXAMPLES = 10000


class SourceDataError(ValueError):
    """The local source files are not the expected, complete dataset."""


def prepare(dataset_name, source_dir, data_dir, **kwargs):
    """Writes a TFDS data directory for `dataset_name` from local files.

    Dispatches by name to the dataset-specific function (only
    `prepare_cifar10` for now).

    Args:
        dataset_name: str. TFDS name of the dataset, e.g. `"cifar10"`.
        source_dir: str or path-like. Directory holding the local source files.
        data_dir: str or path-like. TFDS data directory to write into, the one
            later passed to `tfds.load(..., data_dir=data_dir)`.
        **kwargs: passed on to the dataset-specific function, e.g.
            `max_examples_per_split` and `overwrite`.

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
    preparers = {"cifar10": prepare_cifar10}
    if name not in preparers:
        raise ValueError(_unsupported_message(name, data_dir))
    return preparers[name](source_dir, data_dir, **kwargs)


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
    start = time.time()
    source_dir = os.path.abspath(os.path.expanduser(os.fspath(source_dir)))
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    max_examples_per_split = _check_max_examples(max_examples_per_split)

    checksums = _verify_cifar10_checksums(source_dir)

    from tensorflow_datasets.image_classification import cifar

    version = str(cifar.Cifar10.VERSION)
    dataset_root = os.path.join(data_dir, "cifar10")
    destination = os.path.join(dataset_root, version)
    partial = max_examples_per_split is not None
    expected_counts = {
        split: min(count, max_examples_per_split) if partial else count
        for split, count in CIFAR10_NUM_EXAMPLES.items()
    }

    # Decide on the existing destination before the expensive build.
    existing = inspect_dataset_dir(destination)
    if existing is not None:
        if _matches(existing, expected_counts, partial, checksums):
            logging.info(
                "cifar10 is already prepared at %s (%s); nothing to do.",
                destination,
                _describe(existing),
            )
            return destination
        _check_replaceable(existing, destination, expected_counts, overwrite)

    _warn_about_stale_tmp_dirs(dataset_root)
    arrays = _load_cifar10_arrays(source_dir, full_checks=not partial)
    if partial:
        arrays = {
            split: (images[:max_examples_per_split], labels[:max_examples_per_split])
            for split, (images, labels) in arrays.items()
        }
        logging.warning(
            "Preparing a PARTIAL cifar10 (first %d examples per split: %s). It is marked "
            "as partial in metadata.json and will be replaced by a later full preparation.",
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
        built = _build_cifar10(arrays, tmp_dir, metadata)
        _move_into_place(built, destination, tmp_dir, expected_counts, partial, checksums)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if created_root and not os.path.exists(destination):
            # Leave no empty `cifar10/` behind after a failure either.
            _remove_if_empty(dataset_root)

    logging.info(
        "Prepared cifar10 %s at %s in %.1f s (%s).",
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


def _check_max_examples(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"max_examples_per_split must be a positive integer or None, got {value!r}."
        )
    value = int(value)
    if value >= max(CIFAR10_NUM_EXAMPLES.values()):
        # Keeping the first N of every split is then the full dataset; treat
        # it as such so it gets the full checks and is not marked partial.
        logging.info(
            "max_examples_per_split=%d covers every split: preparing the full dataset.", value
        )
        return None
    return value


def _missing_source_message(source_dir, what):
    expected = ", ".join((CIFAR10_CHECKSUMS_FILE,) + CIFAR10_SOURCE_FILES)
    return (
        f"{what}. The CIFAR-10 source directory must contain: {expected} "
        "(see the README next to them). Point source_dir (--source_dir) at the "
        f"directory that holds them; got {source_dir}."
    )


def _read_checksums_file(source_dir):
    path = os.path.join(source_dir, CIFAR10_CHECKSUMS_FILE)
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
                    f"sha256sum, got {line!r}. Restore the original {CIFAR10_CHECKSUMS_FILE}."
                )
            # sha256sum marks binary mode with a leading '*'.
            expected[parts[1].lstrip("*")] = parts[0].lower()
    return path, expected


def _verify_cifar10_checksums(source_dir):
    """Checks that the source files exist and match SHA256SUMS.

    Returns:
        dict, file name -> verified hex SHA-256.
    """
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(
            _missing_source_message(source_dir, f"Source directory {source_dir} does not exist")
        )
    missing = [
        name
        for name in (CIFAR10_CHECKSUMS_FILE,) + CIFAR10_SOURCE_FILES
        if not os.path.isfile(os.path.join(source_dir, name))
    ]
    if missing:
        raise FileNotFoundError(
            _missing_source_message(
                source_dir, f"Missing in {source_dir}: {', '.join(missing)}"
            )
        )
    sums_path, expected = _read_checksums_file(source_dir)
    verified = {}
    for name in CIFAR10_SOURCE_FILES:
        if name not in expected:
            raise SourceDataError(
                f"{sums_path} has no checksum for {name}, so it cannot be verified. "
                f"Restore the original {CIFAR10_CHECKSUMS_FILE} that came with the files."
            )
        path = os.path.join(source_dir, name)
        logging.info("Verifying sha256 of %s", path)
        actual = sha256_file(path)
        if actual != expected[name]:
            raise SourceDataError(
                f"Checksum mismatch for {path}: expected sha256 {expected[name]} "
                f"(from {sums_path}), got {actual}. The file is corrupt or not the one "
                f"the checksums were made for; copy it again from the original source "
                f"and check with `sha256sum -c {CIFAR10_CHECKSUMS_FILE}` in {source_dir}."
            )
        verified[name] = actual
    return verified


def _source_error(path, problem):
    return SourceDataError(
        f"{path}: {problem}. These files do not hold the complete, original "
        "CIFAR-10 as the README next to them describes; restore the original "
        "files (and their SHA256SUMS)."
    )


def _load_npz_split(path, split, index_offset=None):
    with np.load(path, allow_pickle=False) as npz:
        keys = (f"x_{split}", f"y_{split}", "class_names")
        missing = [key for key in keys if key not in npz.files]
        if missing:
            raise _source_error(path, f"missing arrays {missing}, found {sorted(npz.files)}")
        images, labels = npz[f"x_{split}"], npz[f"y_{split}"]
        class_names = tuple(str(name) for name in npz["class_names"])
        offset = int(npz["index_offset"]) if "index_offset" in npz.files else None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise _source_error(
            path, f"x_{split} must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}"
        )
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise _source_error(
            path, f"y_{split} must be integer ({len(images)},), got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASS_NAMES)):
        raise _source_error(path, f"y_{split} has labels outside 0..9")
    if class_names != CIFAR10_CLASS_NAMES:
        raise _source_error(path, f"class_names are {class_names}, expected {CIFAR10_CLASS_NAMES}")
    if index_offset is not None and offset != index_offset:
        # The parts must be concatenated in their original order.
        raise _source_error(path, f"index_offset is {offset}, expected {index_offset}")
    return images, labels


def _load_cifar10_arrays(source_dir, full_checks):
    """Loads the splits in their original order and checks them.

    Returns:
        dict, split -> (uint8 images (N, 32, 32, 3), labels (N,)).
    """
    logging.info("Loading CIFAR-10 arrays from %s", source_dir)
    train_parts = []
    offset = 0
    for name in CIFAR10_TRAIN_FILES:
        path = os.path.join(source_dir, name)
        images, labels = _load_npz_split(path, "train", index_offset=offset)
        train_parts.append((images, labels))
        offset += len(images)
    arrays = {
        "train": (
            np.concatenate([images for images, _ in train_parts]),
            np.concatenate([labels for _, labels in train_parts]),
        ),
        "test": _load_npz_split(os.path.join(source_dir, CIFAR10_TEST_FILE), "test"),
    }
    if full_checks:
        for split, (_, labels) in arrays.items():
            _check_counts(source_dir, split, labels)
    return arrays


def _check_counts(source_dir, split, labels):
    files = CIFAR10_TRAIN_FILES if split == "train" else (CIFAR10_TEST_FILE,)
    where = " + ".join(os.path.join(source_dir, name) for name in files)
    total = CIFAR10_NUM_EXAMPLES[split]
    if len(labels) != total:
        raise _source_error(where, f"{len(labels)} {split} examples, expected {total}")
    per_class = np.bincount(labels, minlength=len(CIFAR10_CLASS_NAMES)).tolist()
    expected_per_class = total // len(CIFAR10_CLASS_NAMES)
    if per_class != [expected_per_class] * len(CIFAR10_CLASS_NAMES):
        raise _source_error(
            where, f"{split} examples per class are {per_class}, expected {expected_per_class} each"
        )
    first = tuple(int(label) for label in labels[:10])
    if first != CIFAR10_FIRST_LABELS[split]:
        raise _source_error(
            where,
            f"first ten {split} labels are {first}, expected "
            f"{CIFAR10_FIRST_LABELS[split]} (the original order)",
        )


def _local_cifar10_builder_class():
    """Returns the builder class; defined lazily to import TFDS only when needed."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import cifar

    class LocalCifar10(cifar.Cifar10, skip_registration=True):
        """Upstream `Cifar10` whose examples come from in-memory arrays.

        `skip_registration` keeps the TFDS registry pointing at the upstream
        class; `name` is set explicitly because TFDS would otherwise derive
        it from this class's name and write a differently named dataset.
        """

        name = "cifar10"

        def __init__(self, *, arrays, **kwargs):
            self._local_arrays = arrays
            # dataset_info.json records the builder's module; name upstream's
            # so the written metadata matches an upstream build. Set on the
            # instance only: TFDS indexes classes by their own module.
            self.__module__ = cifar.Cifar10.__module__
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager):
            del dl_manager  # Nothing to download.
            # Upstream reads the names from batches.meta.txt; same names here.
            self.info.features["label"].names = list(CIFAR10_CLASS_NAMES)
            return {
                tfds.Split.TRAIN: _cifar10_examples("train_", *self._local_arrays["train"]),
                tfds.Split.TEST: _cifar10_examples("test_", *self._local_arrays["test"]),
            }

        def _log_download_done(self):
            # Upstream prints the temporary path as the final location; the
            # caller reports the real one after the move.
            pass

    return LocalCifar10


def _cifar10_examples(split_prefix, images, labels):
    """Yields `(key, example)` exactly as the upstream builder does.

    Upstream keys examples by their running index within the split and uses
    ids "train_00000", "test_00000", ...; TFDS shuffles the written records by
    hashing the keys, so equal keys give the same on-disk order as upstream.
    """
    for index in range(len(images)):
        if index and index % _LOG_EVERY_EXAMPLES == 0:
            logging.info("  %s: %d of %d examples", split_prefix.rstrip("_"), index, len(images))
        yield index, {
            "id": "{}{:05d}".format(split_prefix, index),
            "image": images[index],
            "label": int(labels[index]),
        }


def _build_cifar10(arrays, tmp_dir, metadata):
    """Writes the dataset under `tmp_dir` and returns its version directory."""
    import tensorflow_datasets as tfds

    builder = _local_cifar10_builder_class()(arrays=arrays, data_dir=tmp_dir)
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
