"""Pretrained encoders: the preset registry and `load_pretrained`.

Each preset is one JSON file in the top-level `zoo/` directory (installed to
`<prefix>/share/keras-directcopy/zoo` by pip): the architecture, the training
recipe as the exact `scripts/pretrain.py` command, the Hugging Face Hub repo
and revision, the weights filename and its sha256, and the measured metrics.

Loading never executes code from a file: the architecture is one of this
package's backbones, rebuilt from the registry (or from a `config.json` whose
fields are checked against a fixed list), and only weights are read from
`.weights.h5` files, after their sha256 is verified.

Where weights come from, in order:

1. a local directory passed as `name` (holding `config.json` and the weights);
2. a file bundled in `zoo/` (small encoders only);
3. `huggingface_hub.hf_hub_download`, which honours its cache,
   `HF_HUB_OFFLINE`, `HF_HUB_CACHE` and `HF_ENDPOINT`.
"""

import copy
import glob
import json
import os
import sys

import keras

from keras_directcopy.io_utils import sha256_file
from keras_directcopy.backbones import BACKBONE_NAMES, CIFAR_STEM_MAX_SIZE, build_backbone

HF_PREFIX = "hf://"
CONFIG_FILENAME = "config.json"
# Architecture arguments a preset or a downloaded config.json may set.
ALLOWED_BACKBONE_KWARGS = ("width_multiplier", "stem", "normalization")
POOLINGS = ("avg", "max", None)


REGISTRY_ENV = "KERAS_DIRECTCOPY_ZOO"


def registry_dirs():
    """Directories searched for preset files, first match wins: those listed
    in `$KERAS_DIRECTCOPY_ZOO` (os.pathsep-separated, for private registries),
    the source tree's `zoo/`, then the copy pip installs under
    `<prefix>/share/keras-directcopy/zoo`."""
    extra = [d for d in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if d]
    source_tree = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")
    installed = os.path.join(sys.prefix, "share", "keras-directcopy", "zoo")
    return [d for d in (*extra, source_tree, installed) if os.path.isdir(d)]


def _registry():
    presets = {}
    for directory in registry_dirs():
        for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
            with open(path) as file:
                preset = json.load(file)
            preset["_registry_dir"] = directory
            presets.setdefault(preset["name"], preset)
    return presets


def is_registry_name(name):
    """True when `name` refers to the registry (a preset name or dataset
    alias, known or not); False for a local folder or an `hf://` id."""
    return not (os.path.isdir(os.path.expanduser(str(name))) or str(name).startswith(HF_PREFIX))


def _aliases(presets):
    return {alias: name for name, preset in presets.items() for alias in preset.get("aliases", ())}


def list_pretrained():
    """All presets, one summary dict each.

    Returns:
        A list of dicts with `name`, `aliases`, `dataset`, `backbone`,
        `method`, `epochs`, `metrics` (kNN and linear-probe top-1, or None),
        `hub_repo` and `weights_available`.
    """
    summaries = []
    for name, preset in sorted(_registry().items()):
        metrics = preset.get("metrics") or {}
        summaries.append({
            "name": name,
            "aliases": list(preset.get("aliases", [])),
            "dataset": preset["dataset"],
            "backbone": preset["backbone"],
            "method": preset["method"],
            "epochs": preset.get("epochs"),
            "metrics": {
                "knn_top1": (metrics.get("knn") or {}).get("top1"),
                "linear_probe_top1": (metrics.get("linear_probe") or {}).get("top1"),
            } if metrics else None,
            "hub_repo": preset["hub"]["repo_id"],
            "weights_available": bool(preset["weights"].get("sha256")),
        })
    return summaries


def get_preset(name):
    """The registry entry of a preset name or dataset alias (a copy).

    Raises:
        ValueError: on an unknown name, listing the valid names and aliases.
    """
    presets = _registry()
    resolved = _aliases(presets).get(name, name)
    if resolved not in presets:
        valid = sorted(presets) + sorted(_aliases(presets))
        raise ValueError(
            f"Unknown pretrained model {name!r}. Valid names: {', '.join(valid)}; or a local "
            "directory, or an hf://ORG/REPO id."
        )
    return copy.deepcopy(presets[resolved])


def load_pretrained(name, include_top=False, pooling="avg", input_shape=None, weights=True):
    """A pretrained encoder as a functional Keras model, keras.applications-style.

    The model takes raw RGB images with values 0..255 (preprocessing is
    inside) of shape `(N, H, W, 3)`.

    Args:
        name: a preset name (e.g. `"directcopy_resnet20_cifar10"`), a dataset
            alias (`"cifar10"`, `"cifar100"`, `"stl10"`, `"imagenet"`), a local
            directory holding `config.json` and the weights, or
            `"hf://ORG/REPO"` (optionally `"hf://ORG/REPO@REVISION"`).
        include_top: add the preset's trained linear classifier (logits);
            only for presets that ship a linear-probe head.
        pooling: `"avg"` (default) or `"max"` global pooling to `(N, D)`, or
            None for the last feature map `(N, h, w, D)`. Ignored with
            `include_top=True`, which needs average pooling.
        input_shape: `(H, W, 3)` to build for (default: the preset's). The
            stem and input normalization stay those of the preset.
        weights: False gives the architecture with random initialization.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: unknown name, unpublished weights (the message gives the
            training command), sha256 mismatch, bad arguments.
        FileNotFoundError: weights not available offline.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of 'avg', 'max', None; got {pooling!r}.")
    spec, source = _load_spec(name, need_weights=weights)
    default_shape = tuple(spec["input_shape"])
    if include_top:
        if input_shape is not None and tuple(input_shape) != default_shape:
            raise ValueError(
                f"include_top=True needs the preset's input_shape {default_shape}; got "
                f"{tuple(input_shape)}. Use include_top=False to build for another size."
            )
        if not spec.get("head"):
            raise ValueError(
                f"{spec['name']!r} ships no trained classifier head, so include_top=True is not "
                "available. Use include_top=False and train a head with "
                "keras_directcopy.evaluation.build_classifier or scripts/evaluate.py --save_head."
            )
    encoder = build_backbone(
        spec["backbone"], tuple(input_shape or default_shape), **_backbone_kwargs(spec)
    )
    if weights:
        encoder.load_weights(_verified_file(spec, spec["weights"], source))
    if include_top:
        from keras_directcopy.evaluation import build_linear_head

        head = build_linear_head(int(encoder.output_shape[-1]), int(spec["num_classes"]))
        if weights:
            head.load_weights(_verified_file(spec, spec["head"], source))
        return keras.Model(encoder.input, head(encoder.output), name=f"{spec['name']}_classifier")
    if pooling == "avg":
        return encoder
    feature_map = encoder.get_layer("avg_pool").input
    if pooling == "max":
        feature_map = keras.layers.GlobalMaxPooling2D(name="max_pool")(feature_map)
    return keras.Model(encoder.input, feature_map, name=encoder.name)


def resolve_weights(preset, source=None):
    """Local path of a preset's weights file, sha256-verified. See `load_pretrained`."""
    return _verified_file(preset, preset["weights"], source or _registry_source(preset))


