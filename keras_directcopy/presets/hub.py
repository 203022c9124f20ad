"""Publishing pretrained encoders to the Hugging Face Hub.

A published repository holds what `keras_directcopy.load_pretrained` reads,
and nothing it would have to execute; it is also a model in Keras' own saving
format, so plain Keras loads it with `keras.saving.load_model("hf://ORG/NAME")`
(built-in layers only, `safe_mode=True`), without this package:

* the encoder weights (`preset["weights"]["filename"]`, a `.weights.h5`
  file), and the linear-probe head's when the preset declares one;
* the trained encoder's architecture (`preset["architecture"]["filename"]`,
  `encoder.config.json` as `training.save_encoder` writes it: Keras'
  serialization of the model, built-in layers only), when the preset
  declares one;
* `config.json`: two descriptions of the encoder side by side, with no key
  in common. This package's (`repo_config`: a backbone name of
  `BACKBONE_NAMES`, its keyword arguments and the input shape, the preset
  name, the package version, and the sha256 of every other file), which
  `load_pretrained` reads; and Keras' (`keras.saving.save_model(encoder,
  folder, zipped=False)`: the serialized model), which
  `keras.saving.load_model` reads. Keras' hf:// loader reads the
  repository root's `config.json` and nothing else, hence one file;
* `model.weights.h5` (`KERAS_WEIGHTS_FILENAME`): the same weights, under the
  name Keras' folder format gives them;
* `metrics.json` (written by `scripts/evaluate.py`) and `run.json` (written
  by `scripts/pretrain.py`), as measured;
* `additional_metrics.json`, when the preset records other evaluations
  (`preset["additional_metrics"]`: the same encoder on another label set or
  with another kNN k, or the random-init floor of its architecture): the
  list of their `scripts/evaluate.py` records, as measured;
* `README.md`: the model card, rendered by `huggingface_hub.ModelCard.
  from_template` from `model_cards/template.md` (installed as
  `keras_directcopy.model_card_templates`). Its YAML `model-index` carries
  the kNN and linear-probe accuracies of `metrics.json`, and those of the
  other label sets of `additional_metrics.json` (never a random-init
  floor's: it is not this model's result).

The template holds the card's wording; `_card_values` passes it values
read from the preset, its metrics or its run record, or from the recipes of
`keras_directcopy.configs`; no number is typed in.

Typical use, through `scripts/publish.py`:

```python
from keras_directcopy.presets import hub
from keras_directcopy.presets import zoo

preset = zoo.get_preset("directcopy_resnet20_cifar10")
folder = hub.publish(
    preset, "runs/directcopy_resnet20_cifar10/encoder.weights.h5",
    "keras-directcopy/directcopy_resnet20_cifar10", dry_run=True,
)
```
"""

import importlib.resources
import json
import math
import os
import shutil
import tempfile

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from keras_directcopy.configs import CONFIGS
from keras_directcopy.utils.files import atomic_save, atomic_write_text, sha256_file
from keras_directcopy.version import __version__

CONFIG_FILENAME = "config.json"
METRICS_FILENAME = "metrics.json"
ADDITIONAL_METRICS_FILENAME = "additional_metrics.json"
RUN_FILENAME = "run.json"
CARD_FILENAME = "README.md"
# The weights file of Keras' folder format, next to its config.json
# (keras.src.saving.saving_lib._VARS_FNAME_H5); keras.saving.load_model
# reads no other name.
KERAS_WEIGHTS_FILENAME = "model.weights.h5"
# The package (setup.cfg maps the top-level model_cards/ folder to it) and
# file of the model card template.
CARD_TEMPLATE_PACKAGE = "keras_directcopy.model_card_templates"
CARD_TEMPLATE_FILENAME = "template.md"
# Marks a config.json as this package's architecture description. Version 2
# adds Keras' serialization of the encoder and `keras_weights`.
CONFIG_FORMAT = "keras_directcopy.encoder"
CONFIG_FORMAT_VERSION = 2
TOKEN_ENV = "HF_TOKEN"
LICENSE = "apache-2.0"
PIPELINE_TAG = "image-feature-extraction"

# Hub dataset ids of the datasets the presets are trained on; other
# datasets are named by their tfds name.
HUB_DATASET_IDS = {
    "cifar10": "uoft-cs/cifar10",
    "cifar100": "uoft-cs/cifar100",
    "imagenet2012": "ILSVRC/imagenet-1k",
    "imagenette": "frgfm/imagenette",
}
DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "stl10": "STL-10",
    "imagenet2012": "ImageNet-1k (ILSVRC 2012)",
    "imagenette": "Imagenette (imagenette2)",
}
# The datasets read from a folder, `folder:ROOT`, and recorded by name when
# the folder is identified as one (`keras_directcopy.data.known_folders`,
# whose display names and Hub ids are those above; presets never import
# `data`, and tests/test_known_folders.py keeps the two equal).
FOLDER_DATASETS = ("imagenette",)
FOLDER_PREFIX = "folder:"  # keras_directcopy.data.datasets.FOLDER_PREFIX
# The label sets other than a dataset's own that scripts/evaluate.py reads
# (`--dataset=NAME:LABEL`, keras_directcopy.data.datasets.OTHER_LABELS);
# another one is named by its dataset and tfds feature.
LABEL_SET_NAMES = {
    "cifar100:coarse_label": "CIFAR-100 coarse labels (20 superclasses)",
}
# The full-scale recipe of each dataset in `keras_directcopy.configs`: the
# setting of the DirectPred/DirectCopy reference code (ResNet-18 on the small
# datasets) and BYOL/SimSiam (ResNet-50 on ImageNet). A preset flagged
# `reduced_scale` is compared with it in its card. A dataset the papers do
# not train on (Imagenette) has none: its card says so, naming these.
FULL_SCALE_CONFIGS = {
    "cifar10": "cifar10_resnet18",
    "cifar100": "cifar100_resnet18",
    "stl10": "stl10_resnet18",
    "imagenet2012": "imagenet_resnet50",
}
# The fields of the full-scale recipe the card sets beside a reduced-scale
# run's; `steps_per_epoch` and `image_size` only when the run changed them.
_REDUCED_SCALE_FIELDS = ("backbone", "width_multiplier", "epochs", "batch_size")
_REDUCED_SCALE_OPTIONAL_FIELDS = ("steps_per_epoch", "image_size")

