"""What loads is what trained: an encoder built and saved as training does,
turned into a preset or repository folder as the project does, loads with
the same architecture (stem, input normalization, every layer) and outputs.

The STL-10 size (96 px) is the case that used to differ: training
normalized with CIFAR-10's statistics, loading with ImageNet's.
"""

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
from keras_directcopy.configs import get_config
from keras_directcopy.models import backbones
from keras_directcopy.models.backbones import (
    ARCHITECTURE_FILENAME,
    INPUT_NORMALIZATION_STATS,
    build_backbone,
    resolve_architecture_kwargs,
)
from keras_directcopy.presets import hub_folder, registration, zoo
from keras_directcopy.training.loop import save_encoder
from keras_directcopy.utils.files import sha256_file

REPO_ROOT = Path(__file__).resolve().parents[1]
WIDTH = 0.125  # small ResNet-18s keep the tests fast
METRICS = {
    "dataset": "stl10", "encoder": "resnet18", "preset": "tiny",
    "knn": {"top1": 0.25, "k": 20, "temperature": 0.1, "train_split": "train[:64]",
            "test_split": "test[:64]", "train_examples": 64, "test_examples": 64},
    "linear_probe": {"top1": 0.3, "train_top1": 0.4, "epochs": 1, "batch_size": 32,
                     "optimizer": "adam", "learning_rate": 3e-4, "weight_decay": 1e-3,
                     "feature_normalization": "standardize_train_mean_std", "final_epoch": True},
}


def plain(config):
    """A model config as its JSON file holds it (tuples and lists alike)."""
    return json.loads(json.dumps(config))


