"""Model cards, repository folders and publishing (keras_directcopy.presets'
model_card, hub_folder, keras_format and upload; scripts/publish.py), with
tiny real ResNet-20 weights.

The Hugging Face Hub cannot be reached from the test machine, so the upload
goes to a recording stand-in for `HfApi`, and loading from the Hub reads a
pre-filled offline cache; everything before the network call (the folder,
the card, the arguments, Keras' and huggingface_hub's own loaders) is the
real code path.
"""

import copy
import dataclasses
import hashlib
import importlib.resources
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from huggingface_hub import CommitInfo, ModelCard, RepoUrl

import keras_directcopy as kdc
from keras_directcopy.configs import CONFIGS, get_config
from keras_directcopy.models.backbones import ARCHITECTURE_FILENAME
from keras_directcopy import catalog
from keras_directcopy.presets import checks, hub_folder, model_card, repo_layout, upload, zoo
from keras_directcopy.training.loop import save_encoder
from tests.test_zoo import fill_hf_cache

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO_ROOT / "scripts" / "publish.py")
# A published folder's files, for a preset with a run record and neither
# head nor architecture file: the weights once, as model.weights.h5.
FOLDER_FILES = ["README.md", "config.json", repo_layout.WEIGHTS_FILENAME, "metrics.json", "run.json"]
NAME = "tiny_directcopy_cifar10"
REPO_ID = "someorg/tiny-directcopy"
HARDWARE = {
    "platform": "Linux-test-x86_64", "processor": "x86_64", "cpu_count": 2, "gpus": [],
    "tensorflow": "2.21.0", "keras": "3.15.1", "python": "3.11.0",
}
# Distinctive values, so the card can be checked to show each one as recorded.
METRICS = {
    "dataset": "cifar10",
    "encoder": "resnet20",
    "preset": NAME,
    "knn": {
        "top1": 0.4321, "k": 20, "temperature": 0.07, "train_split": "train[:256]",
        "test_split": "test[:128]", "train_examples": 256, "test_examples": 128,
    },
    "linear_probe": {
        "top1": 0.4567, "train_top1": 0.6789, "epochs": 3, "batch_size": 64, "optimizer": "adam",
        "learning_rate": 0.0003, "weight_decay": 0.001,
        "feature_normalization": "standardize_train_mean_std", "final_epoch": True,
    },
    "hardware": HARDWARE,
    "git_commit": "feedface" * 5,
    "wall_time_s": 98.7,
}
TRAIN_COMMAND = (
    "python scripts/pretrain.py --config=quickstart --width_multiplier=0.25 --batch_size=32 "
    "--output_dir=runs/tiny_directcopy_cifar10"
)


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A width-0.25 ResNet-20 saved as scripts/pretrain.py saves it (weights
    and, next to them, its architecture file): `(encoder, weights path, sha256)`."""
    encoder = kdc.resnet20(width_multiplier=0.25)
    run_dir = tmp_path_factory.mktemp("weights")
    save_encoder(encoder, str(run_dir))
    path = run_dir / "encoder.weights.h5"
    return encoder, str(path), sha256_of(path)


def architecture_entry(weights_path):
    """The preset's `architecture` entry for the file next to `weights_path`."""
    path = Path(weights_path).parent / ARCHITECTURE_FILENAME
    return {"filename": ARCHITECTURE_FILENAME, "sha256": sha256_of(path)}


def make_preset(sha256, **overrides):
    config = dataclasses.asdict(get_config("quickstart", width_multiplier=0.25, batch_size=32))
    run = {
        "config": config, "strategy": "default", "num_replicas": 1, "steps": 8,
        "steps_per_epoch": 8, "pretrain_examples": 256, "final_metrics": {"loss": 0.5},
        "wall_time_s": 4321.5, "cpu_time_s": 7380.0, "invocations": 2,
        "git_commit": "c0ffee" * 6 + "abcd", "hardware": HARDWARE, "predictor_eps": 0.37,
    }
    preset = {
        "name": NAME, "aliases": ["tiny"], "dataset": "cifar10", "method": "directcopy",
        "backbone": "resnet20", "backbone_kwargs": {"width_multiplier": 0.25},
        "input_shape": [32, 32, 3], "num_classes": 10, "epochs": 1,
        "train_command": TRAIN_COMMAND,
        "hub": {"repo_id": REPO_ID, "revision": "main"},
        "weights": {"filename": "encoder.weights.h5", "sha256": sha256, "bundled": False},
        "head": None, "metrics": copy.deepcopy(METRICS), "run": run, "reduced_scale": True,
        "notes": "Tiny encoder for tests.",
    }
    preset.update(overrides)
    return preset


def images(count=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, 32, 32, 3)).astype(np.float32)


def model_index_values(card_text):
    index = ModelCard(card_text).data.to_dict()["model-index"]
    return index, {m["config"]: m["value"] for r in index[0]["results"] for m in r["metrics"]}


# -- Model card ---------------------------------------------------------------


def test_card_metadata_parses_and_model_index_equals_the_metrics():
    preset = make_preset("0" * 64)
    card = model_card.build_model_card(preset)
    data = ModelCard(card).data.to_dict()
    assert data["library_name"] == "keras"
    assert data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "image-feature-extraction"
    assert {"keras", "self-supervised-learning", "directcopy", "image-feature-extraction"} <= set(data["tags"])
    assert data["datasets"] == [catalog.HUB_DATASET_IDS["cifar10"]]
    index, values = model_index_values(card)
    assert index[0]["name"] == NAME
    assert values == {"knn": METRICS["knn"]["top1"], "linear_probe": METRICS["linear_probe"]["top1"]}
    result = index[0]["results"][0]
    assert result["dataset"]["split"] == METRICS["knn"]["test_split"]
    assert result["task"]["type"] == "image-classification"
    parsed = {r.metric_config: r for r in ModelCard(card).data.eval_results}
    assert parsed["knn"].metric_args == {"k": 20, "temperature": 0.07}
    # Parsing and writing the card again gives the same text.
    assert str(ModelCard(card)) == card


def percent(accuracy):
    return f"{100 * accuracy:.2f} %"


def test_card_body_shows_each_recorded_value_as_recorded():
    preset = make_preset("0" * 64)
    card = model_card.build_model_card(preset)
    knn, linear, run = METRICS["knn"], METRICS["linear_probe"], preset["run"]
    config = run["config"]
    for text in [
        f"```bash\n{TRAIN_COMMAND}\n```",
        f'keras.saving.load_model("hf://{REPO_ID}")',
        f'keras_directcopy.load_pretrained("{NAME}")',
        f'keras_directcopy.load_pretrained("hf://{REPO_ID}")',
        *(model_card.REFERENCES[key]["full"] for key in model_card.METHOD_REFERENCES["directcopy"]),
        *(model_card.REFERENCES[key]["short"] for key in model_card.METHOD_REFERENCES["directcopy"]),
        percent(knn["top1"]), percent(linear["top1"]), percent(linear["train_top1"]),
        f"`{knn['top1']!r}`", f"`{linear['top1']!r}`",
        f"k = {knn['k']}", f"exp(similarity / {knn['temperature']!r})",
        f"`{knn['train_split']}` ({knn['train_examples']} images)",
        f"`{knn['test_split']}` ({knn['test_examples']} images)",
        f"{linear['epochs']} epochs with {linear['optimizer']}, learning rate {linear['learning_rate']!r}, "
        f"weight decay {linear['weight_decay']!r}, batch size {linear['batch_size']}",
        linear["feature_normalization"], "after the final epoch",
        f"{run['wall_time_s']!r} s ({run['wall_time_s'] / 3600:.2f} h)",
        f"{METRICS['wall_time_s']!r} s",
        f"{HARDWARE['processor']} CPU (model and AVX-512 support not recorded), {HARDWARE['cpu_count']} cores; no GPU",
        f"TensorFlow {HARDWARE['tensorflow']}, Keras {HARDWARE['keras']}, Python {HARDWARE['python']}",
        f"over {run['invocations']} invocations (interrupted and resumed); "
        f"CPU time {run['cpu_time_s'] / 3600:.2f} CPU-hours",
        f"{preset['epochs']} epoch(s), {run['steps']} steps of global batch {config['batch_size']}",
        f"at commit `{run['git_commit']}`", f"at commit `{METRICS['git_commit']}`",
        preset["notes"], "slices of the full splits",
        *(f"| `{key}` | `{json.dumps(value)}` |" for key, value in config.items()),
    ]:
        assert text in card, text


