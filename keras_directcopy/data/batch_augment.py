"""The two-view augmentation of `augment.py`, a whole batch at a time.

`augment.TwoViewAugmenter` augments one image per call: at 32 px most of its
time is the dispatch of some seventy small ops per view, not arithmetic. For
images that all have one known size (CIFAR, STL-10 from tfds), this module
computes the same function on a batch `(B, H, W, 3)` with about two hundred
ops in all, each on the whole batch. Every image still gets its own
parameters (crop box, flip, jitter factors and order, grayscale, blur,
solarization), drawn from the same distributions by the same functions
(`view_parameters.py`); a batch draws them all from one stateless seed, so
they are not the numbers the per-image path would draw for those images.
Only the arithmetic is regrouped, with the channels as separate planes
(TensorFlow's CPU reductions and stacks along a last axis of 3 are slow):

- crop, bicubic resize and flip: TensorFlow's bicubic resize (Keys' cubic,
  half-pixel centers, its 1,024-entry coefficient table, zero weight and
  renormalization at the borders) is separable, so a crop of rows
  `top..top+h` resized to `S` rows is a `(S, H)` matrix whose nonzero columns
  are the crop's; the view is `rows @ image @ columns^T`, two batched matrix
  products, and the flip reverses the column matrix;
- colour jitter: brightness, contrast and saturation are exact identities at
  factor 1, so every image goes through all of them with its own factors (1
  where its order skips a slot); the hue rotation, TensorFlow's `AdjustHue`
  kernel written out in elementwise ops, runs on the images whose order puts
  it at that slot (six slots cover the four orders of `augment.py`);
- blur: a Gaussian blur with reflected borders is a `(S, S)` matrix on each
  axis, applied to the images drawn for it;
- grayscale and solarization: what keras-cv's `Grayscale` (the ITU-R 601 gray
  level in every channel) and `Solarization` (values at or above the
  threshold inverted) compute, on the planes, kept where drawn.

The results equal the per-image path's to float32 rounding: before the final
rounding to uint8 the two differ by a few units in the last place, so a view
value can land one gray level apart where it falls on a half
(`tests/test_batch_augment.py` compares the two on the same random draws).

`supports` says which inputs this covers: images of one static size and
bicubic resizing without antialiasing (antialiasing only changes crops that
are shrunk, so images no larger than `S` qualify whatever the setting).
Speed: many fewer ops, but plain elementwise ones in place of TensorFlow's
fused image kernels, and dense resize matrices; so it pays for small views.
`datasets.pretrain_dataset` uses it by default where it applies and the
views are at most `BATCHED_BY_DEFAULT_MAX_SIZE` px (CIFAR), the per-image
path elsewhere (STL-10's 96 px, image folders, whose sizes vary).
"""

import numpy as np
import tensorflow as tf

from keras_directcopy.data import view_parameters

# TensorFlow's bicubic resize reads its cubic weights from a table of
# 1,024 steps per pixel (tensorflow/core/kernels/image/resize_bicubic_op.cc).
_TABLE_SIZE = 1024
_KEYS_A = -0.5  # Keys' cubic, used with half-pixel centers


def _keys_cubic_table():
    """`(TABLE_SIZE + 1, 2)` float32: the kernel at x and at x + 1, x = i / TABLE_SIZE."""
    a = _KEYS_A
    x = (np.arange(_TABLE_SIZE + 1, dtype=np.float64) / _TABLE_SIZE).astype(np.float32)
    near = ((a + 2) * x.astype(np.float64) - (a + 3)) * x * x + 1
    far_x = (x + np.float32(1.0)).astype(np.float64)
    far = ((a * far_x - 5 * a) * far_x + 8 * a) * far_x - 4 * a
    return np.stack([near, far], axis=1).astype(np.float32)


_CUBIC_TABLE = _keys_cubic_table()


# Views up to this side are augmented by the batch by default
# (`datasets.pretrain_dataset`). The batched resize and blur are dense
# matrices, whose cost per pixel grows with the side, while the per-image
# kernels' does not. The batched path stops paying off between 64 and 96 px
# (`benchmarks/throughput/README.md`, "Augmentation by the batch").
BATCHED_BY_DEFAULT_MAX_SIZE = 64