# The papers the cards cite: a short form for the method section and the
# full reference.
REFERENCES = {
    "directcopy": {
        "short": "Wang, Chen, Du & Tian 2021 (DirectCopy)",
        "full": "Xiang Wang, Xinlei Chen, Simon S. Du and Yuandong Tian. *Towards Demystifying "
        "Representation Learning with Non-contrastive Self-supervision.* 2021. "
        "[arXiv:2110.04947](https://arxiv.org/abs/2110.04947)",
    },
    "directpred": {
        "short": "Tian, Chen & Ganguli, ICML 2021 (DirectPred)",
        "full": "Yuandong Tian, Xinlei Chen and Surya Ganguli. *Understanding Self-supervised "
        "Learning Dynamics without Contrastive Pairs.* ICML 2021. "
        "[arXiv:2102.06810](https://arxiv.org/abs/2102.06810)",
    },
    "byol": {
        "short": "Grill et al., NeurIPS 2020 (BYOL)",
        "full": "Jean-Bastien Grill et al. *Bootstrap Your Own Latent: A New Approach to "
        "Self-Supervised Learning.* NeurIPS 2020. [arXiv:2006.07733](https://arxiv.org/abs/2006.07733)",
    },
    "simsiam": {
        "short": "Chen & He, CVPR 2021 (SimSiam)",
        "full": "Xinlei Chen and Kaiming He. *Exploring Simple Siamese Representation Learning.* "
        "CVPR 2021. [arXiv:2011.10566](https://arxiv.org/abs/2011.10566)",
    },
}
# Display name and cited papers of each `preset["method"]`; the template
# describes each of them.
METHODS = {
    "directcopy": ("DirectCopy", ("directcopy", "directpred", "byol")),
    "directpred": ("DirectPred", ("directpred", "byol")),
    "directset": ("DirectSet", ("directpred", "directcopy", "byol")),
    "byol": ("BYOL", ("byol",)),
    "simsiam": ("SimSiam", ("simsiam",)),
}
_DIRECT_METHODS = ("directcopy", "directpred", "directset")
# The training step of a run recorded before these config fields existed:
# the project's behaviour then (see scripts/compare_methods.py,
# LEGACY_STEP_FLAGS).
_UNRECORDED_STEP_FIELDS = {
    "lr_schedule": "warmup_cosine", "ema_schedule": "cosine", "target_init": "copy",
    "projector_bn_affine": True, "update_order": "before_predict",
}


def check_publishable(preset):
    """Checks that a preset has what a published repository needs.

    Args:
        preset: a preset dict of the `zoo/` registry.

    Raises:
        ValueError: if the preset has no measured kNN and linear-probe
            metrics, if its metrics belong to another preset or dataset or
            are those of a random-init floor, if one of its additional
            evaluations is not fit for the card (see
            `check_additional_evaluation`), if it records no sha256 for its
            weights (or head), or if its method is unknown. The message
            names the fix.
    """
    name = preset["name"]
    metrics = preset.get("metrics") or {}
    knn = metrics.get("knn") or {}
    linear = metrics.get("linear_probe") or {}
    if knn.get("top1") is None or linear.get("top1") is None:
        raise ValueError(
            f"Preset {name!r} has no measured metrics, and a model is only published with its "
            "kNN and linear-probe accuracy. Run scripts/evaluate.py on the trained encoder "
            f"(--output=FILE) and record the metrics JSON it writes as \"metrics\" in "
            f"zoo/{name}.json."
        )
    # A metrics dict copied from another preset's evaluation would put wrong
    # numbers in the card under this preset's name. An encoder evaluated from
    # a file, a folder or an hf:// id records no name or a path, which is fine.
    recorded = metrics.get("preset")
    if recorded and "/" not in recorded and recorded not in (name, *preset.get("aliases", ())):
        raise ValueError(
            f"The metrics recorded in preset {name!r} were measured for preset "
            f"{metrics['preset']!r}. Evaluate this preset's encoder with scripts/evaluate.py and "
            f"record its metrics in zoo/{name}.json."
        )
    if on_unidentified_folder(metrics.get("dataset"), preset):
        raise ValueError(
            f"The metrics recorded in preset {name!r}: "
            f"{unidentified_folder_message(metrics['dataset'], preset, 'measured on')}. Record those "
            f"of {evaluate_folder_command(preset)}."
        )
    if metrics.get("dataset") not in (None, preset["dataset"]):
        raise ValueError(
            f"The metrics recorded in preset {name!r} are on {metrics['dataset']!r}, but the "
            f"preset is trained on {preset['dataset']!r}. Evaluate on {preset['dataset']!r} "
            "with scripts/evaluate.py"
            + (" and record the other label set's metrics in \"additional_metrics\"."
               if is_label_set_of(metrics["dataset"], preset["dataset"]) else ".")
        )
    # The preset field of a floor names the preset whose architecture was
    # drawn at random, so only this mark tells its numbers from the model's.
    if metrics.get("random_init") is not None:
        raise ValueError(
            f"The metrics recorded in preset {name!r} are those of a randomly initialized "
            "encoder of its architecture (a floor), not of the trained weights. Record them in "
            "\"additional_metrics\" and the trained encoder's (scripts/evaluate.py "
            f"--preset={name}) as \"metrics\"."
        )
    check_additional_metrics(preset)
    check_published_results(preset)
    if not preset["weights"].get("sha256"):
        raise ValueError(
            f"Preset {name!r} records no sha256 for {preset['weights']['filename']}. Record the "
            f"sha256 of the trained weights in zoo/{name}.json (it is checked against the file "
            "published and every file downloaded)."
        )
    for key in ("head", "architecture"):
        if preset.get(key) and not preset[key].get("sha256"):
            raise ValueError(
                f"Preset {name!r} declares a {key} file {preset[key]['filename']} without a "
                f"sha256; record it in zoo/{name}.json (scripts/register_preset.py does)."
            )
    if preset["method"] not in METHODS:
        raise ValueError(
            f"Preset {name!r} has unknown method {preset['method']!r}; valid methods: "
            f"{', '.join(METHODS)}."
        )


def unidentified_folder_message(dataset, preset, verb):
    """Why a record on an image folder is not one of a folder-dataset preset's.

    A record (run.json, a metrics JSON) names a folder by path only when it
    was not identified as a known dataset (`data.datasets.dataset_record`).

    Args:
        dataset: the record's `dataset`, `folder:/path`.
        preset: a preset dict whose dataset is one of `FOLDER_DATASETS`.
        verb: what the record did on it, e.g. "trained on", "measured on".

    Returns:
        A clause, without the file it is about or the fix, naming the folder
        and the preset's dataset.
    """
    wanted = DATASET_NAMES[preset["dataset"]]
    return (
        f"it was {verb} the image folder {dataset[len(FOLDER_PREFIX):]}, which was not identified as "
        f"{wanted}, the dataset of preset {preset['name']!r}: its class folders or image counts "
        "differ (scripts/evaluate.py and scripts/pretrain.py print how), so its numbers are not "
        "comparable with the preset's"
    )