def numbers_in(text):
    return set(re.findall(r"\d+(?:\.\d+)?", text))


def test_every_number_in_the_card_is_read_from_the_records():
    """The card's numbers are the preset's, its metrics' and run record's,
    the full-scale recipe's, the cited papers' or the license's (as
    recorded, or as a percentage or hours), plus the template's few fixed
    constants."""
    preset = make_preset("0" * 64, head={"filename": "linear_head.weights.h5", "sha256": "12ab" * 16})
    card = model_card.build_model_card(preset)
    reference = CONFIGS[model_card.FULL_SCALE_CONFIGS["cifar10"]]
    records = json.dumps([preset, dataclasses.asdict(reference), model_card.REFERENCES, model_card.LICENSE])
    leaves = [float(number) for number in numbers_in(records)]
    derived = {f"{100 * x:.2f}" for x in leaves if x <= 1} | {f"{x / 3600:.2f}" for x in leaves}
    template = model_card._card_template()
    unexplained = numbers_in(card) - numbers_in(records) - derived - numbers_in(template)
    assert not unexplained
    # The template itself types in no measurement: its numbers are format
    # widths, unit conversions and fixed wording (0..255 pixel values, top-1,
    # sha256, the kNN protocol's year, DirectSet's alpha of DirectPred, AVX-512,
    # the usage example's top-5 classes).
    assert numbers_in(template) == {"0", "1", "2", "5", "100", "255", "256", "3600", "2018", "0.5", "512"}
    # And a value changed in the records is the value the card shows.
    preset["metrics"]["knn"]["top1"] = accuracy = 0.123456
    preset["run"]["wall_time_s"] = seconds = 98765.25
    changed = model_card.build_model_card(preset)
    for text in (percent(accuracy), f"`{accuracy!r}`", f"{seconds!r} s ({seconds / 3600:.2f} h)"):
        assert text in changed and text not in card, text


def test_the_card_template_is_the_packaged_file():
    """build_model_card renders the template installed with the package
    (model_cards/template.md, as keras_directcopy.model_card_templates)."""
    installed = importlib.resources.files(model_card.CARD_TEMPLATE_PACKAGE) / model_card.CARD_TEMPLATE_FILENAME
    assert installed.read_text(encoding="utf-8") == (REPO_ROOT / "model_cards" / "template.md").read_text()
    assert model_card._card_template() == installed.read_text(encoding="utf-8")


def test_card_names_every_commit_of_a_run_resumed_across_commits():
    preset = make_preset("0" * 64)
    preset["run"].update(invocations=3, git_commit="bbb", git_commits=["aaa", "aaa", "bbb"])
    card = model_card.build_model_card(preset)
    assert ("interrupted and resumed across commits `aaa` (invocations 1, 2); "
            "`bbb` (invocation 3):") in card
    preset["run"]["git_commits"] = ["bbb", "bbb", "bbb"]
    assert "repository at commit `bbb`:" in model_card.build_model_card(preset)
    preset["run"]["git_commits"] = [None, "bbb", "bbb"]  # first invocation predates the record
    assert "across commits `unknown` (invocation 1); `bbb` (invocations 2, 3):" in model_card.build_model_card(preset)


def test_card_states_reduced_scale_against_the_full_recipe():
    reference = CONFIGS[model_card.FULL_SCALE_CONFIGS["cifar10"]]
    card = model_card.build_model_card(make_preset("0" * 64, reduced_scale=True))
    assert card.count("**Reduced-scale training.**") == 2  # summary and limitations
    assert "`--config=cifar10_resnet18`" in card
    assert f"| `epochs` | 1 | {reference.epochs} |" in card
    assert f"| `backbone` | resnet20 | {reference.backbone} |" in card
    assert f"| `width_multiplier` | 0.25 | {reference.width_multiplier!r} |" in card
    assert f"| `batch_size` | 32 | {reference.batch_size} |" in card

    full = model_card.build_model_card(make_preset("0" * 64, reduced_scale=False))
    assert "Reduced-scale" not in full and "reduced scale" not in full


def test_card_states_the_eps_the_run_trained_with_never_todays_default():
    preset = make_preset("0" * 64)
    assert preset["run"]["config"]["eps"] is None  # the flags left it to the method's default
    assert "eps 0.37 (the method's default when it was trained)" in model_card.build_model_card(preset)
    preset["run"]["config"]["eps"] = 0.2
    card = model_card.build_model_card(preset)
    assert "eps 0.2," in card and "default when it was trained" not in card
    # A run from before run.json recorded the resolved eps: the registry entry states it ...
    preset["run"]["config"]["eps"] = None
    del preset["run"]["predictor_eps"]
    with pytest.raises(ValueError, match="predictor_eps"):
        model_card.build_model_card(preset)
    preset["predictor_eps"] = 0.25
    assert "eps 0.25 (the method's default when it was trained)" in model_card.build_model_card(preset)


def test_the_shipped_card_keeps_its_eps_when_the_default_changes(monkeypatch):
    from keras_directcopy.models import predictors

    preset = zoo.get_preset("cifar10")
    card = model_card.build_model_card(preset)
    assert "eps 0.25 (the method's default when it was trained)" in card
    monkeypatch.setitem(predictors.DEFAULT_EPS, "directcopy", 0.1)
    assert model_card.build_model_card(preset) == card


def test_card_names_the_cpu_model_and_avx512_when_recorded():
    # Machines of the same kind differ several-fold in speed with and without AVX-512.
    preset = make_preset("0" * 64)
    for avx512, words in ((True, "with AVX-512"), (False, "without AVX-512")):
        preset["run"]["hardware"] = {**HARDWARE, "cpu_model": "AMD EPYC 9B14", "avx512": avx512}
        card = model_card.build_model_card(preset)
        assert f"- Hardware: AMD EPYC 9B14 (x86_64, {words}) CPU, 2 cores; no GPU;" in card
    # Older records name the architecture only, and the card says what is missing.
    preset["run"]["hardware"] = HARDWARE
    assert ("- Hardware: x86_64 CPU (model and AVX-512 support not recorded), 2 cores; no GPU;"
            in model_card.build_model_card(preset))


def test_card_names_the_cpu_family_and_model_numbers_when_recorded():
    # A virtual machine may show a generic model name; the numbers name the generation.
    preset = make_preset("0" * 64)
    preset["run"]["hardware"] = {**HARDWARE, "cpu_model": "Intel(R) Xeon(R) Processor",
                                 "cpu_family_model": "family 6 model 207", "avx512": True}
    card = model_card.build_model_card(preset)
    assert "- Hardware: Intel(R) Xeon(R) Processor (x86_64, family 6 model 207, with AVX-512) CPU" in card


