"""ResNet encoders as plain functional Keras models.

Every encoder uses standard Keras layers only (`LAYER_CLASSES`), so a saved
encoder reloads with `keras.saving.load_model(path, safe_mode=True)` and no
custom objects. Preprocessing is inside the model: callers pass raw RGB
images with values in 0..255 (uint8 or float), shape `(N, H, W, 3)`, and get
`(N, feature_dim)` globally average-pooled features.

* `resnet18`, `resnet34` (basic blocks) and `resnet50` (bottleneck blocks),
  He et al. (2016). Inputs of at most `CIFAR_STEM_MAX_SIZE` px get the CIFAR
  stem (3x3 conv, stride 1, no max-pool), as in the DirectPred reference code
  and solo-learn; larger inputs get the ImageNet stem (7x7 conv, stride 2,
  3x3 max-pool).
* `resnet20`: the CIFAR ResNet of He et al. (2016, section 4.2): three stages
  of three basic blocks with 16/32/64 channels and parameter-free "option A"
  shortcuts, about 0.27M parameters.

Inputs of at most `CIFAR_INPUT_NORMALIZATION_MAX_SIZE` px are normalized with
CIFAR-10's statistics, larger ones with ImageNet's. Both defaults, the stem
and the input normalization, are resolved in one place,
`resolve_architecture_kwargs`, which the builders, the zoo's loader and the
preset tools all use, so an encoder is rebuilt exactly as it was trained.

The architecture of a trained encoder is also written as data
(`write_architecture`, Keras' own serialization) and read back by
`read_architecture`, which accepts only the built-in Keras layers of
`LAYER_CLASSES` and never runs code from the file.
"""

import json
import numbers

import keras

from keras_directcopy.utils.files import atomic_write_text

CIFAR_STEM_MAX_SIZE = 64
# CIFAR (32 px) and STL-10 (96 px) images are normalized with CIFAR-10's
# statistics, as in the DirectPred reference code; larger ones with ImageNet's.
CIFAR_INPUT_NORMALIZATION_MAX_SIZE = 96
STEMS = ("cifar", "imagenet")
# Per-channel statistics on the 0..1 scale. ImageNet's are the usual
# torchvision values; CIFAR-10's are measured on its training set.
INPUT_NORMALIZATION_STATS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
IMAGE_CHANNELS = 3

_STAGES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
BACKBONE_NAMES = tuple(_STAGES) + ("resnet20",)
# Backbones whose input height and width may be None (any size): resnet20's
# option-A shortcut reshapes to fixed spatial sizes, so it needs integers.
_ANY_SIZE_BACKBONES = tuple(_STAGES)

# The built-in Keras layer classes the backbones are made of: the only ones
# `read_architecture` accepts in an architecture file.
LAYER_CLASSES = frozenset({
    "InputLayer", "Rescaling", "Normalization", "Conv2D", "BatchNormalization", "ReLU",
    "MaxPooling2D", "Add", "Reshape", "ZeroPadding3D", "GlobalAveragePooling2D",
})
# Where `scripts/pretrain.py` (`training.save_encoder`), the zoo and the Hub
# repositories keep an encoder's architecture, next to `encoder.weights.h5`.
ARCHITECTURE_FILENAME = "encoder.config.json"


def build_backbone(name, input_shape=(32, 32, 3), **kwargs):
    """Builds an encoder by name: one of `BACKBONE_NAMES`.

    Args:
        name: the backbone.
        input_shape: `(H, W, 3)`.
        **kwargs: the builder's arguments (see `resnet`, `resnet20`); the
            stem and input normalization default as `resolve_architecture_kwargs`
            says.

    Raises:
        ValueError: on an unknown name, listing the valid ones, or on
            arguments `resolve_architecture_kwargs` refuses.
    """
    _check_backbone_name(name)
    builders = {
        "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet20": resnet20,
    }
    return builders[name](input_shape=input_shape, **kwargs)


