"""Whether a preset's records may be published, and what its other evaluations are.

A preset is published (`upload.publish`), carded (`model_card`) and
registered (`registration`) only with records that describe it: its own
measured kNN and linear-probe metrics on its own dataset (not a random-init
floor's, not another preset's), the sha256 of every file it ships, a known
method, well-formed published results, and additional evaluations that each
differ from the primary one by a label set of the same images, a kNN k or
temperature, or a random-init seed, measured on the same splits.

Every check raises `ValueError` with a message that names what is wrong and
the command that fixes it, and otherwise returns None. The helpers that
describe evaluations (`evaluation_changes`, `evaluation_key`,
`is_label_set_of`) and records on image folders (`on_unidentified_folder`
and its messages) are shared with the card and the registration.
"""

from keras_directcopy.catalog import (
    DATASET_DISPLAY_NAMES,
    FOLDER_DATASETS,
    FOLDER_PREFIX,
    METHOD_NAMES,
)

# The fields of a group of `preset["published_results"]` (see
# `check_published_results`): the sentences each must be, and, for the
# accuracies a row may hold, the field of the group that states their
# protocol.
PUBLISHED_FIELDS = {
    "source": "where the numbers are published, with a link",
    "setting": "how they were obtained: backbone, image size, epochs, batch size, hardware, and "
               "whether each number is the best over epochs or the final epoch's",
    "linear_protocol": "how the published linear classifier was trained and read: on frozen features "
                       "after pretraining (offline) or alongside it (online), with or without "
                       "augmentation, and which epoch's accuracy is reported",
}
PUBLISHED_ACCURACIES = {"knn_top1": "knn_k", "linear_top1": "linear_protocol"}
_PUBLISHED_GROUP_KEYS = ("source", "setting", "knn_k", "linear_protocol", "rows")
_PUBLISHED_ROW = '{"method": NAME, "knn_top1": FRACTION and/or "linear_top1": FRACTION}'


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
    if preset["method"] not in METHOD_NAMES:
        raise ValueError(
            f"Preset {name!r} has unknown method {preset['method']!r}; valid methods: "
            f"{', '.join(METHOD_NAMES)}."
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
    wanted = DATASET_DISPLAY_NAMES[preset["dataset"]]
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
            f"copy of {DATASET_DISPLAY_NAMES[preset['dataset']]} (recorded as {preset['dataset']!r})")


def is_label_set_of(dataset, preset_dataset):
    """Whether `dataset` is another label set of `preset_dataset`'s images
    (`"cifar100:coarse_label"` of `"cifar100"`), as `scripts/evaluate.py
    --dataset=NAME:LABEL` evaluates."""
    name, _, label = str(dataset).partition(":")
    return name == preset_dataset and bool(label)


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


def published_groups(preset):
    """The groups of `preset["published_results"]` as a list: the entry
    itself, or a one-group list for a single group given as a dict (the form
    version 0.2.0 read: `{"source", "setting", "knn_k", "rows"}`); empty
    without the entry.
    Call `check_published_results` first: this reads, it does not check."""
    published = preset.get("published_results")
    if published is None:
        return []
    return [published] if isinstance(published, dict) else list(published)


