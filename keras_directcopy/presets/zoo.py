"""Pretrained encoders: the preset registry and `load_pretrained`.

Each preset is one JSON file in the top-level `zoo/` directory (installed
with the package as its `keras_directcopy.zoo_data` package data, read with
`importlib.resources`): the architecture, the training
recipe as the exact `scripts/pretrain.py` command, the Hugging Face Hub repo
and revision, the weights filename and its sha256, and the measured metrics.

What loads is what trained: a preset ships the trained encoder's own
architecture (`encoder.config.json`, written by `training.save_encoder`,
sha256-verified like the weights) and `load_pretrained` deserializes it, then
loads the weights into it. Loading never executes code from a file: the
architecture file may name only the built-in Keras layers the backbones are
made of (`backbones.read_architecture`), and it must equal the backbone the
preset records, as `build_backbone` builds it with the preset's
`backbone_kwargs` at its `input_shape` (so the registry describes what it
ships, and another `input_shape` can be built). Presets and folders from
before the architecture file are rebuilt with `build_backbone` and the
stem and input normalization `backbones.resolve_architecture_kwargs` gives at the
trained input shape, the rule training uses. Only weights are read from
`.weights.h5` files, after their sha256 is verified.

Where files come from, in order:

1. a local directory passed as `name` (holding `config.json`, the weights
   and the architecture file);
2. a folder bundled in `zoo/` (small encoders only);
3. `huggingface_hub.hf_hub_download`, which honours its cache,
   `HF_HUB_OFFLINE`, `HF_HUB_CACHE` and `HF_ENDPOINT`.

A folder or Hub repository names its weights file in its `config.json`
(`model.weights.h5` since `repo_layout.CONFIG_FORMAT_VERSION` 3, the one
file Keras' folder format reads too; older repositories' own name); for a
registry preset published on the Hub, that name is read from the
repository's `config.json` and the sha256 from the registry.
"""

import copy
import glob
import importlib.resources
import json
import os

import keras
import numpy as np

from keras_directcopy.models.backbones import (
    BACKBONE_NAMES,
    build_backbone,
    check_input_shape,
    read_architecture,
    resolve_architecture_kwargs,
)
from keras_directcopy.presets.repo_layout import CONFIG_FILENAME
from keras_directcopy.utils.backend import is_tensorflow_backend
from keras_directcopy.utils.files import sha256_file

HF_PREFIX = "hf://"
# Architecture arguments a preset or a downloaded config.json may set.
ALLOWED_BACKBONE_KWARGS = ("width_multiplier", "stem", "input_normalization")
POOLINGS = ("avg", "max", None)


REGISTRY_ENV = "KERAS_DIRECTCOPY_ZOO"
# The package data that holds the registry (setup.cfg maps it to zoo/).
PACKAGE_DATA = "keras_directcopy.zoo_data"


def registry_dirs():
    """Directories searched for preset files, first match wins: those listed
    in `$KERAS_DIRECTCOPY_ZOO` (os.pathsep-separated, for private registries),
    then the package's own registry: the top-level `zoo/`, which setup.cfg
    installs as the package `keras_directcopy.zoo_data` (in an editable
    install, the checkout's `zoo/` itself)."""
    extra = [d for d in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if d]
    return [d for d in (*extra, *_package_registry_dirs()) if os.path.isdir(d)]


def _package_registry_dirs():
    """The directory of the `keras_directcopy.zoo_data` package data, as a
    file-system path: Keras and h5py open bundled weights by path, which a
    pip-installed (unzipped) package always has."""
    try:
        return [str(importlib.resources.files(PACKAGE_DATA))]
    except ModuleNotFoundError:
        # The source tree on sys.path without `pip install`: no registry.
        return []


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