def resolve_architecture_kwargs(name, input_shape, **kwargs):
    """The complete architecture arguments of backbone `name` at `input_shape`.

    The one rule for the size-dependent defaults, used by every builder, so
    training, loading and registering a preset agree:

    * `stem` (resnet18/34/50 only; resnet20 has a fixed CIFAR stem):
      `"cifar"` when the largest known side is at most `CIFAR_STEM_MAX_SIZE`
      px, `"imagenet"` otherwise (also when both sides are None);
    * `input_normalization`: `"cifar10"` when the largest known side is at most
      `CIFAR_INPUT_NORMALIZATION_MAX_SIZE` px, `"imagenet"` otherwise;
    * `width_multiplier`: 1.0.

    An explicit `stem` or `input_normalization` is kept (after a check), so pinning
    the resolved values of one shape rebuilds that architecture at another.

    Args:
        name: one of `BACKBONE_NAMES`.
        input_shape: `(H, W, 3)`; H and W may be None for resnet18/34/50
            (see `check_input_shape`).
        **kwargs: builder arguments; `stem=None` and `input_normalization="auto"`
            (or None) mean the default. Others (e.g. `synchronized_bn`)
            are passed through unchanged.

    Returns:
        A new dict: `kwargs` with `width_multiplier`, `input_normalization` and,
        except for resnet20, `stem` set.

    Raises:
        ValueError: on an unknown backbone, stem or input normalization, a stem
            for resnet20, or an invalid `input_shape`; the message names the
            argument and the valid values.
    """
    _check_backbone_name(name)
    input_shape = check_input_shape(input_shape)
    if name not in _ANY_SIZE_BACKBONES and None in input_shape[:2]:
        raise ValueError(
            f"{name} needs an input_shape with integer height and width (its option-A shortcut "
            f"reshapes to fixed sizes); got {input_shape!r}."
        )
    resolved = {"width_multiplier": 1.0, **kwargs}
    if name == "resnet20":
        if resolved.pop("stem", None) is not None:
            raise ValueError(
                "resnet20 has a fixed CIFAR stem and takes no stem argument; drop stem=..."
            )
    else:
        stem = resolved.get("stem")
        if stem is None:
            stem = "cifar" if _is_small(input_shape, CIFAR_STEM_MAX_SIZE) else "imagenet"
        if stem not in STEMS:
            raise ValueError(f"Unknown stem {stem!r}. Valid stems: {', '.join(STEMS)}.")
        resolved["stem"] = stem
    input_normalization = resolved.get("input_normalization")
    if input_normalization in (None, "auto"):
        input_normalization = (
            "cifar10" if _is_small(input_shape, CIFAR_INPUT_NORMALIZATION_MAX_SIZE) else "imagenet"
        )
    if input_normalization not in INPUT_NORMALIZATION_STATS:
        raise ValueError(
            f"Unknown input_normalization {input_normalization!r}. Valid: auto, "
            f"{', '.join(INPUT_NORMALIZATION_STATS)}."
        )
    resolved["input_normalization"] = input_normalization
    return resolved


def check_input_shape(input_shape):
    """`input_shape` as a tuple `(H, W, 3)`, after checking it.

    Args:
        input_shape: a sequence of 3 entries: the height and width, each a
            positive integer or None (any size, where the backbone allows
            it), then 3 (RGB channels).

    Returns:
        A tuple of Python ints (and Nones).

    Raises:
        ValueError: naming the argument, the value and what is valid.
    """
    valid = f"(height, width, {IMAGE_CHANNELS}) with height and width positive integers or None"
    try:
        entries = tuple(input_shape)
    except TypeError:
        entries = None
    if entries is None or isinstance(input_shape, (str, bytes)) or len(entries) != 3:
        raise ValueError(f"input_shape must be {valid}; got {input_shape!r}.")
    for entry in entries[:2]:
        if entry is not None and not (_is_int(entry) and int(entry) > 0):
            raise ValueError(f"input_shape must be {valid}; got {input_shape!r}.")
    if not _is_int(entries[2]) or int(entries[2]) != IMAGE_CHANNELS:
        raise ValueError(
            f"input_shape must be {valid}; got {input_shape!r}: the encoders take RGB images, "
            f"so the last entry (channels) must be {IMAGE_CHANNELS}."
        )
    return tuple(None if entry is None else int(entry) for entry in entries)


def write_architecture(model, path):
    """Writes `model`'s architecture to `path` atomically, as JSON.

    The file holds `keras.saving.serialize_keras_object(model)`: every
    layer's class and configuration and the graph, but no weights. It is
    what `read_architecture` (hence `keras_directcopy.load_pretrained`)
    rebuilds, so a loaded encoder is the trained one, not a re-derivation of
    it from the current code's defaults.

    Args:
        model: a functional `keras.Model`, e.g. a backbone.
        path: the file to write (`ARCHITECTURE_FILENAME` by convention).
    """
    config = keras.saving.serialize_keras_object(model)
    atomic_write_text(path, json.dumps(config, indent=1, sort_keys=True) + "\n")


