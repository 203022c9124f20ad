"""scripts/register_preset.py (`keras_directcopy.presets.registration`): a finished run becomes a preset's weights, run
record, metrics and model card; anything inconsistent is refused and leaves
the registry untouched."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_directcopy as kdc
from keras_directcopy.configs import get_config
from keras_directcopy.training.preset_recipes import preset_config
from keras_directcopy.models.backbones import ARCHITECTURE_FILENAME
from keras_directcopy.presets import model_card, registration, zoo
from keras_directcopy.training.loop import save_encoder
from keras_directcopy.utils.files import sha256_file

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME = "directcopy_tinyresnet_cifar10"


def run_script(*flags):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "register_preset.py"), *flags],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )


@pytest.fixture
def registry(tmp_path):
    """A registry with one preset without weights, and a finished run for it."""
    zoo_dir, run_dir, cards = tmp_path / "zoo", tmp_path / "run", tmp_path / "cards"
    for directory in (zoo_dir, run_dir, cards):
        directory.mkdir()
    preset = {
        "name": NAME, "aliases": [], "dataset": "cifar10", "method": "directcopy",
        "backbone": "resnet20", "backbone_kwargs": {"width_multiplier": 0.25},
        "input_shape": [32, 32, 3], "num_classes": 10, "epochs": 2, "train_command": "unset",
        "hub": {"repo_id": "someorg/tiny", "revision": "main"},
        "weights": {"filename": "encoder.weights.h5", "sha256": None, "bundled": False},
        "head": None, "metrics": None, "run": None, "reduced_scale": True, "notes": "Tiny test encoder.",
    }
    (zoo_dir / f"{NAME}.json").write_text(json.dumps(preset))
    # Built and saved as scripts/pretrain.py does.
    encoder = kdc.build_backbone("resnet20", (32, 32, 3), width_multiplier=0.25)
    save_encoder(encoder, str(run_dir))
    command = "python scripts/pretrain.py --config=quickstart --width_multiplier=0.25 --epochs=2"
    run = {
        "config": dataclasses.asdict(get_config("quickstart", width_multiplier=0.25, epochs=2)),
        "commands": [command, command], "epochs_done": 2, "steps": 780, "steps_per_epoch": 390,
        "pretrain_examples": 50000, "wall_time_s": 100.0, "cpu_time_s": 180.0, "invocations": 2,
        "strategy": "default", "num_replicas": 1, "final_metrics": {"loss": 0.5},
        "git_commit": "abc", "hardware": {"cpu_count": 2, "processor": "x86_64", "gpus": []},
        "predictor_eps": 0.25,
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    return zoo_dir, run_dir, cards, encoder


def metrics_for(name, knn=0.4321, linear=0.4567, dataset="cifar10"):
    return {
        "dataset": dataset, "encoder": "resnet20", "preset": name,
        "knn": {"top1": knn, "k": 200, "temperature": 0.1, "train_split": "train",
                "test_split": "test", "train_examples": 50000, "test_examples": 10000},
        "linear_probe": {"top1": linear, "train_top1": 0.5, "epochs": 100, "batch_size": 256,
                         "optimizer": "adam", "learning_rate": 3e-4, "weight_decay": 1e-3,
                         "feature_normalization": "standardize_train_mean_std", "final_epoch": True},
    }


@pytest.mark.slow
def test_register_run_then_metrics(registry, tmp_path, monkeypatch):
    zoo_dir, run_dir, cards, encoder = registry
    dirs = [f"--zoo_dir={zoo_dir}", f"--cards_dir={cards}"]
    result = run_script(f"--preset={NAME}", f"--run_dir={run_dir}", "--bundle", *dirs)
    assert result.returncode == 0, result.stderr[-3000:]
    preset = json.loads((zoo_dir / f"{NAME}.json").read_text())
    bundled = zoo_dir / NAME / "encoder.weights.h5"
    assert preset["weights"] == {"filename": "encoder.weights.h5", "bundled": True,
                                 "sha256": sha256_file(run_dir / "encoder.weights.h5")}
    assert sha256_file(bundled) == preset["weights"]["sha256"]
    # The trained architecture ships with the weights, and the entry states
    # the normalization it was built with.
    assert preset["architecture"] == {"filename": ARCHITECTURE_FILENAME,
                                      "sha256": sha256_file(run_dir / ARCHITECTURE_FILENAME)}
    assert sha256_file(zoo_dir / NAME / ARCHITECTURE_FILENAME) == preset["architecture"]["sha256"]
    assert preset["backbone_kwargs"] == {"width_multiplier": 0.25, "input_normalization": "cifar10"}
    assert preset["run"]["cpu_time_s"] == 180.0 and preset["epochs"] == 2
    assert preset["train_command"].startswith("python scripts/pretrain.py --config=quickstart")
    # The recipe as data, which pretrain.py trains by default for the preset's dataset.
    assert preset["pretrain_recipe"] == {"config": "quickstart", "overrides": {"width_multiplier": 0.25, "epochs": 2}}
    assert preset_config(preset) == get_config("quickstart", width_multiplier=0.25, epochs=2)
    assert preset["metrics"] is None and not list(cards.iterdir())

    # The registered preset loads through the registry with the run's weights.
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(zoo_dir))
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(kdc.load_pretrained(NAME)(images), encoder(images), rtol=1e-6, atol=1e-6)

    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(metrics_for(NAME)))
    registration.register(NAME, str(zoo_dir), str(cards), metrics=str(metrics_path))
    preset = json.loads((zoo_dir / f"{NAME}.json").read_text())
    assert preset["metrics"]["knn"]["top1"] == 0.4321
    card = (cards / f"{NAME}.md").read_text()
    assert "43.21 %" in card and "45.67 %" in card and "Reduced-scale training" in card


def test_unfinished_run_and_foreign_metrics_are_refused(registry, tmp_path):
    zoo_dir, run_dir, cards, _ = registry
    before = (zoo_dir / f"{NAME}.json").read_text()
    dirs = (str(zoo_dir), str(cards))

    run = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**run, "epochs_done": 1}))
    with pytest.raises(ValueError, match="has run 1 of its 2 epochs"):
        registration.register(NAME, *dirs, run_dir=str(run_dir), bundle=True)

    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(metrics_for("another_preset")))
    with pytest.raises(ValueError, match=f"--preset={NAME}"):
        registration.register(NAME, *dirs, metrics=str(metrics_path))

    with pytest.raises(FileNotFoundError, match=f"'nope' is no preset's alias. Presets in .*: {NAME}; aliases: none"):
        registration.register("nope", *dirs, run_dir=str(run_dir))
    assert (zoo_dir / f"{NAME}.json").read_text() == before
    assert not (zoo_dir / NAME).exists() and not list(cards.iterdir())


def test_a_run_without_its_architecture_or_of_another_architecture_is_refused(registry):
    """A run from before the architecture file gets the command that writes
    it; a run whose encoder is not the preset's architecture (here trained at
    64 px for a 32-px preset) is refused; the registry stays untouched."""
    zoo_dir, run_dir, cards, _ = registry
    before = (zoo_dir / f"{NAME}.json").read_text()
    dirs = (str(zoo_dir), str(cards))
    (run_dir / ARCHITECTURE_FILENAME).rename(run_dir / "saved.json")
    with pytest.raises(ValueError, match=f"has no {ARCHITECTURE_FILENAME}") as missing:
        registration.register(NAME, *dirs, run_dir=str(run_dir), bundle=True)
    assert "write_architecture(" in str(missing.value)

    save_encoder(kdc.build_backbone("resnet20", (64, 64, 3), width_multiplier=0.25), str(run_dir))
    with pytest.raises(ValueError, match=f"is not the architecture preset {NAME!r} records") as other:
        registration.register(NAME, *dirs, run_dir=str(run_dir), bundle=True)
    assert "layer 'images' differs in batch_shape" in str(other.value)
    assert (zoo_dir / f"{NAME}.json").read_text() == before and not (zoo_dir / NAME).exists()


def test_an_encoder_over_the_bundle_limit_is_refused_with_the_way_on(registry, monkeypatch):
    zoo_dir, run_dir, cards, _ = registry
    monkeypatch.setattr(registration, "MAX_BUNDLED_BYTES", 2**20)  # the tiny encoder is smaller
    registration.register(NAME, str(zoo_dir), str(cards), run_dir=str(run_dir), bundle=True)
    monkeypatch.setattr(registration, "MAX_BUNDLED_BYTES", 2**17)
    with pytest.raises(ValueError, match="is 0.3 MB; only encoders up to 0.125 MB are bundled. Publish it"):
        registration.register(NAME, str(zoo_dir), str(cards), run_dir=str(run_dir), bundle=True)


def test_a_preset_is_named_by_its_file_or_its_alias(registry, tmp_path):
    zoo_dir, _, cards, _ = registry
    path = zoo_dir / f"{NAME}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "aliases": ["tiny"],
                                "weights": {"filename": "encoder.weights.h5", "sha256": "ab" * 32}}))
    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(metrics_for(NAME)))
    preset = registration.register("tiny", str(zoo_dir), str(cards), metrics=str(metrics_path))
    assert preset["name"] == NAME and json.loads(path.read_text())["metrics"]["knn"]["top1"] == 0.4321
    assert (cards / f"{NAME}.md").exists() and not (zoo_dir / "tiny.json").exists()


def test_a_run_is_registered_only_if_every_invocation_trained_one_recipe(registry):
    """Invocations that recorded their recipe (scripts/pretrain.py resumes
    only with the same one) may differ in where the run and its data were;
    the commands of invocations from before the record must be identical,
    to each other and to the first recorded one's."""
    zoo_dir, run_dir, cards, _ = registry
    dirs = (str(zoo_dir), str(cards))
    before = (zoo_dir / f"{NAME}.json").read_text()
    run = json.loads((run_dir / "run.json").read_text())

    def write_run(commands, recorded):
        (run_dir / "run.json").write_text(json.dumps({**run, "commands": commands, "recipe_recorded": recorded}))

    for commands, recorded in ((["a", "b"], None), (["a", "b", "b"], [False, True, True]),
                               (["a", "a", "b"], [False, False, True])):
        write_run(commands, recorded)
        with pytest.raises(ValueError, match="resumed with different commands, by invocations that did not"):
            registration.register(NAME, *dirs, run_dir=str(run_dir), bundle=True)
    assert (zoo_dir / f"{NAME}.json").read_text() == before

    write_run(["a", "a", "moved"], [False, True, True])
    preset = registration.register(NAME, *dirs, run_dir=str(run_dir), bundle=True)
    assert preset["weights"]["bundled"] and preset["train_command"] == "a"


