"""The random parameters of one augmented view, shared by the per-image
(`augment.py`) and the batched (`batch_augment.py`) two-view augmentation.

A view's randomness is a handful of uniform numbers drawn in one stateless op
(`draw`), for one image or with a batch axis; the functions here turn them
into the crop box (torchvision's RandomResizedCrop sampling) and the colour
jitter's factors and order, the same way for both paths.
"""

import math

import tensorflow as tf

# Gray level weights (ITU-R 601) of torchvision's rgb_to_grayscale and of
# tf.image.rgb_to_grayscale, which keras-cv's Grayscale calls: the contrast
# and saturation blends use the gray of the grayscale step.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
_CROP_TRIES = 10  # torchvision's RandomResizedCrop tries ten times
# Uniform [0, 1) numbers drawn per view, all in one op (see `draw`).
_DRAW_SIZES = {
    "crop_area": _CROP_TRIES,
    "crop_log_ratio": _CROP_TRIES,
    "crop_position": 2,
    "flip": 1,
    "jitter": 1,
    "jitter_factors": 4,
    "jitter_order": 1,
    "gray": 1,
    "blur": 1,
    "sigma": 1,
    "solarize": 1,
}


def draw(seed, batch_shape=()):
    """All random numbers of one view, uniform in [0, 1), from one stateless op.

    Args:
        seed: int32 `(2,)` stateless seed.
        batch_shape: leading shape, `()` for one image, `(B,)` for a batch
            (a list or an int32 tensor).

    Returns:
        dict of float32 tensors named as `_DRAW_SIZES`, shaped
        `batch_shape + (size,)`, or `batch_shape` where the size is 1.
    """
    size = sum(_DRAW_SIZES.values())
    if isinstance(batch_shape, (tuple, list)):
        shape = list(batch_shape) + [size]  # static, for shape inference
    else:
        shape = tf.concat([batch_shape, [size]], axis=0)
    values = tf.random.stateless_uniform(shape, seed)
    parts = tf.split(values, list(_DRAW_SIZES.values()), axis=-1)
    return {
        name: part[..., 0] if size == 1 else part
        for (name, size), part in zip(_DRAW_SIZES.items(), parts)
    }


def crop_box(height, width, config, draws):
    """torchvision's RandomResizedCrop box for images of `height x width`.

    Args:
        height, width: float32 scalars, the image's size.
        config: an `AugmentationConfig`.
        draws: a view's draws (`draw`), for one image or with a batch axis.

    Returns:
        float32 `(top, left, crop_height, crop_width)`, whole numbers, each
        of the draws' batch shape.
    """
    scale_low, scale_high = config.crop_scale
    target_area = height * width * (scale_low + (scale_high - scale_low) * draws["crop_area"])
    log_low, log_high = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
    aspect = tf.exp(log_low + (log_high - log_low) * draws["crop_log_ratio"])
    # All ten candidate boxes at once; the first one that fits wins, as in
    # torchvision's loop.
    widths = tf.round(tf.sqrt(target_area * aspect))
    heights = tf.round(tf.sqrt(target_area / aspect))
    fits = (widths > 0) & (heights > 0) & (widths <= width) & (heights <= height)
    found = tf.reduce_any(fits, axis=-1)
    first = tf.one_hot(tf.argmax(tf.cast(fits, tf.int32), axis=-1), _CROP_TRIES)
    # None fits (rare, e.g. very elongated images): torchvision's fallback,
    # the largest centered crop whose ratio is clamped into `crop_ratio`.
    ratio_low, ratio_high = config.crop_ratio
    ratio = width / height
    fallback_width = tf.where(ratio > ratio_high, tf.round(height * ratio_high), width)
    fallback_height = tf.where(ratio < ratio_low, tf.round(width / ratio_low), height)
    crop_width = tf.where(found, tf.reduce_sum(widths * first, axis=-1), fallback_width)
    crop_height = tf.where(found, tf.reduce_sum(heights * first, axis=-1), fallback_height)
    position = draws["crop_position"]
    # Uniform integer offsets in [0, H - h] and [0, W - w].
    top = tf.where(
        found,
        tf.floor(position[..., 0] * (height - crop_height + 1)),
        tf.floor((height - crop_height) / 2),
    )
    left = tf.where(
        found,
        tf.floor(position[..., 1] * (width - crop_width + 1)),
        tf.floor((width - crop_width) / 2),
    )
    return top, left, crop_height, crop_width


def clip(values):
    return tf.clip_by_value(values, 0.0, 255.0)


def gray_matrix():
    """`(3, 3)` matrix M with `pixels @ M` = the gray level in all channels."""
    return tf.tile(tf.constant(GRAY_WEIGHTS, tf.float32)[:, None], [1, 3])


def jitter_factors(config, draws):
    """A view's colour jitter parameters, from its draws (`draw`).

    Returns:
        float32 `(brightness, contrast, saturation, hue)`, each of the draws'
        batch shape: the factors uniform in `[max(0, 1 - x), 1 + x]`
        (torchvision's ranges) and the hue shift in `[-hue, hue]`.
    """
    u = draws["jitter_factors"]

    def factor(strength, u):
        low = max(0.0, 1.0 - strength)
        return low + (1.0 + strength - low) * u

    return (
        factor(config.brightness, u[..., 0]),
        factor(config.contrast, u[..., 1]),
        factor(config.saturation, u[..., 2]),
        config.hue * (2.0 * u[..., 3] - 1.0),
    )


def jitter_case(config, draws):
    """Which colour jitter a view gets, int32 of the draws' batch shape.

    0: none (probability `1 - jitter_prob`); 1: hue first, 2: hue last (1/3
    each); 3: contrast, hue, saturation; 4: saturation, hue, contrast (1/6
    each); brightness always first (see the module docstring).
    """
    order = draws["jitter_order"]
    case = tf.reduce_sum(
        tf.cast(order[..., None] >= tf.constant([1 / 3, 2 / 3, 5 / 6]), tf.int32), axis=-1
    )
    return tf.where(draws["jitter"] < config.jitter_prob, case + 1, 0)
