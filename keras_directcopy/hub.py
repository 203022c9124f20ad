"""Publishing pretrained encoders to the Hugging Face Hub.

A published repository holds what `keras_directcopy.load_pretrained` reads,
and nothing it would have to execute:

* the encoder weights (`preset["weights"]["filename"]`, a `.weights.h5`
  file), and the linear-probe head's when the preset declares one;
* the trained encoder's architecture (`preset["architecture"]["filename"]`,
  `encoder.config.json` as `training.save_encoder` writes it: Keras'
  serialization of the model, built-in layers only), when the preset
  declares one;
* `config.json`: the architecture as data (a backbone name of
  `BACKBONE_NAMES`, its keyword arguments and the input shape), the preset
  name, the package version, and the sha256 of every file above;
* `metrics.json` (written by `scripts/evaluate.py`) and `run.json` (written
  by `scripts/pretrain.py`), as measured;
* `README.md`: the model card. Its YAML `model-index` carries the kNN and
  linear-probe accuracies of `metrics.json`.

Every number in the card is read from the preset, its metrics or its run
record, or from the recipes of `keras_directcopy.configs`; none is typed in.

Typical use, through `scripts/publish.py`:

```python
from keras_directcopy import hub, zoo

preset = zoo.get_preset("directcopy_resnet20_cifar10")
folder = hub.publish(
    preset, "runs/directcopy_resnet20_cifar10/encoder.weights.h5",
    "keras-directcopy/directcopy_resnet20_cifar10", dry_run=True,
)
```
"""

import json
import math
import os
import shutil
import tempfile

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from keras_directcopy.configs import CONFIGS
from keras_directcopy.io_utils import sha256_file
from keras_directcopy.predictors import DEFAULT_EPS

CONFIG_FILENAME = "config.json"
METRICS_FILENAME = "metrics.json"
RUN_FILENAME = "run.json"
CARD_FILENAME = "README.md"
# Marks a config.json as this package's architecture description, which is
# not the Keras saving format's config.json of the same name.
CONFIG_FORMAT = "keras_directcopy.encoder"
CONFIG_FORMAT_VERSION = 1
TOKEN_ENV = "HF_TOKEN"
LICENSE = "apache-2.0"
PIPELINE_TAG = "image-feature-extraction"

# Hub dataset ids of the tfds datasets the presets are trained on; other
# datasets are named by their tfds name.
HUB_DATASET_IDS = {
    "cifar10": "uoft-cs/cifar10",
    "cifar100": "uoft-cs/cifar100",
    "imagenet2012": "ILSVRC/imagenet-1k",
}
DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "stl10": "STL-10",
    "imagenet2012": "ImageNet-1k (ILSVRC 2012)",
}
# The full-scale recipe of each dataset in `keras_directcopy.configs`: the
# setting of the DirectPred/DirectCopy reference code (ResNet-18 on the small
# datasets) and BYOL/SimSiam (ResNet-50 on ImageNet). A preset flagged
# `reduced_scale` is compared with it in its card.
FULL_SCALE_CONFIGS = {
    "cifar10": "cifar10_resnet18",
    "cifar100": "cifar100_resnet18",
    "stl10": "stl10_resnet18",
    "imagenet2012": "imagenet_resnet50",
}

REFERENCES = {
    "directcopy": (
        "Xiang Wang, Xinlei Chen, Simon S. Du and Yuandong Tian. *Towards Demystifying "
        "Representation Learning with Non-contrastive Self-supervision.* 2021. "
        "[arXiv:2110.04947](https://arxiv.org/abs/2110.04947)"
    ),
    "directpred": (
        "Yuandong Tian, Xinlei Chen and Surya Ganguli. *Understanding Self-supervised Learning "
        "Dynamics without Contrastive Pairs.* ICML 2021. "
        "[arXiv:2102.06810](https://arxiv.org/abs/2102.06810)"
    ),
    "byol": (
        "Jean-Bastien Grill et al. *Bootstrap Your Own Latent: A New Approach to Self-Supervised "
        "Learning.* NeurIPS 2020. [arXiv:2006.07733](https://arxiv.org/abs/2006.07733)"
    ),
    "simsiam": (
        "Xinlei Chen and Kaiming He. *Exploring Simple Siamese Representation Learning.* "
        "CVPR 2021. [arXiv:2011.10566](https://arxiv.org/abs/2011.10566)"
    ),
}

