"""Known labelled-folder datasets (`keras_directcopy.data.known_folders`):
identification of a `folder:ROOT` by its class folders and image counts, the
records that name it (metrics JSON, run.json, finetune.json), the refusal of
the bare name, the warning on a folder that is not the preset's dataset,
registration, and the model card of a preset trained on Imagenette.

Every folder is a small synthetic tree written here; a fake known dataset,
`tinynette`, is registered with monkeypatch where a test needs a folder to
be identified, so nothing needs the real Imagenette.
"""

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import keras_directcopy as kdc
from keras_directcopy.configs import get_config
from keras_directcopy.data import datasets as data
from keras_directcopy.data import known_folders
from keras_directcopy.evaluation.evaluate import evaluate_encoder, resolve_dataset
from keras_directcopy import catalog
from keras_directcopy.presets import checks, model_card, registration, zoo
from keras_directcopy.training.loop import save_encoder
from keras_directcopy.utils.files import sha256_file
from tests.helpers import tiny_encoder
from tests.test_folder_datasets import write_image

REPO_ROOT = Path(__file__).resolve().parents[1]
# The fake known dataset: two classes, per-class counts per split.
TINY = known_folders.KnownFolder(
    name="tinynette",
    display_name="Tinynette (test)",
    class_names=("cat", "dog"),
    counts={"train": (2, 3), "val": (1, 2)},
    hub_dataset_id="someorg/tinynette",
    layout="the tinynette layout: train/<class>/*.png and val/<class>/*.png",
    source="this test",
)


def make_tree(root, counts=None):
    """Writes `{split: {class: image count}}` as 12 x 10 px images (by
    default the counts of `TINY`), plus a non-image file and a hidden
    folder in train/, which are neither classes nor counted."""
    counts = counts or {split: TINY.split_counts(split) for split in TINY.counts}
    for split, classes in counts.items():
        for label, (name, count) in enumerate(classes.items()):
            for index in range(count):
                suffix = ".png" if index % 2 else ".JPG"
                write_image(root / split / name / f"{index}{suffix}", 12, 10, 40 + 80 * label)
    (root / "train" / next(iter(counts["train"])) / "notes.txt").write_text("not an image")
    write_image(root / "train" / ".thumbnails" / "x.png", 4, 4, 0)
    return root


@pytest.fixture
def tiny_known(monkeypatch):
    """`tinynette` registered beside the real known datasets."""
    monkeypatch.setitem(known_folders.KNOWN_FOLDERS, TINY.name, TINY)
    return TINY


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "tinynette")


# -- The registry ---------------------------------------------------------------


def test_imagenette_is_registered_as_distributed_and_as_the_cards_name_it():
    imagenette = known_folders.get_known_folder("imagenette")
    assert imagenette.display_name == "Imagenette (imagenette2)"
    assert len(imagenette.class_names) == 10
    assert list(imagenette.class_names) == sorted(imagenette.class_names)  # the label order
    assert imagenette.class_names[0] == "n01440764" and imagenette.class_names[-1] == "n03888257"
    assert (imagenette.total("train"), imagenette.total("val")) == (9469, 3925)
    assert imagenette.split_counts("val")["n03425413"] == 419
    assert imagenette.hub_dataset_id == "frgfm/imagenette"
    # Every folder dataset the catalog names is registered with what identifies it.
    assert set(known_folders.KNOWN_FOLDERS) == set(catalog.FOLDER_DATASETS)
    with pytest.raises(ValueError, match="known ones are imagenette"):
        known_folders.get_known_folder("imagewoof")


# -- Identification ---------------------------------------------------------------


def test_a_folder_with_the_classes_and_counts_is_identified(tiny_known, tree):
    assert data.count_folder_images(str(tree)) == {"train": {"cat": 2, "dog": 3}, "val": {"cat": 1, "dog": 2}}
    assert data.identify_folder(str(tree)) == "tinynette"
    # A real-size copy of the same files is the same dataset: pixels are not compared.
    write_image(tree / "train" / "cat" / "0.JPG", 40, 30, 1)
    assert data.identify_folder(str(tree)) == "tinynette"
    # Not Imagenette, which it shares no class with.
    assert known_folders.related(data.count_folder_images(str(tree))) == ["tinynette"]