def load_pretrained(name, include_top=False, pooling="avg", input_shape=None, weights=True,
                    classifier_activation="softmax"):
    """A pretrained encoder as a functional Keras model, keras.applications-style.

    The model takes raw RGB images with values 0..255 (preprocessing is
    inside) of shape `(N, H, W, 3)`.

    Args:
        name: a preset name (e.g. `"directcopy_resnet20_cifar10"`), a dataset
            alias (`"cifar10"`, `"cifar100"`, `"stl10"`, `"imagenet"`), a local
            directory holding `config.json` and the weights, or
            `"hf://ORG/REPO"` (optionally `"hf://ORG/REPO@REVISION"`).
        include_top: True to add the preset's trained linear classifier,
            the linear-probe head its card's accuracy was measured with
            (feature standardization, then one `Dense` layer), giving
            `(N, num_classes)` scores; its class names are
            `class_names(name)`.
        pooling: `"avg"` (default) or `"max"` global pooling to `(N, D)`, or
            None for the last feature map `(N, h, w, D)`. Ignored with
            `include_top=True`, which needs average pooling.
        input_shape: `(H, W, 3)` to build for (default: the preset's); H and
            W positive integers, or None (any size) for resnet18/34/50. The
            stem, the input normalization and the weights stay the trained
            ones: the encoder is loaded exactly at the trained shape, then its
            weights are copied into the same architecture built for this one.
        weights: True for the pretrained weights; None (or False) gives
            the architecture with random initialization (rebuilt from the
            preset's recorded arguments, no file read); a path to a
            `.weights.h5` file loads those weights into the model being
            built (the encoder, or with `include_top=True` the classifier,
            as `model.save_weights` wrote them).
        classifier_activation: with `include_top=True`, the activation of
            the scores, as in `keras.applications`: `"softmax"` (default)
            for probabilities, None or `"linear"` for logits.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: unknown name, unpublished weights (the message gives the
            training command), sha256 mismatch, an architecture file that
            names a class other than the backbones' built-in Keras layers or
            differs from the preset's backbone, bad arguments (the message
            names the argument, the value and what is valid).
        FileNotFoundError: weights not available offline.
    """
    weights_file = _check_arguments(include_top, pooling, input_shape, weights, classifier_activation)
    pretrained = weights is True
    spec, source = _load_spec(name, need_weights=pretrained)
    trained_shape = check_input_shape(spec["input_shape"])
    if include_top:
        if input_shape is not None and check_input_shape(input_shape) != trained_shape:
            raise ValueError(
                f"include_top=True needs the preset's input_shape {trained_shape}; got "
                f"{tuple(input_shape)}. Use include_top=False to build for another size."
            )
        if pretrained and not spec.get("head"):
            raise ValueError(
                f"{spec['name']!r} ships no trained classifier head, so include_top=True is not "
                "available. Use include_top=False and train a head with "
                "keras_directcopy.evaluation.build_classifier or scripts/evaluate.py --save_head."
            )
        if not spec.get("num_classes"):
            raise ValueError(
                f"{spec['name']!r} records no number of classes, so include_top=True cannot build "
                "its classifier. Use include_top=False."
            )
    encoder = build_encoder(spec, source, input_shape=input_shape, weights=pretrained)
    if include_top:
        model = _with_head(encoder, spec, source if pretrained else None, classifier_activation)
    elif pooling == "avg":
        model = encoder
    else:
        feature_map = encoder.get_layer("avg_pool").input
        if pooling == "max":
            feature_map = keras.layers.GlobalMaxPooling2D(name="max_pool")(feature_map)
        model = keras.Model(encoder.input, feature_map, name=encoder.name)
    if weights_file:
        _load_weights_file(model, weights_file)
    return model


def _with_head(encoder, spec, source, activation):
    """The encoder with the preset's linear head (loaded, sha256-verified,
    when `source` is given) and the classifier activation."""
    from keras_directcopy.models.heads import build_linear_head

    head = build_linear_head(int(encoder.output_shape[-1]), int(spec["num_classes"]))
    if source is not None:
        head.load_weights(_verified_file(spec, spec["head"], source))
    scores = head(encoder.output)
    if activation not in (None, "linear"):
        scores = keras.layers.Activation(activation, name="predictions")(scores)
    return keras.Model(encoder.input, scores, name=f"{spec['name']}_classifier")


def _load_weights_file(model, path):
    """Loads a user's `.weights.h5` file into `model` (weights only: nothing
    in the file is executed), with a message naming the file on a mismatch."""
    try:
        model.load_weights(path)
    except ValueError as error:
        raise ValueError(
            f"The weights file {path} does not fit this model ({model.name}, "
            f"{len(model.weights)} weights): {error} Pass the file `model.save_weights` wrote for "
            "the same preset with the same include_top."
        ) from error


