"""Offline TFDS preparation: `keras_directcopy.data.offline` and
`scripts/prepare_data.py` write `cifar10` and `cifar100` directories that
`tfds.load(..., download=False)` reads: CIFAR-10 from the shared `.npz` files,
CIFAR-100 from small synthetic sources in build_cifar100.py's layout (the
real CIFAR-100 arrays are built per machine, so the default suite does not
need them)."""

import ast
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_directcopy.data import datasets as data
from keras_directcopy.data import offline as offline_data
from keras_directcopy.utils.files import sha256_file
from tests.cifar_archives import write_cifar10_archive, write_cifar100_archive
from tests.helpers import write_corrupted_copy

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
VERSION = "3.0.2"
# Examples kept per split in the shared partial dataset below.
N = 120


def _load_source(split):
    """The first N examples of a split, straight from the shared npz files."""
    if split == "train":
        with np.load(SOURCE_DIR / "cifar10_part1of3.npz") as npz:
            return npz["x_train"][:N], npz["y_train"][:N]
    with np.load(SOURCE_DIR / "cifar10_part3of3.npz") as npz:
        return npz["x_test"][:N], npz["y_test"][:N]


def _read_split(data_dir, split):
    """All examples of a split as read by the ordinary tfds.load call."""
    ds = tfds.load("cifar10", split=split, data_dir=os.fspath(data_dir), download=False)
    return [{key: value.numpy() for key, value in example.items()} for example in ds]


def _files(directory):
    return sorted(path.name for path in Path(directory).iterdir())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A partial cifar10 (first N examples per split), shared by several tests."""
    data_dir = tmp_path_factory.mktemp("tfds")
    dataset_dir = offline_data.prepare(
        "cifar10", SOURCE_DIR, data_dir, max_examples_per_split=N
    )
    return data_dir, Path(dataset_dir)


def _link_source(tmp_path, names=None):
    """A tmp source dir that links to the shared files (never modifies them)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in names or ("SHA256SUMS",) + offline_data.CIFAR10_SOURCE_FILES:
        (source / name).symlink_to(SOURCE_DIR / name)
    return source


def test_prepared_partial_dataset_reads_back_pixel_identical(prepared):
    data_dir, dataset_dir = prepared
    assert dataset_dir == data_dir / "cifar10" / VERSION
    for split in ("train", "test"):
        images, labels = _load_source(split)
        examples = _read_split(data_dir, split)
        assert len(examples) == N
        by_index = {}
        for example in examples:
            assert example["image"].shape == (32, 32, 3)
            assert example["image"].dtype == np.uint8
            prefix, index = example["id"].decode().split("_")
            assert prefix == split
            by_index[int(index)] = example
        # Each of the first N source examples appears exactly once.
        assert sorted(by_index) == list(range(N))
        for index, example in by_index.items():
            np.testing.assert_array_equal(example["image"], images[index])
            assert example["label"] == labels[index]
        first_ten = [int(by_index[i]["label"]) for i in range(10)]
        assert tuple(first_ten) == offline_data.CIFAR10_FIRST_LABELS[split]

    builder = tfds.builder("cifar10", data_dir=os.fspath(data_dir))
    assert builder.info.splits["train"].num_examples == N
    assert builder.info.splits["test"].num_examples == N
    assert builder.info.features["label"].names == list(offline_data.CIFAR10_CLASS_NAMES)
    # The partial marker is visible through the standard TFDS metadata.
    assert builder.info.metadata["partial"] is True
    assert builder.info.metadata["max_examples_per_split"] == N
    state = offline_data.inspect_dataset_dir(dataset_dir)
    assert state["counts"] == {"train": N, "test": N}
    # Only the finished dataset is left: no temporary build directory.
    assert _files(data_dir) == ["cifar10"]
    assert _files(data_dir / "cifar10") == [VERSION]


def test_files_are_byte_identical_to_the_upstream_builder(prepared, tmp_path, monkeypatch):
    """The upstream Cifar10 builder, fed the same N examples in the official
    binary format, writes the very same records in the same order."""
    _, dataset_dir = prepared
    archive = write_cifar10_archive(
        tmp_path / "extracted", _load_source("train"), _load_source("test"),
        offline_data.CIFAR10_CLASS_NAMES,
    )
    _assert_same_files_as_upstream("cifar10", dataset_dir, archive, tmp_path, monkeypatch)