_BYOL_SETUP = (
    "Two augmented views of each unlabelled image go through an online encoder, projector "
    "and predictor, which regress the projection of the other view by a target network "
    "(BYOL's symmetric normalized MSE loss)."
)
# Display name, description and references of each `preset["method"]`.
METHODS = {
    "directcopy": (
        "DirectCopy",
        _BYOL_SETUP + " The target is an exponential moving average of the online network. "
        "The linear predictor is not trained: at every update it is set to a normalized copy "
        "of the running correlation matrix `F` of the projector outputs, "
        "`W_p = F / ||F|| + eps I`, with no gradient and no eigendecomposition. DirectCopy "
        "simplifies DirectPred, which sets `W_p` from the eigendecomposition of `F`.",
        ("directcopy", "directpred", "byol"),
    ),
    "directpred": (
        "DirectPred",
        _BYOL_SETUP + " The target is an exponential moving average of the online network. "
        "The linear predictor is not trained: it is set from the eigendecomposition of the "
        "running correlation matrix of the projector outputs, `F = U diag(s) U^T`, as "
        "`W_p = U diag(sqrt(s / max s) + eps) U^T`.",
        ("directpred", "byol"),
    ),
    "directset": (
        "DirectSet",
        _BYOL_SETUP + " The target is an exponential moving average of the online network. "
        "The linear predictor is not trained: it is set from the eigendecomposition of the "
        "running correlation matrix of the projector outputs, `F = U diag(s) U^T`, as "
        "`W_p = U diag((s / max s)^alpha + eps) U^T` (DirectPred is `alpha = 0.5`).",
        ("directpred", "directcopy", "byol"),
    ),
    "byol": (
        "BYOL",
        _BYOL_SETUP + " The target is an exponential moving average of the online network, "
        "and the predictor is a trained MLP.",
        ("byol",),
    ),
    "simsiam": (
        "SimSiam",
        _BYOL_SETUP + " There is no moving-average target: the target branch is the online "
        "network itself under stop-gradient, and the predictor is a trained MLP.",
        ("simsiam",),
    ),
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
            metrics, if its metrics belong to another preset or dataset, if
            it records no sha256 for its weights (or head), or if its method
            is unknown. The message names the fix.
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
    if metrics.get("dataset") not in (None, preset["dataset"]):
        raise ValueError(
            f"The metrics recorded in preset {name!r} are on {metrics['dataset']!r}, but the "
            f"preset is trained on {preset['dataset']!r}. Evaluate on {preset['dataset']!r} "
            "with scripts/evaluate.py."
        )
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


def build_model_card(preset, *, repo_id=None):
    """The `README.md` model card of a preset.

    The YAML metadata (built with `huggingface_hub.ModelCardData`) names the
    library, license, tags, dataset and a `model-index` holding the kNN and
    linear-probe top-1 accuracies of `preset["metrics"]`, exactly as
    recorded. The body describes the method and its papers, the training
    command and recipe, hardware and wall time, both evaluation protocols
    and results, intended use and limitations (with the distance from the
    full-scale recipe when `preset["reduced_scale"]` is true), and how to
    load the encoder.

    Args:
        preset: a preset dict of the `zoo/` registry, with measured metrics.
        repo_id: the Hub repository the card is published in (default
            `preset["hub"]["repo_id"]`); used in the `hf://` loading example.

    Returns:
        The card as a string: a YAML front matter block and Markdown.
        `huggingface_hub.ModelCard(text).data` parses it back.

    Raises:
        ValueError: if the preset cannot be published (see
            `check_publishable`).
    """
    check_publishable(preset)
    repo_id = repo_id or preset["hub"]["repo_id"]
    metrics = preset["metrics"]
    dataset = preset["dataset"]
    hub_dataset = HUB_DATASET_IDS.get(dataset, dataset)
    dataset_name = DATASET_NAMES.get(dataset, dataset)
    card_data = ModelCardData(
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
        eval_results=_eval_results(metrics, hub_dataset, dataset_name),
    )
    body = "\n\n".join(
        section for section in (
            _summary_section(preset, dataset_name),
            _method_section(preset),
            _training_section(preset, dataset_name),
            _evaluation_section(preset, dataset_name),
            _use_section(preset, dataset_name),
            _loading_section(preset, repo_id),
            _files_section(preset),
            _references_section(preset),
        ) if section
    )
    # Parsing the assembled text (rather than joining strings only) checks
    # that the front matter is valid card metadata with a readable model-index.
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")
    return str(card)


def prepare_repo_folder(
    preset, weights_path, out_dir, head_path=None, *, repo_id=None, architecture_path=None
):
    """Writes the folder that is uploaded as the preset's Hub repository.

    The folder holds the weights file (named `preset["weights"]["filename"]`),
    the architecture file when the preset declares one, the head file when
    given, `config.json`, `metrics.json`, `run.json` (when the preset has a
    run record) and `README.md`. Before the folder is moved into place, the
    copied files are checked against the preset's sha256 and the encoder is
    loaded through `load_pretrained`, exactly as a user would load the
    published repository (which also checks that the architecture file is
    the backbone the preset records).

    The folder is built in a temporary directory next to `out_dir` and
    renamed into place, so `out_dir` is either absent, the previous folder,
    or the complete new one; never a half-written folder. An existing
    `out_dir` is replaced only if it is empty or a folder this function
    wrote.

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
            architecture file is refused or is not the recorded backbone, or
            a head or architecture file is missing or unexpected.
        FileNotFoundError: if `weights_path`, `head_path` or the
            architecture file does not exist.
        FileExistsError: if `out_dir` exists and is not a folder this
            function wrote.
    """
    # Imported here: zoo builds Keras models, which the card alone never needs.
    from keras_directcopy import zoo

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

    parent, base = os.path.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{base}.partial-", dir=parent)
    try:
        for path, entry in files:
            destination = os.path.join(staging, entry["filename"])
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
        _write_json(os.path.join(staging, CONFIG_FILENAME), repo_config(preset, repo_id=repo_id))
        _write_json(os.path.join(staging, METRICS_FILENAME), preset["metrics"])
        if preset.get("run"):
            _write_json(os.path.join(staging, RUN_FILENAME), preset["run"])
        with open(os.path.join(staging, CARD_FILENAME), "w", encoding="utf-8") as file:
            file.write(build_model_card(preset, repo_id=repo_id))
        mismatch = (
            f"The weights {weights_path} do not load into the architecture preset "
            f"{preset['name']!r} declares ({preset['backbone']}, {preset.get('backbone_kwargs')}, "
            f"input {preset['input_shape']})"
        )
        try:
            encoder = zoo.load_pretrained(staging)
        except ValueError as error:
            raise ValueError(f"{mismatch}: {error}") from error
        # Keras skips, with a warning only, saved layers the model lacks; so the
        # file must also hold exactly as many arrays and values as the model.
        stored = _stored_arrays(os.path.join(staging, preset["weights"]["filename"]))
        expected = (len(encoder.weights), sum(int(math.prod(w.shape)) for w in encoder.weights))
        if stored != expected:
            raise ValueError(
                f"{mismatch}: the file holds {stored[0]} arrays with {stored[1]} values, the "
                f"model has {expected[0]} with {expected[1]}."
            )
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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
    import keras_directcopy

    head, architecture = preset.get("head"), preset.get("architecture")
    return {
        "format": CONFIG_FORMAT,
        "format_version": CONFIG_FORMAT_VERSION,
        "name": preset["name"],
        "library": "keras-directcopy",
        "library_version": keras_directcopy.__version__,
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
    import keras_directcopy

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
            token=token, library_name="keras-directcopy", library_version=keras_directcopy.__version__
        )
        api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            commit_message=(
                f"Upload {preset['name']} (keras-directcopy {keras_directcopy.__version__})"
            ),
        )
        return getattr(commit, "commit_url", None) or str(commit)
    finally:
        if temporary_root is not None:
            shutil.rmtree(temporary_root, ignore_errors=True)