@pytest.mark.parametrize("change, expected", [
    ("extra class", ["train/ has class(es) fox that Tinynette (test) has not", "train/ has 6 images, not 5"]),
    ("missing class", ["train/ lacks class(es) dog", "train/ has 2 images, not 5",
                       "val/ lacks class(es) dog", "val/ has 1 images, not 3"]),
    ("wrong count", ["val/ has 2 images, not 3", "val/ image counts differ: dog 1 (not 2)"]),
    ("no val", ["no val/ folder"]),
])
def test_a_folder_that_differs_is_not_identified_and_says_how(tiny_known, tree, change, expected):
    if change == "extra class":
        write_image(tree / "train" / "fox" / "0.png", 12, 10, 9)
    elif change == "missing class":
        for split in ("train", "val"):
            for path in (tree / split / "dog").iterdir():
                path.unlink()
            (tree / split / "dog").rmdir()
    elif change == "wrong count":
        (tree / "val" / "dog" / "0.JPG").unlink()
    else:
        (tree / "val").rename(tree / "test")  # labelled still, but not the layout
    counts = data.count_folder_images(str(tree))
    assert known_folders.differences(counts, "tinynette") == expected
    assert data.identify_folder(str(tree)) is None
    assert data.dataset_record(f"folder:{tree}") == {"dataset": f"folder:{tree}", "data_folder": str(tree)}
    # What scripts/pretrain.py prints of such a folder.
    assert data.identify_dataset(f"folder:{tree}").description == (
        f"{tree} shares class folders with Tinynette (test) but is not it ({'; '.join(expected)}): "
        f"recorded as 'folder:{tree}'."
    )


def test_long_lists_of_differences_are_cut(tiny_known, tmp_path):
    counts = {"train": {f"class{i}": 1 for i in range(8)}, "val": {"cat": 1, "dog": 2}}
    found = known_folders.differences(counts, "tinynette")
    assert found[1] == ("train/ has class(es) class0, class1, class2, class3, class4 and 3 more "
                        "that Tinynette (test) has not")


def test_records_name_an_identified_folder_and_keep_its_path(tiny_known, tree, monkeypatch):
    assert data.dataset_record(f"folder:{tree}") == {"dataset": "tinynette", "data_folder": str(tree)}
    # A relative or ~ path is recorded absolute.
    monkeypatch.chdir(tree.parent)
    assert data.dataset_record("folder:tinynette")["data_folder"] == str(tree)
    monkeypatch.setenv("HOME", str(tree.parent))
    assert data.dataset_record("folder:~/tinynette") == {"dataset": "tinynette", "data_folder": str(tree)}
    assert data.dataset_record("cifar10") == {"dataset": "cifar10"}
    assert data.identify_dataset(f"folder:{tree}").description == (
        f"{tree} has the class folders and image counts of Tinynette (test): recorded as dataset "
        "'tinynette'.")
    assert data.identify_dataset("cifar10").description is None


def test_an_unrelated_folder_is_described_by_nothing(tmp_path):
    tree = make_tree(tmp_path / "pets", {"train": {"emu": 1}, "val": {"emu": 1}})
    assert data.identify_folder(str(tree)) is None
    assert data.identify_dataset(f"folder:{tree}").description is None
    assert data.count_folder_images(str(tmp_path / "nowhere")) == {}
    # ImageNet holds Imagenette's classes among its 1,000: not a copy of Imagenette.
    imagenette = known_folders.get_known_folder("imagenette")
    imagenet = {f"n{i:08d}": 1300 for i in range(990)} | imagenette.split_counts("train")
    assert known_folders.related({"train": imagenet}) == []
    assert known_folders.related({"train": dict(list(imagenette.split_counts("train").items())[:5])}) == [
        "imagenette"]


def test_a_folder_recipe_holds_its_contents_not_its_path(tmp_path):
    """What a pretraining run records as its data, and checks when resumed
    (`loop.recipe_record`): a folder moved elsewhere is the same data; one
    with an image more is not."""
    from keras_directcopy.training.loop import recipe_record
    from keras_directcopy.configs import DATASET_CONTENTS_KEY

    counts = {"train": {"emu": 2, "yak": 1}, "val": {"emu": 1, "yak": 1}}
    here, there = make_tree(tmp_path / "here", counts), make_tree(tmp_path / "there", counts)
    config = get_config("quickstart", dataset=f"folder:{here}")

    def recipe(folder):
        return recipe_record(config, data.identify_dataset(f"folder:{folder}"), 12)

    assert recipe(here) == recipe(there)
    assert recipe(here)["dataset"] == "folder:" and len(recipe(here)[DATASET_CONTENTS_KEY]) == 64
    write_image(there / "train" / "yak" / "extra.png", 12, 10, 7)
    assert recipe(here)[DATASET_CONTENTS_KEY] != recipe(there)[DATASET_CONTENTS_KEY]
    assert recipe_record(get_config("quickstart"), data.identify_dataset("cifar10"), 32)[
        DATASET_CONTENTS_KEY] is None


