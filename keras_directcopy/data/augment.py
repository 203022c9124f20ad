"""The two-view augmentation of BYOL / SimCLR, one image at a time.

`TwoViewAugmenter` maps one uint8 image `(H, W, 3)` to its two augmented
views stacked, uint8 `(2, S, S, 3)`, with fresh random parameters for every
image and every view. It is meant for `tf.data.Dataset.map` (graph mode, any
`num_parallel_calls`); the encoders normalize the 0..255 values themselves.

Each view is, in this order (Grill et al. 2020, BYOL, appendix B, table 6):

1. random resized crop to `S x S` (area fraction `crop_scale`, aspect ratio
   log-uniform in `crop_ratio`, torchvision's sampling with ten tries and a
   center-crop fallback), bicubic with antialiasing, and a horizontal flip
   with probability `flip_prob`;
2. with probability `jitter_prob`, colour jitter with torchvision's factor
   ranges: brightness, contrast and saturation factors uniform in
   `[max(0, 1 - x), 1 + x]`, hue shift uniform in `[-hue, hue]` (fractions of
   the colour wheel);
3. grayscale with probability `grayscale_prob` (keras-cv's `Grayscale`);
4. Gaussian blur with probability `blur_prob[view]`, sigma uniform in
   `blur_sigma`, kernel about 10% of `S` (odd), reflected borders;
5. solarization with probability `solarize_prob[view]`: values >= 128 become
   `255 - value`, as PIL's `ImageOps.solarize` (keras-cv's `Solarization`).

Order of the jitter operations. torchvision applies the four operations in a
uniformly random order. Brightness (scaling) commutes with the three others,
and contrast (blending with the image's mean gray level) with saturation
(blending with each pixel's gray level), so only the positions of contrast
and saturation relative to the hue rotation matter: rotating the hue changes
gray levels. Of the six orders of (contrast, saturation, hue) a uniform
permutation gives, hue first or last each has probability 1/3, and hue
between contrast and saturation 1/6 per side. This module applies
brightness, then draws one of these four cases with those probabilities.
Every operation clips to 0..255, as torchvision's; where a value saturates,
the clipping is the one place where moving brightness to the front can
differ from torchvision.

Library layers. The grayscale and solarization steps are keras-cv's
`Grayscale` (ITU-R 601 weights, as torchvision's) and `Solarization` (a
constant threshold; values at or above it are inverted, as PIL's), applied
where this module's per-view draw says so. The other steps are written here
in TensorFlow ops, because the Keras 3.15 and keras-cv 0.9 layers for them
compute something else (tests/test_augment.py shows each difference on a
concrete image):

- crop: keras-cv's `RandomCropAndResize` resamples with
  `tf.image.crop_and_resize` (bilinear or nearest only, no antialiasing,
  sub-pixel boxes), draws the aspect ratio uniformly rather than
  log-uniformly and relative to the image's own sides (a 20 x 40 image at
  ratio 1 is squashed whole into the square, where torchvision crops its
  centered 20 x 20), and clips oversized boxes instead of trying ten times.
  Keras' `RandomCrop` and `RandomZoom` do not draw an area and a ratio.
- colour jitter: Keras' (and keras-cv's) `RandomColorJitter` apply
  brightness, contrast, saturation and hue in a fixed order, and each part
  differs: `RandomBrightness` adds `factor * 255` where torchvision
  multiplies; `RandomContrast` blends each channel with its own mean (not
  the image's mean gray level), and its `factor=0.4` never lowers contrast
  (factors in [1, 1.4]); `RandomSaturation` scales the HSV saturation, which
  keeps each pixel's brightest channel (torchvision blends with the gray
  image), and its `factor=0.2` draws scales in [-0.17, 0.25], so it always
  desaturates. `RandomHue` rotates the hue exactly as `tf.image.adjust_hue`,
  which this module calls inside its random order.
- blur: Keras' `RandomGaussianBlur` pads with zeros (a flat image darkens at
  its borders; torchvision reflects), draws separate sigmas for the two
  axes, and reads its probability as a range (`factor=1.0` blurs about half
  of the images); keras-cv's also pads with zeros.

The flip and the probabilities of the steps are this module's too. Keras'
`RandomFlip` flips with probability 0.5 only; keras-cv's `RandomFlip(rate=)`
computes the flip done here, with two full-image masks and selects (the
vertical one too, in "horizontal" mode). keras-cv's `RandomApply` gives a
per-view probability, but needs a batch axis in graph mode (on one
`(H, W, 3)` image its Python `if` on a tensor raises inside
`tf.data.Dataset.map`), draws from a generator of its own (a view would no
longer follow the image's `seed`), and runs the batch through `tf.map_fn`.
Keras' own
`RandomGrayscale` and `Solarization` are not used either: its
`Solarization` draws a threshold per image from
`[threshold_factor[0], 255 * threshold_factor[1]]` (the lower end is not
scaled, so no constant 128 is possible) and has no probability; and every
Keras 3 random layer draws from a Keras `SeedGenerator`, which reads its
state, then assigns the incremented value, in two operations: in a parallel
map, threads read the same state and repeat a seed. A
Keras `Pipeline` is not used: it only chains layers, and all the steps but
two are written here.

Randomness. Every call draws a fresh seed from a `tf.random.Generator` owned
by the augmenter (seeded by the `seed` argument, or else from Python's
`random`, which `keras.utils.set_random_seed` seeds), then uses stateless
random ops from that seed. The generator's state lives in a variable, so it
keeps advancing across epochs (fresh iterators). A plain stateful op such as
`tf.random.uniform` would restart its sequence with every new iterator once
a global seed is set (`keras.utils.set_random_seed`), and so repeat the same
views every epoch. With `num_parallel_calls`, which image gets which seed
depends on thread timing; pass `seed=` per image for exact reproducibility.

Speed. `python benchmarks/throughput/benchmark.py --augmenter_only
--dataset=NAME` times this module alone; its measurements are in
`benchmarks/throughput/README.md`. At 32 px most of a call's time is the
dispatch of its small ops, so `TwoViewAugmenter.augment_batch` computes the
same views for a batch of images of one size with ops over the whole batch
(`batch_augment.py`; equal to this path to float32 rounding, each image with
its own draws), and `datasets.pretrain_dataset` uses it for views of up to
64 px.
"""

