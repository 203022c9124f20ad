"""Atomic writes leave either the old file or the whole new one."""

import os

import pytest

from keras_directcopy.io_utils import atomic_save, atomic_write_text


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
