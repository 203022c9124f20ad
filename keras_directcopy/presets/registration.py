"""Registering a finished pretraining run, and its metrics, as a zoo preset
(`scripts/register_preset.py`).

A run is recorded with the sha256 of its weights and of its architecture file
(`encoder.config.json`, the trained encoder as Keras serializes it), the stem
and input normalization it was built with (`backbone_kwargs`, as
`models.backbones.resolve_architecture_kwargs` resolves them), and its run
record. The run's encoder is loaded exactly as `load_pretrained` will load
the preset, so a run whose architecture is not the preset's is refused.
Metrics are those of `scripts/evaluate.py` on the registered preset; they
also render the model card. Beside them, `additional_metrics` records other
evaluations of the same preset (each a full `scripts/evaluate.py` record):
another label set of its images, another kNN k, or the random-init floor of
its architecture; the card shows them in a table. New weights void both.

A preset on a folder dataset (`catalog.FOLDER_DATASETS`: Imagenette) takes the
runs and metrics recorded under its name, which `scripts/pretrain.py` and
`scripts/evaluate.py` give a folder identified as it by its class folders
and image counts (`data.datasets.dataset_record`); a run or metrics on
another folder is refused, and the message says why.
"""

import glob
import json
import os
import shutil

from keras_directcopy.catalog import DATASET_DISPLAY_NAMES
from keras_directcopy.configs import PRESET_RECIPE_KEY, run_recipe
from keras_directcopy.models.backbones import ARCHITECTURE_FILENAME, build_backbone, resolve_architecture_kwargs
from keras_directcopy.presets import checks, zoo
from keras_directcopy.presets.model_card import build_model_card
from keras_directcopy.utils.files import atomic_save_all, atomic_write_text, sha256_file


def register(
    preset_name, zoo_dir, cards_dir, run_dir=None, metrics=None, bundle=False, additional_metrics=(),
    head=None,
):
    """Records a finished run and/or its metrics in the preset file
    `<zoo_dir>/<preset_name>.json`, after every check passed.

    Writes atomically, the preset file last: with `bundle`, the run's
    architecture and weights files into `<zoo_dir>/<preset_name>/`; with
    `metrics` or `additional_metrics`, the model card
    `<cards_dir>/<preset_name>.md`.

    Args:
        preset_name: the preset (its file name in `zoo_dir`), or its
            dataset alias.
        zoo_dir: the registry directory.
        cards_dir: where model cards go.
        run_dir: a finished `scripts/pretrain.py` output directory.
        metrics: a metrics JSON of `scripts/evaluate.py` on this preset.
        bundle: copy the weights into the registry (small encoders only).
        additional_metrics: metrics JSONs of other evaluations of this
            preset (see `register_additional_metrics`).
        head: the linear-probe head (`scripts/evaluate.py --save_head`)
            whose accuracy `metrics` records; see `register_head`.

    Returns:
        The updated preset dict.

    Raises:
        FileNotFoundError: no such preset file or alias.
        ValueError: see `register_run`, `register_metrics`,
            `register_additional_metrics` and `register_head`; nothing is
            written.
        utils.files.WriteFailed: a write failed (a full disk); every file
            is as it was.
    """
    preset_name = _preset_of(preset_name, zoo_dir)
    path = os.path.join(zoo_dir, f"{preset_name}.json")
    if not (run_dir or metrics or additional_metrics):
        raise ValueError("Pass --run_dir (weights and run record), --metrics and/or --additional_metrics.")
    with open(path) as file:
        preset = json.load(file)
    if head and not metrics:
        raise ValueError(
            "--head needs --metrics: the evaluation that trained the head and measured its accuracy "
            "(scripts/evaluate.py --preset=NAME --output=FILE --save_head=HEAD)."
        )
    run_files = register_run(preset, run_dir, bundle) if run_dir else None
    if metrics:
        register_metrics(preset, metrics)
    if head:
        register_head(preset, head)
    elif metrics or run_dir:
        preset["head"] = None  # a head belongs to the weights and metrics it was measured with
    if additional_metrics:
        register_additional_metrics(preset, additional_metrics)
    # Built from the updated entry, so it also checks the recorded additional
    # evaluations against new primary metrics.
    card = build_model_card(preset) if (metrics or additional_metrics) else None
    # Every check passed: write the files, the registry entry last, as one
    # (`atomic_save_all`): a write that fails (a full disk) leaves the
    # registry as it was, its entry and files of one version.
    writes = []
    if run_files and bundle:
        writes += [(os.path.join(zoo_dir, preset["name"], entry["filename"]), _copy_of(source))
                   for source, entry in run_files]
    if head and preset["weights"].get("bundled"):
        writes.append((os.path.join(zoo_dir, preset["name"], preset["head"]["filename"]), _copy_of(head)))
    if card:
        writes.append((os.path.join(cards_dir, f"{preset['name']}.md"), _text_writer(card)))
    writes.append((path, _text_writer(json.dumps(preset, indent=2) + "\n")))
    atomic_save_all(writes)
    return preset