import dataclasses
import numbers
import random

import keras_cv
import tensorflow as tf

from keras_directcopy.catalog import FOLDER_PREFIX
from keras_directcopy.data import batch_augment
from keras_directcopy.data.view_parameters import (
    GRAY_WEIGHTS,
    clip,
    crop_box,
    draw,
    gray_matrix,
    jitter_case,
    jitter_factors,
)

# Presets. Every number names its source:
# [BYOL] Grill et al. 2020, "Bootstrap your own latent", appendix B, table 6:
#   crop area (0.08, 1), ratio (3/4, 4/3), bicubic; flip 0.5; colour jitter
#   p 0.8 with brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1;
#   grayscale 0.2; blur p (1.0, 0.1), sigma (0.1, 2.0), 23x23 kernel at 224 px
#   (about 10% of the side); solarization p (0.0, 0.2).
# [solo-cifar] vturrisi/solo-learn, scripts/pretrain/cifar/byol.yaml, which
#   uses augmentations/asymmetric.yaml: crop_min_scale 0.08, crop_max_scale
#   1.0, colour jitter p 0.8 (0.4, 0.4, 0.2, 0.1), grayscale 0.2,
#   gaussian_blur prob 0.0 on both views, solarization prob (0.0, 0.2),
#   horizontal_flip 0.5, crop_size 32; CifarTransform
#   (solo/data/pretrain_dataloader.py) resizes bicubic with torchvision's
#   default ratio (3/4, 4/3).
# [luckmatters] facebookresearch/luckmatters, ssl/real-dataset/data/
#   transforms.py (the DirectPred reference code): CIFAR-10 uses
#   RandomResizedCrop(32) (default scale (0.08, 1), ratio (3/4, 4/3)), flip
#   0.5, ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale 0.2 and no
#   blur; STL-10 uses RandomResizedCrop(96) and a blur kernel of
#   int(0.1 * 96) = 9 px.
# [solo-imagenet] vturrisi/solo-learn, scripts/pretrain/imagenet/
#   augmentations/asymmetric.yaml: the [BYOL] numbers at crop_size 224.