def on_unidentified_folder(dataset, preset):
    """Whether a record's `dataset` is an image folder (`folder:/path`) and
    the preset is trained on a folder dataset (`FOLDER_DATASETS`) that the
    folder was not identified as.

    Args:
        dataset: the `dataset` of a run config or metrics record.
        preset: a preset dict.
    """
    return (
        preset["dataset"] in FOLDER_DATASETS and dataset != preset["dataset"]
        and str(dataset).startswith(FOLDER_PREFIX)
    )


def evaluate_folder_command(preset):
    """The command that measures a folder-dataset preset on a copy of its
    dataset, in words (for messages)."""
    return (f"scripts/evaluate.py --preset={preset['name']} --dataset=folder:ROOT with ROOT a complete "
            f"copy of {DATASET_NAMES[preset['dataset']]} (recorded as {preset['dataset']!r})")


def is_label_set_of(dataset, preset_dataset):
    """Whether `dataset` is another label set of `preset_dataset`'s images
    (`"cifar100:coarse_label"` of `"cifar100"`), as `scripts/evaluate.py
    --dataset=NAME:LABEL` evaluates."""
    name, _, label = str(dataset).partition(":")
    return name == preset_dataset and bool(label)


def label_set_name(dataset):
    """The display name of a dataset or of one of its other label sets."""
    if dataset in LABEL_SET_NAMES:
        return LABEL_SET_NAMES[dataset]
    name, _, label = dataset.partition(":")
    base = DATASET_NAMES.get(name, name)
    return f"{base} `{label}` labels" if label else base


def evaluation_changes(evaluation, preset):
    """How an additional evaluation differs from the preset's primary one.

    Args:
        evaluation: a metrics dict of `scripts/evaluate.py`.
        preset: a preset dict with its primary `metrics`.

    Returns:
        A dict with only the keys that differ: `"dataset"` (another label
        set, e.g. `"cifar100:coarse_label"`), `"knn_k"` and
        `"knn_temperature"` (the evaluation's values) and
        `"random_init_seed"` (the evaluation is the random-init floor of the
        preset's architecture, drawn with that seed). Empty when the
        evaluation repeats the primary protocol.
    """
    metrics = preset["metrics"]
    changes = {}
    dataset = evaluation.get("dataset")
    if dataset != (metrics.get("dataset") or preset["dataset"]):
        changes["dataset"] = dataset
    for key in ("k", "temperature"):
        if evaluation["knn"].get(key) != metrics["knn"].get(key):
            changes[f"knn_{key}"] = evaluation["knn"].get(key)
    if evaluation.get("random_init") is not None:
        changes["random_init_seed"] = evaluation["random_init"].get("seed")
    return changes


def evaluation_key(evaluation):
    """What identifies an additional evaluation among a preset's: its
    dataset (label set), kNN k and temperature, and random-init seed. A new
    evaluation with the key of a recorded one replaces it."""
    floor = evaluation.get("random_init") or {}
    knn = evaluation.get("knn") or {}
    return (evaluation.get("dataset"), knn.get("k"), knn.get("temperature"), floor.get("seed"))


def check_additional_evaluation(evaluation, preset):
    """Checks that a metrics dict can be recorded as one of the preset's
    additional evaluations: `scripts/evaluate.py` on this preset, on its
    primary metrics' splits, and another label set of its images, another
    kNN k (or temperature), or the random-init floor of its architecture.

    Args:
        evaluation: a metrics dict of `scripts/evaluate.py`.
        preset: a preset dict with its primary `metrics`.

    Raises:
        ValueError: naming what is wrong and the `scripts/evaluate.py`
            command that measures a valid one.
    """
    name = preset["name"]
    if not preset.get("metrics"):
        raise ValueError(
            f"Preset {name!r} has no metrics of its own, so there is nothing to compare other "
            f"evaluations with: record those of scripts/evaluate.py --preset={name} first."
        )
    knn = evaluation.get("knn") or {}
    if evaluation.get("preset") not in (name, *preset.get("aliases", ())):
        # A floor of another architecture (or from before floors named their
        # preset) gets the command that measures this preset's.
        floor = evaluation.get("random_init") is not None or (
            "random initialization" in str(evaluation.get("encoder"))
        )
        seed = (evaluation.get("random_init") or {}).get("seed", 0)
        floor_flags = f" --random_init --seed={seed}" if floor else ""
        raise ValueError(
            f"it was measured on {evaluation.get('preset') or evaluation.get('encoder')!r}, not on "
            f"preset {name!r}: run scripts/evaluate.py --preset={name}{floor_flags}."
        )
    if not isinstance(knn.get("top1"), (int, float)):
        raise ValueError("it has no kNN top-1 accuracy; it is not a scripts/evaluate.py record.")
    dataset = evaluation.get("dataset")
    if on_unidentified_folder(dataset, preset):
        raise ValueError(
            f"{unidentified_folder_message(dataset, preset, 'measured on')}; measure it with "
            f"{evaluate_folder_command(preset)}."
        )
    if dataset != preset["dataset"] and not is_label_set_of(dataset, preset["dataset"]):
        raise ValueError(
            f"it is on {dataset!r}, which is not a label set of the images of {name!r} "
            f"({preset['dataset']!r}); only other label sets of the same images are recorded, "
            f"e.g. scripts/evaluate.py --preset={name} --dataset={preset['dataset']}:LABEL."
        )
    primary = preset["metrics"]["knn"]
    splits = ("train_split", "test_split")
    if any(knn.get(key) != primary.get(key) for key in splits):
        raise ValueError(
            f"it is measured on the splits {knn.get('train_split')!r} / {knn.get('test_split')!r}, "
            f"the preset's metrics on {primary.get('train_split')!r} / "
            f"{primary.get('test_split')!r}, so the two are not comparable: measure it on the same "
            "splits (the same --max_train_examples and --max_test_examples)."
        )
    floor = evaluation.get("random_init")
    if floor is not None and not (
        isinstance(floor, dict) and isinstance(floor.get("seed"), int) and not isinstance(floor["seed"], bool)
    ):
        raise ValueError(f"its random_init record {floor!r} names no integer seed.")
    if not evaluation_changes(evaluation, preset):
        raise ValueError(
            f"it repeats the protocol of the preset's own metrics (dataset {dataset!r}, kNN k = "
            f"{knn.get('k')}, the trained weights), so it is no other evaluation. Record it as the "
            f"preset's metrics, or measure another one with scripts/evaluate.py --preset={name} "
            "and --dataset=<another label set>, --knn_k=<another k> or --random_init --seed=<seed>."
        )