def read_architecture(path):
    """The functional model an architecture file describes, freshly initialized.

    Nothing in the file is executed: before Keras sees it, every object it
    names must be a built-in Keras layer of `LAYER_CLASSES`, a built-in
    initializer or a dtype policy (no `Lambda`, no custom or registered
    class); then it is deserialized with `safe_mode=True` and no custom
    objects. A compile configuration, if any, is ignored.

    Args:
        path: a file written by `write_architecture`.

    Returns:
        A `keras.Model` with newly initialized weights.

    Raises:
        ValueError: if the file is not JSON, not a functional model, or
            names any other class; nothing is built then.
    """
    with open(path, encoding="utf-8") as file:
        try:
            config = json.load(file)
        except ValueError as error:
            raise ValueError(f"{path} is not a JSON architecture file ({error}).") from error
    check_architecture_config(config, origin=path)
    # Without a registered name, Keras resolves the model class from its
    # keras module, never from objects registered in this process.
    config = {key: value for key, value in config.items() if key != "compile_config"}
    config["registered_name"] = None
    model = keras.saving.deserialize_keras_object(config, custom_objects={}, safe_mode=True)
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path} does not describe a Keras model.")
    return model


def check_architecture_config(config, origin="the architecture"):
    """Checks that a serialized model names only classes `read_architecture` accepts.

    Args:
        config: a dict as `keras.saving.serialize_keras_object` gives for a
            functional model.
        origin: where it comes from, for messages.

    Raises:
        ValueError: naming the first offending object, the accepted classes
            and that nothing was loaded.
    """
    if not isinstance(config, dict) or config.get("class_name") != "Functional" or not (
        _is_keras_module(config.get("module")) and config.get("registered_name") in (None, "Functional")
    ):
        found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise ValueError(
            f"{origin} does not describe a functional Keras model (found {found!r}); an "
            "architecture file holds keras.saving.serialize_keras_object(encoder) of a backbone "
            "of keras_directcopy.models.backbones. Nothing was loaded."
        )
    body = config.get("config")
    layers = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{origin} lists no layers; nothing was loaded.")
    for layer in layers:
        layer = layer if isinstance(layer, dict) else {}
        if (
            layer.get("module") != "keras.layers"
            or layer.get("class_name") not in LAYER_CLASSES
            or layer.get("registered_name") is not None
        ):
            raise ValueError(
                f"{origin}: layer {layer.get('name')!r} is of class "
                f"{_class_text(layer)}, which is not one of the built-in Keras layers the "
                f"encoders are made of ({', '.join(sorted(LAYER_CLASSES))}). An architecture "
                "file may name only those, so that loading it runs no code from it; nothing was "
                "loaded. Use an encoder saved by keras_directcopy (training.save_encoder)."
            )
        for key, value in layer.items():
            if key not in ("module", "class_name", "registered_name"):
                _check_nested_objects(value, origin, layer.get("name"), key == "inbound_nodes")
    for key, value in body.items():
        if key != "layers":
            _check_nested_objects(value, origin, None, False)


def resnet18(input_shape=(32, 32, 3), **kwargs):
    """ResNet-18 encoder, 512 features at width 1. See `resnet`."""
    return resnet("resnet18", input_shape, **kwargs)


def resnet34(input_shape=(32, 32, 3), **kwargs):
    """ResNet-34 encoder, 512 features at width 1. See `resnet`."""
    return resnet("resnet34", input_shape, **kwargs)


def resnet50(input_shape=(224, 224, 3), **kwargs):
    """ResNet-50 encoder, 2048 features at width 1. See `resnet`."""
    return resnet("resnet50", input_shape, **kwargs)


