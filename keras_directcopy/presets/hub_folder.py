"""The folder that is uploaded as a preset's Hugging Face Hub repository.

`prepare_repo_folder` writes it, checked, from the preset's registry entry
and its files. The folder holds what `keras_directcopy.load_pretrained`
reads, and nothing it would have to execute; it is also a model in Keras'
own saving format (`keras_format`), so plain Keras loads it with
`keras.saving.load_model("hf://ORG/NAME")` (built-in layers only,
`safe_mode=True`), without this package. Its files (`repo_layout` names
them):

* `model.weights.h5`: the encoder weights, once, the trained file itself
  (`preset["weights"]`, its sha256 the registry's), under the name Keras'
  folder format gives them, so `load_pretrained` and
  `keras.saving.load_model` read the same file;
* the linear-probe head's weights (`preset["head"]["filename"]`), when the
  preset declares one;
* the trained encoder's architecture (`preset["architecture"]["filename"]`,
  `encoder.config.json` as `training.save_encoder` writes it: Keras'
  serialization of the model, built-in layers only), when the preset
  declares one;
* `config.json`: two descriptions of the encoder side by side, with no key
  in common. This package's (`repo_config`: a backbone name of
  `BACKBONE_NAMES`, its keyword arguments and the input shape, the preset
  name, the package version, and the name and sha256 of every other file),
  which `load_pretrained` reads; and Keras' (`keras.saving.save_model(encoder,
  folder, zipped=False)`: the serialized model), which
  `keras.saving.load_model` reads;
* `metrics.json` (written by `scripts/evaluate.py`) and `run.json` (written
  by `scripts/pretrain.py`), as measured;
* `additional_metrics.json`, when the preset records other evaluations
  (`preset["additional_metrics"]`: the same encoder on another label set or
  with another kNN k, or the random-init floor of its architecture): the
  list of their `scripts/evaluate.py` records, as measured;
* `README.md`: the model card (`model_card.build_model_card`).
"""

import json
import math
import os
import shutil

from keras_directcopy.presets.checks import check_publishable
from keras_directcopy.presets.keras_format import add_keras_format
from keras_directcopy.presets.model_card import build_model_card
from keras_directcopy.presets.repo_layout import (
    ADDITIONAL_METRICS_FILENAME,
    CARD_FILENAME,
    CONFIG_FILENAME,
    CONFIG_FORMAT,
    CONFIG_FORMAT_VERSION,
    METRICS_FILENAME,
    RESERVED_FILENAMES,
    RUN_FILENAME,
    WEIGHTS_FILENAME,
    write_json,
)
from keras_directcopy.utils.files import atomic_save, atomic_write_text, sha256_file
from keras_directcopy.version import __version__


def prepare_repo_folder(
    preset, weights_path, out_dir, head_path=None, *, repo_id=None, architecture_path=None
):
    """Writes the folder that is uploaded as the preset's Hub repository.

    The folder holds the weights once, as `model.weights.h5` (a copy of
    `weights_path`, whatever the preset's `weights.filename`), the
    architecture file when the preset declares one, the head file when
    given, `config.json`, `metrics.json`, `additional_metrics.json` (the
    list `preset["additional_metrics"]`, when it has any), `run.json` (when
    the preset has a run record) and `README.md`. Before the folder is
    moved into place, the copied files are checked against the preset's
    sha256 and the encoder is loaded through `load_pretrained`, exactly as a
    user would load the published repository (which also checks that the
    architecture file is the backbone the preset records); Keras'
    serialization of that encoder is added to `config.json`
    (`keras_format.add_keras_format`), and the folder, loaded with
    `keras.saving.load_model(folder, safe_mode=True)`, must give the same
    features.

    The folder is built in a temporary directory next to `out_dir` and
    renamed into place (`utils.files.atomic_save`), so `out_dir` is the
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
    # (source path, registry entry, name in the folder)
    files = [(weights_path, preset["weights"], WEIGHTS_FILENAME)]
    if head_path is not None:
        files.append((head_path, preset["head"], preset["head"]["filename"]))
    if preset.get("architecture"):
        files.append((
            architecture_path or os.path.join(
                os.path.dirname(os.path.abspath(weights_path)), preset["architecture"]["filename"]
            ),
            preset["architecture"],
            preset["architecture"]["filename"],
        ))
    elif architecture_path is not None:
        raise ValueError(
            f"Preset {preset['name']!r} declares no architecture file, so architecture_path must "
            "not be given; record it in the preset first (scripts/register_preset.py)."
        )
    for path, entry, _ in files:
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
        for path, entry, filename in files:
            destination = os.path.join(folder, filename)
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
        write_json(os.path.join(folder, CONFIG_FILENAME), config)
        write_json(os.path.join(folder, METRICS_FILENAME), preset["metrics"])
        # A file of its own, so metrics.json stays the one record
        # scripts/evaluate.py writes, and the card's other numbers ship too.
        if preset.get("additional_metrics"):
            write_json(os.path.join(folder, ADDITIONAL_METRICS_FILENAME), preset["additional_metrics"])
        if preset.get("run"):
            write_json(os.path.join(folder, RUN_FILENAME), preset["run"])
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
        stored = _stored_arrays(os.path.join(folder, WEIGHTS_FILENAME))
        expected = (len(encoder.weights), sum(int(math.prod(w.shape)) for w in encoder.weights))
        if stored != expected:
            raise ValueError(
                f"{mismatch}: the file holds {stored[0]} arrays with {stored[1]} values, the "
                f"model has {expected[0]} with {expected[1]}."
            )
        add_keras_format(encoder, folder, config)

    atomic_save(out_dir, build)
    return out_dir


def repo_config(preset, *, repo_id=None):
    """The `config.json` of a preset's repository: its architecture as data.

    `load_pretrained` rebuilds the encoder from it with no code from the
    repository: it reads the architecture file `config["architecture"]`
    (built-in Keras layers only; sha256-checked) and checks that it is
    `build_backbone(config["backbone"], tuple(config["input_shape"]),
    **config["backbone_kwargs"])`; without one (older repositories) it
    builds that. Then it loads `config["weights"]["filename"]`
    (`model.weights.h5`, the file Keras' folder format reads too) after
    checking its sha256, the registry's.

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
        "class_names": preset.get("class_names"),
        "backbone": preset["backbone"],
        "backbone_kwargs": dict(preset.get("backbone_kwargs") or {}),
        "input_shape": list(preset["input_shape"]),
        "weights": {"filename": WEIGHTS_FILENAME, "sha256": preset["weights"]["sha256"]},
        "head": {"filename": head["filename"], "sha256": head["sha256"]} if head else None,
        "architecture": (
            {"filename": architecture["filename"], "sha256": architecture["sha256"]}
            if architecture else None
        ),
        "epochs": preset.get("epochs"),
        "reduced_scale": bool(preset.get("reduced_scale")),
        "repo_id": repo_id or preset["hub"]["repo_id"],
    }


def _check_plain_filename(filename):
    # Filenames come from the registry; one with a directory part could
    # write outside the folder, and one the folder's own files use would be
    # overwritten by them.
    if not filename or os.path.basename(filename) != filename or filename in (".", ".."):
        raise ValueError(f"Weights filename {filename!r} must be a plain file name.")
    if filename in RESERVED_FILENAMES:
        raise ValueError(
            f"File name {filename!r} is one the repository folder uses for its own files "
            f"({', '.join(RESERVED_FILENAMES)}); name the preset's file otherwise in its registry entry."
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
            f"{out_dir} exists and is not a repository folder written by keras_directcopy.presets.hub_folder; "
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