# -- Card sections ----------------------------------------------------------


def _eval_results(metrics, hub_dataset, dataset_name):
    knn, linear = metrics["knn"], metrics["linear_probe"]
    common = dict(
        task_type="image-classification",
        task_name="Image Classification (frozen features)",
        dataset_type=hub_dataset,
        dataset_name=dataset_name,
        dataset_split=knn.get("test_split"),
        metric_type="accuracy",
    )
    return [
        EvalResult(
            **common,
            metric_name="kNN top-1 accuracy",
            metric_config="knn",
            metric_value=knn["top1"],
            metric_args=_without_none({"k": knn.get("k"), "temperature": knn.get("temperature")}),
        ),
        EvalResult(
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
        ),
    ]


def _summary_section(preset, dataset_name):
    method_name = METHODS[preset["method"]][0]
    metrics = preset["metrics"]
    lines = [
        f"# {preset['name']}",
        "",
        f"A {_architecture(preset)} image encoder pretrained with {method_name} on "
        f"{dataset_name} images, without labels, with the "
        "keras-directcopy package. It maps RGB images of "
        f"shape `{tuple(preset['input_shape'])}` with values 0..255 (the preprocessing is inside "
        "the model) to globally average-pooled features.",
        "",
        f"Frozen-feature top-1 accuracy on {dataset_name} `{metrics['knn'].get('test_split')}`: "
        f"**{_accuracy(metrics['knn']['top1'])}** (weighted kNN), "
        f"**{_accuracy(metrics['linear_probe']['top1'])}** (linear probe).",
    ]
    if preset.get("reduced_scale"):
        lines += ["", "> " + _reduced_scale_sentence(preset)]
    return "\n".join(lines)