def build_encoder(spec, source=None, input_shape=None, weights=True):
    """The encoder a preset (or a repository's `config.json`) describes.

    With `weights` and a declared `spec["architecture"]`, the architecture
    file is read (`backbones.read_architecture`: built-in Keras layers only,
    nothing executed) and checked to be exactly what `build_backbone` builds
    from `spec["backbone"]`, its `backbone_kwargs` and `input_shape`;
    otherwise (older presets, `weights=False`) the encoder is built that
    way, with the stem and input normalization `resolve_architecture_kwargs` gives
    at the trained input shape, as training does.

    Args:
        spec: a preset dict, or a checked `config.json`.
        source: `("dir", folder)` or `("hub", {"repo_id", "revision"})`;
            default: where the registry says the preset's files are (on
            the Hub, with the weights under the repository's name for
            them).
        input_shape: `(H, W, 3)` to build for; default (or equal):
            `spec["input_shape"]`, and the loaded model is returned as it is.
            Another shape gets the same architecture (trained stem and
            input normalization) with the loaded weights copied in.
        weights: load the weights (sha256-verified).

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: a file's sha256 differs from the spec's, the
            architecture file is refused or differs from the recorded
            backbone, or the weights do not fit.
        FileNotFoundError: a file is missing (or not cached, offline).
    """
    if source is None:
        spec, source = _registry_files(spec, need_weights=weights)
    trained_shape = check_input_shape(spec["input_shape"])
    kwargs = _architecture_kwargs(spec)
    if weights and spec.get("architecture"):
        encoder = _shipped_architecture(spec, source, kwargs)
    else:
        encoder = build_backbone(spec["backbone"], trained_shape, **kwargs)
    if weights:
        encoder.load_weights(_verified_file(spec, spec["weights"], source))
    if input_shape is None or check_input_shape(input_shape) == trained_shape:
        return encoder
    # The shipped functional graph cannot be re-input at another size (resnet20's
    # shortcut reshapes to fixed sizes), so the same architecture is built for
    # the new size and the loaded weights are copied into it.
    resized = build_backbone(
        spec["backbone"], check_input_shape(input_shape),
        **{**kwargs, "synchronized_bn": _synchronized_bn(encoder)},
    )
    _copy_weights(encoder, resized)
    return resized


def resolve_file(preset, entry, source=None):
    """Local path of one of a preset's files, sha256-verified.

    Args:
        preset: a preset dict of the registry.
        entry: its `weights`, `head` or `architecture` entry
            (`{"filename", "sha256"}`).
        source: where files come from (default: the registry's location of
            the preset's files; see `load_pretrained`).
    """
    return _verified_file(preset, entry, source or _registry_source(preset))


def resolve_weights(preset, source=None):
    """Local path of a preset's weights file, sha256-verified. See `load_pretrained`.

    Unlike `resolve_file(preset, preset["weights"])`, finds the weights of a
    preset published on the Hub under the name its repository gives them
    (`model.weights.h5`, or an older repository's own name).
    """
    if source is None:
        preset, source = _registry_files(preset)
    return _verified_file(preset, preset["weights"], source)


def _check_arguments(include_top, pooling, input_shape, weights, classifier_activation="softmax"):
    """Checks `load_pretrained`'s arguments before anything is read.

    Returns:
        The expanded path of a weights file passed as `weights`, else None.
    """
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top must be True or False; got {include_top!r}.")
    weights_file = None
    if isinstance(weights, (str, os.PathLike)):
        weights_file = os.path.expanduser(os.fspath(weights))
        if not weights_file.endswith(".weights.h5"):
            raise ValueError(
                "weights must be True (the pretrained weights), None or False (random initialization), "
                f"or the path of a Keras .weights.h5 file, as model.save_weights writes it; got {weights!r}."
            )
        if not os.path.isfile(weights_file):
            raise FileNotFoundError(f"weights={weights!r}: no such file.")
    elif not (weights is None or isinstance(weights, bool)):
        raise ValueError(
            "weights must be True (the pretrained weights), None or False (random initialization), "
            f"or the path of a .weights.h5 file; got {weights!r}."
        )
    if not (pooling is None or (isinstance(pooling, str) and pooling in POOLINGS)):
        raise ValueError(f"pooling must be one of 'avg', 'max', None; got {pooling!r}.")
    if input_shape is not None:
        check_input_shape(input_shape)
    if classifier_activation is not None:
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"classifier_activation must be a Keras activation name (e.g. 'softmax') or None "
                f"for logits; got {classifier_activation!r}."
            ) from error
    return weights_file


def _architecture_kwargs(spec):
    """The preset's complete architecture arguments at its trained input
    shape: the recorded ones, with any missing stem or input normalization
    resolved by the rule training used (`resolve_architecture_kwargs`)."""
    return resolve_architecture_kwargs(
        spec["backbone"], spec["input_shape"], **(spec.get("backbone_kwargs") or {})
    )