def check_published_results(preset):
    """Checks `preset["published_results"]`, if any: kNN accuracies that
    others published on the preset's dataset, which the card shows beside
    this encoder's at the same k.

    The entry is `{"source", "setting", "knn_k", "rows": [{"method",
    "knn_top1"}, ...]}`: `source` says where the numbers are published (a
    link), `setting` how they were obtained (backbone, image size, epochs,
    hardware, and whether they are the best or the final epoch's), and each
    `knn_top1` is a fraction in [0, 1], as published.

    Raises:
        ValueError: naming the missing or malformed field.
    """
    published = preset.get("published_results")
    if published is None:
        return
    where = f"\"published_results\" of preset {preset['name']!r}"
    if not isinstance(published, dict):
        raise ValueError(f"{where} must be a dict with source, setting, knn_k and rows.")
    for key in ("source", "setting"):
        if not isinstance(published.get(key), str) or not published[key].strip():
            raise ValueError(f"{where} needs {key!r}: a sentence saying {PUBLISHED_FIELDS[key]}.")
    k = published.get("knn_k")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"{where} needs 'knn_k', the positive integer k of the published kNN accuracies.")
    rows = published.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{where} needs 'rows': a list of {{\"method\": NAME, \"knn_top1\": FRACTION}}.")
    for index, row in enumerate(rows):
        top1 = row.get("knn_top1") if isinstance(row, dict) else None
        if not (isinstance(row, dict) and isinstance(row.get("method"), str) and isinstance(top1, (int, float))
                and not isinstance(top1, bool) and 0 <= top1 <= 1):
            raise ValueError(
                f"Row {index} of {where}, {row!r}, must be {{\"method\": NAME, \"knn_top1\": FRACTION}} "
                "with the accuracy as a fraction in [0, 1] (0.887 for 88.7%)."
            )


PUBLISHED_FIELDS = {
    "source": "where the numbers are published, with a link",
    "setting": "how they were obtained: backbone, image size, epochs, hardware, best or final epoch",
}


def check_additional_metrics(preset):
    """Checks each of `preset["additional_metrics"]` (see
    `check_additional_evaluation`), and that no two are the same evaluation.

    Raises:
        ValueError: naming the entry (its index in the list) and the fix.
    """
    seen = {}
    for index, evaluation in enumerate(preset.get("additional_metrics") or ()):
        try:
            check_additional_evaluation(evaluation, preset)
        except ValueError as error:
            raise ValueError(
                f"Additional evaluation {index} of preset {preset['name']!r}: {error}"
            ) from error
        key = evaluation_key(evaluation)
        if key in seen:
            raise ValueError(
                f"Additional evaluations {seen[key]} and {index} of preset {preset['name']!r} are "
                "the same evaluation (dataset, kNN k and temperature, random-init seed); keep one."
            )
        seen[key] = index


def build_model_card(preset, *, repo_id=None):
    """The `README.md` model card of a preset.

    The YAML metadata (built with `huggingface_hub.ModelCardData`) names the
    library, license, tags, dataset and a `model-index` holding the kNN and
    linear-probe top-1 accuracies of `preset["metrics"]`, exactly as
    recorded, and those of each additional evaluation on another label set
    with the same kNN protocol (never a random-init floor's). The body,
    rendered by `huggingface_hub.ModelCard.from_template` from the
    package's template (`model_cards/template.md`) with the values of
    `_card_values`, describes the method and its papers, the training
    command and recipe, hardware and wall time, both evaluation protocols
    and results, the preset's additional evaluations (a table "Other
    evaluations" of other label sets, kNN k and random-init floors, and the
    gain over a floor of the headline protocol; none without them), the
    kNN accuracies others published on the dataset beside this encoder's at
    the same k (`preset["published_results"]`, see `check_published_results`),
    intended use and limitations (with the distance from the full-scale
    recipe when `preset["reduced_scale"]` is true), and how to load the
    encoder, with Keras alone or with this package.

    Args:
        preset: a preset dict of the `zoo/` registry, with measured metrics.
        repo_id: the Hub repository the card is published in (default
            `preset["hub"]["repo_id"]`); used in the `hf://` loading examples.

    Returns:
        The card as a string: a YAML front matter block and Markdown.
        `huggingface_hub.ModelCard(text).data` parses it back.

    Raises:
        ValueError: if the preset cannot be published (see
            `check_publishable`).
        ImportError: if Jinja2, which `ModelCard.from_template` renders
            with, is not installed.
    """
    check_publishable(preset)
    card = ModelCard.from_template(
        _card_data(preset), template_str=_card_template(),
        **_card_values(preset, repo_id=repo_id or preset["hub"]["repo_id"]),
    )
    return str(card)


def _card_template():
    """The text of the model card template, installed with the package."""
    try:
        return (
            importlib.resources.files(CARD_TEMPLATE_PACKAGE) / CARD_TEMPLATE_FILENAME
        ).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as error:
        # An editable install made before setup.cfg mapped model_cards/ to
        # the package does not know the mapping until it is reinstalled.
        raise FileNotFoundError(
            f"The model card template {CARD_TEMPLATE_FILENAME} of {CARD_TEMPLATE_PACKAGE} is not "
            f"installed ({error}). Reinstall keras-directcopy (pip install -c constraints.txt -e "
            "'.[test]' in a checkout): setup.cfg installs model_cards/template.md as that package."
        ) from error


def _card_data(preset):
    """The card's YAML metadata: library, license, tags, dataset, model-index."""
    dataset = preset["dataset"]
    hub_dataset = HUB_DATASET_IDS.get(dataset, dataset)
    return ModelCardData(
        library_name="keras",
        license=LICENSE,
        pipeline_tag=PIPELINE_TAG,
        tags=[
            "keras", "keras-directcopy", "self-supervised-learning", "non-contrastive",
            preset["method"], preset["backbone"], PIPELINE_TAG,
        ],
        datasets=[hub_dataset],
        metrics=["accuracy"],
        model_name=preset["name"],
        eval_results=[
            *_eval_results(preset["metrics"], hub_dataset, DATASET_NAMES.get(dataset, dataset)),
            # The same encoder on other label sets of its images is also this
            # model's result; a random-init floor, or another kNN k on the
            # same labels, would be a second number for the same entry.
            *(
                result
                for evaluation in preset.get("additional_metrics") or ()
                if set(evaluation_changes(evaluation, preset)) == {"dataset"}
                for result in _eval_results(
                    evaluation, hub_dataset, label_set_name(evaluation["dataset"]),
                    dataset_config=evaluation["dataset"].partition(":")[2],
                )
            ),
        ],
    )


def _card_values(preset, *, repo_id):
    """The values the card template renders, read from the preset and its records.

    Records are passed as read (`metrics`, its `knn` and `linear_probe`
    as `knn` and `linear`, `run`, the run's `config`), and so are the
    preset's own entries (`name`, `method`, `backbone`, `input_shape`,
    `train_command`, `notes`, `weights`, `head`, its `architecture` as
    `architecture_file`), so every number in the card is one of theirs; the
    template words and formats them. Derived here:

    * `method_name`, `references` (`{"short", "full"}` of each cited
      paper), `dataset_name`, `predictor_eps` (the eps a direct predictor
      trained with, see `_predictor_eps`), `direct_method` (the predictor
      is set, not trained);
    * `architecture_arguments`: `backbone_kwargs` items, width first;
    * `epochs`: the preset's, else the run config's;
    * `step`: the run config with the training-step fields it predates
      filled with the behaviour of its time;
    * `config_rows`: `(field, JSON text)` of the run config;
    * `hardware_parts`: the run's `hardware_parts` (consecutive invocations
      on one machine, with its share of the cost; `training.run_log`)
      when it has more than one, else empty: the card then names each
      machine instead of `run["hardware"]`, the last one's;
    * `commits`: `[{"commit", "invocations"}]`, the run's commits in order
      with the (1-based) invocations that ran each; a commit not recorded
      is None; empty without a run record;
    * `full_scale` (the dataset's full-scale recipe: name, backbone, width
      multiplier, epochs, batch size; None if there is none, as for
      Imagenette), `reduced_scale_rows` (`(field, this run's value, the
      recipe's)`) and `full_scale_datasets` (the display names of the
      datasets that have one, which a card without one names);
    * `other_evaluations`: one `{"changes", "label_set", "knn", "linear"}`
      for each of `preset["additional_metrics"]`, in order: its
      `evaluation_changes`, the display name of its label set when it is
      another one (else None), and its `knn` and `linear_probe` records;
    * `floors`: `{"seed", "knn", "linear"}` of the random-init floors
      measured with the headline protocol, whose gain the card states;
    * `published`: `preset["published_results"]` (see
      `check_published_results`) with `ours`, this encoder's kNN record at
      the published k (the headline's or another evaluation's that differs
      from it by k alone; None if not measured), or None without them;
    * `files`: the names of the files that are not the preset's.
    """
    run = preset.get("run") or None
    config = (run or {}).get("config") or {}
    metrics = preset["metrics"]
    other_evaluations = [
        {
            "changes": changes,
            "label_set": label_set_name(changes["dataset"]) if "dataset" in changes else None,
            "knn": evaluation["knn"],
            "linear": evaluation.get("linear_probe"),
        }
        for evaluation in preset.get("additional_metrics") or ()
        for changes in [evaluation_changes(evaluation, preset)]
    ]
    method_name, reference_keys = METHODS[preset["method"]]
    epochs = preset.get("epochs") if preset.get("epochs") is not None else config.get("epochs")
    full_scale_name = FULL_SCALE_CONFIGS.get(preset["dataset"])
    full_scale = CONFIGS.get(full_scale_name) if full_scale_name else None
    backbone_kwargs = preset.get("backbone_kwargs") or {}
    hardware_parts = (run or {}).get("hardware_parts") or []
    this_run = {
        "backbone": preset["backbone"],
        "width_multiplier": backbone_kwargs.get("width_multiplier", config.get("width_multiplier")),
        "epochs": epochs,
        "batch_size": config.get("batch_size"),
        # Fewer steps or smaller images are also a reduction, when the run set them.
        **{key: config[key] for key in _REDUCED_SCALE_OPTIONAL_FIELDS if config.get(key) is not None},
    }
    return {
        "name": preset["name"],
        "repo_id": repo_id,
        "method": preset["method"],
        "method_name": method_name,
        "references": [REFERENCES[key] for key in reference_keys],
        "dataset_name": DATASET_NAMES.get(preset["dataset"], preset["dataset"]),
        "backbone": preset["backbone"],
        "architecture_arguments": sorted(
            backbone_kwargs.items(), key=lambda item: item[0] != "width_multiplier"
        ),
        "input_shape": tuple(preset["input_shape"]),
        "epochs": epochs,
        "train_command": preset["train_command"],
        "notes": preset.get("notes"),
        "reduced_scale": bool(preset.get("reduced_scale")),
        "full_scale": (
            {"name": full_scale_name, **{key: getattr(full_scale, key) for key in _REDUCED_SCALE_FIELDS}}
            if full_scale else None
        ),
        "reduced_scale_rows": [
            (key, value, getattr(full_scale, key)) for key, value in this_run.items()
        ] if full_scale else [],
        # What the full recipes cover, for a card whose dataset has none.
        "full_scale_datasets": [DATASET_NAMES.get(dataset, dataset) for dataset in FULL_SCALE_CONFIGS],
        "metrics": metrics,
        "knn": metrics["knn"],
        "linear": metrics["linear_probe"],
        "run": run,
        "config": config,
        "step": {**_UNRECORDED_STEP_FIELDS, **config},
        # JSON spelling, so an unset (None) field reads `null`, as in run.json.
        "config_rows": [(key, json.dumps(value)) for key, value in config.items()],
        "hardware_parts": hardware_parts if len(hardware_parts) > 1 else [],
        "commits": _commit_groups(run),
        "predictor_eps": _predictor_eps(preset, run, config),
        "direct_method": preset["method"] in _DIRECT_METHODS,
        "weights": preset["weights"],
        "head": preset.get("head"),
        "architecture_file": preset.get("architecture"),
        "other_evaluations": other_evaluations,
        "floors": [
            {"seed": row["changes"]["random_init_seed"], "knn": row["knn"], "linear": row["linear"]}
            for row in other_evaluations if set(row["changes"]) == {"random_init_seed"}
        ],
        "published": _published_beside_ours(preset.get("published_results"), metrics, other_evaluations),
        "files": {
            "config": CONFIG_FILENAME, "keras_weights": KERAS_WEIGHTS_FILENAME,
            "metrics": METRICS_FILENAME, "additional_metrics": ADDITIONAL_METRICS_FILENAME,
            "run": RUN_FILENAME,
        },
    }


def _published_beside_ours(published, metrics, other_evaluations):
    """`published` with `ours`: this encoder's kNN record at the published k,
    from the headline metrics or an evaluation that changes the k alone."""
    if not published:
        return None
    k = published["knn_k"]
    candidates = [metrics["knn"]] + [
        row["knn"] for row in other_evaluations if row["changes"] == {"knn_k": k}
    ]
    return {**published, "ours": next((knn for knn in candidates if knn.get("k") == k), None)}


def _predictor_eps(preset, run, config):
    """The eps a direct predictor trained with, or None for other methods.

    The run config's eps when it set one; else the resolved value the run
    recorded (`run.json`'s `predictor_eps`); else, for a run from before that
    record, the preset's own `predictor_eps` entry (the method's default at
    the training commit). Never today's default: it may have changed since.

    Raises:
        ValueError: for a direct-predictor preset whose eps is recorded nowhere.
    """
    if preset["method"] not in _DIRECT_METHODS:
        return None
    for value in (config.get("eps"), (run or {}).get("predictor_eps"), preset.get("predictor_eps")):
        if value is not None:
            return float(value)
    if not run:
        return None  # no run record: the card states no training configuration
    raise ValueError(
        f"Preset {preset['name']!r}: its run config leaves eps unset and neither its run record nor "
        "the registry entry records the eps it trained with (`predictor_eps`); add the method's "
        "default at the training commit as the entry's predictor_eps."
    )


def _commit_groups(run):
    """The commits a run was made at, in order, each with the (1-based)
    numbers of the invocations that ran it; a commit not recorded (an
    invocation from before commits were recorded per invocation) is None."""
    if not run:
        return []
    groups = {}
    for number, commit in enumerate(run.get("git_commits") or [run.get("git_commit")], start=1):
        groups.setdefault(commit or None, []).append(number)
    return [{"commit": commit, "invocations": numbers} for commit, numbers in groups.items()]


def prepare_repo_folder(
    preset, weights_path, out_dir, head_path=None, *, repo_id=None, architecture_path=None
):
    """Writes the folder that is uploaded as the preset's Hub repository.

    The folder holds the weights file (named `preset["weights"]["filename"]`),
    the architecture file when the preset declares one, the head file when
    given, `config.json`, `model.weights.h5`, `metrics.json`,
    `additional_metrics.json` (the list `preset["additional_metrics"]`, when
    it has any), `run.json` (when the preset has a run record) and
    `README.md`. Before the folder is
    moved into place, the copied files are checked against the preset's
    sha256 and the encoder is loaded through `load_pretrained`, exactly as a
    user would load the published repository (which also checks that the
    architecture file is the backbone the preset records); that encoder is
    then written in Keras' folder format (`config.json` and
    `model.weights.h5`), loaded back with `keras.saving.load_model(folder,
    safe_mode=True)` and must give the same features.

    The folder is built in a temporary directory next to `out_dir` and
    renamed into place (`io_utils.atomic_save`), so `out_dir` is the
    previous folder or the complete new one (or, between two renames,
    absent); never a half-written folder. An existing `out_dir` is replaced
    only if it is empty or a folder this function wrote.

    Args:
        preset: a preset dict of the `zoo/` registry, with measured metrics
            and the weights' sha256.
        weights_path: local path of the trained encoder weights
            (`.weights.h5`).
        out_dir: the folder to write.
        head_path: local path of the linear-probe head weights; required
            exactly when the preset declares a head.
        repo_id: the Hub repository the folder is for (default
            `preset["hub"]["repo_id"]`); recorded in `config.json` and used
            in the card.
        architecture_path: local path of the encoder's architecture file,
            for a preset that declares `architecture`; default: the file of
            that name next to `weights_path`, where `scripts/pretrain.py`
            and the registry keep it.

    Returns:
        The absolute path of the folder.

    Raises:
        ValueError: if the preset cannot be published (see
            `check_publishable`), a file's sha256 differs from the preset's,
            the weights do not fit the declared architecture, the
            architecture file is refused or is not the recorded backbone, a
            head or architecture file is missing or unexpected, or the
            encoder does not load back from Keras' format as it was.
        FileNotFoundError: if `weights_path`, `head_path` or the
            architecture file does not exist.
        FileExistsError: if `out_dir` exists and is not a folder this
            function wrote.
    """
    # Imported here: zoo builds Keras models, which the card alone never needs.
    from keras_directcopy.presets import zoo

    check_publishable(preset)
    repo_id = repo_id or preset["hub"]["repo_id"]
    if bool(preset.get("head")) != (head_path is not None):
        raise ValueError(
            f"Preset {preset['name']!r} "
            + ("declares a head, so head_path is required." if preset.get("head")
               else "declares no head, so head_path must not be given.")
        )
    files = [(weights_path, preset["weights"])]
    if head_path is not None:
        files.append((head_path, preset["head"]))
    if preset.get("architecture"):
        files.append((
            architecture_path or os.path.join(
                os.path.dirname(os.path.abspath(weights_path)), preset["architecture"]["filename"]
            ),
            preset["architecture"],
        ))
    elif architecture_path is not None:
        raise ValueError(
            f"Preset {preset['name']!r} declares no architecture file, so architecture_path must "
            "not be given; record it in the preset first (scripts/register_preset.py)."
        )
    for path, entry in files:
        _check_plain_filename(entry["filename"])
        if not os.path.isfile(path):
            hint = (
                "; pass its path (architecture_path=, scripts/publish.py --architecture=) or keep "
                "it next to the weights, where scripts/pretrain.py writes it"
                if entry is preset.get("architecture") else ""
            )
            raise FileNotFoundError(f"{path} does not exist (the {entry['filename']} to publish){hint}.")
    out_dir = os.path.abspath(out_dir)
    _check_replaceable(out_dir)

    def build(folder):
        # atomic_save builds the folder at a temporary path next to out_dir
        # and renames it into place once every check below has passed.
        os.makedirs(folder)
        for path, entry in files:
            destination = os.path.join(folder, entry["filename"])
            shutil.copyfile(path, destination)
            # The copy is hashed, not the source: what is uploaded is what is checked.
            actual = sha256_file(destination)
            if actual != entry["sha256"]:
                raise ValueError(
                    f"sha256 mismatch for {entry['filename']} of {preset['name']}, from {path}: "
                    f"the preset records {entry['sha256']}, the file has {actual}. Publish the "
                    f"files the metrics were measured on, or record their sha256 in "
                    f"zoo/{preset['name']}.json after evaluating them; nothing was written."
                )
        config = repo_config(preset, repo_id=repo_id)
        _write_json(os.path.join(folder, CONFIG_FILENAME), config)
        _write_json(os.path.join(folder, METRICS_FILENAME), preset["metrics"])
        # A file of its own, so metrics.json stays the one record
        # scripts/evaluate.py writes, and the card's other numbers ship too.
        if preset.get("additional_metrics"):
            _write_json(os.path.join(folder, ADDITIONAL_METRICS_FILENAME), preset["additional_metrics"])
        if preset.get("run"):
            _write_json(os.path.join(folder, RUN_FILENAME), preset["run"])
        atomic_write_text(os.path.join(folder, CARD_FILENAME), build_model_card(preset, repo_id=repo_id))
        mismatch = (
            f"The weights {weights_path} do not load into the architecture preset "
            f"{preset['name']!r} declares ({preset['backbone']}, {preset.get('backbone_kwargs')}, "
            f"input {preset['input_shape']})"
        )
        try:
            encoder = zoo.load_pretrained(folder)
        except ValueError as error:
            raise ValueError(f"{mismatch}: {error}") from error
        # Keras skips, with a warning only, saved layers the model lacks; so the
        # file must also hold exactly as many arrays and values as the model.
        stored = _stored_arrays(os.path.join(folder, preset["weights"]["filename"]))
        expected = (len(encoder.weights), sum(int(math.prod(w.shape)) for w in encoder.weights))
        if stored != expected:
            raise ValueError(
                f"{mismatch}: the file holds {stored[0]} arrays with {stored[1]} values, the "
                f"model has {expected[0]} with {expected[1]}."
            )
        _add_keras_format(encoder, folder, config)

    atomic_save(out_dir, build)
    return out_dir


def repo_config(preset, *, repo_id=None):
    """The `config.json` of a preset's repository: its architecture as data.

    `load_pretrained` rebuilds the encoder from it with no code from the
    repository: it reads the architecture file `config["architecture"]`
    (built-in Keras layers only; sha256-checked) and checks that it is
    `build_backbone(config["backbone"], tuple(config["input_shape"]),
    **config["backbone_kwargs"])`; without one (older repositories) it
    builds that. Then it loads `config["weights"]["filename"]` after
    checking its sha256.

    Args:
        preset: a preset dict of the `zoo/` registry.
        repo_id: the Hub repository (default `preset["hub"]["repo_id"]`).

    Returns:
        A JSON-serializable dict.
    """

    head, architecture = preset.get("head"), preset.get("architecture")
    return {
        "format": CONFIG_FORMAT,
        "format_version": CONFIG_FORMAT_VERSION,
        "name": preset["name"],
        "library": "keras-directcopy",
        "library_version": __version__,
        "method": preset["method"],
        "dataset": preset["dataset"],
        "num_classes": preset.get("num_classes"),
        "backbone": preset["backbone"],
        "backbone_kwargs": dict(preset.get("backbone_kwargs") or {}),
        "input_shape": list(preset["input_shape"]),
        "weights": {"filename": preset["weights"]["filename"], "sha256": preset["weights"]["sha256"]},
        "head": {"filename": head["filename"], "sha256": head["sha256"]} if head else None,
        "architecture": (
            {"filename": architecture["filename"], "sha256": architecture["sha256"]}
            if architecture else None
        ),
        "epochs": preset.get("epochs"),
        "reduced_scale": bool(preset.get("reduced_scale")),
        "repo_id": repo_id or preset["hub"]["repo_id"],
    }


def publish(
    preset,
    weights_path,
    repo_id,
    *,
    token=None,
    dry_run=False,
    out_dir=None,
    api=None,
    private=False,
    head_path=None,
    architecture_path=None,
):
    """Builds a preset's repository folder and uploads it to the Hub.

    Args:
        preset: a preset dict of the `zoo/` registry, with measured metrics
            and the weights' sha256.
        weights_path: local path of the trained encoder weights.
        repo_id: `"ORG/NAME"` of the Hub model repository.
        token: Hub token with write access; default: the `HF_TOKEN`
            environment variable. Not needed with `dry_run=True`.
        dry_run: only build the folder, upload nothing.
        out_dir: where to build the folder. Default: a new temporary
            directory, removed after a successful or failed upload (kept on
            a dry run).
        api: an object with `HfApi`'s `create_repo` and `upload_folder`;
            default `HfApi(token=token)`.
        private: create the repository private. A repository that already
            exists keeps its visibility.
        head_path: local path of the linear-probe head weights, for a
            preset that declares a head.
        architecture_path: local path of the architecture file, for a
            preset that declares one (default: next to `weights_path`).

    Returns:
        The folder path on a dry run, otherwise the URL of the Hub commit.

    Raises:
        ValueError: if the preset has no measured metrics (run
            scripts/evaluate.py and record them in the preset), on a bad
            `repo_id`, a missing token, or any error of
            `prepare_repo_folder`.
    """

    check_publishable(preset)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"Invalid repo_id {repo_id!r}: {error}") from error
    if "/" not in repo_id:
        # Without a namespace the Hub picks the token owner's, which may not
        # be where the registry's `hub.repo_id` points.
        raise ValueError(f"repo_id must be 'ORG/NAME' or 'USER/NAME', got {repo_id!r}.")
    if not dry_run:
        token = token or os.environ.get(TOKEN_ENV)
        if not token:
            raise ValueError(
                "Uploading needs a Hugging Face token with write access: pass token=... or set "
                f"the {TOKEN_ENV} environment variable. Use dry_run=True to only build the folder."
            )
    temporary_root = None
    if out_dir is None:
        temporary_root = tempfile.mkdtemp(prefix="keras-directcopy-publish-")
        out_dir = os.path.join(temporary_root, preset["name"])
    try:
        folder = prepare_repo_folder(
            preset, weights_path, out_dir, head_path, repo_id=repo_id,
            architecture_path=architecture_path,
        )
        if dry_run:
            temporary_root = None  # the caller inspects the folder
            return folder
        api = api or HfApi(
            token=token, library_name="keras-directcopy", library_version=__version__
        )
        api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            commit_message=(
                f"Upload {preset['name']} (keras-directcopy {__version__})"
            ),
        )
        return getattr(commit, "commit_url", None) or str(commit)
    finally:
        if temporary_root is not None:
            shutil.rmtree(temporary_root, ignore_errors=True)