# -- Additional evaluations -------------------------------------------------------


def write_metrics(directory, filename, metrics):
    path = directory / filename
    path.write_text(json.dumps(metrics))
    return str(path)


def other_evaluations(dataset="cifar100"):
    """The primary metrics of a preset on `dataset` and its three kinds of
    other evaluation, as scripts/evaluate.py writes them: `(primary, coarse
    labels, k = 20 without linear probe, random-init floor)`."""
    primary = metrics_for(NAME, dataset=dataset)
    coarse = metrics_for(NAME, knn=0.55, linear=0.6, dataset=f"{dataset}:coarse_label")
    k20 = metrics_for(NAME, knn=0.44, dataset=dataset)
    k20["knn"]["k"], k20["linear_probe"] = 20, None
    floor = metrics_for(NAME, knn=0.3, linear=0.35, dataset=dataset)
    floor.update(encoder=f"{NAME} architecture, random initialization (seed 0)", random_init={"seed": 0})
    return primary, coarse, k20, floor


@pytest.fixture
def cifar100_registry(registry):
    """The registry's preset as a CIFAR-100 one (which has a coarse label set),
    with weights registered (their sha256, which a card needs)."""
    zoo_dir, _, cards, _ = registry
    path = zoo_dir / f"{NAME}.json"
    preset = json.loads(path.read_text())
    preset.update(dataset="cifar100", num_classes=100, weights={**preset["weights"], "sha256": "ab" * 32})
    path.write_text(json.dumps(preset))
    return zoo_dir, cards