def _copy_of(source):
    return lambda temporary: shutil.copyfile(source, temporary)


def _text_writer(text):
    return lambda temporary: atomic_write_text(temporary, text)


def _preset_of(name, zoo_dir):
    """The preset `name` names in `zoo_dir`: itself, or the preset whose
    dataset alias it is (`imagenette`).

    Raises:
        FileNotFoundError: on neither, listing the names and aliases there.
    """
    if os.path.exists(os.path.join(zoo_dir, f"{name}.json")):
        return name
    presets = {}
    for path in sorted(glob.glob(os.path.join(zoo_dir, "*.json"))):
        with open(path) as file:
            preset = json.load(file)
        presets[preset["name"]] = preset
    aliases = zoo._aliases(presets)  # the rule load_pretrained resolves aliases by
    if name in aliases:
        return aliases[name]
    raise FileNotFoundError(
        f"No preset file {os.path.join(zoo_dir, name + '.json')}, and {name!r} is no preset's alias. "
        f"Presets in {zoo_dir}: {', '.join(presets) or 'none'}; aliases: {', '.join(sorted(aliases)) or 'none'}."
    )


# Bundled weights ship in the package. 16 MB takes the half-width ResNet-18
# of the Imagenette preset (11 MB in float32), which must load offline from
# a fresh clone, and keeps full-width ResNet-18s (45 MB) and larger on the Hub.
MAX_BUNDLED_BYTES = 16 * 2**20


RUN_WEIGHTS_FILENAME = "encoder.weights.h5"  # as scripts/pretrain.py writes it


def register_run(preset, run_dir, bundle):
    """Sets the preset's weights and architecture sha256, resolved
    architecture arguments and run record from `run_dir`.

    Returns:
        `[(source path, preset entry)]`: the run's architecture and weights
        files, to bundle (copy) when `bundle` is true.

    Raises:
        ValueError: if the run is unfinished, trained something else (for a
            preset on a folder dataset such as Imagenette: a folder that
            `scripts/pretrain.py` did not identify as it), has no
            architecture file, or does not load as the preset's architecture.
    """
    with open(os.path.join(run_dir, "run.json")) as file:
        run = json.load(file)
    config = run["config"]
    if run["epochs_done"] < config["epochs"]:
        raise ValueError(
            f"{run_dir} has run {run['epochs_done']} of its {config['epochs']} epochs: finish it "
            "(re-run its command, which resumes) before registering it."
        )
    if checks.on_unidentified_folder(config["dataset"], preset):
        raise ValueError(
            f"{run_dir}: {checks.unidentified_folder_message(config['dataset'], preset, 'trained on')}. "
            f"Train on a complete copy of {DATASET_DISPLAY_NAMES[preset['dataset']]} "
            f"(scripts/pretrain.py --dataset=folder:ROOT records it as {preset['dataset']!r})."
        )
    expected = (preset["dataset"], preset["backbone"], preset.get("backbone_kwargs", {}).get("width_multiplier", 1.0))
    actual = (config["dataset"], config["backbone"], config["width_multiplier"])
    if expected != actual or config["predictor"] != preset["method"]:
        raise ValueError(
            f"{run_dir} trained {config['predictor']} on {actual} (dataset, backbone, width), but "
            f"preset {preset['name']!r} is {preset['method']} on {expected}."
        )
    check_one_recipe(run_dir, run)
    weights = os.path.join(run_dir, RUN_WEIGHTS_FILENAME)
    architecture = os.path.join(run_dir, ARCHITECTURE_FILENAME)
    if not os.path.exists(architecture):
        raise ValueError(
            f"{run_dir} has no {ARCHITECTURE_FILENAME}, the architecture scripts/pretrain.py "
            "writes next to the weights (runs from before it do not have one). Write it from the "
            "run's own encoder.keras, then register again:\n  python -c \"import keras; from "
            "keras_directcopy.models.backbones import write_architecture; write_architecture("
            f"keras.saving.load_model('{run_dir}/encoder.keras', safe_mode=True), "
            f"'{architecture}')\""
        )
    size = os.path.getsize(weights)
    if bundle and size > MAX_BUNDLED_BYTES:
        raise ValueError(
            f"{weights} is {size / 2**20:.1f} MB; only encoders up to {MAX_BUNDLED_BYTES / 2**20:g} MB "
            "are bundled. Publish it to the preset's Hub repository instead (scripts/publish.py)."
        )
    preset["weights"].update(sha256=sha256_file(weights), bundled=bool(bundle))
    preset["architecture"] = {"filename": ARCHITECTURE_FILENAME, "sha256": sha256_file(architecture)}
    # The stem and input normalization are recorded as resolved at the preset's
    # input shape, so the entry states them rather than leaving them to a rule.
    preset["backbone_kwargs"] = resolve_architecture_kwargs(
        preset["backbone"], preset["input_shape"], **(preset.get("backbone_kwargs") or {})
    )
    # Loaded as load_pretrained will load the registered preset: the
    # architecture file is checked (built-in layers only, and the backbone the
    # entry records at its input shape) and the weights must fit it.
    run_spec = {**preset, "weights": {**preset["weights"], "filename": RUN_WEIGHTS_FILENAME}}
    try:
        zoo.build_encoder(run_spec, ("dir", run_dir))
    except ValueError as error:
        raise ValueError(
            f"The encoder of {run_dir} is not the architecture preset {preset['name']!r} "
            f"records ({preset['backbone']}, {preset['backbone_kwargs']}, input "
            f"{preset['input_shape']}): {error}"
        ) from error
    # New weights void the metrics measured on the old ones.
    preset.update(
        epochs=run["epochs_done"], train_command=run["commands"][0], run=run, metrics=None,
        additional_metrics=[], **{PRESET_RECIPE_KEY: run_recipe(run)},
    )
    return [(architecture, preset["architecture"]), (weights, preset["weights"])]