def _byol_kernel_size(image_size):
    # int(10% of the side), made odd: 22 -> 23 px at 224 px, BYOL's kernel
    # ([BYOL]); 9 px at 96 px, the DirectPred code's STL-10 kernel ([luckmatters]).
    size = int(0.1 * image_size)
    return size + 1 if size % 2 == 0 else size


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Parameters of the two-view augmentation.

    Pairs are `(view 1, view 2)`. The defaults are BYOL's ImageNet recipe
    (Grill et al. 2020, table 6); only `image_size` has no default.

    Attributes:
        image_size: side `S` of the square output views, in pixels.
        crop_scale: range of the crop's area as a fraction of the image's.
        crop_ratio: range of the crop's width / height, sampled log-uniformly.
        flip_prob: probability of a horizontal flip.
        brightness, contrast, saturation: jitter strengths `x`; the factor is
            uniform in `[max(0, 1 - x), 1 + x]` (torchvision's `ColorJitter`).
        hue: hue shift range `[-hue, hue]`, as a fraction of a full turn,
            at most 0.5.
        jitter_prob: probability of applying the colour jitter.
        grayscale_prob: probability of converting to gray (3 equal channels).
        blur_prob: probability of Gaussian blur, per view.
        blur_sigma: range of the blur's standard deviation, in pixels.
        blur_kernel_size: odd side of the blur kernel; None: about 10% of
            `image_size` (23 at 224 px).
        solarize_prob: probability of solarization, per view.
        solarize_threshold: values at or above it (0..255) are inverted.
        interpolation: `tf.image.resize` method for the crop.
        antialias: antialias when a crop is shrunk (as PIL does).
    """

    image_size: int
    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    blur_prob: tuple = (1.0, 0.1)
    blur_sigma: tuple = (0.1, 2.0)
    blur_kernel_size: int | None = None
    solarize_prob: tuple = (0.0, 0.2)
    solarize_threshold: int = 128
    interpolation: str = "bicubic"
    antialias: bool = True

    def __post_init__(self):
        # Accept lists (e.g. from flags or JSON) but store hashable tuples.
        for name in ("crop_scale", "crop_ratio", "blur_prob", "blur_sigma", "solarize_prob"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2:
                raise ValueError(f"{name} must be a pair, got {getattr(self, name)!r}.")
            object.__setattr__(self, name, value)
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"image_size must be a positive integer, got {size!r}.")
        object.__setattr__(self, "image_size", int(size))
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(
                f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}."
            )
        low, high = self.crop_ratio
        if not 0 < low <= high:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}.")
        for name in ("flip_prob", "jitter_prob", "grayscale_prob"):
            _check_probability(name, getattr(self, name))
        for name in ("blur_prob", "solarize_prob"):
            for value in getattr(self, name):
                _check_probability(name, value)
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}.")
        low, high = self.blur_sigma
        if not 0 < low <= high:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}.")
        if self.blur_kernel_size is not None and (
            self.blur_kernel_size < 1 or self.blur_kernel_size % 2 == 0
        ):
            raise ValueError(
                f"blur_kernel_size must be odd and positive, got {self.blur_kernel_size}."
            )
        if self.kernel_size // 2 >= self.image_size:
            raise ValueError(
                f"blur_kernel_size {self.kernel_size} is too large for image_size "
                f"{self.image_size}."
            )
        if not 0 <= self.solarize_threshold <= 256:
            raise ValueError(
                f"solarize_threshold must be in 0..256, got {self.solarize_threshold}."
            )
        if self.interpolation not in ("bilinear", "bicubic", "area", "lanczos3", "nearest"):
            raise ValueError(f"Unsupported interpolation {self.interpolation!r}.")

    @property
    def kernel_size(self):
        """The blur kernel side actually used (odd)."""
        if self.blur_kernel_size is not None:
            return self.blur_kernel_size
        return _byol_kernel_size(self.image_size)


def _check_probability(name, value):
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}.")


# The per-dataset recipes. At 32 px the blur is off on both views
# ([solo-cifar] gaussian_blur prob 0.0; [luckmatters] has no blur for
# CIFAR-10); a 3 px kernel is a coarse blur for a 32 px image.
# `get_preset` applies the same rule to any preset resized to this size or less.
NO_BLUR_MAX_SIZE = 32
_CIFAR = dict(
    image_size=32,  # [solo-cifar] crop_size 32
    crop_scale=(0.08, 1.0),  # [solo-cifar] crop_min/max_scale; [luckmatters] default scale
    crop_ratio=(3 / 4, 4 / 3),  # torchvision default, used by [solo-cifar] and [luckmatters]
    flip_prob=0.5,  # [solo-cifar], [luckmatters]
    brightness=0.4,  # [solo-cifar], [luckmatters]
    contrast=0.4,  # [solo-cifar], [luckmatters]
    # [solo-cifar] and [BYOL]; [luckmatters] uses 0.4 for CIFAR-10.
    saturation=0.2,
    hue=0.1,  # [solo-cifar], [luckmatters]
    jitter_prob=0.8,  # [solo-cifar], [luckmatters]
    grayscale_prob=0.2,  # [solo-cifar], [luckmatters]
    blur_prob=(0.0, 0.0),  # [solo-cifar] gaussian_blur prob 0.0; [luckmatters] no blur
    solarize_prob=(0.0, 0.2),  # [solo-cifar] solarization prob 0.0 / 0.2
)
# ImageNet-style recipe: every number from [BYOL] table 6, the same as
# [solo-imagenet] asymmetric.yaml.
_IMAGENET = dict(
    image_size=224,  # [BYOL], [solo-imagenet] crop_size 224
    crop_scale=(0.08, 1.0),  # [BYOL], [solo-imagenet]
    crop_ratio=(3 / 4, 4 / 3),  # [BYOL]
    flip_prob=0.5,  # [BYOL], [solo-imagenet]
    brightness=0.4,  # [BYOL], [solo-imagenet]
    contrast=0.4,  # [BYOL], [solo-imagenet]
    saturation=0.2,  # [BYOL], [solo-imagenet]
    hue=0.1,  # [BYOL], [solo-imagenet]
    jitter_prob=0.8,  # [BYOL], [solo-imagenet]
    grayscale_prob=0.2,  # [BYOL], [solo-imagenet]
    blur_prob=(1.0, 0.1),  # [BYOL], [solo-imagenet]
    blur_sigma=(0.1, 2.0),  # [BYOL]
    solarize_prob=(0.0, 0.2),  # [BYOL], [solo-imagenet]
)
_PRESETS = {
    "cifar10": _CIFAR,
    "cifar100": _CIFAR,  # solo-learn's CIFAR configs serve both ("change here for cifar100")
    # STL-10: the ImageNet recipe at the native 96 px ([luckmatters] crops
    # STL-10 to 96 and blurs with a 9 px kernel, 10% of the side).
    "stl10": dict(_IMAGENET, image_size=96),
    "imagenet2012": _IMAGENET,
    # Any image folder: the ImageNet recipe, 224 px unless overridden.
    "folder": _IMAGENET,
}
PRESET_NAMES = tuple(_PRESETS)


def get_preset(name, image_size=None):
    """The `AugmentationConfig` of a dataset's recipe.

    Args:
        name: one of `PRESET_NAMES`: `cifar10`, `cifar100` (32 px, no blur),
            `stl10` (96 px), `imagenet2012` (224 px), `folder` (the ImageNet
            recipe, 224 px by default). A `folder:/path` dataset name is
            accepted as `folder`.
        image_size: output side overriding the preset's. The blur kernel
            follows it (about 10% of the side); at `NO_BLUR_MAX_SIZE` (32)
            px or less there is no blur, as in the CIFAR recipes.

    Returns:
        An `AugmentationConfig`.

    Raises:
        ValueError: on an unknown name, listing the valid ones.
    """
    key = "folder" if name.startswith(FOLDER_PREFIX) else name
    if key not in _PRESETS:
        raise ValueError(
            f"Unknown augmentation preset {name!r}. Valid presets: {', '.join(PRESET_NAMES)}."
        )
    fields = dict(_PRESETS[key])
    if image_size is not None:
        fields["image_size"] = int(image_size)
    if fields["image_size"] <= NO_BLUR_MAX_SIZE:
        # The CIFAR recipes' rule, applied to every preset resized that small.
        fields["blur_prob"] = (0.0, 0.0)
    return AugmentationConfig(**fields)


class TwoViewAugmenter:
    """Makes the two augmented views of one image.

    Args:
        config: an `AugmentationConfig`, e.g. `get_preset("cifar10")`.
        seed: int seed of the augmenter's random generator. None draws it
            from Python's `random`, which `keras.utils.set_random_seed`
            seeds. With a fixed seed, a sequential map
            (`num_parallel_calls=None`) gives reproducible views; a parallel
            map hands the generator's seeds to images in thread order.

    Call arguments:
        image: one uint8 (or 0..255 float) image, `(H, W, 3)`, any `H`, `W`.
        seed: optional int32 `(2,)` tensor, the stateless seed of this image
            (e.g. from `tf.data.Dataset.random`); None draws one from the
            augmenter's generator.

    Returns:
        uint8 `(2, S, S, 3)`: view 1 and view 2 stacked, `S` the config's
        `image_size`.

    Example:

    ```python
    augmenter = TwoViewAugmenter(get_preset("cifar10"))
    views = images.map(augmenter, num_parallel_calls=tf.data.AUTOTUNE)
    batches = views.batch(256)  # uint8 (256, 2, 32, 32, 3)
    ```
    """

    def __init__(self, config, seed=None):
        if not isinstance(config, AugmentationConfig):
            raise TypeError(f"config must be an AugmentationConfig, got {type(config).__name__}.")
        self.config = config
        # Built eagerly on the host, outside any function or distribution
        # strategy scope: one variable that every parallel map call advances
        # atomically, and that keeps advancing across epochs.
        if seed is None:
            seed = random.randrange(2**31)
        with tf.init_scope(), tf.device("/cpu:0"):
            self._generator = tf.random.Generator.from_seed(seed)
            self._grayscale, self._solarization = _library_layers(config)

    def __call__(self, image, seed=None):
        seed = self._image_seed(seed)
        return tf.stack([self.view(image, 0, seed=seed), self.view(image, 1, seed=seed)])

    def view(self, image, view_index, seed=None):
        """One augmented view of one image.

        Args:
            image: uint8 (or 0..255 float) RGB image `(H, W, 3)`.
            view_index: 0 (view 1) or 1 (view 2); selects the view's blur and
                solarization probabilities.
            seed: optional int32 `(2,)` stateless seed of the image. The view
                index is folded into it, so the two views of an image draw
                different parameters. None draws one from the generator.

        Returns:
            uint8 `(S, S, 3)`.
        """
        if view_index not in (0, 1):
            raise ValueError(f"view_index must be 0 or 1, got {view_index!r}.")
        config = self.config
        size = config.image_size
        seed = tf.random.experimental.stateless_fold_in(self._image_seed(seed), view_index)
        draws = draw(seed)
        image = tf.convert_to_tensor(image)
        if image.dtype != tf.uint8:
            image = tf.cast(image, tf.float32)
        image = _crop_resize_flip(image, config, draws)
        # The colour operations are per pixel: work on (S * S, 3), where the
        # channel mixes are small matrix products (fast, and no broadcasting
        # selects, which are slow on CPU).
        pixels = tf.reshape(image, [size * size, 3])
        if config.jitter_prob > 0:
            pixels = _colour_jitter(pixels, config, draws)
        image = tf.reshape(pixels, [size, size, 3])
        if config.grayscale_prob > 0:
            image = _maybe_apply(self._grayscale, image, draws["gray"] < config.grayscale_prob)
        blur_prob = config.blur_prob[view_index]
        if blur_prob > 0:
            image = _maybe_blur(image, config, draws, blur_prob)
        # Round once, before solarizing: the views are uint8 like the dataset
        # images, and the threshold then acts as PIL's on uint8 values.
        image = tf.round(clip(image))
        solarize_prob = config.solarize_prob[view_index]
        if solarize_prob > 0:
            image = _maybe_apply(self._solarization, image, draws["solarize"] < solarize_prob)
        return tf.ensure_shape(tf.cast(image, tf.uint8), (size, size, 3))

    def supports_batches(self, image_shape):
        """Whether `augment_batch` takes images of this static shape `(H, W, 3)`.

        True for images of one known size that the plain bicubic kernel
        resizes (see `batch_augment.supports`); image folders, whose images
        differ in size, go one image at a time through `__call__`.
        """
        return batch_augment.supports(self.config, image_shape)

    def augment_batch(self, images, seed=None):
        """The two views of every image of a batch, as `__call__` per image.

        The same augmentation, computed with ops over the whole batch (much
        faster for small images; see `batch_augment`); each image still gets
        its own random parameters.

        Args:
            images: uint8 (or 0..255 float) `(B, H, W, 3)`, `H` and `W` static
                (`supports_batches`).
            seed: optional int32 `(2,)` stateless seed of the batch; None
                draws one from the augmenter's generator.

        Returns:
            uint8 `(B, 2, S, S, 3)`.

        Raises:
            ValueError: if the images' shape is not supported.
        """
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4 or not self.supports_batches(images.shape[1:]):
            raise ValueError(
                f"augment_batch needs (batch, H, W, 3) images with static H and W and a bicubic "
                f"resize without antialiasing (or images no larger than the {self.config.image_size} "
                f"px views), got shape {images.shape} with interpolation "
                f"{self.config.interpolation!r}; map the augmenter over single images instead."
            )
        seed = self._image_seed(seed)
        batch = [images.shape[0]] if images.shape[0] is not None else tf.shape(images)[:1]
        # Channels first, once for both views: the resize is then two matrix
        # products per image, and the colour operations work on whole planes.
        planes = tf.transpose(tf.cast(images, tf.float32), [0, 3, 1, 2])
        views = [
            batch_augment.augment_views(
                planes,
                self.config,
                draw(tf.random.experimental.stateless_fold_in(seed, view_index), batch),
                view_index,
            )
            for view_index in (0, 1)
        ]
        return tf.stack(views, axis=1)

    def _image_seed(self, seed):
        if seed is not None:
            return tf.cast(tf.convert_to_tensor(seed), tf.int32)
        return self._generator.uniform_full_int([2], dtype=tf.int32)


def _library_layers(config):
    """keras-cv's `Grayscale` and `Solarization` for `config`; None where unused.

    Neither draws anything: this module draws whether a view gets them. They
    compute in float32 whatever the global dtype policy (the training may set
    mixed_float16, which holds 0..255 only to 1/8 above 128). keras-cv gives
    every layer a random generator; a seed keeps it from building one from
    TensorFlow's global generator, which is non-deterministic (and an error
    under `tf.config.experimental.enable_op_determinism`) when unseeded.
    """
    unused_seed = dict(seed=0, dtype="float32")
    grayscale = solarization = None
    if config.grayscale_prob > 0:
        grayscale = keras_cv.layers.Grayscale(output_channels=3, **unused_seed)
    if max(config.solarize_prob) > 0:
        # A constant threshold: values at or above it become 255 - value.
        threshold = keras_cv.core.ConstantFactorSampler(float(config.solarize_threshold))
        solarization = keras_cv.layers.Solarization(
            (0, 255), threshold_factor=threshold, **unused_seed
        )
    return grayscale, solarization


def _maybe_apply(layer, image, apply):
    """`layer(image)` where the scalar bool `apply` holds, else `image`."""
    # A conditional, not a blend: the layer runs only for the views it changes.
    return tf.cond(apply, lambda: layer(image), lambda: image)


def _crop_resize_flip(image, config, draws):
    """torchvision's RandomResizedCrop sampling, resize to `S x S`, flip.

    Returns:
        float32 `(S, S, 3)` in 0..255.
    """
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    top, left, crop_height, crop_width = crop_box(height, width, config, draws)
    begin = tf.cast(tf.stack([top, left, 0.0]), tf.int32)
    extent = tf.cast(tf.stack([crop_height, crop_width, 3.0]), tf.int32)
    crop = tf.slice(image, begin, extent)
    side = config.image_size
    # Antialiasing only changes shrunk crops. Where the static shape shows
    # that no crop can be larger than the output (CIFAR at 32 px), the plain
    # kernel gives the same values in less time.
    static_height, static_width = image.shape[0], image.shape[1]
    never_shrinks = (
        static_height is not None
        and static_width is not None
        and static_height <= side
        and static_width <= side
    )
    resized = tf.image.resize(
        crop,
        (side, side),
        method=config.interpolation,
        antialias=config.antialias and not never_shrinks,
    )
    if config.flip_prob > 0:
        # Reverse along an axis list that is [1] or empty: no select needed.
        flip = tf.cast(draws["flip"] < config.flip_prob, tf.int32)
        resized = tf.reverse(resized, tf.slice(tf.constant([1]), [0], tf.reshape(flip, [1])))
    # Bicubic interpolation overshoots; the colour operations expect 0..255.
    return clip(resized)


def _colour_jitter(pixels, config, draws):
    """torchvision's `ColorJitter` on `(P, 3)` floats in 0..255.

    See the module docstring for the order of the operations.
    """
    brightness, contrast, saturation, hue = jitter_factors(config, draws)

    # An operation of strength 0 is the identity, and is left out of the graph.
    def brightness_part(pixels):
        if config.brightness == 0:
            return pixels
        # Factors are >= 0 and pixels too, so only the top needs clipping.
        return tf.minimum(pixels * brightness, 255.0)

    def contrast_part(pixels):
        if config.contrast == 0:
            return pixels
        # Blend with the mean gray level of the whole image.
        mean_gray = tf.reduce_sum(tf.reduce_mean(pixels, axis=0) * GRAY_WEIGHTS)
        return clip(contrast * pixels + (1.0 - contrast) * mean_gray)

    def saturate(pixels):
        if config.saturation == 0:
            return pixels
        # Blend with the gray image: one (3, 3) channel mix.
        mix = saturation * tf.eye(3) + (1.0 - saturation) * gray_matrix()
        return clip(tf.matmul(pixels, mix))

    def rotate_hue(pixels):
        if config.hue == 0:
            return pixels
        # adjust_hue works through HSV, whose hue does not depend on the value
        # scale, so 0..255 floats are fine; the rotation keeps each pixel's
        # max and min channel, so no clipping is needed. The kernel wants
        # rank 3: (P, 1, 3), a free reshape.
        return tf.reshape(tf.image.adjust_hue(pixels[:, None], hue), tf.shape(pixels))

    # The orders of (contrast, saturation, hue) that give different images,
    # with their probabilities under a uniform random permutation (see the
    # module docstring); brightness commutes with all three, so it goes first.
    def hue_first():  # 1/3
        return saturate(contrast_part(rotate_hue(brightness_part(pixels))))

    def hue_last():  # 1/3
        return rotate_hue(saturate(contrast_part(brightness_part(pixels))))

    def contrast_hue_saturation():  # 1/6
        return saturate(rotate_hue(contrast_part(brightness_part(pixels))))

    def saturation_hue_contrast():  # 1/6
        return contrast_part(rotate_hue(saturate(brightness_part(pixels))))

    branch = jitter_case(config, draws)
    return tf.switch_case(
        branch,
        [lambda: pixels, hue_first, hue_last, contrast_hue_saturation, saturation_hue_contrast],
    )


def _maybe_blur(image, config, draws, prob):
    sigma_low, sigma_high = config.blur_sigma
    sigma = sigma_low + (sigma_high - sigma_low) * draws["sigma"]
    blur = lambda: _gaussian_blur(image, sigma, config.kernel_size)  # noqa: E731
    if prob >= 1:
        return blur()
    # A conditional, not a blend: at p = 0.1 the convolutions are skipped 90%
    # of the time.
    return tf.cond(draws["blur"] < prob, blur, lambda: image)


def _gaussian_blur(image, sigma, kernel_size):
    """Separable Gaussian blur of `(H, W, 3)`, borders reflected (as torchvision)."""
    radius = kernel_size // 2
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-0.5 * tf.square(offsets / sigma))
    weights = weights / tf.reduce_sum(weights)
    kernel = tf.tile(weights[:, None, None], [1, 3, 1])  # (k, channels, 1)
    padding = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
    padded = tf.pad(image[None], padding, mode="REFLECT")
    rows = tf.nn.depthwise_conv2d(padded, kernel[:, None], [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(rows, kernel[None], [1, 1, 1, 1], "VALID")[0]
