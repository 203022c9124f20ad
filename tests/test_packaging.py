"""The installed package is self-contained: a wheel carries the preset
registry and the bundled weights as package data, and `load_pretrained`
works from an install prefix that is not this virtual environment's."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import keras_directcopy as kdc
from keras_directcopy.presets import zoo

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a source distribution holds: everything setup.cfg packages.
SOURCE_FILES = ("setup.cfg", "pyproject.toml", "README.md", "keras_directcopy", "zoo", "model_cards")


def build_wheel(tmp_path):
    """Builds the wheel from a copy of the sources, so the checkout gets no
    build/ or egg-info directory. Uses the venv's setuptools (no download)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCE_FILES:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy
        copy(REPO_ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = (tmp_path / "dist").glob("keras_directcopy-*.whl")
    return wheel


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_loads_the_bundled_encoder(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
    for summary in kdc.list_pretrained():
        preset = zoo.get_preset(summary["name"])
        assert f"keras_directcopy/zoo_data/{preset['name']}.json" in packaged
        if preset["weights"].get("bundled"):
            for key in ("weights", "architecture"):
                assert f"keras_directcopy/zoo_data/{preset['name']}/{preset[key]['filename']}" in packaged
    assert "keras_directcopy/model_card_templates/template.md" in packaged

    # A prefix that is not the venv's (as `pip install --target` or `--user` make).
    target = tmp_path / "elsewhere"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    script = (
        "import json, sys, numpy as np, keras_directcopy as kdc\n"
        "from keras_directcopy.presets import zoo\n"
        "encoder = kdc.load_pretrained('cifar10')\n"
        "features = encoder.predict(np.load(sys.argv[1]), verbose=0)\n"
        "print(json.dumps({'package': kdc.__file__, 'registry': zoo.registry_dirs(),"
        " 'features': features.tolist()}))\n"
    )
    # The wheel's copy comes first on the path; the checkout is not on it
    # (the working directory is the temporary one).
    environment = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    environment.pop(zoo.REGISTRY_ENV, None)
    completed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "images.npy")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert Path(result["package"]).is_relative_to(target)
    assert [Path(d) for d in result["registry"]] == [target / "keras_directcopy" / "zoo_data"]
    expected = kdc.load_pretrained("cifar10").predict(images, verbose=0)
    np.testing.assert_allclose(np.array(result["features"]), expected, rtol=1e-5, atol=1e-5)