# -- The name alone, and evaluating a preset trained on a folder dataset ---------------


def test_the_bare_name_is_refused_with_the_folder_to_pass(tiny_known):
    with pytest.raises(ValueError) as error:
        data.get_dataset_spec("imagenette")
    message = str(error.value)
    assert message.startswith("'imagenette' is Imagenette (imagenette2), which is read from a folder: "
                              "pass --dataset=folder:ROOT with ROOT holding train/ and val/ (the "
                              "imagenette2 layout: train/<wnid>/*.JPEG")
    assert "https://github.com/fastai/imagenette" in message and "\n" not in message
    with pytest.raises(ValueError, match=r"'tinynette' is Tinynette \(test\).*Get it from this test"):
        data.load_split("tinynette", None, "train")


def test_a_folder_preset_needs_the_folder_and_warns_on_another_one(tiny_known, tree, tmp_path):
    with pytest.raises(ValueError, match=r"^Preset 'tiny_preset' was trained on Tinynette \(test\), which "
                                         r"is read from a folder: pass --dataset=folder:ROOT"):
        resolve_dataset(None, "tiny_preset", "tinynette")
    # Its copy: no warning.
    assert resolve_dataset(f"folder:{tree}", "tiny_preset", "tinynette") == (f"folder:{tree}", None)
    # Another folder: evaluated, with a warning saying what differs.
    (tree / "val" / "dog" / "0.JPG").unlink()
    dataset, warning = resolve_dataset(f"folder:{tree}", "tiny_preset", "tinynette")
    assert dataset == f"folder:{tree}"
    assert warning == (
        f"{tree} is not Tinynette (test), which preset 'tiny_preset' was trained and evaluated on: "
        "val/ has 2 images, not 3; val/ image counts differ: dog 1 (not 2). Evaluation runs on it, but "
        "its numbers are not comparable with the model card's."
    )
    # A preset of a tfds dataset takes a folder without comment, and a
    # folder that is not there is left to the reading to report.
    assert resolve_dataset(f"folder:{tree}", "c10", "cifar10") == (f"folder:{tree}", None)
    assert resolve_dataset(f"folder:{tmp_path / 'gone'}", "tiny_preset", "tinynette")[1] is None
    assert resolve_dataset(None, "c10", "cifar10") == ("cifar10", None)


def test_metrics_and_finetuning_record_the_identified_name(tiny_known, tree, tmp_path):
    from keras_directcopy.evaluation.finetune import FinetuneConfig, finetune

    encoder = tiny_encoder()  # 8 x 8 inputs: the folder's images are center-cropped to it
    metrics = evaluate_encoder(encoder, f"folder:{tree}", None, knn_k=2, linear_probe=False, batch_size=4)
    assert (metrics["dataset"], metrics["data_folder"]) == ("tinynette", str(tree))
    assert list(metrics)[:3] == ["dataset", "data_folder", "encoder"]
    assert (metrics["knn"]["train_examples"], metrics["knn"]["test_examples"]) == (5, 3)
    results = finetune(encoder, f"folder:{tree}", None, str(tmp_path / "finetune"),
                       FinetuneConfig(epochs=1, batch_size=4), verbose=0)
    assert (results["dataset"], results["data_folder"]) == ("tinynette", str(tree))

    write_image(tree / "train" / "fox" / "0.png", 12, 10, 9)  # now not tinynette
    metrics = evaluate_encoder(encoder, f"folder:{tree}", None, knn_k=2, linear_probe=False, batch_size=4)
    assert (metrics["dataset"], metrics["data_folder"]) == (f"folder:{tree}", str(tree))