def _load_spec(name, need_weights=True):
    """`(spec, source)`: the architecture and file entries, and where files come from."""
    if os.path.isdir(os.path.expanduser(str(name))):
        directory = os.path.expanduser(str(name))
        return _config_from_file(os.path.join(directory, CONFIG_FILENAME), directory), ("dir", directory)
    if str(name).startswith(HF_PREFIX):
        repo_id, _, revision = str(name)[len(HF_PREFIX):].partition("@")
        hub = {"repo_id": repo_id, "revision": revision or None}
        config_path = _hub_download(hub, CONFIG_FILENAME, what=f"{name} ({CONFIG_FILENAME})")
        spec = _config_from_file(config_path, name)
        return spec, ("hub", hub)
    preset = get_preset(name)
    if need_weights and not preset["weights"].get("sha256"):
        raise ValueError(
            f"Pretrained model {preset['name']!r} has no published weights yet. Train them "
            f"with:\n  {preset['train_command']}\nthen evaluate with scripts/evaluate.py and "
            "record the weights' sha256 and metrics in "
            f"zoo/{preset['name']}.json; or load your own with load_pretrained('<output_dir>')."
        )
    return preset, _registry_source(preset)


def _registry_source(preset):
    if preset["weights"].get("bundled"):
        return ("dir", os.path.join(preset["_registry_dir"], preset["name"]))
    return ("hub", preset["hub"])


def _config_from_file(path, origin):
    """Reads and checks a `config.json` (only known architectures and fields)."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{origin} has no {CONFIG_FILENAME}. A pretrained-model folder holds "
            f"{CONFIG_FILENAME} and the weights file, as scripts/publish.py writes them."
        )
    with open(path) as file:
        config = json.load(file)
    if config.get("backbone") not in BACKBONE_NAMES:
        raise ValueError(
            f"{path}: unknown backbone {config.get('backbone')!r}; valid: {', '.join(BACKBONE_NAMES)}."
        )
    unknown = set(config.get("backbone_kwargs", {})) - set(ALLOWED_BACKBONE_KWARGS)
    if unknown:
        raise ValueError(f"{path}: unsupported backbone arguments {sorted(unknown)}.")
    for key in ("name", "input_shape", "weights"):
        if key not in config:
            raise ValueError(f"{path}: missing field {key!r}.")
    config.setdefault("num_classes", None)
    config.setdefault("head", None)
    return config


def _backbone_kwargs(spec):
    """Backbone arguments, with the stem and normalization pinned to the
    preset's input size, so another `input_shape` keeps the trained ones."""
    kwargs = dict(spec.get("backbone_kwargs", {}))
    small = max(spec["input_shape"][:2]) <= CIFAR_STEM_MAX_SIZE
    if spec["backbone"] != "resnet20":
        kwargs.setdefault("stem", "cifar" if small else "imagenet")
    kwargs.setdefault("normalization", "cifar10" if small else "imagenet")
    return kwargs


def _verified_file(spec, entry, source):
    """Local path of `entry["filename"]` from `source`, after its sha256 check."""
    kind, location = source
    filename = entry["filename"]
    if kind == "dir":
        path = os.path.join(location, filename)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} does not exist ({spec['name']}).")
        origin = path
    else:
        path = _hub_download(location, filename, what=f"{spec['name']} ({filename})")
        origin = f"hf://{location['repo_id']}/{filename} (cached at {path})"
    expected = entry.get("sha256")
    actual = sha256_file(path)
    if not expected or actual != expected:
        raise ValueError(
            f"sha256 mismatch for {filename} of {spec['name']}, from {origin}: expected "
            f"{expected}, got {actual}. The file is corrupted or not the published one; "
            "nothing was loaded. Delete it (for the Hub cache: `hf cache delete`) and retry."
        )
    return path


def _hub_download(hub, filename, what):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return hf_hub_download(hub["repo_id"], filename, revision=hub.get("revision"))
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(
            f"{what} is not in the Hugging Face cache ({os.environ.get('HF_HUB_CACHE', 'default location')}) "
            "and the Hub cannot be reached (offline or HF_HUB_OFFLINE=1). Download it once "
            "on a connected machine, or pass a local directory to load_pretrained."
        ) from error