def check_one_recipe(run_dir, run):
    """Refuses a run whose invocations may have trained different recipes.

    Invocations that recorded their recipe (`run.json`'s `recipe_recorded`)
    trained the same one, which `scripts/pretrain.py` checks when it resumes;
    their commands may differ in where the data and outputs were. Invocations
    from before that record are compared by their commands, which must be
    identical, to each other and to the first recorded one's.
    """
    recorded = run.get("recipe_recorded") or [False] * len(run["commands"])
    commands = {command for command, known in zip(run["commands"], recorded) if not known}
    if commands and any(recorded):
        commands.add(run["commands"][recorded.index(True)])
    if len(commands) > 1:
        raise ValueError(
            f"{run_dir} was resumed with different commands, by invocations that did not record "
            f"their recipe: {sorted(commands)}."
        )


def register_metrics(preset, metrics_path):
    """Sets the preset's metrics: `scripts/evaluate.py` on the trained
    encoder, on the labels of the dataset it was trained on.

    Raises:
        ValueError: if the file was measured on another preset, is a
            random-init floor or is on another label set (those are
            additional evaluations: the message says to pass it as one), or,
            for a preset on a folder dataset (Imagenette), on a folder that
            `scripts/evaluate.py` did not identify as it.
    """
    metrics = _read_metrics(metrics_path, preset)
    name = preset["name"]
    if metrics.get("random_init") is not None:
        raise ValueError(
            f"{metrics_path} is the random-init floor (seed {metrics['random_init'].get('seed')}) of "
            f"the architecture of {name!r}, not the trained encoder's accuracy: pass it as "
            f"--additional_metrics={metrics_path}, and as --metrics the evaluation of the trained "
            f"encoder (scripts/evaluate.py --preset={name})."
        )
    if checks.on_unidentified_folder(metrics.get("dataset"), preset):
        raise ValueError(
            f"{metrics_path}: {checks.unidentified_folder_message(metrics['dataset'], preset, 'measured on')}. "
            f"Pass as --metrics the record of {checks.evaluate_folder_command(preset)}."
        )
    if metrics.get("dataset") not in (None, preset["dataset"]):
        another_label_set = checks.is_label_set_of(metrics["dataset"], preset["dataset"])
        raise ValueError(
            f"{metrics_path} is on {metrics['dataset']!r}, not on the labels of "
            f"{preset['dataset']!r} that {name!r} is trained on"
            + (f": pass it as --additional_metrics={metrics_path}" if another_label_set else "")
            + f", and as --metrics the evaluation scripts/evaluate.py --preset={name} writes."
        )
    preset["metrics"] = metrics