def test_run_json_records_the_identified_name_and_the_measured_size(tiny_known, tree, tmp_path, capsys):
    from keras_directcopy.training.loop import pretrain

    config = get_config(
        "quickstart", dataset=f"folder:{tree}", width_multiplier=0.25, epochs=1, steps_per_epoch=1,
        batch_size=4, knn_k=2,
    )
    run = pretrain(config, str(tmp_path / "run"), verbose=0, command="python scripts/pretrain.py ...")
    out = capsys.readouterr().out
    # The default size of a folder: the median shorter side (10 px), printed and recorded.
    assert "Image size 10 px: the median shorter side of 5 images" in out
    assert f"Training at 10 x 10 px (the default of folder:{tree})." in out
    assert f"{tree} has the class folders and image counts of Tinynette (test)" in out
    written = json.loads((tmp_path / "run" / "run.json").read_text())
    assert written == run
    assert run["config"]["dataset"] == "tinynette" and run["data_folder"] == str(tree)
    assert run["config"]["image_size"] is None and run["image_size"] == 10
    assert run["commands"] == ["python scripts/pretrain.py ..."]


# -- scripts/evaluate.py and finetune.py -------------------------------------------


def run_script(name, *flags, env=None):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / name), *flags], capture_output=True, text=True,
        timeout=300, cwd=REPO_ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})},
    )


IMAGENETTE_PRESET = {
    "name": "tiny_imagenette", "aliases": [], "dataset": "imagenette", "method": "directcopy",
    "backbone": "resnet20", "backbone_kwargs": {"width_multiplier": 0.25},
    "input_shape": [32, 32, 3], "num_classes": 10, "epochs": 1,
    "train_command": "python scripts/pretrain.py --dataset=folder:ROOT --output_dir=runs/tiny",
    "hub": {"repo_id": "someorg/tiny-imagenette", "revision": "main"},
    "weights": {"filename": "encoder.weights.h5", "sha256": None, "bundled": True},
    "head": None, "metrics": None, "run": None, "reduced_scale": True, "notes": "",
}


def bundled_registry(directory):
    """A registry holding `tiny_imagenette` with the weights of a fresh
    width-0.25 ResNet-20."""
    (directory / "tiny_imagenette").mkdir(parents=True)
    weights = directory / "tiny_imagenette" / "encoder.weights.h5"
    kdc.resnet20(width_multiplier=0.25).save_weights(weights)
    weights_entry = {**IMAGENETTE_PRESET["weights"], "sha256": sha256_file(weights)}
    preset = {**IMAGENETTE_PRESET, "weights": weights_entry}
    (directory / "tiny_imagenette.json").write_text(json.dumps(preset))
    return directory