def test_card_of_a_run_resumed_on_another_machine_names_each_machine_and_its_cpu_hours():
    preset = make_preset("0" * 64)
    intel = {**HARDWARE, "cpu_model": "Intel(R) Xeon(R) Processor", "cpu_family_model": "family 6 model 207",
             "avx512": True}
    preset["run"]["hardware"] = intel
    preset["run"]["hardware_parts"] = [
        {"invocations": [1, 2], "hardware": None, "first_step": 0, "wall_time_s": 1000.0, "cpu_time_s": 1800.0},
        {"invocations": [3], "hardware": intel, "first_step": 5, "wall_time_s": 3321.5, "cpu_time_s": 5580.0},
    ]
    card = model_card.build_model_card(preset)
    assert "ran in 2 parts of different speed" in card
    assert ("  - from step 0 (invocations 1, 2): machine not recorded (the run record did not hold it then);"
            " 0.50 CPU-hours.") in card
    assert ("  - from step 5 (invocation 3): Intel(R) Xeon(R) Processor (x86_64, family 6 model 207,"
            " with AVX-512) CPU, 2 cores; no GPU;") in card
    assert "; 1.55 CPU-hours." in card
    # The totals stay, and the last machine is not presented as the whole run's.
    assert "CPU time 2.05 CPU-hours" in card
    assert "- Hardware: Intel" not in card
    # One part: the single line, as before.
    preset["run"]["hardware_parts"] = preset["run"]["hardware_parts"][1:]
    assert "- Hardware: Intel(R) Xeon(R) Processor (x86_64, family 6 model 207" in model_card.build_model_card(preset)


def test_card_without_run_record_says_so():
    card = model_card.build_model_card(make_preset("0" * 64, run=None))
    assert "No run record" in card
    assert TRAIN_COMMAND in card
    _, values = model_index_values(card)
    assert values["knn"] == METRICS["knn"]["top1"]


@pytest.mark.parametrize("method, reference", [
    ("directcopy", "arXiv:2110.04947"), ("directpred", "arXiv:2102.06810"),
    ("directset", "arXiv:2102.06810"), ("byol", "arXiv:2006.07733"), ("simsiam", "arXiv:2011.10566"),
])
def test_card_cites_the_method_paper(method, reference):
    card = model_card.build_model_card(make_preset("0" * 64, method=method))
    assert f"## Method: {catalog.METHOD_NAMES[method]}" in card
    assert reference in card
    assert method in ModelCard(card).data.tags


# -- Additional evaluations ----------------------------------------------------


def cifar100_evaluations():
    """A CIFAR-100 preset's metrics and its three kinds of other evaluation:
    `(preset, coarse labels, k = 200 without linear probe, random-init floor)`
    (METRICS' own k is 20)."""
    metrics = {**copy.deepcopy(METRICS), "dataset": "cifar100"}
    coarse = copy.deepcopy(metrics)
    coarse.update(dataset="cifar100:coarse_label")
    coarse["knn"]["top1"], coarse["linear_probe"]["top1"] = 0.55, 0.6
    other_k = copy.deepcopy(metrics)
    other_k["knn"].update(k=200, top1=0.44)
    other_k["linear_probe"] = None
    floor = copy.deepcopy(metrics)
    floor.update(encoder=f"{NAME} architecture, random initialization (seed 3)", random_init={"seed": 3})
    floor["knn"]["top1"], floor["linear_probe"]["top1"] = 0.3, 0.35
    preset = make_preset("0" * 64, dataset="cifar100", num_classes=100, metrics=metrics)
    return preset, coarse, other_k, floor


def test_card_shows_each_additional_evaluation():
    preset, coarse, other_k, floor = cifar100_evaluations()
    plain = model_card.build_model_card(preset)
    rows = {
        "coarse": (coarse, "| CIFAR-100 coarse labels (20 superclasses) | 55.00 % | 60.00 % |"),
        "k": (other_k, "| kNN k = 200 | 44.00 % | not measured |"),
        "floor": (floor, "| random-init floor of the same architecture (seed 3) | 30.00 % | 35.00 % |"),
    }
    for evaluation, row in rows.values():
        card = model_card.build_model_card({**preset, "additional_metrics": [evaluation]})
        assert "**Other evaluations.**" in card and row in card, row
        assert "| `additional_metrics.json` | the other evaluations" in card
        assert card.count(" | ") - plain.count(" | ") == 3 + 2  # the table's header and row only
    card = model_card.build_model_card({**preset, "additional_metrics": [coarse, other_k, floor]})
    table = card[card.index("| evaluation |"):]
    assert [line for line in table.splitlines()[2:5]] == [row for _, row in rows.values()]
    assert "Other evaluations" not in plain and "additional_metrics.json" not in plain
    assert str(ModelCard(card)) == card


def test_card_states_the_gain_over_a_floor_of_the_headline_protocol():
    preset, coarse, _, floor = cifar100_evaluations()
    card = model_card.build_model_card({**preset, "additional_metrics": [floor]})
    # 43.21 - 30.00 and 45.67 - 35.00, in the headline paragraph.
    assert ("**45.67 %** (linear probe). Pretraining gains **+13.21 points** (kNN) and **+10.67 points** "
            "(linear probe) over the random-init floor of the same architecture (seed 3: 30.00 % kNN, "
            "35.00 % linear probe, same protocol).\n") in card
    knn_only = {**floor, "linear_probe": None}
    card = model_card.build_model_card({**preset, "additional_metrics": [knn_only]})
    assert ("Pretraining gains **+13.21 points** (kNN) over the random-init floor of the same "
            "architecture (seed 3: 30.00 % kNN, same protocol).") in card
    assert "| random-init floor of the same architecture (seed 3) | 30.00 % | not measured |" in card
    # A floor measured with another protocol (here the coarse labels) is a row, not the headline's floor.
    coarse_floor = {**floor, "dataset": "cifar100:coarse_label"}
    card = model_card.build_model_card({**preset, "additional_metrics": [coarse, coarse_floor]})
    assert "Pretraining gains" not in card
    assert ("| random-init floor of the same architecture (seed 3), CIFAR-100 coarse labels "
            "(20 superclasses) | 30.00 % | 35.00 % |") in card


def test_model_index_lists_other_label_sets_but_never_a_floor():
    preset, coarse, other_k, floor = cifar100_evaluations()
    card = model_card.build_model_card({**preset, "additional_metrics": [coarse, other_k, floor]})
    results = ModelCard(card).data.eval_results
    by_dataset = {}
    for result in results:
        by_dataset.setdefault(result.dataset_config, {})[result.metric_config] = result.metric_value
    assert by_dataset == {
        None: {"knn": METRICS["knn"]["top1"], "linear_probe": METRICS["linear_probe"]["top1"]},
        "coarse_label": {"knn": 0.55, "linear_probe": 0.6},
    }
    coarse_result = next(r for r in results if r.dataset_config == "coarse_label")
    assert coarse_result.dataset_name == "CIFAR-100 coarse labels (20 superclasses)"
    assert coarse_result.dataset_type == catalog.HUB_DATASET_IDS["cifar100"]
    # A kNN-only label set has only its kNN entry.
    card = model_card.build_model_card({**preset, "additional_metrics": [{**coarse, "linear_probe": None}]})
    assert [(r.dataset_config, r.metric_config) for r in ModelCard(card).data.eval_results] == [
        (None, "knn"), (None, "linear_probe"), ("coarse_label", "knn"),
    ]


def test_cards_without_additional_evaluations_are_unchanged():
    """An empty list is no list: the card of every preset without additional
    evaluations (the committed one of the shipped preset too) is as before."""
    shipped = zoo.get_preset("cifar10")
    committed = (REPO_ROOT / "model_cards" / f"{shipped['name']}.md").read_text()
    assert "additional_metrics" not in shipped
    assert model_card.build_model_card({**shipped, "additional_metrics": []}) == committed
    preset = make_preset("0" * 64)
    assert model_card.build_model_card({**preset, "additional_metrics": []}) == model_card.build_model_card(preset)


