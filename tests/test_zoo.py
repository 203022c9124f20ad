"""Preset registry and load_pretrained: local folders, the real
huggingface_hub cache offline, sha256 checks, keras.applications arguments."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_directcopy as kdc
from keras_directcopy.models.backbones import ARCHITECTURE_FILENAME, resolve_architecture_kwargs
from keras_directcopy.presets import zoo
from keras_directcopy.utils.files import sha256_file
from tests.helpers import write_corrupted_copy

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = {"backbone": "resnet20", "backbone_kwargs": {"width_multiplier": 0.25}, "input_shape": [32, 32, 3]}


def tiny_model_folder(folder, name="tiny_directcopy"):
    """A folder as scripts/publish.py writes it: config.json and weights."""
    folder.mkdir(parents=True, exist_ok=True)
    encoder = kdc.build_backbone("resnet20", (32, 32, 3), width_multiplier=0.25)
    encoder.save_weights(folder / "encoder.weights.h5")
    config = {
        "name": name, **TINY, "num_classes": 10, "method": "directcopy",
        "weights": {"filename": "encoder.weights.h5", "sha256": sha256_file(folder / "encoder.weights.h5")},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return encoder, config


def images(count=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


def test_registry_lists_the_dataset_presets():
    presets = {p["name"]: p for p in kdc.list_pretrained()}
    aliases = {alias: name for name, p in presets.items() for alias in p["aliases"]}
    assert set(aliases) >= {"cifar10", "cifar100", "stl10", "imagenet"}
    for summary in presets.values():
        assert {"dataset", "backbone", "method", "epochs", "metrics", "hub_repo", "weights_available"} <= set(summary)
        assert summary["method"] == "directcopy"
    assert zoo.get_preset("cifar10")["name"] == aliases["cifar10"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        kdc.load_pretrained("cifar-10")
    assert "Unknown pretrained model 'cifar-10'" in str(error.value)
    for name in ["cifar10", "cifar100", "directcopy_resnet18_stl10"]:
        assert name in str(error.value)


def test_unpublished_preset_gives_the_training_command():
    unpublished = [p for p in kdc.list_pretrained() if not p["weights_available"]]
    assert unpublished
    preset = zoo.get_preset(unpublished[0]["name"])
    with pytest.raises(ValueError, match="no published weights yet") as error:
        kdc.load_pretrained(preset["name"])
    assert preset["train_command"] in str(error.value)
    assert "scripts/pretrain.py" in preset["train_command"]
    # The architecture alone needs no weights.
    random_init = kdc.load_pretrained(preset["name"], weights=False)
    assert random_init.input_shape[1:] == tuple(preset["input_shape"])


def test_load_from_a_local_directory(tmp_path):
    encoder, _ = tiny_model_folder(tmp_path / "model")
    loaded = kdc.load_pretrained(str(tmp_path / "model"))
    np.testing.assert_allclose(loaded(images()), encoder(images()), rtol=1e-6, atol=1e-6)
    random_init = kdc.load_pretrained(str(tmp_path / "model"), weights=False)
    assert random_init.output_shape == encoder.output_shape
    assert not np.allclose(random_init(images()), encoder(images()))


def test_sha256_mismatch_is_refused(tmp_path):
    tiny_model_folder(tmp_path / "model")
    weights = tmp_path / "model" / "encoder.weights.h5"
    write_corrupted_copy(weights, weights)
    with pytest.raises(ValueError, match=r"sha256 mismatch for encoder\.weights\.h5.*nothing was loaded") as error:
        kdc.load_pretrained(str(tmp_path / "model"))
    assert str(weights) in str(error.value)


def test_config_naming_an_unknown_architecture_is_refused(tmp_path):
    _, config = tiny_model_folder(tmp_path / "model")
    config["backbone"] = "my_module.MyNet"
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown backbone 'my_module.MyNet'"):
        kdc.load_pretrained(str(tmp_path / "model"))


def test_keras_applications_arguments(tmp_path):
    encoder, _ = tiny_model_folder(tmp_path / "model")
    folder = str(tmp_path / "model")
    feature_map = kdc.load_pretrained(folder, pooling=None)
    assert feature_map.output_shape == (None, 8, 8, 16)
    pooled = np.asarray(feature_map(images())).mean(axis=(1, 2))
    np.testing.assert_allclose(pooled, encoder(images()), rtol=1e-5, atol=1e-6)
    max_pooled = kdc.load_pretrained(folder, pooling="max")
    np.testing.assert_allclose(max_pooled(images()), np.asarray(feature_map(images())).max(axis=(1, 2)), rtol=1e-6)
    larger = kdc.load_pretrained(folder, input_shape=(64, 64, 3), pooling=None)
    assert larger.output_shape == (None, 16, 16, 16)
    with pytest.raises(ValueError, match="ships no trained classifier head"):
        kdc.load_pretrained(folder, include_top=True)
    with pytest.raises(ValueError, match="pooling must be one of"):
        kdc.load_pretrained(folder, pooling="sum")


def test_include_top_adds_the_shipped_linear_head(tmp_path):
    from keras_directcopy.models.heads import build_linear_head, set_feature_statistics

    encoder, config = tiny_model_folder(tmp_path / "model")
    head = build_linear_head(16, 10)
    rng = np.random.default_rng(1)
    set_feature_statistics(head, rng.normal(2.0, 3.0, (64, 16)).astype(np.float32))
    dense = head.layers[-1]
    dense.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in dense.get_weights()])
    head.save_weights(tmp_path / "model" / "linear_head.weights.h5")
    config["head"] = {"filename": "linear_head.weights.h5", "sha256": sha256_file(tmp_path / "model" / "linear_head.weights.h5")}
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    classifier = kdc.load_pretrained(str(tmp_path / "model"), include_top=True, classifier_activation=None)
    assert classifier.output_shape == (None, 10)
    np.testing.assert_allclose(classifier(images()), head(encoder(images())), rtol=1e-5, atol=1e-5)
    probabilities = kdc.load_pretrained(str(tmp_path / "model"), include_top=True)  # softmax by default
    np.testing.assert_allclose(probabilities(images()), keras.ops.softmax(head(encoder(images()))),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="include_top=True needs the preset's input_shape"):
        kdc.load_pretrained(str(tmp_path / "model"), include_top=True, input_shape=(64, 64, 3))


def test_resnet18_preset_keeps_its_cifar_stem_at_another_input_size():
    kwargs = resolve_architecture_kwargs("resnet18", [32, 32, 3])
    assert kwargs == {"width_multiplier": 1.0, "stem": "cifar", "input_normalization": "cifar10"}
    model = kdc.build_backbone("resnet18", (96, 96, 3), **{**kwargs, "width_multiplier": 0.125})
    assert model.get_layer("stem_conv").kernel_size == (3, 3)


def fill_hf_cache(cache, repo_id, folder, commit="0123456789abcdef0123456789abcdef01234567"):
    """The layout huggingface_hub 2.x reads offline: refs/main -> snapshots/<commit>/files."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