def supports(config, image_shape):
    """Whether `augment_views` computes `config`'s augmentation of these images.

    Args:
        config: an `augment.AugmentationConfig`.
        image_shape: the static shape of one image, `(H, W, 3)`
            (`tf.TensorShape` or a tuple; None for unknown sides).

    Returns:
        True when both sides are known and the resize is the plain bicubic
        kernel (bicubic without antialiasing, or with it on images no larger
        than the view, where it changes nothing).
    """
    shape = tf.TensorShape(image_shape)
    if shape.rank != 3 or not shape.is_fully_defined() or shape[-1] != 3:
        return False
    height, width = shape[0], shape[1]
    never_shrinks = height <= config.image_size and width <= config.image_size
    return config.interpolation == "bicubic" and (not config.antialias or never_shrinks)


def resize_matrices(offset, extent, image_side, output_side):
    """Bicubic resize of a window of one axis, as matrices.

    Row `o` of the result holds the weights TensorFlow's bicubic resize
    (`tf.image.resize(..., "bicubic", antialias=False)`) gives input pixels
    `offset .. offset + extent - 1` for output pixel `o`.

    Args:
        offset: int32 `(B,)`, first pixel of each window.
        extent: int32 `(B,)`, length of each window (>= 1).
        image_side: int, the image's length on this axis.
        output_side: int, the output's length `S`.

    Returns:
        float32 `(B, S, image_side)`.
    """
    extent_f = tf.cast(extent, tf.float32)
    scale = extent_f / float(output_side)  # float32, as the kernel's scale
    centers = tf.range(output_side, dtype=tf.float32) + 0.5
    source = centers[None, :] * scale[:, None] - 0.5  # (B, S)
    floor = tf.floor(source)
    # The kernel rounds the fraction to the nearest table step, ties to even.
    step = tf.cast(tf.round((source - floor) * _TABLE_SIZE), tf.int32)
    table = tf.constant(_CUBIC_TABLE)
    weights = tf.stack(
        [
            tf.gather(table[:, 1], step),  # pixel floor - 1
            tf.gather(table[:, 0], step),  # floor
            tf.gather(table[:, 0], _TABLE_SIZE - step),  # floor + 1
            tf.gather(table[:, 1], _TABLE_SIZE - step),  # floor + 2
        ],
        axis=-1,
    )  # (B, S, 4)
    taps = tf.cast(floor, tf.int32)[..., None] + tf.range(-1, 3)  # (B, S, 4)
    inside = (taps >= 0) & (taps < extent[:, None, None])
    # Taps outside the window get no weight, and the rest are renormalized.
    weights = tf.where(inside, weights, 0.0)
    weights = weights / tf.reduce_sum(weights, axis=-1, keepdims=True)
    columns = tf.clip_by_value(taps, 0, extent[:, None, None] - 1) + offset[:, None, None]
    return tf.einsum("bsk,bskn->bsn", weights, tf.one_hot(columns, image_side))


def crop_resize_flip(planes, config, draws):
    """The random resized crop, bicubic resize and flip of a batch.

    Args:
        planes: float32 `(B, 3, H, W)`, 0..255, static `H` and `W`: the
            images with their channels first.
        config: an `augment.AugmentationConfig`.
        draws: the view's uniform draws, each with a leading batch axis
            (`view_parameters.draw`).

    Returns:
        float32 `(B, 3, S, S)`, clipped to 0..255.
    """
    height, width = planes.shape[2], planes.shape[3]
    top, left, crop_height, crop_width = view_parameters.crop_box(
        tf.constant(height, tf.float32), tf.constant(width, tf.float32), config, draws
    )
    side = config.image_size
    rows = resize_matrices(tf.cast(top, tf.int32), tf.cast(crop_height, tf.int32), height, side)
    columns = resize_matrices(tf.cast(left, tf.int32), tf.cast(crop_width, tf.int32), width, side)
    if config.flip_prob > 0:
        flip = draws["flip"] < config.flip_prob
        columns = tf.where(flip[:, None, None], tf.reverse(columns, axis=[1]), columns)
    # Columns first, then rows, as the kernel interpolates; the matrices
    # broadcast over the channel axis.
    resized = tf.matmul(planes, columns[:, None], transpose_b=True)  # (B, 3, H, S)
    resized = tf.matmul(rows[:, None], resized)  # (B, 3, S, S)
    return view_parameters.clip(resized)