def check_published_results(preset):
    """Checks `preset["published_results"]`, if any: accuracies that others
    published on the preset's dataset, which the card shows beside this
    encoder's.

    The entry is a list of groups, one per published source and protocol:
    `{"source", "setting", "knn_k", "linear_protocol", "rows": [{"method",
    "knn_top1", "linear_top1"}, ...]}`. `source` says where the numbers are
    published (with an http(s) link), `setting` how they were obtained
    (backbone, image size, epochs, batch size, hardware, and whether each is
    the best over epochs or the final epoch's). Each row names a method and
    holds its weighted-kNN top-1 (`knn_top1`, at the group's `knn_k`), its
    linear-probe top-1 (`linear_top1`, measured as the group's
    `linear_protocol` says), or both, each a fraction in [0, 1], as
    published. A group has `knn_k` exactly when one of its rows has
    `knn_top1`, and `linear_protocol` exactly when one has `linear_top1`;
    no other keys. A single group given as a dict (the form of 0.2.0, kNN
    only) is read as a list of that one group.

    Raises:
        ValueError: naming the preset, the group (its index), the field and
            the fix.
    """
    published = preset.get("published_results")
    if published is None:
        return
    where = f"\"published_results\" of preset {preset['name']!r}"
    if not isinstance(published, (list, dict)) or not published:
        raise ValueError(
            f"{where} must be a non-empty list of groups, each {{\"source\", \"setting\", \"knn_k\" "
            f"and/or \"linear_protocol\", \"rows\": [{_PUBLISHED_ROW}, ...]}}; got {published!r}. "
            "Remove the key if there is nothing to show."
        )
    groups = published_groups(preset)
    for index, group in enumerate(groups):
        _check_published_group(group, f"Group {index} of {where}")


def _check_published_group(group, where):
    """Checks one group of `published_results` (see `check_published_results`)."""
    if not isinstance(group, dict):
        raise ValueError(f"{where} must be a dict with source, setting, knn_k and/or linear_protocol, and rows; got {group!r}.")
    unknown = sorted(set(group) - set(_PUBLISHED_GROUP_KEYS))
    if unknown:
        raise ValueError(
            f"{where} has unknown fields {unknown}; a group holds only {list(_PUBLISHED_GROUP_KEYS)}. "
            "Put the protocol in 'setting' or 'linear_protocol', or start another group for another source."
        )
    for key in ("source", "setting"):
        if not isinstance(group.get(key), str) or not group[key].strip():
            raise ValueError(f"{where} needs {key!r}: a sentence saying {PUBLISHED_FIELDS[key]}.")
    if "http://" not in group["source"] and "https://" not in group["source"]:
        raise ValueError(
            f"{where}: 'source' names no link ({group['source']!r}); add the http(s) address where the "
            "numbers are published, e.g. \"lightly's benchmarks ([Benchmarks](https://...))\"."
        )
    rows = group.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{where} needs 'rows': a non-empty list of {_PUBLISHED_ROW}.")
    for index, row in enumerate(rows):
        accuracies = [key for key in PUBLISHED_ACCURACIES if isinstance(row, dict) and key in row]
        if not (isinstance(row, dict) and isinstance(row.get("method"), str) and row["method"].strip()
                and accuracies and set(row) <= {"method", *PUBLISHED_ACCURACIES}
                and all(_is_fraction(row[key]) for key in accuracies)):
            raise ValueError(
                f"Row {index} of {where[0].lower() + where[1:]}, {row!r}, must be "
                f"{_PUBLISHED_ROW}: kNN top-1 at the group's knn_k, linear-probe top-1 by its "
                "linear_protocol, each a fraction in [0, 1] (0.887 for 88.7%), and no other keys."
            )
    k = group.get("knn_k")
    has_knn = any("knn_top1" in row for row in rows)
    if has_knn and not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise ValueError(f"{where} needs 'knn_k', the positive integer k of its published kNN accuracies (knn_top1).")
    if not has_knn and "knn_k" in group:
        raise ValueError(f"{where} has 'knn_k' but no row with knn_top1; remove knn_k or add the kNN accuracies.")
    protocol = group.get("linear_protocol")
    has_linear = any("linear_top1" in row for row in rows)
    if has_linear and not (isinstance(protocol, str) and protocol.strip()):
        raise ValueError(
            f"{where} needs 'linear_protocol' for its linear_top1 rows: a sentence saying "
            f"{PUBLISHED_FIELDS['linear_protocol']}."
        )
    if not has_linear and "linear_protocol" in group:
        raise ValueError(
            f"{where} has 'linear_protocol' but no row with linear_top1; remove linear_protocol or add "
            "the linear-probe accuracies."
        )


def _is_fraction(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


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