def test_additional_evaluations_are_recorded_and_shown_in_the_card(cifar100_registry, tmp_path):
    zoo_dir, cards = cifar100_registry
    primary, coarse, k20, floor = other_evaluations()
    files = [write_metrics(tmp_path, f"{kind}.json", metrics)
             for kind, metrics in (("coarse", coarse), ("k20", k20), ("floor", floor))]
    registration.register(
        NAME, str(zoo_dir), str(cards), metrics=write_metrics(tmp_path, "primary.json", primary),
        additional_metrics=files,
    )
    preset = json.loads((zoo_dir / f"{NAME}.json").read_text())
    assert preset["metrics"] == primary
    assert preset["additional_metrics"] == [coarse, k20, floor]  # each the full record
    card = (cards / f"{NAME}.md").read_text()
    assert card == model_card.build_model_card(preset)
    for row in [
        "| CIFAR-100 coarse labels (20 superclasses) | 55.00 % | 60.00 % |",
        "| kNN k = 20 | 44.00 % | not measured |",
        "| random-init floor of the same architecture (seed 0) | 30.00 % | 35.00 % |",
    ]:
        assert row in card, row
    # The headline states the gain over the floor: 43.21 - 30.00 and 45.67 - 35.00.
    assert ("**45.67 %** (linear probe). Pretraining gains **+13.21 points** (kNN) and **+10.67 points** "
            "(linear probe) over the random-init floor of the same architecture (seed 0: 30.00 % kNN, "
            "35.00 % linear probe, same protocol).") in card

    # Re-measured alone, an evaluation replaces its predecessor in place; the others stay.
    remeasured = {**k20, "knn": {**k20["knn"], "top1": 0.45}}
    registration.register(NAME, str(zoo_dir), str(cards),
                          additional_metrics=[write_metrics(tmp_path, "k20_again.json", remeasured)])
    preset = json.loads((zoo_dir / f"{NAME}.json").read_text())
    assert preset["additional_metrics"] == [coarse, remeasured, floor]
    assert "| kNN k = 20 | 45.00 % | not measured |" in (cards / f"{NAME}.md").read_text()