KNN_GROUP = {
    "source": "A benchmark ([docs](https://example.org/benchmarks))",
    "setting": "ResNet-18 at 128 px, 800 epochs, the best kNN accuracy over all epochs",
    "knn_k": 20,
    "rows": [{"method": "BYOL", "knn_top1": 0.887}, {"method": "SimSiam", "knn_top1": 0.872}],
}
LINEAR_GROUP = {
    "source": "A library's results ([README](https://example.org/readme))",
    "setting": "ResNet-18 at 32 px, 1000 epochs, batch 256 on one GPU",
    "linear_protocol": "an online linear classifier trained on detached features alongside pretraining",
    "rows": [{"method": "BYOL", "linear_top1": 0.7046}],
}
PUBLISHED = [KNN_GROUP]
PUBLISHED_INTRO = (
    "**Published results, for scale.** Accuracies others published on CIFAR-100, each table with its "
    "source and protocol. They were obtained with other code and far more compute; this encoder's are "
    "after its final epoch: "
)


def table_after(card, header):
    """The lines of the Markdown table that starts with `header`."""
    lines = card[card.index(header):].splitlines()
    return lines[:next(i for i, line in enumerate(lines) if not line.startswith("|"))]


def test_card_sets_published_results_beside_ours_at_their_k():
    preset, _, other_k, floor = cifar100_evaluations()  # METRICS' own k is 20; other_k's 200
    card = model_card.build_model_card({**preset, "published_results": PUBLISHED})
    assert PUBLISHED_INTRO + "its weighted kNN at each table's k.\n" in card
    assert ("\nA benchmark ([docs](https://example.org/benchmarks)): ResNet-18 at 128 px, 800 epochs, "
            "the best kNN accuracy over all epochs.\n") in card
    assert table_after(card, "| method | weighted kNN top-1 (k = 20) |") == [
        "| method | weighted kNN top-1 (k = 20) |", "|---|---|",
        "| BYOL (published) | 88.70 % |", "| SimSiam (published) | 87.20 % |",
        "| this encoder (DirectCopy, final epoch) | 43.21 % |",
    ]
    # Ours at the published k from another evaluation (k alone changed), never from a floor.
    at_200 = [{**KNN_GROUP, "knn_k": 200}]
    card = model_card.build_model_card({**preset, "published_results": at_200, "additional_metrics": [floor, other_k]})
    assert "| this encoder (DirectCopy, final epoch) | 44.00 % |" in card
    card = model_card.build_model_card({**preset, "published_results": [{**KNN_GROUP, "knn_k": 10}]})
    assert "| this encoder (DirectCopy, final epoch) | not measured at k = 10 |" in card
    assert "Published results" not in model_card.build_model_card(preset)
    assert str(ModelCard(card)) == card


def test_a_single_published_group_as_a_dict_reads_as_a_list_of_it():
    """The form version 0.2.0 read: one kNN group, not in a list."""
    preset, *_ = cifar100_evaluations()
    checks.check_published_results({**preset, "published_results": KNN_GROUP})
    assert (model_card.build_model_card({**preset, "published_results": KNN_GROUP})
            == model_card.build_model_card({**preset, "published_results": [KNN_GROUP]}))


def test_card_sets_each_published_group_with_its_protocol():
    """A kNN group and a linear-probe group, each in its own table, in order;
    ours beside each: kNN at the group's k, the final-epoch linear probe."""
    preset, *_ = cifar100_evaluations()
    card = model_card.build_model_card({**preset, "published_results": [KNN_GROUP, LINEAR_GROUP]})
    assert PUBLISHED_INTRO + (
        "its weighted kNN at each table's k, and its linear probe as described under "
        "[Evaluation](#evaluation), not the published one.\n") in card
    linear_sentence = (
        "\nA library's results ([README](https://example.org/readme)): ResNet-18 at 32 px, 1000 epochs, batch "
        "256 on one GPU. Linear probe: an online linear classifier trained on detached features alongside "
        "pretraining.\n"
    )
    assert linear_sentence in card
    assert card.index("| method | weighted kNN top-1 (k = 20) |") < card.index(linear_sentence)
    assert table_after(card, "| method | linear-probe top-1 |") == [
        "| method | linear-probe top-1 |", "|---|---|",
        "| BYOL (published) | 70.46 % |",
        "| this encoder (DirectCopy, final epoch) | 45.67 % |",  # METRICS' linear probe
    ]
    # A linear-probe group alone says nothing of kNN.
    card = model_card.build_model_card({**preset, "published_results": [LINEAR_GROUP]})
    assert PUBLISHED_INTRO + "its linear probe as described" in card
    assert "weighted kNN top-1 (k =" not in card
    # A group whose rows hold both: two columns, and what a row does not publish said so.
    both = {**LINEAR_GROUP, "knn_k": 20, "rows": [
        {"method": "BYOL", "linear_top1": 0.7046}, {"method": "SimSiam", "knn_top1": 0.6, "linear_top1": 0.65},
    ]}
    card = model_card.build_model_card({**preset, "published_results": [both]})
    assert table_after(card, "| method | weighted kNN top-1 (k = 20) | linear-probe top-1 |") == [
        "| method | weighted kNN top-1 (k = 20) | linear-probe top-1 |", "|---|---|---|",
        "| BYOL (published) | not published | 70.46 % |",
        "| SimSiam (published) | 60.00 % | 65.00 % |",
        "| this encoder (DirectCopy, final epoch) | 43.21 % | 45.67 % |",
    ]
    assert str(ModelCard(card)) == card


@pytest.mark.parametrize("published, message", [
    ("lightly", r"must be a non-empty list of groups.*got 'lightly'"),
    ([], "must be a non-empty list of groups"),
    ([KNN_GROUP, "lightly"], "Group 1 of .* must be a dict"),
    ([{**KNN_GROUP, "source": ""}], "Group 0 of .* needs 'source'"),
    ([{**KNN_GROUP, "source": "lightly's benchmarks"}], "'source' names no link .* add the http"),
    ([{**KNN_GROUP, "setting": " "}], "needs 'setting': .* best over epochs or the final epoch's"),
    ([{**KNN_GROUP, "knn_k": 0}], "needs 'knn_k'"),
    ([{key: value for key, value in KNN_GROUP.items() if key != "knn_k"}], "needs 'knn_k'"),
    ([{**LINEAR_GROUP, "knn_k": 200}], "has 'knn_k' but no row with knn_top1; remove knn_k"),
    ([{key: value for key, value in LINEAR_GROUP.items() if key != "linear_protocol"}],
     "needs 'linear_protocol' for its linear_top1 rows: .*alongside it \\(online\\)"),
    ([{**KNN_GROUP, "linear_protocol": "offline"}], "has 'linear_protocol' but no row with linear_top1"),
    ([{**KNN_GROUP, "epochs": 800}], r"unknown fields \['epochs'\]"),
    ([{**KNN_GROUP, "rows": []}], "needs 'rows'"),
    ([{**KNN_GROUP, "rows": [{"method": "BYOL", "knn_top1": 88.7}]}], r"Row 0 of group 0 .* fraction in \[0, 1\]"),
    ([{**LINEAR_GROUP, "rows": [{"method": "BYOL", "top1": 0.7}]}], 'Row 0 of group 0 .*"linear_top1": FRACTION'),
    ([{**LINEAR_GROUP, "rows": [{"method": "BYOL", "linear_top1": 0.7, "linear_top5": 0.9}]}],
     "Row 0 of group 0 .* no other keys"),
    ([{**LINEAR_GROUP, "rows": [{"method": "BYOL"}]}], "Row 0 of group 0"),
])
def test_malformed_published_results_are_refused(published, message):
    preset = make_preset("0" * 64, published_results=published)
    with pytest.raises(ValueError, match=message) as error:
        model_card.build_model_card(preset)
    assert f"preset {NAME!r}" in str(error.value) and '"published_results"' in str(error.value)


