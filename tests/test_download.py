"""A user's first run: `data.ensure_prepared`, which scripts/pretrain.py,
evaluate.py and finetune.py call before reading data, downloads a missing
tfds dataset when it may (`--download`, the default) and otherwise fails
with a message naming scripts/prepare_data.py and the local arrays in
../shared.

The real download cannot run here (no network), so the download branch runs
the real upstream tfds builder with only its download stubbed, by a local
copy of the official archive; the offline branch is the real one."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import downloader

from keras_directcopy import resnet20
from keras_directcopy.data import datasets as data
from keras_directcopy.data import offline as offline_data
from tests.cifar_archives import write_cifar10_archive

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "data" / "cifar10"
VERSION = "3.0.2"
# Examples per split of the stubbed archive.
N = 40


def _first_examples(split):
    """The first N examples of a split of the shared arrays: `(images, labels)`."""
    name, key = ("cifar10_part1of3.npz", "train") if split == "train" else ("cifar10_part3of3.npz", "test")
    with np.load(SHARED_CIFAR10 / name) as npz:
        return npz[f"x_{key}"][:N], npz[f"y_{key}"][:N]


def _assert_names_the_local_fix(message, data_dir):
    assert f"python scripts/prepare_data.py --dataset=cifar10 --data_dir={data_dir}" in message
    assert "../shared/data/cifar10" in message


def _stub_download(monkeypatch, archive):
    """Makes tfds' download manager hand out `archive` instead of fetching,
    and name lookups succeed (the host check before a download); returns the
    list of URLs it was asked for."""
    requested = []
    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: real_getaddrinfo("127.0.0.1", None))

    def download_and_extract(self, url):
        requested.append(url)
        return os.fspath(archive)

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", download_and_extract)
    return requested


def test_a_missing_dataset_is_downloaded_on_first_use_then_reused(tmp_path, monkeypatch):
    """The upstream Cifar10 builder runs unchanged but for its download,
    which is stubbed by the official archive layout (the real download
    cannot run here)."""
    archive = write_cifar10_archive(
        tmp_path / "archive", _first_examples("train"), _first_examples("test"),
        offline_data.CIFAR10_CLASS_NAMES,
    )
    requested = _stub_download(monkeypatch, archive)
    data_dir = os.fspath(tmp_path / "tfds")

    data.ensure_prepared("cifar10", data_dir, download=True)

    assert len(requested) == 1 and requested[0].endswith("/cifar-10-binary.tar.gz")
    assert (tmp_path / "tfds" / "cifar10" / VERSION / "dataset_info.json").is_file()
    images, labels = _first_examples("test")
    read = list(data.load_split("cifar10", data_dir, "test"))
    assert len(read) == N
    # TFDS stores the records in its own order: compare as sets of (label, pixels).
    assert sorted((int(label), image.numpy().tobytes()) for image, label in read) == sorted(
        (int(label), image.tobytes()) for image, label in zip(images, labels)
    )
    assert data.num_examples("cifar10", data_dir, "train") == N

    data.ensure_prepared("cifar10", data_dir, download=True)
    assert len(requested) == 1, "a prepared dataset must not be downloaded again"


def test_a_dataset_prepared_offline_is_used_as_it_is(tmp_path, monkeypatch):
    """A partial directory from scripts/prepare_data.py counts as prepared:
    nothing is downloaded, whatever --download says."""
    offline_data.prepare("cifar10", SHARED_CIFAR10, tmp_path, max_examples_per_split=5)
    requested = _stub_download(monkeypatch, tmp_path / "unused")
    for download in (True, False):
        data.ensure_prepared("cifar10", os.fspath(tmp_path), download=download)
    assert requested == []
    assert data.num_examples("cifar10", os.fspath(tmp_path), "test") == 5


def test_nodownload_fails_on_a_missing_dataset_naming_prepare_data(tmp_path, monkeypatch):
    requested = _stub_download(monkeypatch, tmp_path / "unused")
    data_dir = os.fspath(tmp_path / "tfds")
    with pytest.raises(FileNotFoundError) as error:
        data.ensure_prepared("cifar10", data_dir, download=False)
    message = str(error.value)
    assert f"'cifar10' is not prepared in {data_dir}, and downloading is switched off" in message
    assert "(--nodownload)" in message
    _assert_names_the_local_fix(message, data_dir)
    assert requested == [] and not (tmp_path / "tfds").exists()


def test_without_network_the_download_fails_at_once_naming_prepare_data(tmp_path, monkeypatch):
    """What an offline machine does, on any machine: host names do not
    resolve. The download host is checked first, so the error comes at once
    instead of after tfds' retries (about 3.5 minutes offline)."""

    def no_name_resolution(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    started = []
    monkeypatch.setattr(socket, "getaddrinfo", no_name_resolution)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", lambda *a, **k: started.append(a))
    data_dir = os.fspath(tmp_path / "tfds")
    with pytest.raises(FileNotFoundError) as error:
        data.ensure_prepared("cifar10", data_dir, download=True)
    message = str(error.value)
    assert f"'cifar10' is not prepared in {data_dir}, and its download host www.cs.toronto.edu cannot be resolved" in message
    _assert_names_the_local_fix(message, data_dir)
    assert started == []
    assert not (tmp_path / "tfds" / "cifar10" / VERSION).exists()


def test_a_failed_download_names_prepare_data(tmp_path, monkeypatch):
    """The host resolves but the download fails (the network drops after the
    check): the first name lookup, the check's, is answered, every later one
    fails. tfds' own retries are cut to none to keep the test fast;
    everything else is the real download path."""
    real_getaddrinfo = socket.getaddrinfo
    lookups = []

    def resolve_once(host, *args, **kwargs):
        lookups.append(host)
        if len(lookups) == 1:
            return real_getaddrinfo("127.0.0.1", None)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve_once)
    monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
    data_dir = os.fspath(tmp_path / "tfds")
    with pytest.raises(FileNotFoundError) as error:
        data.ensure_prepared("cifar10", data_dir, download=True)
    message = str(error.value)
    assert f"'cifar10' is not prepared in {data_dir}, and downloading it failed" in message
    assert "www.cs.toronto.edu" in message and "Name or service not known" in message
    _assert_names_the_local_fix(message, data_dir)
    assert lookups[0] == "www.cs.toronto.edu" and len(lookups) > 1
    assert not (tmp_path / "tfds" / "cifar10" / VERSION).exists()