LOAD_AND_PRINT = (
    "import sys, numpy as np, keras_directcopy as k; "
    "m = k.load_pretrained(sys.argv[1]); "
    "x = np.load(sys.argv[2]); np.save(sys.argv[3], np.asarray(m(x)))"
)


def run_offline(tmp_path, name, cache, extra_env=None):
    np.save(tmp_path / "x.npy", images())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-c", LOAD_AND_PRINT, name, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO_ROOT,
    )


def test_load_hf_id_from_the_offline_cache(tmp_path):
    encoder, _ = tiny_model_folder(tmp_path / "model")
    fill_hf_cache(tmp_path / "cache", "someorg/tiny-directcopy", tmp_path / "model")
    result = run_offline(tmp_path, "hf://someorg/tiny-directcopy", tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), encoder(images()), rtol=1e-6, atol=1e-6)

    missing = run_offline(tmp_path, "hf://someorg/not-cached", tmp_path / "cache")
    assert missing.returncode != 0
    assert "is not in the Hugging Face cache" in missing.stderr


def test_registered_preset_resolves_through_the_hub_cache(tmp_path):
    encoder, config = tiny_model_folder(tmp_path / "model", name="tiny_registered")
    fill_hf_cache(tmp_path / "cache", "someorg/tiny-registered", tmp_path / "model")
    registry = tmp_path / "registry"
    registry.mkdir()
    preset = {
        **config, "aliases": ["tiny"], "dataset": "cifar10", "epochs": 1,
        "train_command": "python scripts/pretrain.py --config=quickstart --output_dir=runs/tiny",
        "hub": {"repo_id": "someorg/tiny-registered", "revision": "main"},
        "weights": {**config["weights"], "bundled": False},
        "head": None, "metrics": None, "run": None, "reduced_scale": True, "notes": "",
    }
    (registry / "tiny_registered.json").write_text(json.dumps(preset))
    result = run_offline(tmp_path, "tiny", tmp_path / "cache", {zoo.REGISTRY_ENV: str(registry)})
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), encoder(images()), rtol=1e-6, atol=1e-6)