def rotate_hue(red, green, blue, delta):
    """TensorFlow's `AdjustHue` kernel on a batch, a hue shift per image.

    Args:
        red, green, blue: float32 `(B, P)` channels, nonnegative.
        delta: float32 `(B,)`, the shift as a fraction of a full turn.

    Returns:
        The rotated `(red, green, blue)`.
    """
    value = tf.maximum(tf.maximum(red, green), blue)
    chroma = value - tf.minimum(tf.minimum(red, green), blue)
    saturation = tf.math.divide_no_nan(chroma, value)
    norm = 1.0 / (6.0 * chroma)
    hue = tf.where(
        red == value,
        norm * (green - blue),
        tf.where(green == value, norm * (blue - red) + 2.0 / 6.0, norm * (red - green) + 4.0 / 6.0),
    )
    hue = tf.where(chroma > 0, hue, 0.0)
    hue = tf.where(hue < 0, hue + 1.0, hue)
    # The kernel wraps with fmod and adds 1 below 0; hue + delta is in
    # [-0.5, 1.5), where subtracting the floor is the same, and cheaper.
    shifted = hue + delta[:, None]
    sixths = (shifted - tf.floor(shifted)) * 6.0
    # Back to RGB. The kernel picks one of the hexcone's six sectors per
    # pixel; the same values in closed form, without a gather: channel n
    # (5 red, 3 green, 1 blue) is value - chroma * clip(min(k, 4 - k), 0, 1),
    # k = (n + 6 * hue) mod 6.
    chroma = saturation * value
    rotated = []
    for n in (5.0, 3.0, 1.0):
        k = n + sixths  # in [1, 11): mod 6 by one subtraction
        k = tf.where(k >= 6.0, k - 6.0, k)
        rotated.append(value - chroma * tf.clip_by_value(tf.minimum(k, 4.0 - k), 0.0, 1.0))
    return tuple(rotated)


def _per_image(apply, values):
    """`apply` `(B,)` reshaped to broadcast against `values` `(B, ...)`."""
    return tf.reshape(apply, [-1] + [1] * (len(values.shape) - 1))


def _on_some(apply, function, values):
    """`function(some, indices)` on the images where `apply` holds, the
    others unchanged; `values` is a tuple of tensors with a batch axis."""
    indices = tf.where(apply)
    changed = function(*[tf.gather_nd(value, indices) for value in values], indices=indices)
    return tuple(tf.tensor_scatter_nd_update(v, indices, c) for v, c in zip(values, changed))


def _gray(red, green, blue):
    weights = view_parameters.GRAY_WEIGHTS
    return weights[0] * red + weights[1] * green + weights[2] * blue


def colour_jitter(channels, config, draws):
    """torchvision's `ColorJitter` on the `(red, green, blue)` channels,
    each float32 `(B, P)` in 0..255.

    Each image takes the order `augment.py` draws for it (or none, where the
    jitter is not applied); the identities at factor 1 let brightness,
    contrast and saturation run on every image.
    """
    brightness, contrast, saturation, hue = view_parameters.jitter_factors(config, draws)
    case = view_parameters.jitter_case(config, draws)  # 0: none; 1..4 as in augment.py
    one = tf.ones_like(brightness)

    def scale(channels, active):
        if config.brightness == 0:
            return channels
        factor = tf.where(active, brightness, one)[:, None]
        return tuple(tf.minimum(channel * factor, 255.0) for channel in channels)

    def blend_contrast(channels, active):
        if config.contrast == 0:
            return channels
        factor = tf.where(active, contrast, one)[:, None]
        mean_gray = _gray(*[tf.reduce_mean(channel, axis=1, keepdims=True) for channel in channels])
        return tuple(view_parameters.clip(factor * channel + (1.0 - factor) * mean_gray) for channel in channels)

    def saturate(channels, active):
        if config.saturation == 0:
            return channels
        factor = tf.where(active, saturation, one)[:, None]
        gray = _gray(*channels)
        return tuple(view_parameters.clip(factor * channel + (1.0 - factor) * gray) for channel in channels)

    def hue_at(channels, active):
        if config.hue == 0:
            return channels

        def rotate(red, green, blue, indices):
            return rotate_hue(red, green, blue, tf.gather_nd(hue, indices))

        return _on_some(active, rotate, channels)

    # The four orders as six slots: saturation-hue-contrast uses S1 H1 C,
    # hue first H1 C S2, hue last C S2 H3, contrast-hue-saturation C H2 S2.
    channels = scale(channels, case > 0)
    channels = saturate(channels, case == 4)
    channels = hue_at(channels, (case == 1) | (case == 4))
    channels = blend_contrast(channels, case > 0)
    channels = hue_at(channels, case == 3)
    channels = saturate(channels, (case >= 1) & (case <= 3))
    return hue_at(channels, case == 2)