@pytest.mark.parametrize("case, message", [
    ("another preset", f"on 'another_preset', not on the registered preset: run scripts/evaluate.py --preset={NAME}\\.$"),
    ("floor of another architecture", "--random_init --seed=0"),
    ("the primary protocol again", "repeats the protocol of the preset's own metrics"),
    ("two of the same evaluation", "are the same evaluation"),
    ("another dataset", "not a label set of the images"),
    ("other splits", "so the two are not comparable"),
    ("random init as primary", "is the random-init floor \\(seed 0\\).*pass it as --additional_metrics="),
    ("another label set as primary", "is on 'cifar100:coarse_label'.*pass it as --additional_metrics="),
    ("no primary metrics", "has no metrics"),
])
def test_unfit_additional_evaluations_are_refused(cifar100_registry, tmp_path, case, message):
    """Each refusal names the file and the fix, and writes nothing."""
    zoo_dir, cards = cifar100_registry
    before = (zoo_dir / f"{NAME}.json").read_text()
    primary, coarse, k20, floor = other_evaluations()
    duplicate = metrics_for(NAME, knn=0.5, dataset="cifar100")  # another measurement, same protocol
    sliced = {**k20, "knn": {**k20["knn"], "test_split": "test[:1000]", "test_examples": 1000}}
    foreign_floor = {**floor, "preset": None}  # from scripts/evaluate.py --backbone=... --random_init
    metrics, additional = {
        "another preset": (primary, [metrics_for("another_preset", dataset="cifar100")]),
        "floor of another architecture": (primary, [foreign_floor]),
        "the primary protocol again": (primary, [coarse, duplicate]),
        "two of the same evaluation": (primary, [k20, {**k20, "knn": {**k20["knn"], "top1": 0.1}}]),
        "another dataset": (primary, [metrics_for(NAME, dataset="cifar10")]),
        "other splits": (primary, [sliced]),
        "random init as primary": (floor, []),
        "another label set as primary": (coarse, []),
        "no primary metrics": (None, [k20]),
    }[case]
    metrics_path = metrics and write_metrics(tmp_path, "primary.json", metrics)
    paths = [write_metrics(tmp_path, f"additional_{i}.json", m) for i, m in enumerate(additional)]
    with pytest.raises(ValueError, match=message) as error:
        registration.register(NAME, str(zoo_dir), str(cards), metrics=metrics_path,
                              additional_metrics=paths)
    assert str(tmp_path) in str(error.value) or case == "no primary metrics"
    assert (zoo_dir / f"{NAME}.json").read_text() == before and not list(cards.iterdir())


