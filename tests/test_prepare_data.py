"""Offline TFDS preparation: `keras_directcopy.offline_data` and
`scripts/prepare_data.py` write a `cifar10` directory that `tfds.load(...,
download=False)` reads, from the shared `.npz` files."""

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

from keras_directcopy import offline_data
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
    data_dir, dataset_dir = prepared
    batches = tmp_path / "extracted" / "cifar-10-batches-bin"
    batches.mkdir(parents=True)
    (batches / "batches.meta.txt").write_text("\n".join(offline_data.CIFAR10_CLASS_NAMES) + "\n")

    def write_batch(path, images, labels):
        # Official layout: one label byte, then the image as 3 x 32 x 32 planes.
        with open(path, "wb") as f:
            for image, label in zip(images, labels):
                f.write(bytes([int(label)]) + image.transpose(2, 0, 1).tobytes())

    write_batch(batches / "data_batch_1.bin", *_load_source("train"))
    for i in range(2, 6):
        (batches / f"data_batch_{i}.bin").write_bytes(b"")
    write_batch(batches / "test_batch.bin", *_load_source("test"))
    monkeypatch.setattr(
        tfds.download.DownloadManager,
        "download_and_extract",
        lambda self, url: os.fspath(tmp_path / "extracted"),
    )
    upstream = tfds.builder("cifar10", data_dir=os.fspath(tmp_path / "upstream"))
    upstream.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )

    upstream_dir = Path(upstream.data_dir)
    ours = _files(dataset_dir)
    assert ours == sorted(_files(upstream_dir) + ["metadata.json"])
    for name in ours:
        if name != "metadata.json":
            assert (dataset_dir / name).read_bytes() == (upstream_dir / name).read_bytes(), name


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


def test_script_reports_unsupported_dataset_without_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.fspath(ROOT / "scripts" / "prepare_data.py"),
            "--dataset=cifar100",
            f"--data_dir={tmp_path / 'tfds'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "error: Cannot prepare 'cifar100'" in result.stderr
    assert "tfds build cifar100" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tfds").exists()


def test_second_call_reuses_the_dataset_without_rebuilding(prepared, monkeypatch, caplog):
    data_dir, dataset_dir = prepared
    info = dataset_dir / "dataset_info.json"
    before = (dataset_dir.stat().st_ino, info.stat().st_mtime_ns)

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt an already prepared dataset")

    monkeypatch.setattr(offline_data, "_build_cifar10", no_build)
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

    def failing_build(arrays, tmp_dir, metadata):
        assert metadata["partial"] is False
        assert {split: len(x) for split, (x, _) in arrays.items()} == {"train": 50000, "test": 10000}
        raise Built()

    monkeypatch.setattr(offline_data, "_build_cifar10", failing_build)
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
    real_examples = offline_data._cifar10_examples

    def examples_then_crash(prefix, images, labels):
        for i, item in enumerate(real_examples(prefix, images, labels)):
            if i == 7:
                raise RuntimeError("simulated crash while writing")
            yield item

    monkeypatch.setattr(offline_data, "_cifar10_examples", examples_then_crash)
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
    real = offline_data.sha256_file(SOURCE_DIR / "cifar10_part2of3.npz")
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
        ("cifar100", "tfds build cifar100"),
        ("stl10", "tfds build stl10"),
        ("imagenet2012", os.path.join("downloads", "manual")),
    ],
)
def test_unsupported_dataset_says_what_to_do(tmp_path, name, advice):
    with pytest.raises(ValueError) as error:
        offline_data.prepare(name, SOURCE_DIR, tmp_path / "tfds")
    message = str(error.value)
    assert f"Cannot prepare {name!r}" in message
    assert "supported are cifar10" in message
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
            f"{offline_data.sha256_file(source / name)}  {name}\n"
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
    assert metadata["source_sha256"]["cifar10_part3of3.npz"] == offline_data.sha256_file(
        source / "cifar10_part3of3.npz"
    )


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_invalid_max_examples_per_split(tmp_path, bad):
    with pytest.raises(ValueError, match="max_examples_per_split must be a positive integer"):
        offline_data.prepare("cifar10", SOURCE_DIR, tmp_path / "tfds", max_examples_per_split=bad)
    assert not (tmp_path / "tfds").exists()