def blur_matrices(sigma, kernel_size, side):
    """`(B, side, side)`: a Gaussian blur with reflected borders along one axis."""
    radius = kernel_size // 2
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-0.5 * tf.square(offsets[None, :] / sigma[:, None]))
    weights = weights / tf.reduce_sum(weights, axis=-1, keepdims=True)  # (B, k)
    # Output pixel i reads i + offset, reflected at the borders (no edge repeat).
    source = np.arange(side)[:, None] + np.arange(-radius, radius + 1)[None, :]
    source = np.abs(source)
    source = np.where(source > side - 1, 2 * (side - 1) - source, source)
    taps = tf.constant(np.eye(side, dtype=np.float32)[source])  # (side, k, side)
    return tf.einsum("bk,ikj->bij", weights, taps)


def maybe_blur(planes, config, draws, prob):
    """The blur of `augment.py` on the images drawn for it, `(B, 3, S, S)`."""
    low, high = config.blur_sigma
    sigma = low + (high - low) * draws["sigma"]

    def blur(some, indices):
        matrices = blur_matrices(tf.gather_nd(sigma, indices), config.kernel_size, config.image_size)
        # Rows (height) first, then columns, as the per-image convolutions.
        some = tf.matmul(matrices[:, None], some)
        return (tf.matmul(some, matrices[:, None], transpose_b=True),)

    if prob >= 1:
        indices = tf.range(tf.shape(planes)[0], dtype=tf.int64)[:, None]
        return blur(planes, indices=indices)[0]
    return _on_some(draws["blur"] < prob, blur, (planes,))[0]


def augment_views(planes, config, draws, view_index):
    """One view of every image of a batch.

    Args:
        planes: float32 `(B, 3, H, W)`, 0..255: the images, channels first,
            with static `H`, `W` (see `supports`).
        config: an `augment.AugmentationConfig`.
        draws: dict of the view's uniform draws with a leading batch axis
            (`view_parameters.draw` with batch shape `(B,)`).
        view_index: 0 or 1, for the per-view blur and solarization
            probabilities.

    Returns:
        uint8 `(B, S, S, 3)`.
    """
    size = config.image_size
    views = crop_resize_flip(planes, config, draws)
    channels = tf.unstack(tf.reshape(views, [-1, 3, size * size]), axis=1)
    if config.jitter_prob > 0:
        channels = colour_jitter(channels, config, draws)
    if config.grayscale_prob > 0:
        # keras-cv's Grayscale: the ITU-R 601 gray level in every channel.
        apply = (draws["gray"] < config.grayscale_prob)[:, None]
        gray = _gray(*channels)
        channels = [tf.where(apply, gray, channel) for channel in channels]
    views = tf.reshape(tf.stack(channels, axis=1), [-1, 3, size, size])
    blur_prob = config.blur_prob[view_index]
    if blur_prob > 0:
        views = maybe_blur(views, config, draws, blur_prob)
    views = tf.round(view_parameters.clip(views))
    solarize_prob = config.solarize_prob[view_index]
    if solarize_prob > 0:
        # keras-cv's Solarization: values at or above the threshold inverted.
        apply = _per_image(draws["solarize"] < solarize_prob, views)
        views = tf.where(apply & (views >= config.solarize_threshold), 255.0 - views, views)
    return tf.cast(tf.transpose(views, [0, 2, 3, 1]), tf.uint8)
