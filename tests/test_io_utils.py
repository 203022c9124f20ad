"""Atomic writes leave either the old file (or directory) or the whole new
one; checksums are of the bytes, or of an array's values."""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from keras_directcopy.utils.files import atomic_save, atomic_write_text, sha256_array, sha256_file


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "run.json"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["run.json"]


def test_failed_save_keeps_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "encoder.weights.h5"
    path.write_text("old")

    def crash_midway(temporary):
        assert temporary.endswith(".encoder.weights.h5")  # Keras checks extensions
        with open(temporary, "w") as file:
            file.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_save(path, crash_midway)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["encoder.weights.h5"]


def _write_directory(path, files):
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)


def test_a_saved_directory_replaces_the_old_one_whole(tmp_path):
    path = tmp_path / "data" / "3.0.2"
    atomic_save(path, lambda temporary: _write_directory(Path(temporary), {"a": "old", "b": "old"}))
    atomic_save(path, lambda temporary: _write_directory(Path(temporary), {"a": "new"}))
    assert {file.name: file.read_text() for file in path.iterdir()} == {"a": "new"}
    # Neither the temporary nor the old directory is left beside it.
    assert os.listdir(path.parent) == ["3.0.2"]


def test_failed_directory_save_keeps_the_old_directory(tmp_path):
    path = tmp_path / "3.0.2"
    _write_directory(path, {"a": "old"})

    def crash_midway(temporary):
        _write_directory(Path(temporary), {"a": "half"})
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_save(path, crash_midway)
    assert (path / "a").read_text() == "old" and os.listdir(path) == ["a"]
    assert os.listdir(tmp_path) == ["3.0.2"]


def test_failed_move_puts_the_old_directory_back(tmp_path, monkeypatch):
    """The move of the new directory fails after the old one was moved
    aside (e.g. a full disk): the old one is restored."""
    path = tmp_path / "3.0.2"
    _write_directory(path, {"a": "old"})

    def refuse_move(source, destination):
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "replace", refuse_move)
    with pytest.raises(OSError, match="no space"):
        atomic_save(path, lambda temporary: _write_directory(Path(temporary), {"a": "new"}))
    assert (path / "a").read_text() == "old"
    assert os.listdir(tmp_path) == ["3.0.2"]


def test_sha256_array_is_of_the_values_in_c_order_whatever_the_layout():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    transposed = array.transpose(2, 0, 1)  # a view, not C-contiguous
    assert sha256_array(array) == hashlib.sha256(bytes(range(24))).hexdigest()
    assert sha256_array(transposed) == sha256_array(np.ascontiguousarray(transposed))
    assert sha256_array(transposed) != sha256_array(array)


def test_sha256_file_reads_the_bytes(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x00\x01" * (1 << 20))  # two 1 MiB chunks
    assert sha256_file(path) == hashlib.sha256(b"\x00\x01" * (1 << 20)).hexdigest()