def images(size, count=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


def trained_run(run_dir, backbone, size, **kwargs):
    """An encoder built and saved as scripts/pretrain.py does
    (`training.build_model`, `training.save_encoder`), with non-trivial
    BatchNorm statistics so that every weight matters."""
    encoder = build_backbone(backbone, (size, size, 3), **kwargs)
    rng = np.random.default_rng(size)
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([
                gamma, beta, rng.normal(0, 0.1, mean.shape).astype(np.float32),
                rng.uniform(0.5, 2.0, variance.shape).astype(np.float32),
            ])
    os.makedirs(run_dir, exist_ok=True)
    save_encoder(encoder, str(run_dir))
    return encoder


def preset_for(run_dir, backbone, size, name="tiny", **backbone_kwargs):
    """A publishable preset entry for the run, as scripts/register_preset.py
    records it (sha256 of both files, resolved architecture arguments)."""
    shape = [size, size, 3]
    return {
        "name": name, "aliases": [], "dataset": "stl10", "method": "directcopy",
        "backbone": backbone, "input_shape": shape, "num_classes": 10, "epochs": 1,
        "backbone_kwargs": resolve_architecture_kwargs(backbone, shape, **backbone_kwargs),
        "train_command": "python scripts/pretrain.py --config=quickstart",
        "hub": {"repo_id": "someorg/tiny", "revision": "main"},
        "weights": {"filename": "encoder.weights.h5", "bundled": False,
                    "sha256": sha256_file(os.path.join(run_dir, "encoder.weights.h5"))},
        "architecture": {"filename": ARCHITECTURE_FILENAME,
                         "sha256": sha256_file(os.path.join(run_dir, ARCHITECTURE_FILENAME))},
        "head": None, "metrics": {**METRICS, "preset": name}, "run": None,
        "reduced_scale": True, "notes": "",
    }


def repo_folder(tmp_path, backbone, size, width_multiplier, synchronized_bn=False):
    """`(trained encoder, folder)`: a run turned into a Hub repository folder
    by `hub_folder.prepare_repo_folder`, as scripts/publish.py does."""
    run_dir = tmp_path / "run"
    encoder = trained_run(
        run_dir, backbone, size, width_multiplier=width_multiplier, synchronized_bn=synchronized_bn
    )
    preset = preset_for(run_dir, backbone, size, width_multiplier=width_multiplier)
    folder = hub_folder.prepare_repo_folder(preset, str(run_dir / "encoder.weights.h5"), str(tmp_path / "repo"))
    return encoder, folder


def assert_loads_as_trained(loaded, encoder, size):
    assert plain(loaded.get_config()) == plain(encoder.get_config())
    np.testing.assert_array_equal(loaded(images(size)), encoder(images(size)))


# -- One rule for the size-dependent defaults ------------------------------------


@pytest.mark.parametrize("size, stem, normalization", [
    (32, "cifar", "cifar10"), (64, "cifar", "cifar10"), (65, "imagenet", "cifar10"),
    (96, "imagenet", "cifar10"), (97, "imagenet", "imagenet"), (224, "imagenet", "imagenet"),
])
def test_one_rule_resolves_stem_and_normalization(size, stem, normalization):
    shape = (size, size, 3)
    assert resolve_architecture_kwargs("resnet18", shape) == {
        "width_multiplier": 1.0, "stem": stem, "input_normalization": normalization,
    }
    assert resolve_architecture_kwargs("resnet20", shape) == {
        "width_multiplier": 1.0, "input_normalization": normalization,
    }
    # The builders use that rule: pinning its result changes nothing.
    default = build_backbone("resnet18", shape, width_multiplier=WIDTH)
    resolved = resolve_architecture_kwargs("resnet18", shape, width_multiplier=WIDTH)
    pinned = build_backbone("resnet18", shape, **resolved)
    assert plain(default.get_config()) == plain(pinned.get_config())
    mean = default.get_layer("normalize").get_config()["mean"]
    np.testing.assert_allclose(mean, INPUT_NORMALIZATION_STATS[normalization][0])


def test_explicit_arguments_are_kept_and_bad_ones_named():
    assert resolve_architecture_kwargs("resnet18", (224, 224, 3), stem="cifar", input_normalization="cifar10") == {
        "width_multiplier": 1.0, "stem": "cifar", "input_normalization": "cifar10",
    }
    with pytest.raises(ValueError, match="Unknown stem 'tiny'. Valid stems: cifar, imagenet"):
        resolve_architecture_kwargs("resnet18", (32, 32, 3), stem="tiny")
    with pytest.raises(ValueError, match="Unknown input_normalization 'mnist'. Valid: auto, imagenet, cifar10"):
        resolve_architecture_kwargs("resnet18", (32, 32, 3), input_normalization="mnist")
    with pytest.raises(ValueError, match="resnet20 has a fixed CIFAR stem"):
        resolve_architecture_kwargs("resnet20", (32, 32, 3), stem="imagenet")


# -- Saved as training does, loaded as trained ----------------------------------------


@pytest.mark.parametrize("size", [32, 64, 96, 224])
def test_a_resnet18_loads_as_trained_from_its_repository_folder(size, tmp_path):
    encoder, folder = repo_folder(tmp_path, "resnet18", size, width_multiplier=WIDTH)
    assert ARCHITECTURE_FILENAME in os.listdir(folder)
    config = json.loads(Path(folder, "config.json").read_text())
    assert config["architecture"]["sha256"] == sha256_file(Path(folder, ARCHITECTURE_FILENAME))
    assert_loads_as_trained(kdc.load_pretrained(folder), encoder, size)


def test_the_resnet20_loads_as_trained_from_its_repository_folder(tmp_path):
    encoder, folder = repo_folder(tmp_path, "resnet20", 32, width_multiplier=0.25)
    assert_loads_as_trained(kdc.load_pretrained(folder), encoder, 32)


def test_a_96px_encoder_keeps_the_cifar_statistics_it_was_trained_with(tmp_path):
    encoder, folder = repo_folder(tmp_path, "resnet18", 96, width_multiplier=WIDTH)
    loaded = kdc.load_pretrained(folder)
    cifar_mean, cifar_std = INPUT_NORMALIZATION_STATS["cifar10"]
    normalize = loaded.get_layer("normalize").get_config()
    np.testing.assert_allclose(normalize["mean"], cifar_mean)
    np.testing.assert_allclose(normalize["variance"], np.square(cifar_std))
    # CIFAR-10's mean pixel maps to zero, as in training.
    to_normalized = keras.Model(loaded.input, loaded.get_layer("normalize").output)
    mean_pixel = np.broadcast_to(np.float32(cifar_mean) * 255, (1, 96, 96, 3))
    np.testing.assert_allclose(to_normalized(mean_pixel), 0.0, atol=1e-5)
    assert loaded.get_layer("stem_conv").kernel_size == (7, 7)
    assert_loads_as_trained(loaded, encoder, 96)


def test_a_96px_preset_registered_and_bundled_loads_as_trained(tmp_path, monkeypatch):
    """The STL-10 flow end to end: registering with --bundle (what
    scripts/register_preset.py calls), then load_pretrained through a private
    registry."""
    zoo_dir, run_dir = tmp_path / "zoo", tmp_path / "run"
    zoo_dir.mkdir()
    encoder = trained_run(run_dir, "resnet18", 96, width_multiplier=WIDTH)
    preset = preset_for(run_dir, "resnet18", 96, name="tiny_stl10", width_multiplier=WIDTH)
    # Registered as the registry holds an untrained preset: no files, and
    # only the width recorded, as before this fix.
    preset.update(weights={"filename": "encoder.weights.h5", "sha256": None, "bundled": False},
                  backbone_kwargs={"width_multiplier": WIDTH}, metrics=None)
    del preset["architecture"]
    (zoo_dir / "tiny_stl10.json").write_text(json.dumps(preset))
    config = get_config("stl10_resnet18", width_multiplier=WIDTH, epochs=1)
    command = "python scripts/pretrain.py --config=stl10_resnet18 --epochs=1"
    (run_dir / "run.json").write_text(json.dumps({
        "config": {**config.__dict__}, "commands": [command], "epochs_done": 1,
        "steps": 1, "steps_per_epoch": 1,
    }))
    registration.register("tiny_stl10", str(zoo_dir), str(tmp_path), run_dir=str(run_dir), bundle=True)
    registered = json.loads((zoo_dir / "tiny_stl10.json").read_text())
    assert registered["backbone_kwargs"] == {"width_multiplier": WIDTH, "stem": "imagenet", "input_normalization": "cifar10"}
    assert sorted(os.listdir(zoo_dir / "tiny_stl10")) == [ARCHITECTURE_FILENAME, "encoder.weights.h5"]
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(zoo_dir))
    assert_loads_as_trained(kdc.load_pretrained("tiny_stl10"), encoder, 96)