def _method_section(preset):
    name, description, references = METHODS[preset["method"]]
    cited = "; ".join(_short_citation(key) for key in references)
    return f"## Method: {name}\n\n{description}\n\nSee {cited} (full references below)."


def _commits_text(run):
    """" at commit `X`", or, for a run resumed across commits, each commit
    with the invocations (1-based) that ran it; "" without a record. An
    invocation made before commits were recorded per invocation reads
    `unknown`."""
    if not run:
        return ""
    commits = [commit or "unknown" for commit in run.get("git_commits") or [run.get("git_commit")]]
    if len(set(commits)) == 1:
        return "" if commits[0] == "unknown" else f" at commit `{commits[0]}`"
    invocations = {}
    for number, commit in enumerate(commits, start=1):
        invocations.setdefault(commit, []).append(str(number))
    parts = [f"`{commit}` (invocation{'s' if len(numbers) > 1 else ''} {', '.join(numbers)})"
             for commit, numbers in invocations.items()]
    return f", interrupted and resumed across commits {'; '.join(parts)}"


def _training_section(preset, dataset_name):
    run = preset.get("run")
    config = (run or {}).get("config") or {}
    lines = [
        "## Training",
        "",
        "Command, run from the root of the keras-directcopy repository" + _commits_text(run) + ":",
        "",
        "```bash",
        preset["train_command"],
        "```",
    ]
    if not run:
        lines += [
            "",
            f"Epochs: {_value(preset.get('epochs'))}. No run record (`run.json`) is attached to "
            "this preset, so the full configuration, hardware and wall time of the training "
            "are not stated here.",
        ]
        return "\n".join(lines)
    commands = run.get("commands") or []
    if commands and preset["train_command"] not in commands:
        lines += [
            "",
            f"The run itself was started as `{commands[0]}`, before some of the flags above "
            "existed; their values were then the defaults, so the command above repeats it "
            "with the current code.",
        ]
    epochs = preset.get("epochs") if preset.get("epochs") is not None else config.get("epochs")
    step = {**_UNRECORDED_STEP_FIELDS, **config}
    if step["lr_schedule"] == "constant":
        learning_rate = f"learning rate {_value(config.get('lr'))}, constant"
    else:
        learning_rate = (
            f"learning rate {_value(config.get('lr'))} after {_value(config.get('warmup_epochs'))} "
            "warmup epochs, then cosine decay to 0"
        )
    lines += [
        "",
        f"- Data: {_value(run.get('pretrain_examples'))} unlabelled {dataset_name} images, "
        f"two augmented views each (the BYOL augmentations for this image size).",
        f"- Schedule: {_value(epochs)} epoch(s), {_value(run.get('steps'))} steps of global batch "
        f"{_value(config.get('batch_size'))} ({_value(run.get('steps_per_epoch'))} steps per epoch).",
        f"- Optimizer: SGD with momentum {_value(config.get('momentum'))}; {learning_rate}; "
        f"{_value(config.get('weight_decay_mode'))} weight decay {_value(config.get('weight_decay'))}.",
        f"- Projector BatchNorm: {'with' if step['projector_bn_affine'] else 'without'} learned "
        "scale and offset.",
    ]
    if config.get("ema"):
        momentum = (
            "rising to 1 on a cosine over training" if step["ema_schedule"] == "cosine" else "constant"
        )
        start = (
            "a copy of the online network" if step["target_init"] == "copy"
            else "its own random initialization"
        )
        lines.append(
            f"- Target: exponential moving average, momentum {_value(config['ema'])} {momentum}; "
            f"it starts from {start}."
        )
    elif "ema" in config:
        lines.append("- Target: the online network under stop-gradient (no moving average).")
    if preset["method"] in _DIRECT_METHODS:
        eps = config.get("eps")
        eps_text = _value(eps) if eps is not None else f"{DEFAULT_EPS[preset['method']]} (the method's default)"
        order = (
            "after the optimizer step, so each batch is predicted with the previous step's `W_p`"
            if step["update_order"] == "after_step"
            else "before the batch is predicted"
        )
        lines.append(
            f"- Predictor: running-correlation weight rho {_value(config.get('rho'))}, eps {eps_text}"
            + (f", normalization `{config.get('normalization')}`" if preset["method"] == "directcopy" else "")
            + (f", alpha {_value(config.get('alpha'))}" if preset["method"] == "directset" else "")
            + f", set every {_value(config.get('update_every'))} step(s), {order}."
        )
    hardware = run.get("hardware") or {}
    lines += [
        f"- Hardware: {_hardware(hardware)}; `tf.distribute` strategy "
        f"`{_value(run.get('strategy'))}` with {_value(run.get('num_replicas'))} replica(s).",
        f"- Wall time: {_duration(run.get('wall_time_s'))}"
        + (f", over {run['invocations']} invocations (interrupted and resumed)"
           if run.get("invocations", 1) > 1 else "")
        + (f"; CPU time {run['cpu_time_s'] / 3600:.2f} CPU-hours (process CPU time, all threads)"
           if run.get("cpu_time_s") is not None else "")
        + ".",
        "",
        "<details><summary>Full configuration (from run.json)</summary>",
        "",
        "| field | value |",
        "|---|---|",
        # JSON spelling, so an unset (None) field reads as `null`, as in run.json.
        *(f"| `{key}` | `{json.dumps(value)}` |" for key, value in config.items()),
        "",
        "</details>",
    ]
    return "\n".join(lines)