def resnet(
    depth_name,
    input_shape,
    *,
    width_multiplier=1.0,
    stem=None,
    input_normalization="auto",
    synchronized_bn=False,
    name=None,
):
    """A ResNet-18/34/50 encoder.

    Args:
        depth_name: `"resnet18"`, `"resnet34"` or `"resnet50"`.
        input_shape: `(H, W, 3)`; `H` and `W` may be None for any size.
        width_multiplier: scales every convolution's channel count.
        stem: `"cifar"` or `"imagenet"`; None for the default of
            `resolve_architecture_kwargs` (`"cifar"` up to
            `CIFAR_STEM_MAX_SIZE` px).
        input_normalization: key of `INPUT_NORMALIZATION_STATS`, or `"auto"` for the
            default of `resolve_architecture_kwargs` (CIFAR-10's statistics
            up to `CIFAR_INPUT_NORMALIZATION_MAX_SIZE` px, ImageNet's above).
        synchronized_bn: synchronize BatchNorm across `tf.distribute` replicas.
        name: model name, `depth_name` by default.

    Returns:
        A functional `keras.Model`: `(N, H, W, 3)` 0..255 images to
        `(N, 512 * width)` (basic) or `(N, 2048 * width)` (bottleneck).
    """
    block_kind, blocks_per_stage = _STAGES[depth_name]
    resolved = resolve_architecture_kwargs(
        depth_name, input_shape, stem=stem, input_normalization=input_normalization
    )
    stem = resolved["stem"]
    bn = _batch_norm_factory(synchronized_bn)
    inputs = keras.Input(tuple(input_shape), name="images")
    x = _preprocessing(inputs, resolved["input_normalization"])
    stem_width = _scaled(64, width_multiplier)
    if stem == "cifar":
        x = keras.layers.Conv2D(stem_width, 3, padding="same", use_bias=False, name="stem_conv")(x)
    else:
        x = keras.layers.Conv2D(
            stem_width, 7, strides=2, padding="same", use_bias=False, name="stem_conv"
        )(x)
    x = keras.layers.ReLU(name="stem_relu")(bn(name="stem_bn")(x))
    if stem == "imagenet":
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    block = _basic_block if block_kind == "basic" else _bottleneck_block
    for stage, num_blocks in enumerate(blocks_per_stage):
        width = _scaled(64 * 2**stage, width_multiplier)
        for index in range(num_blocks):
            strides = 2 if (stage > 0 and index == 0) else 1
            x = block(x, width, strides, bn, name=f"stage{stage + 1}_block{index + 1}")
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name=name or depth_name)


def resnet20(
    input_shape=(32, 32, 3),
    *,
    width_multiplier=1.0,
    input_normalization="auto",
    synchronized_bn=False,
    name="resnet20",
):
    """The He et al. (2016) CIFAR ResNet-20 encoder, about 0.27M parameters.

    Args:
        input_shape: `(H, W, 3)` with integer H and W (the option-A
            shortcut reshapes to fixed sizes).
        width_multiplier: scales the 16/32/64 channel counts.
        input_normalization: key of `INPUT_NORMALIZATION_STATS`, or `"auto"` (see
            `resolve_architecture_kwargs`).
        synchronized_bn: synchronize BatchNorm across `tf.distribute` replicas.
        name: model name.

    Returns:
        A functional `keras.Model`: `(N, H, W, 3)` 0..255 images to
        `(N, 64 * width)` features.
    """
    resolved = resolve_architecture_kwargs("resnet20", input_shape, input_normalization=input_normalization)
    bn = _batch_norm_factory(synchronized_bn)
    inputs = keras.Input(tuple(input_shape), name="images")
    x = _preprocessing(inputs, resolved["input_normalization"])
    x = keras.layers.Conv2D(
        _scaled(16, width_multiplier), 3, padding="same", use_bias=False, name="stem_conv"
    )(x)
    x = keras.layers.ReLU(name="stem_relu")(bn(name="stem_bn")(x))
    for stage in range(3):
        width = _scaled(16 * 2**stage, width_multiplier)
        for index in range(3):
            strides = 2 if (stage > 0 and index == 0) else 1
            x = _basic_block(
                x, width, strides, bn, name=f"stage{stage + 1}_block{index + 1}",
                zero_pad_shortcut=True,
            )
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name=name)