def test_new_weights_void_the_additional_evaluations(registry, tmp_path):
    zoo_dir, run_dir, cards, _ = registry
    dirs = (str(zoo_dir), str(cards))
    primary, _, k20, floor = other_evaluations(dataset="cifar10")
    registration.register(NAME, *dirs, run_dir=str(run_dir), bundle=True)
    registration.register(
        NAME, *dirs, metrics=write_metrics(tmp_path, "primary.json", primary),
        additional_metrics=[write_metrics(tmp_path, "k20.json", k20), write_metrics(tmp_path, "floor.json", floor)],
    )
    assert len(json.loads((zoo_dir / f"{NAME}.json").read_text())["additional_metrics"]) == 2
    # The run again stands for new weights: what was measured on the old ones goes.
    registration.register(NAME, *dirs, run_dir=str(run_dir), bundle=True)
    preset = json.loads((zoo_dir / f"{NAME}.json").read_text())
    assert preset["metrics"] is None and preset["additional_metrics"] == []
    # Without metrics of the new weights there is nothing to set them beside.
    with pytest.raises(ValueError, match="has no metrics"):
        registration.register(NAME, *dirs, additional_metrics=[str(tmp_path / "k20.json")])


@pytest.mark.slow
def test_register_script_takes_a_comma_separated_list(cifar100_registry, tmp_path):
    zoo_dir, cards = cifar100_registry
    path = zoo_dir / f"{NAME}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "aliases": ["tiny"]}))
    primary, coarse, k20, floor = other_evaluations()
    files = [write_metrics(tmp_path, f"{i}.json", m) for i, m in enumerate((coarse, k20, floor))]
    result = run_script(
        "--preset=tiny", f"--zoo_dir={zoo_dir}", f"--cards_dir={cards}",
        f"--metrics={write_metrics(tmp_path, 'primary.json', primary)}",
        f"--additional_metrics={','.join(files)}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Updated {path}:" in result.stdout and "with 3 additional evaluation(s)" in result.stdout
    assert json.loads((zoo_dir / f"{NAME}.json").read_text())["additional_metrics"] == [coarse, k20, floor]
    refused = run_script(f"--preset={NAME}", f"--zoo_dir={zoo_dir}", f"--cards_dir={cards}",
                         f"--metrics={files[2]}")
    assert refused.returncode != 0 and f"pass it as --additional_metrics={files[2]}" in refused.stderr