# -- Helpers -----------------------------------------------------------------


def _eval_results(metrics, hub_dataset, dataset_name, dataset_config=None):
    """The model-index entries (`EvalResult`) of one evaluation: kNN, and
    the linear probe when it was measured; `dataset_config` names another
    label set of the dataset (a tfds feature, e.g. `coarse_label`)."""
    knn, linear = metrics["knn"], metrics["linear_probe"]
    common = dict(
        task_type="image-classification",
        task_name="Image Classification (frozen features)",
        dataset_type=hub_dataset,
        dataset_name=dataset_name,
        dataset_config=dataset_config or None,
        dataset_split=knn.get("test_split"),
        metric_type="accuracy",
    )
    results = [
        EvalResult(
            **common,
            metric_name="kNN top-1 accuracy",
            metric_config="knn",
            metric_value=knn["top1"],
            metric_args=_without_none({"k": knn.get("k"), "temperature": knn.get("temperature")}),
        ),
    ]
    if linear:  # an additional evaluation may be kNN only (--nolinear_probe)
        results.append(EvalResult(
            **common,
            metric_name="Linear-probe top-1 accuracy",
            metric_config="linear_probe",
            metric_value=linear["top1"],
            metric_args=_without_none({
                "epochs": linear.get("epochs"),
                "batch_size": linear.get("batch_size"),
                "optimizer": linear.get("optimizer"),
                "learning_rate": linear.get("learning_rate"),
                "weight_decay": linear.get("weight_decay"),
            }),
        ))
    return results