def test_image_folders_are_never_downloaded(tmp_path, monkeypatch):
    def no_tfds(*args, **kwargs):
        raise AssertionError("a folder: dataset must not reach tfds")

    monkeypatch.setattr(tfds, "builder", no_tfds)
    data.ensure_prepared(f"folder:{tmp_path / 'images'}", os.fspath(tmp_path / "tfds"), download=True)
    assert os.listdir(tmp_path) == []


def _run_script(name, *flags):
    return subprocess.run(
        [sys.executable, os.fspath(REPO_ROOT / "scripts" / name), *flags], capture_output=True,
        text=True, timeout=300, cwd=REPO_ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory):
    """A tiny CIFAR ResNet-20 saved as .keras, untrained."""
    path = tmp_path_factory.mktemp("encoder") / "encoder.keras"
    resnet20(width_multiplier=0.25).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("script", ["pretrain.py", "evaluate.py", "finetune.py"])
def test_each_script_with_nodownload_names_prepare_data(script, encoder_file, tmp_path):
    """The flag reaches `data.ensure_prepared` in every script (its default,
    True, is checked where it is defined: tests/test_encoder_flags.py)."""
    data_dir = tmp_path / "empty"
    result = _run_script(
        script, "--dataset=cifar10", f"--data_dir={data_dir}", "--nodownload",
        f"--output_dir={tmp_path / 'out'}" if script != "evaluate.py" else "--nolinear_probe",
        f"--encoder={encoder_file}" if script != "pretrain.py" else "--epochs=1",
    )
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Dataset 'cifar10' is not prepared in")
    assert "(--nodownload)" in last
    _assert_names_the_local_fix(last, data_dir)
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()