@pytest.mark.slow
def test_the_scripts_need_the_folder_of_a_preset_trained_on_imagenette(tmp_path):
    env = {zoo.REGISTRY_ENV: str(bundled_registry(tmp_path / "registry"))}
    for script, flags in (("evaluate.py", ()), ("finetune.py", (f"--output_dir={tmp_path / 'ft'}",))):
        result = run_script(script, "--preset=tiny_imagenette", *flags, env=env)
        assert result.returncode == 1, result.stderr[-3000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(
            "error: Preset 'tiny_imagenette' was trained on Imagenette (imagenette2), which is read from "
            "a folder: pass --dataset=folder:ROOT with ROOT holding train/ and val/ (the imagenette2 "
            "layout:"
        ), result.stderr[-3000:]
        assert "Get it from https://github.com/fastai/imagenette" in errors[0]
    assert not (tmp_path / "ft").exists()


@pytest.mark.slow
def test_evaluating_on_another_folder_warns_and_records_the_folder(tmp_path, tree):
    env = {zoo.REGISTRY_ENV: str(bundled_registry(tmp_path / "registry"))}
    output = tmp_path / "metrics.json"
    result = run_script(
        "evaluate.py", "--preset=tiny_imagenette", f"--dataset=folder:{tree}", "--knn_k=2",
        "--nolinear_probe", "--batch_size=4", f"--output={output}", env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"warning: {tree} is not Imagenette (imagenette2), which preset 'tiny_imagenette' was trained "
        "and evaluated on: train/ lacks class(es) n01440764, n02102040, n02979186, n03000684, n03028079 "
        "and 5 more; train/ has class(es) cat, dog that Imagenette (imagenette2) has not; train/ has 5 "
        "images, not 9469;"
    ) in result.stderr
    assert "its numbers are not comparable with the model card's." in result.stderr
    metrics = json.loads(output.read_text())
    assert (metrics["dataset"], metrics["data_folder"]) == (f"folder:{tree}", str(tree))
    assert metrics["preset"] == "tiny_imagenette" and metrics["knn"]["test_examples"] == 3
    assert f"folder:{tree} (preset tiny_imagenette): kNN (k=2)" in result.stdout


# -- Registration and the model card --------------------------------------------------


def imagenette_metrics(dataset="imagenette", **changes):
    """A metrics record of scripts/evaluate.py on preset `tiny_imagenette`."""
    return {
        "dataset": dataset, "data_folder": "/data/imagenette2", "encoder": "resnet20",
        "preset": "tiny_imagenette",
        "knn": {"top1": 0.6123, "k": 200, "temperature": 0.1, "train_split": "train",
                "test_split": "val", "train_examples": 9469, "test_examples": 3925},
        "linear_probe": {"top1": 0.6456, "train_top1": 0.7, "epochs": 100, "batch_size": 256,
                         "optimizer": "adam", "learning_rate": 3e-4, "weight_decay": 1e-3,
                         "feature_normalization": "standardize_train_mean_std", "final_epoch": True},
        **changes,
    }


@pytest.fixture
def imagenette_registry(tmp_path):
    """A zoo directory with `tiny_imagenette` (weights without run), a cards
    directory, and a finished run for it whose run.json names Imagenette."""
    zoo_dir, cards, run_dir = tmp_path / "zoo", tmp_path / "cards", tmp_path / "run"
    for directory in (zoo_dir, cards, run_dir):
        directory.mkdir()
    preset = {**IMAGENETTE_PRESET, "weights": {**IMAGENETTE_PRESET["weights"], "sha256": "ab" * 32}}
    (zoo_dir / "tiny_imagenette.json").write_text(json.dumps(preset))
    save_encoder(kdc.build_backbone("resnet20", (32, 32, 3), width_multiplier=0.25), str(run_dir))
    command = "python scripts/pretrain.py --config=quickstart --dataset=folder:/data/imagenette2"
    config = get_config("quickstart", width_multiplier=0.25, epochs=1, dataset="folder:/data/imagenette2")
    run = {
        "config": {**dataclasses.asdict(config), "dataset": "imagenette"},
        "data_folder": "/data/imagenette2", "commands": [command], "epochs_done": 1, "steps": 73,
        "steps_per_epoch": 73, "pretrain_examples": 9469, "image_size": 224, "wall_time_s": 100.0,
        "cpu_time_s": 180.0, "invocations": 1, "strategy": "default", "num_replicas": 1,
        "final_metrics": {"loss": 0.5}, "git_commit": "abc", "predictor_eps": 0.1,
        "hardware": {"cpu_count": 2, "processor": "x86_64", "gpus": []},
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    return zoo_dir, cards, run_dir


def write_json(path, value):
    path.write_text(json.dumps(value))
    return str(path)


def test_registration_takes_imagenette_records_and_the_card_says_what_it_is(imagenette_registry, tmp_path):
    zoo_dir, cards, run_dir = imagenette_registry
    dirs = (str(zoo_dir), str(cards))
    registration.register("tiny_imagenette", *dirs, run_dir=str(run_dir))
    floor = imagenette_metrics(knn={**imagenette_metrics()["knn"], "top1": 0.2}, random_init={"seed": 0})
    registration.register(
        "tiny_imagenette", *dirs, metrics=write_json(tmp_path / "metrics.json", imagenette_metrics()),
        additional_metrics=[write_json(tmp_path / "floor.json", floor)],
    )
    preset = json.loads((zoo_dir / "tiny_imagenette.json").read_text())
    assert preset["metrics"]["dataset"] == "imagenette"
    assert preset["run"]["data_folder"] == "/data/imagenette2"
    card = (cards / "tiny_imagenette.md").read_text()
    assert card == model_card.build_model_card(preset)
    data_card = ModelCard(card).data.to_dict()
    assert data_card["datasets"] == ["frgfm/imagenette"]
    assert data_card["model-index"][0]["results"][0]["dataset"]["name"] == "Imagenette (imagenette2)"
    assert "Frozen-feature top-1 accuracy on Imagenette (imagenette2) `val`: **61.23 %**" in card
    assert "- Data: 9469 unlabelled Imagenette (imagenette2) images" in card
    assert '| `dataset` | `"imagenette"` |' in card
    # There is no full-scale recipe for Imagenette: the card says so instead
    # of comparing it with one.
    sentence = (
        "**Reduced-scale training.** This encoder was trained at reduced scale (resnet20 (width "
        "multiplier 0.25, input normalization cifar10); 1 epoch(s)). There is no full recipe for Imagenette "
        "(imagenette2) to compare it with: the full recipes follow the papers' reference settings, on "
        "CIFAR-10, CIFAR-100, STL-10 and ImageNet-1k (ILSVRC 2012). Its accuracies are not a reproduction "
        "of published results."
    )
    assert card.count(sentence) == 2 and "full recipe (" not in card and "| this encoder |" not in card
    assert "Reduced-scale" not in model_card.build_model_card({**preset, "reduced_scale": False})


def test_registration_refuses_records_on_an_unidentified_folder(imagenette_registry, tmp_path):
    zoo_dir, cards, run_dir = imagenette_registry
    dirs = (str(zoo_dir), str(cards))
    before = (zoo_dir / "tiny_imagenette.json").read_text()
    unidentified = (
        "it was {} the image folder /data/mine, which was not identified as Imagenette (imagenette2), "
        "the dataset of preset 'tiny_imagenette': its class folders or image counts differ"
    )

    run = json.loads((run_dir / "run.json").read_text())
    run["config"]["dataset"] = "folder:/data/mine"
    (run_dir / "run.json").write_text(json.dumps(run))
    with pytest.raises(ValueError) as refused_run:
        registration.register("tiny_imagenette", *dirs, run_dir=str(run_dir))
    assert str(refused_run.value).startswith(f"{run_dir}: {unidentified.format('trained on')}")
    assert "scripts/pretrain.py --dataset=folder:ROOT records it as 'imagenette'" in str(refused_run.value)

    path = write_json(tmp_path / "mine.json", imagenette_metrics("folder:/data/mine"))
    with pytest.raises(ValueError) as refused_metrics:
        registration.register("tiny_imagenette", *dirs, metrics=path)
    assert str(refused_metrics.value).startswith(f"{path}: {unidentified.format('measured on')}")
    assert "scripts/evaluate.py --preset=tiny_imagenette --dataset=folder:ROOT" in str(refused_metrics.value)
    assert (zoo_dir / "tiny_imagenette.json").read_text() == before and not list(cards.iterdir())

    # Beside metrics on Imagenette, another evaluation on such a folder is refused too.
    good = write_json(tmp_path / "good.json", imagenette_metrics())
    other_k = imagenette_metrics("folder:/data/mine", knn={**imagenette_metrics()["knn"], "k": 20})
    with pytest.raises(ValueError) as refused:
        registration.register("tiny_imagenette", *dirs, metrics=good,
                              additional_metrics=[write_json(tmp_path / "k20.json", other_k)])
    assert f"k20.json: {unidentified.format('measured on')}" in str(refused.value)
    assert (zoo_dir / "tiny_imagenette.json").read_text() == before

    # A preset whose recorded metrics are on such a folder is not published either.
    entry = {**json.loads(before), "metrics": imagenette_metrics("folder:/data/mine")}
    with pytest.raises(ValueError, match=r"^The metrics recorded in preset 'tiny_imagenette': it was "
                                         r"measured on the image folder /data/mine, which was not"):
        checks.check_publishable(entry)


def test_a_folder_record_on_a_tfds_preset_keeps_the_message_it_had():
    preset = copy.deepcopy(zoo.get_preset("cifar10"))
    preset["metrics"]["dataset"] = "folder:/data/mine"
    with pytest.raises(ValueError, match=r"on 'folder:/data/mine', but the preset is trained on 'cifar10'"):
        checks.check_publishable(preset)


def test_identifying_a_folder_lists_its_files_once(tiny_known, tree, monkeypatch):
    # An ImageNet-sized folder takes seconds to list: a run's start lists it once
    # for both its record and the line it prints.
    listed = []
    count = data.count_folder_images
    monkeypatch.setattr(data, "count_folder_images", lambda folder: listed.append(folder) or count(folder))
    identity = data.identify_dataset(f"folder:{tree}")
    assert identity.record == {"dataset": "tinynette", "data_folder": str(tree)}
    assert identity.description.endswith("recorded as dataset 'tinynette'.")
    assert listed == [str(tree)]