@pytest.mark.slow
def test_script_with_default_source_dir_prints_the_load_call(tmp_path):
    data_dir = tmp_path / "tfds"
    result = subprocess.run(
        [
            sys.executable,
            os.fspath(ROOT / "scripts" / "prepare_data.py"),
            f"--data_dir={data_dir}",
            "--max_examples_per_split=20",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # The default --source_dir must not depend on the cwd.
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    call = f'tfds.load("cifar10", data_dir="{data_dir}", download=False)'
    assert call in result.stdout
    assert f"{data_dir / 'cifar10' / VERSION}" in result.stdout
    assert "PARTIAL" in result.stdout
    # The printed call is the one that works.
    train = eval(call.replace('"cifar10"', '"cifar10", split="train"'), {"tfds": tfds})
    assert sum(1 for _ in train) == 20
    assert offline_data.inspect_dataset_dir(data_dir / "cifar10" / VERSION)["counts"] == {
        "train": 20,
        "test": 20,
    }


@pytest.mark.slow
def test_script_reports_unsupported_dataset_without_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.fspath(ROOT / "scripts" / "prepare_data.py"),
            "--dataset=stl10",
            f"--data_dir={tmp_path / 'tfds'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "error: Cannot prepare 'stl10'" in result.stderr
    assert "tfds build stl10" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tfds").exists()


def test_second_call_reuses_the_dataset_without_rebuilding(prepared, monkeypatch, caplog):
    data_dir, dataset_dir = prepared
    info = dataset_dir / "dataset_info.json"
    before = (dataset_dir.stat().st_ino, info.stat().st_mtime_ns)

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt an already prepared dataset")

    monkeypatch.setattr(offline_data, "_build", no_build)
    with caplog.at_level(logging.INFO):
        again = offline_data.prepare("cifar10", SOURCE_DIR, data_dir, max_examples_per_split=N)
    assert Path(again) == dataset_dir
    assert (dataset_dir.stat().st_ino, info.stat().st_mtime_ns) == before
    assert "already prepared" in caplog.text


def test_partial_directory_is_replaced_never_reused(prepared, tmp_path, monkeypatch):
    data_dir = tmp_path / "tfds"
    shutil.copytree(prepared[0], data_dir)
    dataset_dir = data_dir / "cifar10" / VERSION

    # A different partial size rebuilds and replaces the old one.
    offline_data.prepare("cifar10", SOURCE_DIR, data_dir, max_examples_per_split=30)
    assert offline_data.inspect_dataset_dir(dataset_dir)["counts"] == {"train": 30, "test": 30}
    assert len(_read_split(data_dir, "test")) == 30

    # A full request must build (here it fails on purpose, to keep the test
    # fast), and the failure leaves the partial directory as it was.
    class Built(Exception):
        pass

    def failing_build(source, arrays, tmp_dir, metadata):
        assert source.name == "cifar10" and metadata["partial"] is False
        assert {split: len(x) for split, (x, _) in arrays.items()} == {"train": 50000, "test": 10000}
        raise Built()

    monkeypatch.setattr(offline_data, "_build", failing_build)
    with pytest.raises(Built):
        offline_data.prepare("cifar10", SOURCE_DIR, data_dir)
    assert offline_data.inspect_dataset_dir(dataset_dir)["counts"] == {"train": 30, "test": 30}
    assert _files(data_dir / "cifar10") == [VERSION]


def test_unknown_directory_is_kept_unless_overwrite(tmp_path):
    data_dir = tmp_path / "tfds"
    dataset_dir = data_dir / "cifar10" / VERSION
    dataset_dir.mkdir(parents=True)
    (dataset_dir / "notes.txt").write_text("not a dataset")
    with pytest.raises(FileExistsError, match="overwrite=True") as error:
        offline_data.prepare("cifar10", SOURCE_DIR, data_dir, max_examples_per_split=5)
    assert str(dataset_dir) in str(error.value)
    assert _files(dataset_dir) == ["notes.txt"]

    offline_data.prepare("cifar10", SOURCE_DIR, data_dir, max_examples_per_split=5, overwrite=True)
    assert "notes.txt" not in _files(dataset_dir)
    assert offline_data.inspect_dataset_dir(dataset_dir)["counts"] == {"train": 5, "test": 5}


def test_failure_during_generation_leaves_no_directory(tmp_path, monkeypatch):
    data_dir = tmp_path / "tfds"
    real_examples = offline_data._examples

    def examples_then_crash(prefix, images, labels):
        for i, item in enumerate(real_examples(prefix, images, labels)):
            if i == 7:
                raise RuntimeError("simulated crash while writing")
            yield item

    monkeypatch.setattr(offline_data, "_examples", examples_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        offline_data.prepare("cifar10", SOURCE_DIR, data_dir, max_examples_per_split=20)
    assert not (data_dir / "cifar10" / VERSION).exists()
    # Neither the temporary build directory nor an empty cifar10/ is left.
    assert list(data_dir.iterdir()) == []


def test_wrong_checksum_in_sums_file_names_file_and_hashes(tmp_path):
    source = _link_source(tmp_path, offline_data.CIFAR10_SOURCE_FILES)
    lines = (SOURCE_DIR / "SHA256SUMS").read_text().splitlines()
    wrong = "0" * 64
    lines = [wrong + line[64:] if "part2of3" in line else line for line in lines]
    (source / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    real = sha256_file(SOURCE_DIR / "cifar10_part2of3.npz")
    with pytest.raises(offline_data.SourceDataError) as error:
        offline_data.prepare("cifar10", source, tmp_path / "tfds", max_examples_per_split=5)
    message = str(error.value)
    assert "Checksum mismatch" in message
    assert str(source / "cifar10_part2of3.npz") in message
    assert f"expected sha256 {wrong}" in message and f"got {real}" in message
    assert "copy it again" in message
    assert not (tmp_path / "tfds").exists()


def test_corrupted_source_file_fails_before_anything_is_written(tmp_path):
    source = _link_source(tmp_path, ("SHA256SUMS",) + offline_data.CIFAR10_TRAIN_FILES)
    write_corrupted_copy(SOURCE_DIR / "cifar10_part3of3.npz", source / "cifar10_part3of3.npz")
    expected = next(
        line.split()[0]
        for line in (SOURCE_DIR / "SHA256SUMS").read_text().splitlines()
        if "part3of3" in line
    )
    with pytest.raises(offline_data.SourceDataError) as error:
        offline_data.prepare("cifar10", source, tmp_path / "tfds")
    message = str(error.value)
    assert "cifar10_part3of3.npz" in message
    assert f"expected sha256 {expected}" in message
    corrupted = (source / "cifar10_part3of3.npz").read_bytes()
    assert f"got {hashlib.sha256(corrupted).hexdigest()}" in message
    assert not (tmp_path / "tfds").exists()


def test_missing_source_dir_and_missing_file(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        offline_data.prepare("cifar10", missing, tmp_path / "tfds")
    message = str(error.value)
    assert str(missing) in message and "does not exist" in message
    for name in ("SHA256SUMS",) + offline_data.CIFAR10_SOURCE_FILES:
        assert name in message

    source = _link_source(tmp_path, ("SHA256SUMS",) + offline_data.CIFAR10_TRAIN_FILES)
    with pytest.raises(FileNotFoundError, match=f"Missing in {source}: cifar10_part3of3.npz"):
        offline_data.prepare("cifar10", source, tmp_path / "tfds")
    assert not (tmp_path / "tfds").exists()


@pytest.mark.parametrize(
    "name, advice",
    [
        ("svhn_cropped", "tfds build svhn_cropped"),
        ("stl10", "tfds build stl10"),
        ("imagenet2012", os.path.join("downloads", "manual")),
    ],
)
def test_unsupported_dataset_says_what_to_do(tmp_path, name, advice):
    with pytest.raises(ValueError) as error:
        offline_data.prepare(name, SOURCE_DIR, tmp_path / "tfds")
    message = str(error.value)
    assert f"Cannot prepare {name!r}" in message
    assert "supported are cifar10, cifar100" in message
    assert advice in message
    assert not (tmp_path / "tfds").exists()


def test_count_checks_run_for_full_preparation_only(tmp_path):
    """Files with valid checksums but too few images: a full preparation
    refuses them, a partial one (counts unchecked by design) accepts them."""
    rng = np.random.default_rng(0)
    source = tmp_path / "source"
    source.mkdir()
    names = offline_data.CIFAR10_CLASS_NAMES
    first = offline_data.CIFAR10_FIRST_LABELS
    for name, split, labels, offset in [
        ("cifar10_part1of3.npz", "train", first["train"], 0),
        ("cifar10_part2of3.npz", "train", first["train"], 10),
        ("cifar10_part3of3.npz", "test", first["test"], None),
    ]:
        arrays = {
            f"x_{split}": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
            f"y_{split}": np.array(labels, dtype=np.uint8),
            "class_names": np.array(names),
        }
        if offset is not None:
            arrays["index_offset"] = np.array(offset)
        np.savez(source / name, **arrays)
    (source / "SHA256SUMS").write_text(
        "".join(
            f"{sha256_file(source / name)}  {name}\n"
            for name in offline_data.CIFAR10_SOURCE_FILES
        )
    )
    with pytest.raises(offline_data.SourceDataError, match="20 train examples, expected 50000"):
        offline_data.prepare("cifar10", source, tmp_path / "full")
    assert not (tmp_path / "full").exists()

    dataset_dir = offline_data.prepare("cifar10", source, tmp_path / "partial", max_examples_per_split=4)
    assert offline_data.inspect_dataset_dir(dataset_dir)["counts"] == {"train": 4, "test": 4}
    metadata = json.loads((Path(dataset_dir) / "metadata.json").read_text())
    assert metadata["partial"] is True
    assert metadata["source_sha256"]["cifar10_part3of3.npz"] == sha256_file(
        source / "cifar10_part3of3.npz"
    )


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_invalid_max_examples_per_split(tmp_path, bad):
    with pytest.raises(ValueError, match="max_examples_per_split must be a positive integer"):
        offline_data.prepare("cifar10", SOURCE_DIR, tmp_path / "tfds", max_examples_per_split=bad)
    assert not (tmp_path / "tfds").exists()


# CIFAR-100 ---------------------------------------------------------------
#
# The real arrays are built on each machine (see the README in
# SHARED_CIFAR100), so these tests write small synthetic sources in the same
# layout and swap in a description of them: `offline_data.SOURCES["cifar100"]`
# with their content digests and sizes. Everything else (loading, checks,
# builder) is the code the real arrays go through.

SHARED_CIFAR100 = ROOT.parent / "shared" / "data" / "cifar100"
C100_NAMES = offline_data.CIFAR100_CLASS_NAMES
C100_COARSE_NAMES = offline_data.CIFAR100_COARSE_CLASS_NAMES
C100_TO_COARSE = np.array(offline_data.CIFAR100_FINE_TO_COARSE, np.uint8)
# Synthetic examples per fine class (the real arrays have 500 and 100).
C100_PER_CLASS = {"train": 2, "test": 1}


def _cifar100_arrays(seed=0):
    """split -> [images, fine labels, coarse labels], in a shuffled order as
    build_cifar100.py writes them."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, per_class in C100_PER_CLASS.items():
        fine = rng.permutation(np.repeat(np.arange(100, dtype=np.uint8), per_class))
        images = rng.integers(0, 256, (len(fine), 32, 32, 3), dtype=np.uint8)
        arrays[split] = [images, fine, C100_TO_COARSE[fine]]
    return arrays


def _write_cifar100_source(directory, arrays):
    """Writes build_cifar100.py's three files from `_cifar100_arrays` output."""
    directory.mkdir(parents=True)
    names = {
        "class_names": np.array(C100_NAMES),
        "coarse_class_names": np.array(C100_COARSE_NAMES),
    }
    x, y, coarse = arrays["train"]
    half = len(x) // 2
    for part, (lo, hi) in enumerate(((0, half), (half, len(x))), 1):
        np.savez_compressed(
            directory / f"cifar100_part{part}of3.npz",
            x_train=x[lo:hi],
            y_train=y[lo:hi],
            y_train_coarse=coarse[lo:hi],
            index_offset=lo,
            **names,
        )
    x, y, coarse = arrays["test"]
    np.savez_compressed(
        directory / "cifar100_part3of3.npz", x_test=x, y_test=y, y_test_coarse=coarse, **names
    )
    return directory


def _content_digests(arrays):
    return {
        f"{kind}_{split}": hashlib.sha256(array.tobytes()).hexdigest()
        for split, (x, y, _) in arrays.items()
        for kind, array in (("x", x), ("y", y))
    }


def _describe_synthetic(arrays):
    """The CIFAR-100 description with the synthetic source's digests and sizes."""
    return dataclasses.replace(
        offline_data.CIFAR100,
        content_sha256=_content_digests(arrays),
        num_examples={split: len(x) for split, (x, _, _) in arrays.items()},
    )


def _rewrite_npz(path, change):
    """Loads `path`, lets `change(dict of arrays)` edit it, saves it back."""
    with np.load(path) as npz:
        arrays = {key: npz[key].copy() for key in npz.files}
    change(arrays)
    np.savez_compressed(path, **arrays)


@pytest.fixture(scope="module")
def c100_arrays():
    return _cifar100_arrays()


@pytest.fixture(scope="module")
def c100_source(tmp_path_factory, c100_arrays):
    """A synthetic CIFAR-100 source directory, never modified by the tests."""
    return _write_cifar100_source(tmp_path_factory.mktemp("c100") / "source", c100_arrays)


@pytest.fixture
def synthetic_c100(monkeypatch, c100_arrays):
    """Makes `prepare("cifar100", ...)` expect the synthetic arrays."""
    description = _describe_synthetic(c100_arrays)
    monkeypatch.setitem(offline_data.SOURCES, "cifar100", description)
    return description


@pytest.fixture
def c100_copy(tmp_path, c100_arrays):
    """A synthetic source in this test's tmp_path, free to be damaged."""
    return _write_cifar100_source(tmp_path / "source", c100_arrays)


@pytest.fixture(scope="module")
def prepared_c100(tmp_path_factory, c100_source, c100_arrays):
    """A full cifar100 directory prepared from the synthetic source."""
    data_dir = tmp_path_factory.mktemp("tfds100")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(offline_data.SOURCES, "cifar100", _describe_synthetic(c100_arrays))
        dataset_dir = offline_data.prepare("cifar100", c100_source, data_dir)
    return data_dir, Path(dataset_dir)


def _read_c100(data_dir, split):
    ds = tfds.load("cifar100", split=split, data_dir=os.fspath(data_dir), download=False)
    return [{key: value.numpy() for key, value in example.items()} for example in ds]


def test_cifar100_reads_back_with_plain_tfds_load(prepared_c100, c100_arrays):
    data_dir, dataset_dir = prepared_c100
    assert dataset_dir == data_dir / "cifar100" / VERSION
    for split, (images, fine, coarse) in c100_arrays.items():
        examples = _read_c100(data_dir, split)
        assert len(examples) == len(images)
        by_index = {}
        for example in examples:
            assert set(example) == {"id", "image", "label", "coarse_label"}
            prefix, index = example["id"].decode().split("_")
            assert prefix == split
            by_index[int(index)] = example
        assert sorted(by_index) == list(range(len(images)))
        for index, example in by_index.items():
            np.testing.assert_array_equal(example["image"], images[index])
            assert example["label"] == fine[index]
            assert example["coarse_label"] == coarse[index]
        read_fine = np.array([example["label"] for example in examples])
        read_coarse = np.array([example["coarse_label"] for example in examples])
        per_class = C100_PER_CLASS[split]
        assert np.bincount(read_fine, minlength=100).tolist() == [per_class] * 100
        # Five fine classes per superclass.
        assert np.bincount(read_coarse, minlength=20).tolist() == [5 * per_class] * 20
        np.testing.assert_array_equal(read_coarse, C100_TO_COARSE[read_fine])

    builder = tfds.builder("cifar100", data_dir=os.fspath(data_dir))
    assert builder.info.features["label"].names == list(C100_NAMES)
    assert builder.info.features["coarse_label"].names == list(C100_COARSE_NAMES)
    assert builder.info.features["label"].names[:3] == ["apple", "aquarium_fish", "baby"]
    assert builder.info.supervised_keys == ("image", "label")
    assert builder.info.splits["train"].num_examples == 200
    assert builder.info.splits["test"].num_examples == 100
    assert builder.info.metadata["partial"] is False
    assert builder.info.metadata["source_sha256"] == _content_digests(c100_arrays)
    assert _files(data_dir) == ["cifar100"]
    assert _files(data_dir / "cifar100") == [VERSION]


def test_cifar100_files_are_byte_identical_to_the_upstream_builder(
    prepared_c100, c100_arrays, tmp_path, monkeypatch
):
    """The upstream Cifar100 builder, fed the same examples in the official
    binary format, writes the very same files."""
    _, dataset_dir = prepared_c100
    archive = write_cifar100_archive(tmp_path / "extracted", c100_arrays, C100_NAMES, C100_COARSE_NAMES)
    _assert_same_files_as_upstream("cifar100", dataset_dir, archive, tmp_path, monkeypatch)


def test_cifar100_constants_are_build_scripts_and_official_table():
    """Digests, names and fine-to-coarse table equal build_cifar100.py's."""
    tree = ast.parse((SHARED_CIFAR100 / "build_cifar100.py").read_text())
    script = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "EXPECTED" or name == "FINE_TO_COARSE":
                script[name] = ast.literal_eval(node.value)
            elif name in ("FINE", "COARSE"):  # "...".split()
                script[name] = ast.literal_eval(node.value.func.value).split()
    assert offline_data.CIFAR100.content_sha256 == script["EXPECTED"]
    assert list(C100_NAMES) == script["FINE"]
    assert list(C100_COARSE_NAMES) == script["COARSE"]
    assert list(offline_data.CIFAR100_FINE_TO_COARSE) == script["FINE_TO_COARSE"]
    # Official structure: 100 alphabetical fine classes, five per superclass.
    assert list(C100_NAMES) == sorted(C100_NAMES) and len(set(C100_NAMES)) == 100
    assert np.bincount(C100_TO_COARSE).tolist() == [5] * 20
    assert C100_COARSE_NAMES[C100_TO_COARSE[C100_NAMES.index("maple_tree")]] == "trees"


def test_cifar100_coarse_labels_for_evaluation(prepared_c100):
    data_dir, _ = prepared_c100
    spec = data.get_dataset_spec("cifar100:coarse_label")
    assert (spec.name, spec.label_key, spec.num_classes) == ("cifar100", "coarse_label", 20)
    assert data.get_dataset_spec("cifar100").num_classes == 100
    examples = _read_c100(data_dir, "test")  # the same on-disk order
    for name, key in (("cifar100", "label"), ("cifar100:coarse_label", "coarse_label")):
        batches = list(data.evaluation_dataset(name, os.fspath(data_dir), "test", batch_size=64))
        images = np.concatenate([images.numpy() for images, _ in batches])
        labels = np.concatenate([labels.numpy() for _, labels in batches])
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, [example[key] for example in examples])
        np.testing.assert_array_equal(images, [example["image"] for example in examples])
    assert data.num_examples("cifar100:coarse_label", os.fspath(data_dir), "train") == 200
    with pytest.raises(ValueError, match=r"cifar100:coarse_label"):
        data.get_dataset_spec("cifar100:fine")


def test_cifar100_partial_is_marked_and_verified_on_the_full_arrays(
    synthetic_c100, c100_source, c100_arrays, tmp_path
):
    data_dir = tmp_path / "tfds"
    dataset_dir = Path(
        offline_data.prepare("cifar100", c100_source, data_dir, max_examples_per_split=30)
    )
    assert offline_data.inspect_dataset_dir(dataset_dir)["counts"] == {"train": 30, "test": 30}
    metadata = json.loads((dataset_dir / "metadata.json").read_text())
    assert metadata["partial"] is True and metadata["max_examples_per_split"] == 30
    # The digests recorded are those of the complete arrays, not of the slice.
    assert metadata["source_sha256"] == synthetic_c100.content_sha256
    images, fine, coarse = c100_arrays["test"]
    by_index = {int(e["id"].decode().split("_")[1]): e for e in _read_c100(data_dir, "test")}
    assert sorted(by_index) == list(range(30))
    for index, example in by_index.items():
        np.testing.assert_array_equal(example["image"], images[index])
        assert (example["label"], example["coarse_label"]) == (fine[index], coarse[index])

    # A full preparation replaces the partial directory.
    offline_data.prepare("cifar100", c100_source, data_dir)
    assert offline_data.inspect_dataset_dir(dataset_dir)["counts"] == {"train": 200, "test": 100}
    assert _files(data_dir / "cifar100") == [VERSION]


@pytest.mark.parametrize("max_examples", [None, 5])
def test_cifar100_checksum_mismatch_names_array_digests_and_fix(
    synthetic_c100, c100_copy, tmp_path, max_examples
):
    def flip_one_pixel(arrays):
        arrays["x_test"][7, 3, 4, 1] ^= 0xFF

    _rewrite_npz(c100_copy / "cifar100_part3of3.npz", flip_one_pixel)
    with np.load(c100_copy / "cifar100_part3of3.npz") as npz:
        actual = hashlib.sha256(npz["x_test"].tobytes()).hexdigest()
    with pytest.raises(offline_data.SourceDataError) as error:
        offline_data.prepare(
            "cifar100", c100_copy, tmp_path / "tfds", max_examples_per_split=max_examples
        )
    message = str(error.value)
    assert message.startswith("Checksum mismatch for x_test")
    assert str(c100_copy / "cifar100_part3of3.npz") in message
    assert f"expected sha256 {synthetic_c100.content_sha256['x_test']}" in message
    assert f"got {actual}" in message
    assert "build_cifar100.py" in message and offline_data.CIFAR100_README in message
    assert not (tmp_path / "tfds").exists()


def test_cifar100_expects_build_scripts_digests_by_default(c100_source, tmp_path):
    """Without a test description the real digests apply: synthetic arrays
    fail, also for a partial preparation."""
    with pytest.raises(offline_data.SourceDataError) as error:
        offline_data.prepare("cifar100", c100_source, tmp_path / "tfds", max_examples_per_split=5)
    message = str(error.value)
    assert "Checksum mismatch for x_train" in message
    assert f"expected sha256 {offline_data.CIFAR100_CONTENT_SHA256['x_train']}" in message
    assert not (tmp_path / "tfds").exists()


def test_cifar100_missing_source_dir_and_missing_file(synthetic_c100, c100_copy, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        offline_data.prepare("cifar100", missing, tmp_path / "tfds")
    message = str(error.value)
    assert str(missing) in message and "does not exist" in message
    for name in offline_data.CIFAR100_SOURCE_FILES:
        assert name in message
    assert "build_cifar100.py" in message and offline_data.CIFAR100_README in message

    (c100_copy / "cifar100_part2of3.npz").unlink()
    with pytest.raises(FileNotFoundError, match=f"Missing in {c100_copy}: cifar100_part2of3.npz"):
        offline_data.prepare("cifar100", c100_copy, tmp_path / "tfds")
    assert not (tmp_path / "tfds").exists()


@pytest.mark.parametrize("max_examples", [None, 2])
def test_cifar100_wrong_coarse_label_is_refused(
    synthetic_c100, c100_copy, c100_arrays, tmp_path, max_examples
):
    """The content digests do not cover the coarse labels; the superclass
    table does, also in a partial preparation."""
    fine = int(c100_arrays["train"][1][3])
    right = int(C100_TO_COARSE[fine])
    wrong = (right + 1) % 20

    def relabel(arrays):
        arrays["y_train_coarse"][3] = wrong

    _rewrite_npz(c100_copy / "cifar100_part1of3.npz", relabel)
    with pytest.raises(offline_data.SourceDataError) as error:
        offline_data.prepare(
            "cifar100", c100_copy, tmp_path / "tfds", max_examples_per_split=max_examples
        )
    message = str(error.value)
    assert message.startswith(f"{c100_copy / 'cifar100_part1of3.npz'}: 1 coarse_labels disagree")
    assert f"example 3: y_train_coarse is {wrong} ({C100_COARSE_NAMES[wrong]})" in message
    assert f"fine class {fine} ({C100_NAMES[fine]}) belongs to {right}" in message
    assert not (tmp_path / "tfds").exists()


def _swap_first_names(key):
    def change(arrays):
        arrays[key] = arrays[key][[1, 0] + list(range(2, len(arrays[key])))]

    return change


@pytest.mark.parametrize(
    "file_name, change, problem",
    [
        (
            "cifar100_part3of3.npz",
            lambda a: a.update(x_test=a["x_test"][..., :1]),
            "x_test must be uint8 (N, 32, 32, 3), got uint8 (100, 32, 32, 1)",
        ),
        (
            "cifar100_part3of3.npz",
            lambda a: a["y_test"].__setitem__(0, 100),
            "y_test has labels outside 0..99",
        ),
        (
            "cifar100_part1of3.npz",
            lambda a: a.update(y_train_coarse=a["y_train_coarse"][:-1]),
            "y_train_coarse must be integer (100,), got uint8 (99,)",
        ),
        (
            "cifar100_part2of3.npz",
            _swap_first_names("class_names"),
            "class_names are ('aquarium_fish', 'apple',",
        ),
        (
            "cifar100_part3of3.npz",
            _swap_first_names("coarse_class_names"),
            "coarse_class_names are ('fish', 'aquatic_mammals',",
        ),
        (
            "cifar100_part2of3.npz",
            lambda a: a.update(index_offset=np.array(7)),
            "index_offset is 7, expected 100",
        ),
        (
            "cifar100_part1of3.npz",
            lambda a: a.pop("y_train_coarse"),
            "missing arrays ['y_train_coarse']",
        ),
    ],
    ids=[
        "image-shape",
        "label-range",
        "coarse-length",
        "fine-names",
        "coarse-names",
        "offset",
        "no-coarse",
    ],
)
def test_cifar100_malformed_arrays_name_file_and_problem(
    synthetic_c100, c100_copy, tmp_path, file_name, change, problem
):
    _rewrite_npz(c100_copy / file_name, change)
    with pytest.raises(offline_data.SourceDataError) as error:
        offline_data.prepare("cifar100", c100_copy, tmp_path / "tfds", max_examples_per_split=5)
    message = str(error.value)
    assert message.startswith(f"{c100_copy / file_name}: ")
    assert problem in message
    assert "rebuild them with build_cifar100.py" in message
    assert not (tmp_path / "tfds").exists()


def test_cifar100_wrong_counts_fail_a_full_preparation_only(monkeypatch, tmp_path):
    """Valid digests and labels, but one class has an extra test image and
    another none."""
    arrays = _cifar100_arrays(seed=1)
    fine = arrays["test"][1]
    fine[fine == 1] = 0
    arrays["test"][2] = C100_TO_COARSE[fine]
    source = _write_cifar100_source(tmp_path / "source", arrays)
    monkeypatch.setitem(offline_data.SOURCES, "cifar100", _describe_synthetic(arrays))
    expected = [2, 0] + [1] * 98
    with pytest.raises(offline_data.SourceDataError) as error:
        offline_data.prepare("cifar100", source, tmp_path / "full")
    assert f"test examples per class are {expected}, expected 1 each" in str(error.value)
    assert not (tmp_path / "full").exists()

    # Counts are a full-dataset property; a partial preparation takes the files.
    dataset_dir = offline_data.prepare(
        "cifar100", source, tmp_path / "partial", max_examples_per_split=10
    )
    assert offline_data.inspect_dataset_dir(dataset_dir)["counts"] == {"train": 10, "test": 10}

    # And a source that is smaller than described fails on the total.
    monkeypatch.setitem(
        offline_data.SOURCES,
        "cifar100",
        dataclasses.replace(_describe_synthetic(arrays), num_examples={"train": 300, "test": 100}),
    )
    with pytest.raises(offline_data.SourceDataError, match="200 train examples, expected 300"):
        offline_data.prepare("cifar100", source, tmp_path / "full")
    assert not (tmp_path / "full").exists()


def test_cifar100_failure_during_generation_leaves_no_directory(
    synthetic_c100, c100_source, tmp_path, monkeypatch
):
    data_dir = tmp_path / "tfds"
    real_examples = offline_data._examples

    def examples_then_crash(*args):
        for i, item in enumerate(real_examples(*args)):
            if i == 50:
                raise RuntimeError("simulated crash while writing")
            yield item

    monkeypatch.setattr(offline_data, "_examples", examples_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        offline_data.prepare("cifar100", c100_source, data_dir)
    assert list(data_dir.iterdir()) == []


def _run_script(*args, cwd=None):
    return subprocess.run(
        [sys.executable, os.fspath(ROOT / "scripts" / "prepare_data.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.slow
def test_script_cifar100_without_source_dir_says_how_to_build(tmp_path):
    result = _run_script("--dataset=cifar100", f"--data_dir={tmp_path / 'tfds'}")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --dataset=cifar100 needs --source_dir")
    # The shared README's steps, on the one line.
    for step in (
        "Taragon123/Taragon123.github.io",
        "cifar-100-binary",
        "build_cifar100.py",
        os.fspath(SHARED_CIFAR100 / "README.md"),
        "--source_dir=~/cifar100_arrays",
    ):
        assert step in last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tfds").exists()


@pytest.mark.slow
def test_script_cifar100_reports_a_checksum_mismatch_in_one_line(c100_source, tmp_path):
    """The script uses the real digests, which synthetic arrays do not match."""
    result = _run_script(
        "--dataset=cifar100",
        f"--source_dir={c100_source}",
        f"--data_dir={tmp_path / 'tfds'}",
        "--max_examples_per_split=5",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Checksum mismatch for x_train")
    assert offline_data.CIFAR100_CONTENT_SHA256["x_train"] in last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tfds").exists()


def _assert_same_files_as_upstream(name, dataset_dir, archive, tmp_path, monkeypatch):
    """Builds `name` with the upstream TFDS builder from the extracted
    official archive `archive` (its download stubbed to it) and checks our
    `dataset_dir` holds byte-identical files, plus metadata.json."""
    monkeypatch.setattr(
        tfds.download.DownloadManager, "download_and_extract", lambda self, url: os.fspath(archive)
    )
    upstream = tfds.builder(name, data_dir=os.fspath(tmp_path / "upstream"))
    upstream.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    upstream_dir = Path(upstream.data_dir)
    ours = _files(dataset_dir)
    assert ours == sorted(_files(upstream_dir) + ["metadata.json"])
    for file_name in ours:
        if file_name != "metadata.json":
            assert (dataset_dir / file_name).read_bytes() == (upstream_dir / file_name).read_bytes(), file_name