@pytest.mark.slow
def test_a_96px_encoder_loads_as_trained_through_the_hub_cache(tmp_path):
    """hf://ORG/REPO offline from the real huggingface_hub cache."""
    encoder, folder = repo_folder(tmp_path, "resnet18", 96, width_multiplier=WIDTH)
    repo = tmp_path / "cache" / "models--someorg--tiny-stl10"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    np.save(tmp_path / "x.npy", images(96))
    script = (
        "import sys, json, numpy as np, keras_directcopy as k; "
        "m = k.load_pretrained('hf://someorg/tiny-stl10'); "
        "np.save(sys.argv[2], np.asarray(m(np.load(sys.argv[1])))); "
        "open(sys.argv[3], 'w').write(json.dumps(m.get_config()))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
         str(tmp_path / "config.json")],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), encoder(images(96)))
    assert json.loads((tmp_path / "config.json").read_text()) == plain(encoder.get_config())


def test_an_older_folder_without_architecture_file_is_rebuilt_by_the_training_rule(tmp_path):
    """A folder written before the architecture file existed, recording only
    the width: the rebuild resolves the stem and normalization as training did."""
    encoder, folder = repo_folder(tmp_path, "resnet18", 96, width_multiplier=WIDTH)
    config_path = Path(folder, "config.json")
    config = json.loads(config_path.read_text())
    config.update(architecture=None, backbone_kwargs={"width_multiplier": WIDTH})
    config_path.write_text(json.dumps(config))
    os.remove(Path(folder, ARCHITECTURE_FILENAME))
    assert_loads_as_trained(kdc.load_pretrained(folder), encoder, 96)


def test_a_synchronized_batchnorm_encoder_loads_as_trained(tmp_path):
    """Saved from a multi-replica run (synchronized BatchNorm)."""
    encoder, folder = repo_folder(tmp_path, "resnet20", 32, width_multiplier=0.25, synchronized_bn=True)
    loaded = kdc.load_pretrained(folder)
    assert loaded.get_layer("stem_bn").synchronized
    assert_loads_as_trained(loaded, encoder, 32)


# -- Another input_shape keeps the trained stem, normalization and weights ----------------


@pytest.mark.parametrize("size, other, stem, normalization", [
    (96, (128, 128, 3), "imagenet", "cifar10"),
    (96, (None, None, 3), "imagenet", "cifar10"),
    (32, (96, 96, 3), "cifar", "cifar10"),
    (224, (64, 64, 3), "imagenet", "imagenet"),
])
def test_another_input_shape_keeps_the_trained_architecture(size, other, stem, normalization, tmp_path):
    encoder, folder = repo_folder(tmp_path, "resnet18", size, width_multiplier=WIDTH)
    resized = kdc.load_pretrained(folder, input_shape=other)
    assert resized.input_shape == (None, *other)
    assert resized.get_layer("stem_conv").kernel_size == ((3, 3) if stem == "cifar" else (7, 7))
    np.testing.assert_allclose(
        resized.get_layer("normalize").get_config()["mean"], INPUT_NORMALIZATION_STATS[normalization][0]
    )
    assert [layer.name for layer in resized.layers] == [layer.name for layer in encoder.layers]
    for a, b in zip(resized.weights, encoder.weights):
        np.testing.assert_array_equal(a, b)
    # The same network: at the trained size it computes the trained features.
    if other[0] is None:
        np.testing.assert_allclose(resized(images(size)), encoder(images(size)), rtol=1e-5, atol=1e-5)


