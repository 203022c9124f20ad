"""The release artifacts: `python -m build` makes an sdist and a wheel that
`twine check` accepts, with the license and project URLs; the wheel carries
the preset registry, the bundled weights and heads as package data, and
`load_pretrained` loads every bundled preset, with and without its head,
from the wheel installed in a new virtual environment."""

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
SOURCE_FILES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "keras_directcopy", "zoo", "model_cards")


def build_distributions(tmp_path):
    """`python -m build` (sdist, then the wheel from it) from a copy of the
    sources, so the checkout gets no build/ or egg-info directory. Uses the
    venv's setuptools (no download).

    Returns:
        `(sdist, wheel)` paths.
    """
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCE_FILES:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy
        copy(REPO_ROOT / name, source / name)
    completed = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (sdist,) = (tmp_path / "dist").glob("keras_directcopy-*.tar.gz")
    (wheel,) = (tmp_path / "dist").glob("keras_directcopy-*.whl")
    return sdist, wheel


def build_wheel(tmp_path):
    return build_distributions(tmp_path)[1]


@pytest.mark.slow
def test_the_sdist_and_wheel_pass_twine_check_with_license_and_urls(tmp_path):
    import tarfile

    sdist, wheel = build_distributions(tmp_path)
    completed = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count("PASSED") == 2
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in archive.namelist())
    assert f"Version: {kdc.__version__}" in text
    assert "License-File: LICENSE" in text and "Project-URL: Source, " in text
    assert "Project-URL: Changelog, " in text
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("/LICENSE") for n in archive.getnames())
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert f"## {kdc.__version__} - " in changelog, "CHANGELOG.md has no section for the package version"


@pytest.mark.slow
def test_a_wheel_installed_in_a_new_venv_loads_every_bundled_preset(tmp_path):
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

    # A new virtual environment with the wheel installed by pip. Its
    # dependencies are this environment's (one path line in a .pth file:
    # TensorFlow is not downloaded again), which holds this checkout as an
    # editable install; a plain path line processes no .pth file there, so
    # the checkout stays off the new environment's path.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True,
                   timeout=300)
    python = venv / "bin" / "python"
    site_packages = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    dependencies = [p for p in sys.path if p.endswith("site-packages") and Path(p, "keras").is_dir()]
    (site_packages / "dependencies.pth").write_text("\n".join(dependencies) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]  # this pip, installing there
    installed = subprocess.run([*pip, "install", "--no-deps", "-q", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    # The wheel's declared requirements are met by the pinned dependencies.
    checked = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    # Every bundled preset, its encoder and, where it ships one, its classifier.
    script = (
        "import json, sys, numpy as np, keras_directcopy as kdc\n"
        "from keras_directcopy.presets import zoo\n"
        "images = np.load(sys.argv[1])\n"
        "outputs = {}\n"
        "for summary in kdc.list_pretrained():\n"
        "    preset = zoo.get_preset(summary['name'])\n"
        "    if not preset['weights'].get('bundled'):\n"
        "        continue\n"
        "    size = preset['input_shape'][0]\n"
        "    batch = np.resize(images, (2, size, size, 3))\n"
        "    outputs[preset['name']] = kdc.load_pretrained(preset['name']).predict(batch, verbose=0).tolist()\n"
        "    if preset.get('head'):\n"
        "        classifier = kdc.load_pretrained(preset['name'], include_top=True)\n"
        "        outputs[preset['name'] + ':top'] = classifier.predict(batch, verbose=0).tolist()\n"
        "print(json.dumps({'package': kdc.__file__, 'registry': zoo.registry_dirs(), 'outputs': outputs}))\n"
    )
    # The wheel's copy comes first on the path; the checkout is not on it
    # (the working directory is the temporary one).
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    environment.pop(zoo.REGISTRY_ENV, None)
    environment.pop("PYTHONPATH", None)
    completed = subprocess.run(
        [python, "-c", script, str(tmp_path / "images.npy")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert Path(result["package"]).is_relative_to(site_packages)
    assert [Path(d) for d in result["registry"]] == [site_packages / "keras_directcopy" / "zoo_data"]
    bundled = [s["name"] for s in kdc.list_pretrained() if zoo.get_preset(s["name"])["weights"].get("bundled")]
    assert {name for name in result["outputs"] if ":" not in name} == set(bundled) and len(bundled) >= 3
    for name, output in result["outputs"].items():
        preset = zoo.get_preset(name.split(":")[0])
        size = preset["input_shape"][0]
        model = kdc.load_pretrained(preset["name"], include_top=name.endswith(":top"))
        expected = model.predict(np.resize(images, (2, size, size, 3)), verbose=0)
        np.testing.assert_allclose(np.array(output), expected, rtol=1e-5, atol=1e-5, err_msg=name)
