"""The model card of a preset: the `README.md` of its Hub repository.

`build_model_card(preset)` renders the card with
`huggingface_hub.ModelCard.from_template` from `model_cards/template.md`
(installed as the package `keras_directcopy.model_card_templates`). The
template holds the card's wording; `_card_values` passes it values read from
the preset, its metrics (`metrics.json`, `additional_metrics.json`) or its
run record (`run.json`), or from the recipes of `keras_directcopy.configs`:
no number is typed in. The YAML `model-index` carries the kNN and
linear-probe accuracies of the preset's metrics, and those of the other
label sets of its additional evaluations (never a random-init floor's: it is
not this model's result).

A preset is carded only if it may be published (`checks.check_publishable`).
"""

import importlib.resources
import json

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from keras_directcopy.catalog import (
    DATASET_DISPLAY_NAMES,
    DIRECT_METHODS,
    HUB_DATASET_IDS,
    LABEL_SET_NAMES,
    METHOD_NAMES,
)
from keras_directcopy.configs import CONFIGS
from keras_directcopy.presets.checks import check_publishable, evaluation_changes, published_groups
from keras_directcopy.presets.repo_layout import (
    ADDITIONAL_METRICS_FILENAME,
    CONFIG_FILENAME,
    METRICS_FILENAME,
    RUN_FILENAME,
    WEIGHTS_FILENAME,
)

# The package (setup.cfg maps the top-level model_cards/ folder to it) and
# file of the model card template.
CARD_TEMPLATE_PACKAGE = "keras_directcopy.model_card_templates"
CARD_TEMPLATE_FILENAME = "template.md"
LICENSE = "apache-2.0"
PIPELINE_TAG = "image-feature-extraction"

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
# The papers (keys of `REFERENCES`) the card of each `preset["method"]`
# cites, in the order it lists them; the template describes each method.
METHOD_REFERENCES = {
    "directcopy": ("directcopy", "directpred", "byol"),
    "directpred": ("directpred", "byol"),
    "directset": ("directpred", "directcopy", "byol"),
    "byol": ("byol",),
    "simsiam": ("simsiam",),
}
# The training step of a run recorded before these config fields existed:
# the project's behaviour then (see benchmarks/method_comparison/compare_methods.py,
# LEGACY_STEP_FLAGS).
_UNRECORDED_STEP_FIELDS = {
    "lr_schedule": "warmup_cosine", "ema_schedule": "cosine", "target_init": "copy",
    "projector_bn_affine": True, "update_order": "before_predict",
}


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
    accuracies others published on the dataset (`preset["published_results"]`,
    see `check_published_results`), one table per published group with its
    protocol, beside this encoder's kNN at the group's k and its final-epoch
    linear probe,
    intended use and limitations (with the distance from the full-scale
    recipe when `preset["reduced_scale"]` is true), and how to load the
    encoder, with Keras alone (with a command that checks the weights'
    sha256, which Keras does not) or with this package.

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
            *_eval_results(preset["metrics"], hub_dataset, DATASET_DISPLAY_NAMES.get(dataset, dataset)),
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
    `train_command`, `notes`, `head`, its `architecture` as
    `architecture_file`), so every number in the card is one of theirs; the
    template words and formats them. Derived here:

    * `weights`: the repository's weights file, `{"filename":
      "model.weights.h5", "sha256"}` with the preset's sha256 (the folder
      ships the registered file under the name both loaders read; see
      `repo_layout`);
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
    * `published`: the groups of `preset["published_results"]` (see
      `check_published_results`; a single dict is one group), each as
      `{"source", "setting", "knn_k", "linear_protocol", "rows", "knn",
      "linear", "ours_knn", "ours_linear"}`: its rows with both
      `knn_top1` and `linear_top1` (None where not published), whether
      any row has each, this encoder's kNN record at the group's k (the
      headline's or another evaluation's that differs from it by k alone;
      None if not measured) and its linear-probe record (the headline's,
      trained on the final epoch's features); empty without them;
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
    method_name, reference_keys = METHOD_NAMES[preset["method"]], METHOD_REFERENCES[preset["method"]]
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
        "dataset_name": DATASET_DISPLAY_NAMES.get(preset["dataset"], preset["dataset"]),
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
        "full_scale_datasets": [DATASET_DISPLAY_NAMES.get(dataset, dataset) for dataset in FULL_SCALE_CONFIGS],
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
        "direct_method": preset["method"] in DIRECT_METHODS,
        "weights": {"filename": WEIGHTS_FILENAME, "sha256": preset["weights"]["sha256"]},
        "head": preset.get("head"),
        "architecture_file": preset.get("architecture"),
        "other_evaluations": other_evaluations,
        "floors": [
            {"seed": row["changes"]["random_init_seed"], "knn": row["knn"], "linear": row["linear"]}
            for row in other_evaluations if set(row["changes"]) == {"random_init_seed"}
        ],
        "published": _published_beside_ours(preset, metrics, other_evaluations),
        "files": {
            "config": CONFIG_FILENAME, "metrics": METRICS_FILENAME,
            "additional_metrics": ADDITIONAL_METRICS_FILENAME, "run": RUN_FILENAME,
        },
    }


def _published_beside_ours(preset, metrics, other_evaluations):
    """The published groups (see `_card_values`, `published`), each with
    this encoder's kNN record at its k, from the headline metrics or an
    evaluation that changes the k alone, and its linear-probe record."""
    groups = []
    for group in published_groups(preset):
        rows = [
            {"method": row["method"], "knn_top1": row.get("knn_top1"), "linear_top1": row.get("linear_top1")}
            for row in group["rows"]
        ]
        has_knn = any(row["knn_top1"] is not None for row in rows)
        has_linear = any(row["linear_top1"] is not None for row in rows)
        k = group.get("knn_k")
        candidates = [metrics["knn"]] + [
            row["knn"] for row in other_evaluations if row["changes"] == {"knn_k": k}
        ]
        groups.append({
            "source": group["source"],
            "setting": group["setting"],
            "knn_k": k if has_knn else None,
            "linear_protocol": group.get("linear_protocol") if has_linear else None,
            "rows": rows,
            "knn": has_knn,
            "linear": has_linear,
            "ours_knn": next((knn for knn in candidates if knn.get("k") == k), None) if has_knn else None,
            "ours_linear": metrics.get("linear_probe") if has_linear else None,
        })
    return groups


def _predictor_eps(preset, run, config):
    """The eps a direct predictor trained with, or None for other methods.

    The run config's eps when it set one; else the resolved value the run
    recorded (`run.json`'s `predictor_eps`); else, for a run from before that
    record, the preset's own `predictor_eps` entry (the method's default at
    the training commit). Never today's default: it may have changed since.

    Raises:
        ValueError: for a direct-predictor preset whose eps is recorded nowhere.
    """
    if preset["method"] not in DIRECT_METHODS:
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


def label_set_name(dataset):
    """The display name of a dataset or of one of its other label sets."""
    if dataset in LABEL_SET_NAMES:
        return LABEL_SET_NAMES[dataset]
    name, _, label = dataset.partition(":")
    base = DATASET_DISPLAY_NAMES.get(name, name)
    return f"{base} `{label}` labels" if label else base


def _without_none(mapping):
    return {key: value for key, value in mapping.items() if value is not None}