def test_resnet20_at_another_input_shape(tmp_path):
    """Its option-A shortcut reshapes to fixed sizes: rebuilt for the new
    size, with the trained weights."""
    encoder, folder = repo_folder(tmp_path, "resnet20", 32, width_multiplier=0.25)
    larger = kdc.load_pretrained(folder, input_shape=(64, 64, 3))
    assert larger.output_shape == (None, 16)
    for a, b in zip(larger.weights, encoder.weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"resnet20 needs an input_shape with integer height and width.*\(None, None, 3\)"):
        kdc.load_pretrained(folder, input_shape=(None, None, 3))


def test_a_registry_entry_that_does_not_describe_its_architecture_file_is_refused(tmp_path):
    _, folder = repo_folder(tmp_path, "resnet18", 96, width_multiplier=WIDTH)
    config_path = Path(folder, "config.json")
    config = json.loads(config_path.read_text())
    config["backbone_kwargs"]["input_normalization"] = "imagenet"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError) as error:
        kdc.load_pretrained(folder)
    message = str(error.value)
    assert f"The architecture file {ARCHITECTURE_FILENAME} of tiny" in message
    assert "layer 'normalize' differs in mean: [0.4914, 0.4822, 0.4465] there, [0.485, 0.456, 0.406] rebuilt" in message
    assert "nothing was loaded" in message


# -- Only built-in Keras layers; nothing from the file is executed -----------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    _, folder = repo_folder(tmp_path_factory.mktemp("tiny"), "resnet20", 32, width_multiplier=0.25)
    return folder


def tampered_folder(tiny_folder, tmp_path, change):
    """A copy of the folder whose architecture file is changed by
    `change(config)`, with its sha256 re-recorded (a published repository
    that is consistent but hostile)."""
    folder = tmp_path / "tampered"
    shutil.copytree(tiny_folder, folder)
    path = folder / ARCHITECTURE_FILENAME
    architecture = json.loads(path.read_text())
    change(architecture)
    path.write_text(json.dumps(architecture))
    config = json.loads((folder / "config.json").read_text())
    config["architecture"]["sha256"] = sha256_file(path)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def layer_named(architecture, name):
    return next(layer for layer in architecture["config"]["layers"] if layer["name"] == name)


def to_lambda(architecture):
    lambda_layer = keras.saving.serialize_keras_object(
        keras.layers.Lambda(lambda x: x * 2.0, name="stem_relu")
    )
    layer_named(architecture, "stem_relu").update(
        {key: lambda_layer[key] for key in ("module", "class_name", "config", "registered_name")}
    )


def to_unknown_class(architecture):
    layer_named(architecture, "stem_relu").update(module="my_module", class_name="MyReLU")


def to_registered_custom_class(architecture):
    layer_named(architecture, "stem_relu")["registered_name"] = "my_package>ReLU"


def to_custom_initializer(architecture):
    layer_named(architecture, "stem_conv")["config"]["kernel_initializer"] = {
        "module": "my_module", "class_name": "MyInit", "config": {}, "registered_name": "my_module>MyInit",
    }


@pytest.mark.parametrize("change, found", [
    (to_lambda, "layer 'stem_relu' is of class keras.layers.Lambda"),
    (to_unknown_class, "layer 'stem_relu' is of class my_module.MyReLU"),
    (to_registered_custom_class, "layer 'stem_relu' is of class keras.layers.ReLU (registered as 'my_package>ReLU')"),
    (to_custom_initializer, "layer 'stem_conv' holds an object of class my_module.MyInit"),
])
def test_an_architecture_naming_other_classes_is_refused_before_deserializing(
    change, found, tiny_folder, tmp_path, monkeypatch
):
    folder = tampered_folder(tiny_folder, tmp_path, change)

    def must_not_run(*args, **kwargs):
        raise AssertionError("deserialize_keras_object was called on a refused architecture")

    monkeypatch.setattr(keras.saving, "deserialize_keras_object", must_not_run)
    with pytest.raises(ValueError) as error:
        kdc.load_pretrained(folder)
    message = str(error.value)
    assert found in message, message
    assert "nothing was loaded" in message.lower()
    assert "runs no code from it" in message


def test_an_architecture_that_is_not_a_functional_model_is_refused(tiny_folder, tmp_path):
    folder = tampered_folder(tiny_folder, tmp_path, lambda a: a.update(class_name="Sequential"))
    with pytest.raises(ValueError, match="does not describe a functional Keras model .*'Sequential'"):
        kdc.load_pretrained(folder)