# -- Weights shipped in zoo/ ---------------------------------------------------

SHIPPED = sorted(
    summary["name"] for summary in kdc.list_pretrained()
    if zoo.get_preset(summary["name"])["weights"].get("bundled")
)


def test_the_cifar10_default_ships_its_weights():
    assert zoo.get_preset("cifar10")["name"] in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_match_the_registry_and_the_package_data(name):
    preset = zoo.get_preset(name)
    files = [f"zoo/{name}/{preset[key]['filename']}" for key in ("weights", "architecture")]
    for key, relative in zip(("weights", "architecture"), files):
        assert sha256_file(REPO_ROOT / relative) == preset[key]["sha256"]
    # The registry states the stem and normalization the encoder was built with.
    assert preset["backbone_kwargs"] == resolve_architecture_kwargs(
        preset["backbone"], preset["input_shape"], **preset["backbone_kwargs"]
    )
    # Shipped weights come with what they were measured at and how they were trained.
    assert 0 < preset["metrics"]["knn"]["top1"] <= 1
    assert 0 < preset["metrics"]["linear_probe"]["top1"] <= 1
    assert preset["run"]["epochs_done"] == preset["epochs"]
    assert (REPO_ROOT / "model_cards" / f"{name}.md").is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_into_the_registered_architecture(name):
    preset = zoo.get_preset(name)
    encoder = kdc.load_pretrained(name)
    assert encoder.output_shape == (None, preset["run"]["feature_dim"])
    x = images(count=4, size=preset["input_shape"][0])
    features = np.asarray(encoder(x))
    assert np.isfinite(features).all()
    random_init = kdc.load_pretrained(name, weights=False)
    assert not np.allclose(features, random_init(x), atol=1e-3)


@pytest.mark.parametrize("key", ["weights", "architecture"])
@pytest.mark.parametrize("name", SHIPPED)
def test_a_corrupted_copy_of_shipped_weights_is_refused(name, key, tmp_path, monkeypatch):
    """The same preset in a private registry (searched first), with one byte
    of its weights or architecture file flipped."""
    preset = zoo.get_preset(name)
    filename = preset[key]["filename"]
    shutil.copytree(REPO_ROOT / "zoo" / name, tmp_path / name)
    write_corrupted_copy(REPO_ROOT / "zoo" / name / filename, tmp_path / name / filename)
    shutil.copy(REPO_ROOT / "zoo" / f"{name}.json", tmp_path)
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=f"sha256 mismatch for {filename} of {name}.*nothing was loaded"):
        kdc.load_pretrained(name)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_preset_card_and_hub_folder_match_the_registry(name, tmp_path):
    """The committed model card is the one the registry entry generates, and
    the folder scripts/publish.py --dry_run builds loads to the same encoder."""
    from keras_directcopy.presets import hub_folder, model_card, repo_layout

    preset = zoo.get_preset(name)
    assert (REPO_ROOT / "model_cards" / f"{name}.md").read_text() == model_card.build_model_card(preset)
    head = zoo.resolve_file(preset, preset["head"]) if preset.get("head") else None
    folder = hub_folder.prepare_repo_folder(
        preset, zoo.resolve_weights(preset), str(tmp_path / "repo"), head_path=head)
    assert sorted(os.listdir(folder)) == sorted([
        # The weights once, under the name both loaders read.
        "README.md", "config.json", repo_layout.WEIGHTS_FILENAME, ARCHITECTURE_FILENAME, "metrics.json", "run.json",
        # The other evaluations (other label sets, floors), when the preset records any.
        *([repo_layout.ADDITIONAL_METRICS_FILENAME] if preset.get("additional_metrics") else []),
        *([preset["head"]["filename"]] if head else []),
    ])
    x = images(count=2, size=preset["input_shape"][0])
    np.testing.assert_array_equal(kdc.load_pretrained(folder)(x), kdc.load_pretrained(name)(x))
    if head:  # the Hub folder's classifier and class names are the registry's
        np.testing.assert_array_equal(kdc.load_pretrained(folder, include_top=True)(x),
                                      kdc.load_pretrained(name, include_top=True)(x))
        assert kdc.class_names(folder) == kdc.class_names(name)