def _add_keras_format(encoder, folder, config):
    """Makes `folder` also a model in Keras' folder format, and checks it.

    Keras writes the encoder (`keras.saving.save_model(..., zipped=False)`:
    its `config.json` and `model.weights.h5`); the weights file is moved into
    `folder` and its sha256 recorded as `config["keras_weights"]`, and
    Keras' serialized model is merged into `folder`'s `config.json` beside
    `config` (Keras' hf:// loader reads only the root `config.json`). Keras'
    `metadata.json` (its version and the time of saving) is left out, so
    that a folder rebuilt from the same files is the same; loading does not
    read it.

    Raises:
        ValueError: if Keras' serialization names a class other than the
            built-in layers the backbones are made of, or if the folder,
            loaded with `keras.saving.load_model(folder, safe_mode=True)`,
            gives other features than `encoder`.
    """
    import keras
    import numpy as np

    from keras_directcopy.models.backbones import check_architecture_config

    with tempfile.TemporaryDirectory(prefix=".keras-format-", dir=folder) as keras_folder:
        keras.saving.save_model(encoder, keras_folder, zipped=False)
        with open(os.path.join(keras_folder, CONFIG_FILENAME), encoding="utf-8") as file:
            keras_config = json.load(file)
        os.replace(
            os.path.join(keras_folder, KERAS_WEIGHTS_FILENAME), os.path.join(folder, KERAS_WEIGHTS_FILENAME)
        )
    # What keras.saving.load_model will deserialize: built-in layers only, as
    # for the architecture file load_pretrained reads.
    check_architecture_config(keras_config, origin=f"Keras' serialization of {config['name']}")
    config = {
        **config,
        "keras_weights": {
            "filename": KERAS_WEIGHTS_FILENAME,
            "sha256": sha256_file(os.path.join(folder, KERAS_WEIGHTS_FILENAME)),
        },
    }
    shared = sorted(set(config) & set(keras_config))
    if shared:
        raise ValueError(
            f"Keras' serialization of the encoder has keys {shared} that config.json already "
            "uses, so the two cannot share the file; rename those fields of "
            "keras_directcopy.presets.hub.repo_config."
        )
    _write_json(os.path.join(folder, CONFIG_FILENAME), {**config, **keras_config})

    reloaded = keras.saving.load_model(folder, safe_mode=True)
    probe = np.random.default_rng(0).uniform(0, 255, (2, *encoder.input_shape[1:])).astype("float32")
    if not np.array_equal(np.asarray(reloaded(probe)), np.asarray(encoder(probe))):
        raise ValueError(
            f"{config['name']} loaded with keras.saving.load_model from the Keras format written "
            f"by keras {keras.__version__} gives other features than the encoder it was written "
            "from; nothing was written. Report this with the preset and the Keras version."
        )