def _shipped_architecture(spec, source, kwargs):
    """The deserialized architecture file, after checking it against the
    backbone the spec records."""
    path = _verified_file(spec, spec["architecture"], source)
    shipped = read_architecture(path)
    trained_shape = check_input_shape(spec["input_shape"])
    expected = build_backbone(
        spec["backbone"], trained_shape, **{**kwargs, "synchronized_bn": _synchronized_bn(shipped)}
    )
    difference = _architecture_difference(shipped, expected)
    if difference:
        raise ValueError(
            f"The architecture file {spec['architecture']['filename']} of {spec['name']} ({path}) "
            f"is not the {spec['backbone']} its entry records ({kwargs}, input_shape "
            f"{trained_shape}): {difference}. Record the backbone_kwargs and input_shape the "
            "encoder was trained with (as keras_directcopy.models.backbones.resolve_architecture_kwargs "
            "resolves them); nothing was loaded."
        )
    return shipped


def _architecture_difference(model, expected):
    """The first difference between two models' architectures, or None.

    On the TensorFlow backend, compares `get_config()` through a JSON round
    trip (tuples and lists alike), so an architecture read from a file equals
    the one built in code exactly when every layer, its configuration and the
    graph match. On JAX and PyTorch, compares every layer's class, name,
    output shape and weight shapes, then what the two models compute
    (`_computation_difference`): Keras' config serialization imports
    TensorFlow whenever it is installed, which loading must not do there.

    Args:
        model: the model read from an architecture file.
        expected: the backbone rebuilt in code, a throwaway copy (on JAX and
            PyTorch it receives `model`'s weights).

    Returns:
        None if equal, else a short description naming the layer and field.
    """
    if is_tensorflow_backend():
        return _config_difference(_plain(model.get_config()), _plain(expected.get_config()))
    difference = _config_difference(_layer_summaries(model), _layer_summaries(expected))
    return difference or _computation_difference(model, expected)


def _config_difference(found, wanted):
    """The first difference between two model configs (plain dicts with a
    `"layers"` list), or None; see `_architecture_difference`."""
    if found == wanted:
        return None
    for index, (layer, other) in enumerate(zip(found.get("layers", []), wanted.get("layers", []))):
        if layer == other:
            continue
        if (layer.get("class_name"), layer.get("name")) != (other.get("class_name"), other.get("name")):
            return (
                f"layer {index} is {layer.get('class_name')} {layer.get('name')!r} there, "
                f"{other.get('class_name')} {other.get('name')!r} in the rebuilt backbone"
            )
        config, other_config = layer.get("config", {}), other.get("config", {})
        fields = sorted(k for k in set(config) | set(other_config) if config.get(k) != other_config.get(k))
        if fields:
            return f"layer {layer.get('name')!r} differs in " + "; ".join(
                f"{k}: {_short(config.get(k))} there, {_short(other_config.get(k))} rebuilt"
                for k in fields[:3]
            )
        return f"layer {layer.get('name')!r} is connected or built differently"
    if len(found.get("layers", [])) != len(wanted.get("layers", [])):
        return f"{len(found.get('layers', []))} layers there, {len(wanted.get('layers', []))} rebuilt"
    fields = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
    return "the model differs in " + ", ".join(fields)


def _layer_summaries(model):
    """A config-like dict of `model`'s layers built without Keras' config
    serialization: class, name, output shape and weight shapes of each."""
    return _plain({"layers": [
        {
            "class_name": type(layer).__name__,
            "name": layer.name,
            "config": {
                "output_shape": layer.output.shape,
                "weight_shapes": [weight.shape for weight in layer.weights],
            },
        }
        for layer in model.layers
    ]})


# The probe images of `_computation_difference`: a fixed seed, and the side
# used where the input size is free (None).
PROBE_SEED = 0
PROBE_FREE_SIDE = 64
# With the same layers and weights, the two models compute the same features
# to rounding; a setting that changes the computation (an input normalization,
# a stride, an activation) changes them by far more.
PROBE_TOLERANCE = 1e-5


def _computation_difference(model, expected):
    """How two models with the same layers differ in what they compute, or None.

    `expected` gets `model`'s weights, and both encode the same two probe
    images (uniform 0..255, seeded) in inference mode.

    Returns:
        None if their features agree within `PROBE_TOLERANCE` (relative to
        the largest feature), else a short description.
    """
    _copy_weights(model, expected)
    shape = [PROBE_FREE_SIDE if side is None else side for side in model.input_shape[1:]]
    images = np.random.RandomState(PROBE_SEED).uniform(0, 255, (2, *shape)).astype("float32")
    found, wanted = (keras.ops.convert_to_numpy(m(images, training=False)) for m in (model, expected))
    largest = float(np.max(np.abs(found - wanted)))
    if largest <= PROBE_TOLERANCE * max(1.0, float(np.max(np.abs(wanted)))):
        return None
    return (
        f"with the same weights it computes other features (largest difference {largest:.3g} "
        "on probe images), so a layer's settings differ (on the TensorFlow backend this "
        "message names the layer and the setting)"
    )