def test_every_backbone_is_made_of_the_accepted_layer_classes():
    for name in backbones.BACKBONE_NAMES:
        for size in (32, 224):
            model = build_backbone(name, (size, size, 3), width_multiplier=WIDTH)
            used = {type(layer).__name__ for layer in model.layers}
            assert used <= backbones.LAYER_CLASSES, used - backbones.LAYER_CLASSES


# -- load_pretrained's arguments are checked at the boundary ----------------------------


@pytest.mark.parametrize("input_shape, message", [
    ((32, 32, 1), r"input_shape must be \(height, width, 3\) .*; got \(32, 32, 1\): the "
                  r"encoders take RGB images, so the last entry \(channels\) must be 3"),
    ((32, 32), r"input_shape must be \(height, width, 3\) with height and width positive "
               r"integers or None; got \(32, 32\)"),
    ((0, 32, 3), r"got \(0, 32, 3\)"),
    ((32.5, 32, 3), r"got \(32\.5, 32, 3\)"),
    ("32x32", r"got '32x32'"),
    (32, r"input_shape must be .*; got 32\."),
])
def test_bad_input_shape_is_named_before_anything_is_read(input_shape, message):
    # An unknown name shows that the check comes first.
    with pytest.raises(ValueError, match=message):
        kdc.load_pretrained("no_such_preset", input_shape=input_shape)


@pytest.mark.parametrize("arguments, message", [
    ({"include_top": "yes"}, "include_top must be True or False; got 'yes'"),
    ({"include_top": 1}, "include_top must be True or False; got 1"),
    ({"pooling": "sum"}, "pooling must be one of 'avg', 'max', None; got 'sum'"),
    ({"pooling": ["avg"]}, r"pooling must be one of 'avg', 'max', None; got \['avg'\]"),
    ({"weights": "imagenet"}, r"weights must be True \(the pretrained weights\), None or False .*; got 'imagenet'"),
    ({"weights": 1}, r"weights must be True \(the pretrained weights\), None or False .*; got 1"),
])
def test_bad_arguments_are_named_before_anything_is_read(arguments, message):
    with pytest.raises(ValueError, match=message):
        kdc.load_pretrained("no_such_preset", **arguments)


def test_numpy_integers_are_valid_input_sizes(tiny_folder):
    model = kdc.load_pretrained(tiny_folder, input_shape=(np.int64(32), np.int32(32), 3))
    assert model.input_shape == (None, 32, 32, 3)


# -- The shipped CIFAR-10 encoder -------------------------------------------------------


def test_the_shipped_cifar10_architecture_is_what_trained_it():
    """ResNet-20 at 32 px, width 1.0, as `--config=cifar10_resnet20` built it."""
    preset = zoo.get_preset("cifar10")
    shipped = backbones.read_architecture(REPO_ROOT / "zoo" / preset["name"] / ARCHITECTURE_FILENAME)
    trained = build_backbone("resnet20", (32, 32, 3), width_multiplier=1.0)
    assert plain(shipped.get_config()) == plain(trained.get_config())
    loaded = kdc.load_pretrained("cifar10")
    assert plain(loaded.get_config()) == plain(trained.get_config())
    # Weights and outputs as loading the weights into that architecture gives.
    trained.load_weights(REPO_ROOT / "zoo" / preset["name"] / preset["weights"]["filename"])
    np.testing.assert_array_equal(loaded(images(32)), trained(images(32)))


def test_an_encoder_trained_in_mixed_precision_is_saved_in_float32(tmp_path):
    """The policy is a training choice: what is saved, and loaded from the
    architecture file, computes and returns float32 with the same weights."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        encoder = kdc.resnet20((32, 32, 3), width_multiplier=0.25)
    finally:
        keras.config.set_dtype_policy(previous)
    assert encoder.output.dtype == "float16"
    save_encoder(encoder, str(tmp_path))

    for loaded in (
        keras.saving.load_model(tmp_path / "encoder.keras", safe_mode=True),
        backbones.read_architecture(tmp_path / ARCHITECTURE_FILENAME),
    ):
        assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
        assert loaded.output.dtype == "float32"
    saved = keras.saving.load_model(tmp_path / "encoder.keras", safe_mode=True)
    for original, kept in zip(encoder.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(original, kept)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    # float16 computation against float32: close, not equal.
    np.testing.assert_allclose(
        saved.predict(images, verbose=0), encoder.predict(images, verbose=0).astype(np.float32),
        atol=0.05, rtol=0.05,
    )
