"""ResNet encoders as plain functional Keras models.

Every encoder uses standard Keras layers only, so a saved encoder reloads with
`keras.saving.load_model(path, safe_mode=True)` and no custom objects.
Preprocessing is inside the model: callers pass raw RGB images with values in
0..255 (uint8 or float), shape `(N, H, W, 3)`, and get `(N, feature_dim)`
globally average-pooled features.

* `resnet18`, `resnet34` (basic blocks) and `resnet50` (bottleneck blocks),
  He et al. (2016). Inputs of at most `CIFAR_STEM_MAX_SIZE` px get the CIFAR
  stem (3x3 conv, stride 1, no max-pool), as in the DirectPred reference code
  and solo-learn; larger inputs get the ImageNet stem (7x7 conv, stride 2,
  3x3 max-pool).
* `resnet20`: the CIFAR ResNet of He et al. (2016, section 4.2): three stages
  of three basic blocks with 16/32/64 channels and parameter-free "option A"
  shortcuts, about 0.27M parameters.
"""

import keras

from keras_directcopy.heads import SMALL_IMAGE_MAX_SIZE

CIFAR_STEM_MAX_SIZE = 64
# Per-channel statistics on the 0..1 scale. ImageNet's are the usual
# torchvision values; CIFAR-10's are measured on its training set.
NORMALIZATION_STATS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

_STAGES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
BACKBONE_NAMES = tuple(_STAGES) + ("resnet20",)


def build_backbone(name, input_shape=(32, 32, 3), **kwargs):
    """Builds an encoder by name: one of `BACKBONE_NAMES`.

    Raises:
        ValueError: on an unknown name, listing the valid ones.
    """
    builders = {
        "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet20": resnet20,
    }
    if name not in builders:
        raise ValueError(
            f"Unknown backbone {name!r}. Valid backbones: {', '.join(BACKBONE_NAMES)}."
        )
    return builders[name](input_shape=input_shape, **kwargs)


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
    normalization="auto",
    synchronized_bn=False,
    name=None,
):
    """A ResNet-18/34/50 encoder.

    Args:
        depth_name: `"resnet18"`, `"resnet34"` or `"resnet50"`.
        input_shape: `(H, W, 3)`; `H` and `W` may be None for any size.
        width_multiplier: scales every convolution's channel count.
        stem: `"cifar"` or `"imagenet"`; by default `"cifar"` for inputs of
            at most `CIFAR_STEM_MAX_SIZE` px, `"imagenet"` otherwise.
        normalization: key of `NORMALIZATION_STATS`, or `"auto"` (CIFAR-10
            statistics for small images, ImageNet's otherwise).
        synchronized_bn: synchronize BatchNorm across `tf.distribute` replicas.
        name: model name, `depth_name` by default.

    Returns:
        A functional `keras.Model`: `(N, H, W, 3)` 0..255 images to
        `(N, 512 * width)` (basic) or `(N, 2048 * width)` (bottleneck).
    """
    block_kind, blocks_per_stage = _STAGES[depth_name]
    stem = stem or ("cifar" if _is_small(input_shape, CIFAR_STEM_MAX_SIZE) else "imagenet")
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"Unknown stem {stem!r}. Valid stems: cifar, imagenet.")
    bn = _batch_norm_factory(synchronized_bn)
    inputs = keras.Input(input_shape, name="images")
    x = _preprocessing(inputs, normalization, input_shape)
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
    normalization="auto",
    synchronized_bn=False,
    name="resnet20",
):
    """The He et al. (2016) CIFAR ResNet-20 encoder, about 0.27M parameters.

    Args:
        input_shape: `(H, W, 3)`.
        width_multiplier: scales the 16/32/64 channel counts.
        normalization: key of `NORMALIZATION_STATS`, or `"auto"`.
        synchronized_bn: synchronize BatchNorm across `tf.distribute` replicas.
        name: model name.

    Returns:
        A functional `keras.Model`: `(N, H, W, 3)` 0..255 images to
        `(N, 64 * width)` features.
    """
    bn = _batch_norm_factory(synchronized_bn)
    inputs = keras.Input(input_shape, name="images")
    x = _preprocessing(inputs, normalization, input_shape)
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


def _preprocessing(inputs, normalization, input_shape):
    if normalization == "auto":
        normalization = "cifar10" if _is_small(input_shape, SMALL_IMAGE_MAX_SIZE) else "imagenet"
    if normalization not in NORMALIZATION_STATS:
        raise ValueError(
            f"Unknown normalization {normalization!r}. Valid: auto, "
            f"{', '.join(NORMALIZATION_STATS)}."
        )
    mean, std = NORMALIZATION_STATS[normalization]
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