def _plain(config):
    return json.loads(json.dumps(config))


def _short(value, limit=80):
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _synchronized_bn(model):
    """Whether the model's BatchNormalization layers synchronize across
    replicas (an encoder saved from a multi-replica run)."""
    return any(
        getattr(layer, "synchronized", False)
        for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    )


def _copy_weights(loaded, resized):
    """Copies every layer's weights by name: the two models are the same
    architecture built for two input sizes."""
    for layer in loaded.layers:
        if layer.weights:
            resized.get_layer(layer.name).set_weights(layer.get_weights())


def load_spec(name):
    """The description of a preset, a local preset folder or a Hub
    repository: its registry entry or checked `config.json` (architecture,
    file entries, `num_classes`, `class_names`). Reads no weights."""
    return _load_spec(name, need_weights=False)[0]


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
    return _registry_files(preset, need_weights=need_weights)


def _registry_source(preset):
    if preset["weights"].get("bundled"):
        return ("dir", os.path.join(preset["_registry_dir"], preset["name"]))
    return ("hub", preset["hub"])


def _registry_files(preset, need_weights=True):
    """`(spec, source)` of a registry preset: where its files are, and the
    preset with its weights entry named as they are named there.

    Bundled files keep the registry's names. A Hub repository names its
    weights file in its `config.json` (`repo_layout.WEIGHTS_FILENAME` since
    format version 3; the registry's name in older repositories), so with
    `need_weights` that file is read for the name; the sha256 stays the
    registry's, which pins the weights whatever the repository says.
    """
    source = _registry_source(preset)
    kind, hub = source
    if kind != "hub" or not need_weights:
        return preset, source
    repository = f"{HF_PREFIX}{hub['repo_id']}"
    config = _config_from_file(
        _hub_download(hub, CONFIG_FILENAME, what=f"{preset['name']} ({repository}, {CONFIG_FILENAME})"),
        repository,
    )
    weights = {**preset["weights"], "filename": config["weights"]["filename"]}
    return {**preset, "weights": weights}, source


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
    unknown = set(config.get("backbone_kwargs") or {}) - set(ALLOWED_BACKBONE_KWARGS)
    if unknown:
        raise ValueError(f"{path}: unsupported backbone arguments {sorted(unknown)}.")
    for key in ("name", "input_shape", "weights"):
        if key not in config:
            raise ValueError(f"{path}: missing field {key!r}.")
    try:
        check_input_shape(config["input_shape"])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    for key in ("weights", "head", "architecture"):
        entry = config.get(key)
        if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get("filename"), str)):
            raise ValueError(f"{path}: {key!r} must be {{\"filename\": ..., \"sha256\": ...}}; got {entry!r}.")
    config.setdefault("num_classes", None)
    config.setdefault("class_names", None)
    names = config["class_names"]
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
        and len(names) == config["num_classes"]
    ):
        raise ValueError(f"{path}: 'class_names' must be a list of num_classes strings; got {names!r}.")
    config.setdefault("head", None)
    config.setdefault("architecture", None)
    return config


def _verified_file(spec, entry, source):
    """Local path of `entry["filename"]` from `source`, after its sha256 check."""
    kind, location = source
    filename = entry["filename"]
    if not filename or os.path.basename(filename) != filename or filename in (".", ".."):
        # A name with a directory part could read outside the preset's folder.
        raise ValueError(f"{spec['name']}: file name {filename!r} must be a plain file name.")
    if kind == "dir":
        path = os.path.join(location, filename)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} does not exist ({spec['name']}).")
        origin = path
        fix = (
            "Replace it with an intact copy (a preset's bundled file: reinstall keras-directcopy) "
            "and load again."
        )
    else:
        path = _hub_download(location, filename, what=f"{spec['name']} ({filename})")
        origin = f"hf://{location['repo_id']}/{filename} (cached at {path})"
        # The cache keeps the file's content apart from the snapshot's link to
        # it, so deleting the link alone brings the same bytes back.
        fix = (
            f"Remove the cached copy with `hf cache rm -y hf://models/{location['repo_id']}/{filename}` "
            "and load again, which downloads it anew."
        )
    expected = entry.get("sha256")
    actual = sha256_file(path)
    if not expected or actual != expected:
        raise ValueError(
            f"sha256 mismatch for {filename} of {spec['name']}, from {origin}: expected "
            f"{expected}, got {actual}. The file is corrupted or not the published one; "
            f"nothing was loaded. {fix}"
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