def _basic_block(x, width, strides, bn, name, zero_pad_shortcut=False):
    shortcut = x
    y = keras.layers.Conv2D(
        width, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv1"
    )(x)
    y = keras.layers.ReLU(name=f"{name}_relu1")(bn(name=f"{name}_bn1")(y))
    y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = bn(name=f"{name}_bn2")(y)
    if strides != 1 or x.shape[-1] != width:
        if zero_pad_shortcut:
            shortcut = _zero_pad_shortcut(x, width, strides, name)
        else:
            shortcut = _projection_shortcut(x, width, strides, bn, name)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _bottleneck_block(x, width, strides, bn, name):
    expanded = 4 * width
    shortcut = x
    y = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{name}_conv1")(x)
    y = keras.layers.ReLU(name=f"{name}_relu1")(bn(name=f"{name}_bn1")(y))
    # Stride on the 3x3 convolution ("ResNet v1.5"), as torchvision does.
    y = keras.layers.Conv2D(
        width, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv2"
    )(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(bn(name=f"{name}_bn2")(y))
    y = keras.layers.Conv2D(expanded, 1, use_bias=False, name=f"{name}_conv3")(y)
    y = bn(name=f"{name}_bn3")(y)
    if strides != 1 or x.shape[-1] != expanded:
        shortcut = _projection_shortcut(x, expanded, strides, bn, name)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _projection_shortcut(x, width, strides, bn, name):
    shortcut = keras.layers.Conv2D(
        width, 1, strides=strides, use_bias=False, name=f"{name}_shortcut_conv"
    )(x)
    return bn(name=f"{name}_shortcut_bn")(shortcut)


def _zero_pad_shortcut(x, width, strides, name):
    """He et al.'s option A: subsample, then zero-pad the new channels.

    Built from standard layers (a 1x1 max-pool subsamples; a channel axis
    made spatial lets ZeroPadding3D pad it), so no custom layer is needed.
    """
    if strides != 1:
        x = keras.layers.MaxPooling2D(1, strides=strides, name=f"{name}_shortcut_subsample")(x)
    height, width_px, channels = x.shape[1:]
    extra = width - channels
    x = keras.layers.Reshape((height, width_px, channels, 1), name=f"{name}_shortcut_expand")(x)
    x = keras.layers.ZeroPadding3D(
        ((0, 0), (0, 0), (extra // 2, extra - extra // 2)), name=f"{name}_shortcut_pad"
    )(x)
    return keras.layers.Reshape((height, width_px, width), name=f"{name}_shortcut_squeeze")(x)


def _preprocessing(inputs, input_normalization):
    """0..255 RGB to standardized values, with the statistics of `input_normalization`
    (a key of `INPUT_NORMALIZATION_STATS`, already resolved)."""
    mean, std = INPUT_NORMALIZATION_STATS[input_normalization]
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    return keras.layers.Normalization(
        mean=mean, variance=[s * s for s in std], name="normalize"
    )(x)


def _batch_norm_factory(synchronized):
    def make(name):
        return keras.layers.BatchNormalization(synchronized=synchronized, name=name)

    return make


def _is_small(input_shape, max_size):
    sizes = [s for s in input_shape[:2] if s is not None]
    return bool(sizes) and max(sizes) <= max_size


def _scaled(channels, multiplier):
    return max(1, int(round(channels * multiplier)))


def _check_nested_objects(value, origin, layer_name, in_graph):
    """Every object inside a layer's entry: a dtype policy or built-in
    initializer in its configuration, or a graph tensor in its inbound nodes."""
    if isinstance(value, list):
        for item in value:
            _check_nested_objects(item, origin, layer_name, in_graph)
        return
    if not isinstance(value, dict):
        return
    if "class_name" in value:
        kind = (value.get("module"), value.get("class_name"))
        tensor = in_graph and kind == (None, "__keras_tensor__")
        allowed = value.get("registered_name") is None and (
            kind == ("keras", "DTypePolicy")
            or (kind[0] == "keras.initializers" and _is_builtin_initializer(kind[1]))
        )
        if not (tensor or allowed):
            where = f"layer {layer_name!r}" if layer_name else "the model"
            raise ValueError(
                f"{origin}: {where} holds an object of class {_class_text(value)}; an "
                "architecture file may name only built-in Keras layers, initializers and dtype "
                "policies, so that loading it runs no code from it. Nothing was loaded."
            )
    for item in value.values():
        _check_nested_objects(item, origin, layer_name, in_graph)


def _is_builtin_initializer(class_name):
    initializer = getattr(keras.initializers, str(class_name), None)
    return isinstance(initializer, type) and issubclass(initializer, keras.initializers.Initializer)


def _is_keras_module(module):
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def _class_text(entry):
    module, class_name = entry.get("module"), entry.get("class_name")
    text = f"{module}.{class_name}" if module else repr(class_name)
    if entry.get("registered_name") is not None:
        text += f" (registered as {entry['registered_name']!r})"
    return text


def _check_backbone_name(name):
    if name not in BACKBONE_NAMES:
        raise ValueError(
            f"Unknown backbone {name!r}. Valid backbones: {', '.join(BACKBONE_NAMES)}."
        )


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