def _evaluation_section(preset, dataset_name):
    metrics = preset["metrics"]
    knn, linear = metrics["knn"], metrics["linear_probe"]
    train_split, test_split = knn.get("train_split"), knn.get("test_split")
    lines = [
        "## Evaluation",
        "",
        f"The encoder is frozen and runs once, in inference mode, over the unaugmented "
        f"{dataset_name} `{train_split}` ({_value(knn.get('train_examples'))} images) and "
        f"`{test_split}` ({_value(knn.get('test_examples'))} images) splits; both classifiers "
        f"use these features and the accuracy is measured on `{test_split}`.",
        "",
        "| protocol | top-1 accuracy | value in `metrics.json` |",
        "|---|---|---|",
        f"| weighted kNN | {_accuracy(knn['top1'])} | `{knn['top1']!r}` |",
        f"| linear probe | {_accuracy(linear['top1'])} (train: {_accuracy(linear.get('train_top1'))}) "
        f"| `{linear['top1']!r}` |",
        "",
        f"- **kNN**: features l2-normalized; each test image takes the k = {_value(knn.get('k'))} "
        f"training images of highest cosine similarity, each voting for its class with weight "
        f"`exp(similarity / {_value(knn.get('temperature'))})` (the InstDisc protocol of Wu et "
        "al. 2018, as in lightly and solo-learn).",
        f"- **Linear probe**: one linear layer on the frozen features (feature normalization: "
        f"`{_value(linear.get('feature_normalization'))}`), trained on `{train_split}` for "
        f"{_value(linear.get('epochs'))} epochs with {_value(linear.get('optimizer'))}, learning "
        f"rate {_value(linear.get('learning_rate'))}, weight decay "
        f"{_value(linear.get('weight_decay'))}, batch size {_value(linear.get('batch_size'))}."
        + (
            " The accuracy is that of the head after the final epoch; the test split is not "
            "used for model selection."
            if linear.get("final_epoch") is True else ""
        ),
    ]
    if "[" in str(test_split) or "[" in str(train_split):
        lines.append(
            "- The splits above are slices of the full splits, so these accuracies are not "
            "comparable with full-split results."
        )
    lines.append(
        "- Measured by `scripts/evaluate.py`"
        + (f" at commit `{metrics['git_commit']}`" if metrics.get("git_commit") else "")
        + (f" on {_hardware(metrics['hardware'])}" if metrics.get("hardware") else "")
        + (f", in {_duration(metrics['wall_time_s'])}" if metrics.get("wall_time_s") is not None else "")
        + "."
    )
    return "\n".join(lines)