def _without_none(mapping):
    return {key: value for key, value in mapping.items() if value is not None}


def _check_plain_filename(filename):
    # Filenames come from the registry; one with a directory part could
    # write outside the folder, and one the folder's own files use would be
    # overwritten by them.
    if not filename or os.path.basename(filename) != filename or filename in (".", ".."):
        raise ValueError(f"Weights filename {filename!r} must be a plain file name.")
    reserved = (
        CONFIG_FILENAME, KERAS_WEIGHTS_FILENAME, METRICS_FILENAME, ADDITIONAL_METRICS_FILENAME,
        RUN_FILENAME, CARD_FILENAME,
    )
    if filename in reserved:
        raise ValueError(
            f"File name {filename!r} is one the repository folder uses for its own files "
            f"({', '.join(reserved)}); name the preset's file otherwise in its registry entry."
        )


def _check_replaceable(out_dir):
    if not os.path.lexists(out_dir):
        return
    if not os.path.isdir(out_dir) or os.path.islink(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a directory; choose another out_dir.")
    if not os.listdir(out_dir):
        return
    config_path = os.path.join(out_dir, CONFIG_FILENAME)
    try:
        with open(config_path) as file:
            ours = json.load(file).get("format") == CONFIG_FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise FileExistsError(
            f"{out_dir} exists and is not a repository folder written by keras_directcopy.presets.hub; "
            "choose another out_dir (nothing was changed)."
        )


def _stored_arrays(path):
    """`(number of arrays, number of values)` in a `.weights.h5` file."""
    import h5py

    counts = [0, 0]

    def visit(_, item):
        if isinstance(item, h5py.Dataset):
            counts[0] += 1
            counts[1] += int(item.size)

    with h5py.File(path, "r") as file:
        file.visititems(visit)
    return tuple(counts)


def _write_json(path, value):
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")