def test_a_floor_or_unfit_evaluation_is_refused_in_the_preset():
    """Hand-edited entries are checked as registration checks them."""
    preset, coarse, _, floor = cifar100_evaluations()
    with pytest.raises(ValueError, match="randomly initialized encoder.*\"additional_metrics\""):
        checks.check_publishable({**preset, "metrics": floor})
    with pytest.raises(ValueError, match="Additional evaluation 1 of preset .*repeats the protocol"):
        checks.check_publishable({**preset, "additional_metrics": [coarse, copy.deepcopy(preset["metrics"])]})
    with pytest.raises(ValueError, match="Additional evaluations 0 and 1 .* are the same evaluation"):
        checks.check_publishable({**preset, "additional_metrics": [floor, {**floor, "wall_time_s": 1.0}]})
    with pytest.raises(ValueError, match=f"not on preset '{NAME}': run scripts/evaluate.py --preset={NAME} "
                                         "--random_init --seed=3"):
        checks.check_publishable({**preset, "additional_metrics": [{**floor, "preset": None}]})


def test_published_folder_ships_the_additional_evaluations(tiny_weights, tmp_path):
    """additional_metrics.json holds them as recorded; metrics.json stays the
    record of the headline evaluation."""
    _, weights, sha256 = tiny_weights
    metrics = copy.deepcopy(METRICS)
    other_k = copy.deepcopy(METRICS)
    other_k["knn"].update(k=200, top1=0.44)
    floor = {**copy.deepcopy(METRICS), "random_init": {"seed": 0}}
    floor["knn"]["top1"] = 0.3
    preset = make_preset(sha256, metrics=metrics, additional_metrics=[other_k, floor])
    folder = Path(upload.publish(preset, weights, REPO_ID, dry_run=True, out_dir=str(tmp_path / "repo")))
    assert sorted(os.listdir(folder)) == sorted([*FOLDER_FILES, repo_layout.ADDITIONAL_METRICS_FILENAME])
    assert json.loads((folder / repo_layout.ADDITIONAL_METRICS_FILENAME).read_text()) == [other_k, floor]
    assert json.loads((folder / "metrics.json").read_text()) == METRICS
    card = (folder / "README.md").read_text()
    assert card == model_card.build_model_card(preset) and "| kNN k = 200 | 44.00 % |" in card
    # No file is named like it.
    named = make_preset(sha256, weights={"filename": repo_layout.ADDITIONAL_METRICS_FILENAME, "sha256": sha256})
    with pytest.raises(ValueError, match="is one the repository folder uses"):
        hub_folder.prepare_repo_folder(named, weights, str(tmp_path / "other"))


# -- Repository folder --------------------------------------------------------


def test_repo_folder_rebuilds_the_encoder_from_config(tiny_weights, tmp_path):
    encoder, weights, sha256 = tiny_weights
    preset = make_preset(sha256)
    folder = Path(hub_folder.prepare_repo_folder(preset, weights, str(tmp_path / "out" / "repo")))
    assert folder == tmp_path / "out" / "repo"
    assert sorted(os.listdir(folder)) == sorted(FOLDER_FILES)
    assert os.listdir(tmp_path / "out") == ["repo"]  # no staging folder left behind
    assert sha256_of(folder / repo_layout.WEIGHTS_FILENAME) == sha256

    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == NAME and config["method"] == "directcopy"
    assert config["weights"] == {"filename": repo_layout.WEIGHTS_FILENAME, "sha256": sha256}
    assert config["format_version"] == repo_layout.CONFIG_FORMAT_VERSION == 3
    assert "keras_weights" not in config  # the second copy's record, before format version 3
    assert config["library_version"] == kdc.__version__
    rebuilt = kdc.build_backbone(config["backbone"], tuple(config["input_shape"]), **config["backbone_kwargs"])
    rebuilt.load_weights(folder / config["weights"]["filename"])
    np.testing.assert_array_equal(rebuilt(images()), encoder(images()))
    # The loader users call reads the same folder.
    np.testing.assert_array_equal(zoo.load_pretrained(str(folder))(images()), encoder(images()))

    assert json.loads((folder / "metrics.json").read_text()) == METRICS
    assert json.loads((folder / "run.json").read_text()) == preset["run"]
    assert (folder / "README.md").read_text() == model_card.build_model_card(preset)