HEAD_FILENAME = "linear_head.weights.h5"


def register_head(preset, head_path):
    """Sets the preset's classifier head: the linear-probe head whose
    accuracy the preset's metrics record, for `load_pretrained(...,
    include_top=True)`.

    Raises:
        ValueError: the metrics do not name this head (their
            `linear_probe.head_sha256`, which `scripts/evaluate.py
            --save_head` records), or it does not load as the linear head of
            the preset's encoder and classes.
    """
    from keras_directcopy.models.heads import build_linear_head

    recorded = ((preset.get("metrics") or {}).get("linear_probe") or {}).get("head_sha256")
    digest = sha256_file(head_path)
    if recorded != digest:
        raise ValueError(
            f"{head_path} (sha256 {digest}) is not the head the metrics measured "
            f"(head_sha256 {recorded}). Pass the --save_head file and the --output file of the same "
            f"scripts/evaluate.py --preset={preset['name']} run."
        )
    kwargs = resolve_architecture_kwargs(preset["backbone"], preset["input_shape"], **(preset.get("backbone_kwargs") or {}))
    features = int(build_backbone(preset["backbone"], tuple(preset["input_shape"]), **kwargs).output_shape[-1])
    try:
        build_linear_head(features, int(preset["num_classes"])).load_weights(head_path)
    except ValueError as error:
        raise ValueError(
            f"{head_path} is not a linear head for {preset['name']} ({features} features, "
            f"{preset['num_classes']} classes): {error}"
        ) from error
    preset["head"] = {"filename": HEAD_FILENAME, "sha256": digest}


def register_additional_metrics(preset, metrics_paths):
    """Adds other evaluations of the preset to `preset["additional_metrics"]`.

    Each file is a `scripts/evaluate.py` record on this preset (its
    `preset` field), on the splits of the preset's metrics, that differs
    from them by its label set (`--dataset=cifar100:coarse_label`), its kNN
    k (`--knn_k=20`) or by being the random-init floor of the architecture
    (`--random_init --seed=0`), or several of these
    (`checks.check_additional_evaluation`). A recorded evaluation that is the same
    one (label set, kNN k and temperature, random-init seed) is replaced in
    its place; the others are kept, and the new ones follow them.

    Raises:
        ValueError: if the preset has no metrics (after this registration),
            a file is of another preset, repeats the protocol of the
            preset's metrics, or two files are the same evaluation; naming
            the file.
    """
    if not preset.get("metrics"):
        raise ValueError(
            f"Preset {preset['name']!r} has no metrics (new weights void them): register the "
            "trained encoder's with --metrics, in the same command or first; the additional "
            "evaluations are set beside them."
        )
    added = {}
    for metrics_path in metrics_paths:
        evaluation = _read_metrics(metrics_path, preset)
        try:
            checks.check_additional_evaluation(evaluation, preset)
        except ValueError as error:
            raise ValueError(f"{metrics_path}: {error}") from error
        key = checks.evaluation_key(evaluation)
        if key in added:
            raise ValueError(
                f"{added[key][0]} and {metrics_path} are the same evaluation (dataset, kNN k and "
                "temperature, random-init seed); pass one of them."
            )
        added[key] = (metrics_path, evaluation)
    # A re-measured evaluation takes its predecessor's place (the card's rows
    # keep their order); new ones follow.
    recorded = [
        added.pop(checks.evaluation_key(evaluation), (None, evaluation))[1]
        for evaluation in preset.get("additional_metrics") or ()
    ]
    preset["additional_metrics"] = recorded + [evaluation for _, evaluation in added.values()]


def _read_metrics(metrics_path, preset):
    """A metrics JSON, checked to have been measured on `preset`."""
    with open(metrics_path) as file:
        metrics = json.load(file)
    if metrics.get("preset") != preset["name"]:
        # A floor of another architecture (or from before floors named their
        # preset) gets the command that measures this preset's.
        floor = metrics.get("random_init") is not None or "random initialization" in str(metrics.get("encoder"))
        seed = (metrics.get("random_init") or {}).get("seed", 0)
        raise ValueError(
            f"{metrics_path} was measured on {metrics.get('preset') or metrics.get('encoder')!r}, "
            f"not on the registered preset: run scripts/evaluate.py --preset={preset['name']}"
            + (f" --random_init --seed={seed}" if floor else "") + "."
        )
    return metrics