def _use_section(preset, dataset_name):
    lines = [
        "## Intended use and limitations",
        "",
        f"- Intended use: a frozen feature extractor, or an initialization for fine-tuning, for "
        f"images like {dataset_name}'s at `{tuple(preset['input_shape'])}`; research on "
        "non-contrastive self-supervised learning.",
        f"- The features are learned from {dataset_name} alone and carry its content and "
        "biases; their quality on other image domains or sizes has not been measured.",
        "- The reported accuracies are frozen-feature probes, not the accuracy of a trained "
        "classifier on new data. The encoder is not meant for decisions about people or for "
        "safety-critical use.",
    ]
    if preset.get("notes"):
        lines.append(f"- Notes: {preset['notes']}")
    if preset.get("reduced_scale"):
        lines += ["", _reduced_scale_sentence(preset), _reduced_scale_table(preset)]
    return "\n".join(lines)


def _loading_section(preset, repo_id):
    lines = [
        "## How to load",
        "",
        "With the keras-directcopy package installed:",
        "",
        "```python",
        "import keras_directcopy",
        "",
        f'encoder = keras_directcopy.load_pretrained("{preset["name"]}")',
        "# or from this Hub repository (pin a commit with \"hf://ORG/NAME@<commit>\"):",
        f'encoder = keras_directcopy.load_pretrained("hf://{repo_id}")',
        f"features = encoder(images)  # (N, {', '.join(str(d) for d in preset['input_shape'])}) "
        "RGB values 0..255 -> (N, D)",
    ]
    if preset.get("head"):
        lines += [
            "",
            "# with the trained linear-probe head, giving class logits:",
            f'classifier = keras_directcopy.load_pretrained("{preset["name"]}", include_top=True)',
        ]
    lines += [
        "```",
        "",
        _loading_text(preset),
    ]
    return "\n".join(lines)