def test_repo_folder_ships_the_trained_architecture(tiny_weights, tmp_path):
    encoder, weights, sha256 = tiny_weights
    architecture = architecture_entry(weights)
    preset = make_preset(sha256, architecture=architecture)
    # By default the architecture file is taken from next to the weights.
    folder = Path(hub_folder.prepare_repo_folder(preset, weights, str(tmp_path / "repo")))
    assert sorted(os.listdir(folder)) == sorted([*FOLDER_FILES, ARCHITECTURE_FILENAME])
    assert sha256_of(folder / ARCHITECTURE_FILENAME) == architecture["sha256"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == architecture
    card = (folder / "README.md").read_text()
    assert f"| `{ARCHITECTURE_FILENAME}` | encoder architecture" in card and architecture["sha256"] in card
    assert "only built-in Keras layers are accepted" in card
    loaded = zoo.load_pretrained(str(folder))
    assert json.loads(json.dumps(loaded.get_config())) == json.loads(json.dumps(encoder.get_config()))
    np.testing.assert_array_equal(loaded(images()), encoder(images()))


# Plain Keras, with keras_directcopy made unimportable: the folder must load
# without this package.
PLAIN_KERAS_LOAD = (
    "import sys; sys.modules['keras_directcopy'] = None; "
    "import json, numpy as np, keras; "
    "model = keras.saving.load_model(sys.argv[1], safe_mode=True); "
    "np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2])))); "
    "print(json.dumps(sorted(name for name, module in sys.modules.items() "
    "if name.startswith('keras_directcopy') and module is not None)))"
)


@pytest.mark.slow
def test_folder_loads_with_plain_keras_from_the_offline_hub_cache(tiny_weights, tmp_path):
    """keras.saving.load_model("hf://ORG/NAME") (Keras' own Hub support,
    huggingface_hub.snapshot_download) gives the features load_pretrained
    gives, in a process that cannot import keras_directcopy."""
    _, weights, sha256 = tiny_weights
    preset = make_preset(sha256, architecture=architecture_entry(weights))
    folder = Path(hub_folder.prepare_repo_folder(preset, weights, str(tmp_path / "repo")))
    fill_hf_cache(tmp_path / "cache", REPO_ID, folder)
    np.save(tmp_path / "x.npy", images(count=3))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_KERAS_LOAD, f"hf://{REPO_ID}", str(tmp_path / "x.npy"),
         str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []  # nothing of keras_directcopy was imported
    expected = kdc.load_pretrained(str(folder))(np.load(tmp_path / "x.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


# -- One weights file, checked ------------------------------------------------


def write_flipped_weight(source, destination):
    """Copies a `.weights.h5` file with one byte changed in the middle value
    of its largest array (the top bit of a float32's mantissa): still a
    valid HDF5 file, which Keras loads without an error, with one weight
    changed by a quarter to a half. Returns the copy's sha256."""
    with h5py.File(source, "r") as file:
        arrays = []
        file.visititems(lambda _, item: arrays.append(item) if isinstance(item, h5py.Dataset) else None)
        largest = max(arrays, key=lambda item: item.size)
        assert largest.dtype == np.dtype("<f4")
        # Contiguous storage: the array's values are one run of bytes.
        middle = largest.id.get_offset() + 4 * (largest.size // 2)
    data = bytearray(Path(source).read_bytes())
    data[middle + 2] ^= 0x40
    Path(destination).write_bytes(bytes(data))
    return sha256_of(destination)


def old_layout_copy(folder, destination):
    """`folder` as config.json format version 2 wrote it: the trained
    weights as encoder.weights.h5, named in config.json, and again as Keras'
    own save of the encoder loaded from them, model.weights.h5, recorded as
    `keras_weights`."""
    import keras

    shutil.copytree(folder, destination)
    os.replace(destination / repo_layout.WEIGHTS_FILENAME, destination / "encoder.weights.h5")
    config = json.loads((destination / "config.json").read_text())
    config.update(format_version=2, weights={**config["weights"], "filename": "encoder.weights.h5"})
    (destination / "config.json").write_text(json.dumps(config))
    keras.saving.save_model(zoo.load_pretrained(str(destination)), str(destination / "keras"), zipped=False)
    os.replace(destination / "keras" / repo_layout.WEIGHTS_FILENAME, destination / repo_layout.WEIGHTS_FILENAME)
    shutil.rmtree(destination / "keras")
    config["keras_weights"] = {
        "filename": repo_layout.WEIGHTS_FILENAME, "sha256": sha256_of(destination / repo_layout.WEIGHTS_FILENAME),
    }
    (destination / "config.json").write_text(json.dumps(config))
    return destination


def test_the_folder_holds_the_encoder_weights_once(tiny_weights, tmp_path):
    """The trained file is the folder's one copy of the encoder weights,
    under the name Keras' folder format reads, named in config.json; the
    other .weights.h5 is the head's, and no two files are the same bytes."""
    _, weights, sha256 = tiny_weights
    head_path = tmp_path / "head.weights.h5"
    head_path.write_bytes(b"linear head bytes")
    head = {"filename": "linear_head.weights.h5", "sha256": sha256_of(head_path)}
    preset = make_preset(sha256, head=head, architecture=architecture_entry(weights))
    folder = Path(hub_folder.prepare_repo_folder(preset, weights, str(tmp_path / "repo"), head_path=str(head_path)))
    weight_files = sorted(path.name for path in folder.iterdir() if path.name.endswith(".weights.h5"))
    assert weight_files == sorted([repo_layout.WEIGHTS_FILENAME, head["filename"]])
    assert (folder / repo_layout.WEIGHTS_FILENAME).read_bytes() == Path(weights).read_bytes()
    contents = [sha256_of(path) for path in folder.iterdir()]
    assert len(set(contents)) == len(contents)
    assert json.loads((folder / "config.json").read_text())["weights"] == {
        "filename": repo_layout.WEIGHTS_FILENAME, "sha256": sha256,
    }
    # Without a head, the one .weights.h5 of the folder.
    headless = Path(hub_folder.prepare_repo_folder(make_preset(sha256), weights, str(tmp_path / "headless")))
    assert [path.name for path in headless.iterdir() if path.name.endswith(".weights.h5")] == [
        repo_layout.WEIGHTS_FILENAME
    ]


# Loads each name in sys.argv[3:] with load_pretrained: its features on the
# images of sys.argv[1], or the error's message, into the JSON file sys.argv[2].
LOAD_EACH = (
    "import json, sys, numpy as np, keras_directcopy as k\n"
    "images, results = np.load(sys.argv[1]), {}\n"
    "for name in sys.argv[3:]:\n"
    "    try:\n"
    "        results[name] = np.asarray(k.load_pretrained(name)(images)).tolist()\n"
    "    except (ValueError, FileNotFoundError) as error:\n"
    "        results[name] = str(error)\n"
    "json.dump(results, open(sys.argv[2], 'w'))\n"
)


def test_load_pretrained_reads_the_one_weights_file_from_the_hub_cache_and_refuses_a_flipped_byte(
    tiny_weights, tmp_path,
):
    """HF_HUB_OFFLINE=1 with a pre-filled cache: the folder loads by hf://
    id and by registry name (the registry's weights.filename is the run's
    name, the repository's is model.weights.h5), a repository in the older
    layout (weights as encoder.weights.h5 and again as model.weights.h5)
    still loads, and a model.weights.h5 with one byte flipped is refused
    with its name, both sha256 and the command that fixes it."""
    encoder, weights, sha256 = tiny_weights
    preset = make_preset(sha256, architecture=architecture_entry(weights))
    folder = Path(hub_folder.prepare_repo_folder(preset, weights, str(tmp_path / "repo")))
    cache = tmp_path / "cache"
    fill_hf_cache(cache, REPO_ID, folder)
    flipped = tmp_path / "flipped"
    shutil.copytree(folder, flipped)
    flipped_sha256 = write_flipped_weight(folder / repo_layout.WEIGHTS_FILENAME, flipped / repo_layout.WEIGHTS_FILENAME)
    fill_hf_cache(cache, "someorg/tiny-flipped", flipped)
    fill_hf_cache(cache, "someorg/tiny-older", old_layout_copy(folder, tmp_path / "older"))
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / f"{NAME}.json").write_text(json.dumps(preset))
    older = make_preset(sha256, name="tiny_older", aliases=[], architecture=preset["architecture"],
                        hub={"repo_id": "someorg/tiny-older", "revision": "main"})
    (registry / "tiny_older.json").write_text(json.dumps(older))
    np.save(tmp_path / "x.npy", images())
    names = [f"hf://{REPO_ID}", NAME, "hf://someorg/tiny-older", "tiny_older", "hf://someorg/tiny-flipped"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), zoo.REGISTRY_ENV: str(registry)}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_EACH, str(tmp_path / "x.npy"), str(tmp_path / "out.json"), *names],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out.json").read_text())
    for name in names[:-1]:
        assert not isinstance(results[name], str), results[name]
        np.testing.assert_array_equal(np.asarray(results[name], np.float32), encoder(images()))
    message = results[names[-1]]
    assert isinstance(message, str)
    for text in [
        f"sha256 mismatch for {repo_layout.WEIGHTS_FILENAME} of {NAME}",
        f"hf://someorg/tiny-flipped/{repo_layout.WEIGHTS_FILENAME}",
        f"expected {sha256}, got {flipped_sha256}", "nothing was loaded",
        f"`hf cache rm -y hf://models/someorg/tiny-flipped/{repo_layout.WEIGHTS_FILENAME}` and load again",
    ]:
        assert text in message, (text, message)


def card_commands(card):
    """The card's weights check: `(python argv, sha256sum shell line)`."""
    python = re.search(r"```bash\n(python -c .*)\n```", card).group(1)
    sha256sum = re.search(r"```bash\n(echo .* \| sha256sum --check)\n```", card).group(1)
    argv = shlex.split(python)
    assert argv[:2] == ["python", "-c"]
    return [sys.executable, *argv[1:]], sha256sum


def test_the_card_gives_a_check_that_finds_the_flipped_byte_keras_loads(tiny_weights, tmp_path):
    """keras.saving.load_model loads a model.weights.h5 with one byte flipped
    without an error; the card's check commands, run as the card gives them,
    pass the published file and fail that one."""
    import keras

    encoder, weights, sha256 = tiny_weights
    folder = Path(hub_folder.prepare_repo_folder(make_preset(sha256), weights, str(tmp_path / "repo")))
    card = (folder / "README.md").read_text()
    assert f"sha256 `{sha256}`" in card
    flipped = tmp_path / "flipped"
    shutil.copytree(folder, flipped)
    flipped_sha256 = write_flipped_weight(folder / repo_layout.WEIGHTS_FILENAME, flipped / repo_layout.WEIGHTS_FILENAME)
    silently = keras.saving.load_model(str(flipped), safe_mode=True)
    # One weight differs (its features may not, on a few images: a ReLU can hide it).
    changed = [not np.array_equal(a, b) for a, b in zip(silently.get_weights(), encoder.get_weights())]
    assert sum(changed) == 1

    python, sha256sum = card_commands(card)
    for name, source, intact in (("intact", folder, True), ("flipped", flipped, False)):
        cache = tmp_path / f"cache_{name}"
        fill_hf_cache(cache, REPO_ID, source)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
        checked = subprocess.run(python, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert checked.returncode == (0 if intact else 1), checked.stderr[-3000:]
        path, _, verdict = checked.stdout.strip().partition(" ")
        assert Path(path).resolve().is_relative_to(cache.resolve())
        assert verdict == ("OK" if intact else f"FAILED: its sha256 is {flipped_sha256}")
        if shutil.which("sha256sum"):
            summed = subprocess.run(sha256sum, shell=True, capture_output=True, text=True, cwd=source)
            assert summed.returncode == (0 if intact else 1)
            assert f"{repo_layout.WEIGHTS_FILENAME}: {'OK' if intact else 'FAILED'}" in summed.stdout


def test_folder_is_keras_saving_format_beside_the_package_config(tiny_weights, tmp_path):
    """config.json holds Keras' serialization of the trained encoder and this
    package's description, with no key in common; model.weights.h5 is the
    encoder's weights, its sha256 recorded; both loaders give the encoder."""
    import keras

    encoder, weights, sha256 = tiny_weights
    architecture = architecture_entry(weights)
    folder = Path(hub_folder.prepare_repo_folder(
        make_preset(sha256, architecture=architecture), weights, str(tmp_path / "repo")
    ))
    config = json.loads((folder / "config.json").read_text())
    package_part = hub_folder.repo_config(make_preset(sha256, architecture=architecture))
    keras_part = {key: value for key, value in config.items() if key not in package_part}
    assert {key: config[key] for key in package_part} == package_part
    # Keras' part is the trained architecture the preset ships.
    architecture_file = json.loads((Path(weights).parent / ARCHITECTURE_FILENAME).read_text())
    assert {key: keras_part[key] for key in architecture_file} == architecture_file
    plain = keras.saving.load_model(str(folder), safe_mode=True)
    np.testing.assert_array_equal(plain(images()), encoder(images()))
    np.testing.assert_array_equal(zoo.load_pretrained(str(folder))(images()), encoder(images()))


def test_a_folder_keras_loads_differently_is_refused(tiny_weights, tmp_path, monkeypatch):
    """The Keras-format copy is loaded back before the folder is moved into
    place; one whose features differ (here: Keras handing back a freshly
    initialized encoder) is refused and nothing is written."""
    import keras

    _, weights, sha256 = tiny_weights
    monkeypatch.setattr(
        keras.saving, "load_model", lambda *args, **kwargs: kdc.resnet20(width_multiplier=0.25)
    )
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="loaded with keras.saving.load_model.*gives other features"):
        hub_folder.prepare_repo_folder(make_preset(sha256), weights, str(out / "repo"))
    assert os.listdir(out) == []


def test_repo_folder_architecture_file_is_checked(tiny_weights, tmp_path):
    _, weights, sha256 = tiny_weights
    architecture = architecture_entry(weights)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{ARCHITECTURE_FILENAME} to publish"):
        hub_folder.prepare_repo_folder(
            make_preset(sha256, architecture=architecture), weights, str(out / "repo"),
            architecture_path=str(tmp_path / "missing.json"),
        )
    with pytest.raises(ValueError, match="declares no architecture file, so architecture_path must not be given"):
        hub_folder.prepare_repo_folder(
            make_preset(sha256), weights, str(out / "repo"),
            architecture_path=str(Path(weights).parent / ARCHITECTURE_FILENAME),
        )
    wrong = {**architecture, "sha256": "0" * 64}
    with pytest.raises(ValueError, match=f"sha256 mismatch for {ARCHITECTURE_FILENAME}"):
        hub_folder.prepare_repo_folder(make_preset(sha256, architecture=wrong), weights, str(out / "repo"))
    # An architecture file of another network than the preset records.
    other = tmp_path / "other"
    save_encoder(kdc.resnet20((64, 64, 3), width_multiplier=0.25), str(other))
    with pytest.raises(ValueError, match="do not load into the architecture.*layer 'images' differs in batch_shape"):
        hub_folder.prepare_repo_folder(
            make_preset(sha256, architecture=architecture_entry(other / "encoder.weights.h5")),
            weights, str(out / "repo"), architecture_path=str(other / ARCHITECTURE_FILENAME),
        )
    assert os.listdir(out) == []


def test_repo_folder_without_run_record_has_no_run_json(tiny_weights, tmp_path):
    _, weights, sha256 = tiny_weights
    folder = hub_folder.prepare_repo_folder(make_preset(sha256, run=None), weights, str(tmp_path / "repo"))
    assert "run.json" not in os.listdir(folder)
    assert "No run record" in (Path(folder) / "README.md").read_text()


def test_sha256_mismatch_is_refused_and_leaves_no_folder(tiny_weights, tmp_path):
    _, weights, sha256 = tiny_weights
    wrong = ("0" if sha256[0] != "0" else "1") + sha256[1:]
    with pytest.raises(ValueError, match="sha256 mismatch for encoder.weights.h5") as error:
        hub_folder.prepare_repo_folder(make_preset(wrong), weights, str(tmp_path / "out" / "repo"))
    assert sha256 in str(error.value) and wrong in str(error.value)
    assert os.listdir(tmp_path / "out") == []


def test_a_file_named_like_the_folders_own_files_is_refused(tiny_weights, tmp_path):
    _, weights, sha256 = tiny_weights
    for reserved in ("config.json", repo_layout.WEIGHTS_FILENAME, "README.md"):
        preset = make_preset(sha256, weights={"filename": reserved, "sha256": sha256, "bundled": False})
        with pytest.raises(ValueError, match=f"{reserved!r} is one the repository folder uses"):
            hub_folder.prepare_repo_folder(preset, weights, str(tmp_path / "out" / "repo"))
    assert not (tmp_path / "out").exists()


def test_weights_of_another_architecture_are_refused(tiny_weights, tmp_path):
    _, weights, sha256 = tiny_weights
    preset = make_preset(sha256, backbone_kwargs={"width_multiplier": 0.5})
    with pytest.raises(ValueError, match="do not load into the architecture"):
        hub_folder.prepare_repo_folder(preset, weights, str(tmp_path / "out" / "repo"))
    assert os.listdir(tmp_path / "out") == []


def test_weights_file_with_arrays_the_model_lacks_is_refused(tiny_weights, tmp_path):
    # Keras ignores saved arrays no layer asks for, so the loader alone would accept this file.
    _, weights, _ = tiny_weights
    padded = tmp_path / "encoder.weights.h5"
    padded.write_bytes(Path(weights).read_bytes())
    with h5py.File(padded, "a") as file:
        file.create_dataset("unused/vars/0", data=np.zeros((3, 3), np.float32))
    model = kdc.resnet20(width_multiplier=0.25)
    model.load_weights(padded)
    arrays, values = len(model.weights), sum(int(np.prod(w.shape)) for w in model.weights)
    message = f"holds {arrays + 1} arrays with {values + 9} values, the model has {arrays} with {values}"
    with pytest.raises(ValueError, match=message):
        hub_folder.prepare_repo_folder(make_preset(sha256_of(padded)), str(padded), str(tmp_path / "out" / "repo"))
    assert os.listdir(tmp_path / "out") == []


def test_previous_folder_is_replaced_but_an_unrelated_one_is_kept(tiny_weights, tmp_path):
    _, weights, sha256 = tiny_weights
    out = tmp_path / "repo"
    hub_folder.prepare_repo_folder(make_preset(sha256), weights, str(out))
    (out / "stale.txt").write_text("from an older build")
    hub_folder.prepare_repo_folder(make_preset(sha256, notes="Second build."), weights, str(out))
    assert "stale.txt" not in os.listdir(out)
    assert "Second build." in (out / "README.md").read_text()
    assert os.listdir(tmp_path) == ["repo"]

    unrelated = tmp_path / "mine"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a repository folder"):
        hub_folder.prepare_repo_folder(make_preset(sha256), weights, str(unrelated))
    assert os.listdir(unrelated) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["mine", "repo"]


def test_head_is_copied_and_checked(tiny_weights, tmp_path):
    _, weights, sha256 = tiny_weights
    head_path = tmp_path / "head.weights.h5"
    head_path.write_bytes(b"linear head bytes")
    head = {"filename": "linear_head.weights.h5", "sha256": sha256_of(head_path)}
    with pytest.raises(ValueError, match="head_path is required"):
        hub_folder.prepare_repo_folder(make_preset(sha256, head=head), weights, str(tmp_path / "repo"))
    folder = Path(hub_folder.prepare_repo_folder(
        make_preset(sha256, head=head), weights, str(tmp_path / "repo"), head_path=str(head_path)
    ))
    assert (folder / "linear_head.weights.h5").read_bytes() == b"linear head bytes"
    assert json.loads((folder / "config.json").read_text())["head"] == head
    assert "include_top=True" in (folder / "README.md").read_text()


# -- publish ------------------------------------------------------------------


class RecordingHfApi:
    """Stands in for `huggingface_hub.HfApi`: records each call and the files
    of the uploaded folder, and answers as the Hub does."""

    def __init__(self, **init_kwargs):
        self.init_kwargs = init_kwargs
        self.calls = []
        self.uploaded = None

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        folder = Path(kwargs["folder_path"])
        self.uploaded = {path.name: path.read_bytes() for path in folder.iterdir()}
        oid = "a" * 40
        return CommitInfo(
            commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/{oid}",
            commit_message=kwargs["commit_message"], commit_description="", oid=oid,
        )


def test_publish_refuses_a_preset_without_metrics(tiny_weights, tmp_path):
    _, weights, sha256 = tiny_weights
    api = RecordingHfApi()
    for metrics in (None, {**METRICS, "linear_probe": None}):
        with pytest.raises(ValueError, match="no measured metrics.*scripts/evaluate.py"):
            upload.publish(
                make_preset(sha256, metrics=metrics), weights, REPO_ID, token="hf_test",
                out_dir=str(tmp_path / "repo"), api=api,
            )
    with pytest.raises(ValueError, match="measured for preset 'other_preset'"):
        upload.publish(
            make_preset(sha256, metrics={**METRICS, "preset": "other_preset"}), weights, REPO_ID,
            token="hf_test", out_dir=str(tmp_path / "repo"), api=api,
        )
    assert api.calls == []
    assert not (tmp_path / "repo").exists()
    # An encoder evaluated from a folder records its path, not a preset name.
    folder_metrics = {**METRICS, "preset": "runs/tiny/hub_folder"}
    upload.publish(make_preset(sha256, metrics=folder_metrics), weights, REPO_ID, dry_run=True,
                out_dir=str(tmp_path / "repo"))
    assert (tmp_path / "repo" / "README.md").exists()


def test_publish_uploads_the_folder(tiny_weights, tmp_path):
    _, weights, sha256 = tiny_weights
    preset = make_preset(sha256, architecture=architecture_entry(weights))
    api = RecordingHfApi()
    url = upload.publish(preset, weights, "otherorg/tiny", token="hf_test", api=api, private=True)
    assert url == f"https://huggingface.co/otherorg/tiny/commit/{'a' * 40}"
    (create, repo_id, create_kwargs), (upload_call, upload_repo, upload_kwargs) = api.calls
    assert (create, repo_id) == ("create_repo", "otherorg/tiny")
    assert create_kwargs == {"repo_type": "model", "exist_ok": True, "private": True}
    assert (upload_call, upload_repo) == ("upload_folder", "otherorg/tiny")
    assert upload_kwargs["repo_type"] == "model"
    assert NAME in upload_kwargs["commit_message"]
    assert set(api.uploaded) == {*FOLDER_FILES, ARCHITECTURE_FILENAME}
    assert hashlib.sha256(api.uploaded[repo_layout.WEIGHTS_FILENAME]).hexdigest() == sha256
    assert hashlib.sha256(api.uploaded[ARCHITECTURE_FILENAME]).hexdigest() == preset["architecture"]["sha256"]
    assert json.loads(api.uploaded["config.json"])["repo_id"] == "otherorg/tiny"
    card = api.uploaded["README.md"].decode()
    assert 'load_pretrained("hf://otherorg/tiny")' in card
    assert 'keras.saving.load_model("hf://otherorg/tiny")' in card
    _, values = model_index_values(card)
    assert values == {"knn": METRICS["knn"]["top1"], "linear_probe": METRICS["linear_probe"]["top1"]}
    # The temporary folder is gone once uploaded.
    assert not Path(upload_kwargs["folder_path"]).exists()


def test_publish_reads_the_token_from_hf_token(tiny_weights, tmp_path, monkeypatch):
    _, weights, sha256 = tiny_weights
    created = []

    def fake_hf_api(**kwargs):
        created.append(RecordingHfApi(**kwargs))
        return created[-1]

    monkeypatch.setattr(upload, "HfApi", fake_hf_api)
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    upload.publish(make_preset(sha256), weights, REPO_ID, out_dir=str(tmp_path / "repo"))
    assert created[0].init_kwargs["token"] == "hf_from_env"
    assert [call[0] for call in created[0].calls] == ["create_repo", "upload_folder"]
    # A folder the caller chose stays.
    assert (tmp_path / "repo" / "README.md").exists()


def test_publish_without_token_fails_before_building(tiny_weights, tmp_path, monkeypatch):
    _, weights, sha256 = tiny_weights
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ValueError, match="HF_TOKEN.*dry_run=True"):
        upload.publish(make_preset(sha256), weights, REPO_ID, out_dir=str(tmp_path / "repo"))
    assert not (tmp_path / "repo").exists()
    # A dry run needs no token and returns the folder.
    folder = upload.publish(make_preset(sha256), weights, REPO_ID, dry_run=True, out_dir=str(tmp_path / "repo"))
    assert folder == str(tmp_path / "repo")
    assert "README.md" in os.listdir(folder)


def test_publish_refuses_a_repo_id_without_namespace(tiny_weights):
    _, weights, sha256 = tiny_weights
    with pytest.raises(ValueError, match="ORG/NAME"):
        upload.publish(make_preset(sha256), weights, "tiny", dry_run=True)
    with pytest.raises(ValueError, match="Invalid repo_id"):
        upload.publish(make_preset(sha256), weights, "org/bad--name", dry_run=True)


# -- scripts/publish.py ---------------------------------------------------------


@pytest.mark.slow
def test_publish_script_dry_run_through_the_registry(tiny_weights, tmp_path):
    """A bundled preset in a private registry: the script finds it and its
    weights through keras_directcopy.presets.zoo, lists the folder; a preset without
    metrics is refused with the fix."""
    _, weights, sha256 = tiny_weights
    registry = tmp_path / "registry"
    (registry / NAME).mkdir(parents=True)
    for filename in ("encoder.weights.h5", ARCHITECTURE_FILENAME):
        (registry / NAME / filename).write_bytes((Path(weights).parent / filename).read_bytes())
    preset = make_preset(sha256, architecture=architecture_entry(weights))
    preset["weights"]["bundled"] = True
    (registry / f"{NAME}.json").write_text(json.dumps(preset))
    unevaluated = make_preset(sha256, name="tiny_unevaluated", aliases=[], metrics=None)
    (registry / "tiny_unevaluated.json").write_text(json.dumps(unevaluated))
    env = {**os.environ, zoo.REGISTRY_ENV: str(registry), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("HF_TOKEN", None)

    def run(*flags):
        return subprocess.run(
            [sys.executable, SCRIPT, *flags], capture_output=True, text=True, timeout=300,
            cwd=REPO_ROOT, env=env,
        )

    out = tmp_path / "folder"
    # The repository defaults to the one the preset's entry names.
    result = run("--preset=tiny", "--dry_run", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Dry run: repository folder for {REPO_ID} at {out}" in result.stdout
    for name in [*FOLDER_FILES, ARCHITECTURE_FILENAME]:
        assert name in result.stdout
        assert (out / name).exists()

    refused = run("--preset=tiny_unevaluated", f"--repo_id={REPO_ID}", "--dry_run")
    assert refused.returncode != 0
    assert "no measured metrics" in refused.stderr and "scripts/evaluate.py" in refused.stderr