def _loading_text(preset):
    architecture = preset.get("architecture")
    if architecture:
        text = (
            f"`load_pretrained` checks the sha256 of `{architecture['filename']}` (the trained "
            "encoder's architecture as Keras serializes it) and of the weights file, builds the "
            "encoder from that file (only built-in Keras layers are accepted, and it must be "
            "the package backbone `config.json` names; no code from this repository runs) and "
            "loads the weights into it"
        )
    else:
        text = (
            "`load_pretrained` rebuilds the architecture from `config.json` (a backbone of the "
            "package, never code from this repository), checks the sha256 of the weights file and "
            "loads it"
        )
    return text + (
        "; it uses the `huggingface_hub` cache, so it also works offline once the files "
        "are cached. `pooling=None` gives the last feature map and `input_shape=` another input "
        "size (with the trained stem and input normalization). `config.json` here describes "
        "this package's architecture and is not the Keras saving format, so "
        "`keras.saving.load_model(\"hf://...\")` does not apply."
    )


def _files_section(preset):
    rows = [f"| `{preset['weights']['filename']}` | encoder weights, sha256 `{preset['weights']['sha256']}` |"]
    if preset.get("head"):
        rows.append(
            f"| `{preset['head']['filename']}` | linear-probe head weights, sha256 "
            f"`{preset['head']['sha256']}` |"
        )
    if preset.get("architecture"):
        rows.append(
            f"| `{preset['architecture']['filename']}` | encoder architecture "
            "(`keras.saving.serialize_keras_object`), sha256 "
            f"`{preset['architecture']['sha256']}` |"
        )
    rows.append(
        f"| `{CONFIG_FILENAME}` | backbone, its arguments and input shape, preset name and the "
        "sha256 of each file |"
    )
    rows.append(f"| `{METRICS_FILENAME}` | evaluation results and protocol (`scripts/evaluate.py`) |")
    if preset.get("run"):
        rows.append(f"| `{RUN_FILENAME}` | training configuration, hardware and wall time (`scripts/pretrain.py`) |")
    return "\n".join(["## Files", "", "| file | content |", "|---|---|", *rows])


def _references_section(preset):
    keys = METHODS[preset["method"]][2]
    return "\n".join(["## References", "", *(f"- {REFERENCES[key]}" for key in keys)])


def _reduced_scale_sentence(preset):
    config = ((preset.get("run") or {}).get("config")) or {}
    epochs = preset.get("epochs") if preset.get("epochs") is not None else config.get("epochs")
    sentence = (
        f"**Reduced-scale training.** This encoder was trained at reduced scale "
        f"({_architecture(preset)}; {_value(epochs)} epoch(s)), not with the full recipe"
    )
    reference_name = FULL_SCALE_CONFIGS.get(preset["dataset"])
    if reference_name in CONFIGS:
        reference = CONFIGS[reference_name]
        sentence += (
            f" (`--config={reference_name}`, which follows the papers' reference setting: "
            f"{reference.backbone}, width multiplier {_value(reference.width_multiplier)}, "
            f"{_value(reference.epochs)} epochs, batch {_value(reference.batch_size)})"
        )
    return sentence + (
        ". Its accuracies are neither comparable with those of the full recipe nor a "
        "reproduction of published results."
    )


def _reduced_scale_table(preset):
    reference_name = FULL_SCALE_CONFIGS.get(preset["dataset"])
    if reference_name not in CONFIGS:
        return ""
    reference = CONFIGS[reference_name]
    config = ((preset.get("run") or {}).get("config")) or {}
    this = {
        "backbone": preset["backbone"],
        "width_multiplier": (preset.get("backbone_kwargs") or {}).get(
            "width_multiplier", config.get("width_multiplier")
        ),
        "epochs": preset.get("epochs") if preset.get("epochs") is not None else config.get("epochs"),
        "batch_size": config.get("batch_size"),
    }
    # Shown only when the run changed them: fewer steps or smaller images
    # are also a reduction.
    for key in ("steps_per_epoch", "image_size"):
        if config.get(key) is not None:
            this[key] = config[key]
    rows = [
        f"| `{key}` | {_value(value)} | {_value(getattr(reference, key))} |"
        for key, value in this.items()
    ]
    return "\n" + "\n".join([f"| | this encoder | `{reference_name}` |", "|---|---|---|", *rows])


# -- Helpers -----------------------------------------------------------------


def _short_citation(key):
    return {
        "directcopy": "Wang, Chen, Du & Tian 2021 (DirectCopy)",
        "directpred": "Tian, Chen & Ganguli, ICML 2021 (DirectPred)",
        "byol": "Grill et al., NeurIPS 2020 (BYOL)",
        "simsiam": "Chen & He, CVPR 2021 (SimSiam)",
    }[key]


def _architecture(preset):
    """E.g. `resnet18 (width multiplier 1.0, stem imagenet, normalization cifar10)`."""
    kwargs = preset.get("backbone_kwargs") or {}
    parts = [
        f"{'width multiplier' if key == 'width_multiplier' else key} {_value(value)}"
        for key, value in sorted(kwargs.items(), key=lambda item: item[0] != "width_multiplier")
    ]
    return preset["backbone"] + (f" ({', '.join(parts)})" if parts else "")


def _accuracy(value):
    """A 0..1 accuracy as a percentage; other values as they are."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return f"{100 * value:.2f} %"
    return _value(value)


def _duration(seconds):
    if seconds is None:
        return "not recorded"
    return f"{_value(seconds)} s ({seconds / 3600:.2f} h)"


def _hardware(hardware):
    gpus = hardware.get("gpus")
    parts = [
        f"{_value(hardware.get('processor'))} CPU, {_value(hardware.get('cpu_count'))} cores",
        f"GPUs: {', '.join(map(str, gpus))}" if gpus else "no GPU",
        f"{_value(hardware.get('platform'))}",
        f"TensorFlow {_value(hardware.get('tensorflow'))}, Keras {_value(hardware.get('keras'))}, "
        f"Python {_value(hardware.get('python'))}",
    ]
    return "; ".join(parts)


def _value(value):
    """A recorded value as text, exactly (floats keep their full repr)."""
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _without_none(mapping):
    return {key: value for key, value in mapping.items() if value is not None}


def _check_plain_filename(filename):
    # Filenames come from the registry; one with a directory part could
    # write outside the folder.
    if not filename or os.path.basename(filename) != filename or filename in (".", ".."):
        raise ValueError(f"Weights filename {filename!r} must be a plain file name.")


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
            f"{out_dir} exists and is not a repository folder written by keras_directcopy.hub; "
            "choose another out_dir (nothing was changed)."
        )


def _move_into_place(staging, out_dir):
    """Renames `staging` to `out_dir`, replacing a previous folder there."""
    _check_replaceable(out_dir)
    if not os.path.lexists(out_dir):
        os.rename(staging, out_dir)
        return
    previous = staging + ".previous"
    os.rename(out_dir, previous)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(previous, out_dir)
        raise
    shutil.rmtree(previous, ignore_errors=True)


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
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2)
        file.write("\n")
