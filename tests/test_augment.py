"""The two-view augmentation: presets, per-image randomness, each operation's
behaviour with its probability forced to 0 or 1, how the Keras and keras-cv
layers not used differ from torchvision, and the preview script."""

import dataclasses
import importlib.util
import itertools
import os
from pathlib import Path

import keras
import keras_cv
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import flags

from keras_directcopy.data import augment
from keras_directcopy.data.augment import (
    PRESET_NAMES,
    AugmentationConfig,
    TwoViewAugmenter,
    get_preset,
)

ROOT = Path(__file__).resolve().parents[1]
# Every random operation off and the crop the whole image: the identity.
IDENTITY = dict(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_prob=0.0,
    jitter_prob=0.0,
    grayscale_prob=0.0,
    blur_prob=(0.0, 0.0),
    solarize_prob=(0.0, 0.0),
)


def textured_image(height=32, width=32, seed=0):
    """A colour gradient plus noise: crops, flips and blurs all change it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([255 * y / height, 255 * x / width, 128 + 0 * x], axis=-1)
    noise = rng.integers(-40, 41, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def checkerboard(size=32, low=20, high=230):
    pattern = (np.add.outer(np.arange(size), np.arange(size)) % 2).astype(bool)
    image = np.where(pattern[..., None], high, low).repeat(3, axis=-1)
    image[..., 1] = np.where(pattern, low, high)  # colourful, so gray/jitter would show
    return image.astype(np.uint8)


def seeds(count):
    return [tf.constant([7, index], tf.int32) for index in range(count)]


# Presets: sizes, recipe numbers, shapes and dtypes.


@pytest.mark.parametrize(
    "name, input_shape, size",
    [
        ("cifar10", (32, 32, 3), 32),
        ("cifar100", (32, 32, 3), 32),
        ("stl10", (96, 96, 3), 96),
        ("imagenet2012", (180, 240, 3), 224),
        ("folder", (75, 50, 3), 224),
    ],
)
def test_each_preset_gives_two_uint8_views_of_its_size(name, input_shape, size):
    config = get_preset(name)
    assert config.image_size == size
    augmenter = TwoViewAugmenter(config, seed=1)
    image = textured_image(*input_shape[:2])
    views = augmenter(image)
    assert views.dtype == tf.uint8 and views.shape == (2, size, size, 3)
    one = augmenter.view(image, 1)
    assert one.dtype == tf.uint8 and one.shape == (size, size, 3)
    # A 0..255 float image is accepted too and gives the same views for the same seed.
    seed = tf.constant([3, 4])
    np.testing.assert_array_equal(
        augmenter(image, seed=seed), augmenter(tf.cast(image, tf.float32), seed=seed)
    )
    # Values span the 0..255 range like an image, not a 0..1 or constant output.
    values = views.numpy()
    assert values.max() > 100 and values.std() > 10


def test_preset_numbers():
    cifar = get_preset("cifar10")
    assert get_preset("cifar100") == cifar
    assert cifar.crop_scale == (0.08, 1.0) and cifar.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert (cifar.brightness, cifar.contrast, cifar.saturation, cifar.hue) == (0.4, 0.4, 0.2, 0.1)
    assert (cifar.flip_prob, cifar.jitter_prob, cifar.grayscale_prob) == (0.5, 0.8, 0.2)
    assert cifar.blur_prob == (0.0, 0.0) and cifar.solarize_prob == (0.0, 0.2)
    imagenet = get_preset("imagenet2012")
    assert imagenet.blur_prob == (1.0, 0.1) and imagenet.solarize_prob == (0.0, 0.2)
    assert imagenet.blur_sigma == (0.1, 2.0) and imagenet.kernel_size == 23  # BYOL's 23 px
    assert get_preset("stl10").image_size == 96 and get_preset("stl10").kernel_size == 9
    assert get_preset("folder") == imagenet
    assert get_preset("folder:/any/path", image_size=64).image_size == 64
    # A preset resized to 32 px follows the CIFAR rule: no blur.
    assert get_preset("folder", image_size=32).blur_prob == (0.0, 0.0)


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError, match="Unknown augmentation preset 'mnist'") as error:
        get_preset("mnist")
    for name in PRESET_NAMES:
        assert name in str(error.value)
    assert set(PRESET_NAMES) == {"cifar10", "cifar100", "stl10", "imagenet2012", "folder"}


@pytest.mark.parametrize(
    "field, value",
    [("flip_prob", 1.5), ("blur_prob", (0.5,)), ("crop_scale", (0.5, 0.2)), ("hue", 0.7),
     ("blur_kernel_size", 4), ("solarize_prob", (-0.1, 0.2))],
)
def test_config_rejects_invalid_values(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(get_preset("cifar10"), **{field: value})


# Randomness: per image, per view, per epoch.


def test_identical_images_get_different_views_in_a_parallel_map():
    image = textured_image()
    augmenter = TwoViewAugmenter(get_preset("cifar10"))
    dataset = tf.data.Dataset.from_tensors(image).repeat(16)
    views = np.stack(list(dataset.map(augmenter, num_parallel_calls=tf.data.AUTOTUNE)))
    assert views.shape == (16, 2, 32, 32, 3)
    distinct_first_views = {views[i, 0].tobytes() for i in range(16)}
    assert len(distinct_first_views) == 16
    assert all(not np.array_equal(views[i, 0], views[i, 1]) for i in range(16))


def test_epochs_differ_under_a_global_seed():
    # A plain stateful random op would replay the same views every epoch
    # once keras.utils.set_random_seed fixes its seed.
    keras.utils.set_random_seed(0)
    augmenter = TwoViewAugmenter(get_preset("cifar10"))
    dataset = tf.data.Dataset.from_tensors(textured_image()).repeat(4).map(augmenter)
    first, second = np.stack(list(dataset)), np.stack(list(dataset))
    assert not np.array_equal(first, second)
    # ... and the same global seed gives the same augmenter again.
    keras.utils.set_random_seed(0)
    again = tf.data.Dataset.from_tensors(textured_image()).repeat(4).map(
        TwoViewAugmenter(get_preset("cifar10"))
    )
    np.testing.assert_array_equal(np.stack(list(again)), first)


def test_seeds_make_views_reproducible():
    image = textured_image()
    config = get_preset("cifar10")
    augmenter = TwoViewAugmenter(config)
    seed = tf.constant([1, 2])
    np.testing.assert_array_equal(augmenter(image, seed=seed), augmenter(image, seed=seed))
    views = augmenter(image, seed=seed)
    np.testing.assert_array_equal(views[1], augmenter.view(image, 1, seed=seed))
    assert not np.array_equal(views, augmenter(image, seed=tf.constant([1, 3])))
    # A seeded augmenter in a sequential map reproduces the same views.
    dataset = tf.data.Dataset.from_tensors(image).repeat(3)
    run = lambda: np.stack(list(dataset.map(TwoViewAugmenter(config, seed=5))))  # noqa: E731
    np.testing.assert_array_equal(run(), run())


# Each operation, with its probability forced to 0 or 1.


def test_identity_config_returns_the_image():
    image = textured_image()
    config = AugmentationConfig(image_size=32, **IDENTITY)
    views = TwoViewAugmenter(config)(image)
    np.testing.assert_array_equal(views[0], image)
    np.testing.assert_array_equal(views[1], image)


def test_no_blur_ever_at_32_px():
    image = checkerboard()  # maximal detail: any blur changes it
    for name in ("cifar10", "cifar100"):
        config = get_preset(name)
        assert config.blur_prob == (0.0, 0.0)
        # The preset with everything but its (absent) blur switched off.
        unblurred = dataclasses.replace(
            config, **{k: v for k, v in IDENTITY.items() if k != "blur_prob"}
        )
        augmenter = TwoViewAugmenter(unblurred)
        for seed in seeds(8):
            np.testing.assert_array_equal(augmenter(image, seed=seed), np.stack([image, image]))
    # The check has teeth: the same config with blur forced on does change it.
    blurred = TwoViewAugmenter(dataclasses.replace(unblurred, blur_prob=(1.0, 1.0)))
    views = blurred(image, seed=tf.constant([0, 0])).numpy().astype(int)
    assert np.abs(views - image.astype(int)).mean() > 5


def test_blur_preserves_flat_images_and_smooths_edges():
    # sigma fixed at 2 px, so the blur is visibly wide whatever the seed.
    config = AugmentationConfig(
        image_size=64, **dict(IDENTITY, blur_prob=(1.0, 0.0)), blur_sigma=(2.0, 2.0)
    )
    assert config.kernel_size == 7
    augmenter = TwoViewAugmenter(config)
    flat = np.full((64, 64, 3), 77, np.uint8)
    np.testing.assert_array_equal(augmenter.view(flat, 0), flat)  # normalized kernel
    edge = np.zeros((64, 64, 3), np.uint8)
    edge[:, 32:] = 255
    blurred = augmenter.view(edge, 0, seed=tf.constant([0, 1])).numpy()
    np.testing.assert_array_equal(augmenter.view(edge, 1), edge)  # view 2: blur_prob 0
    assert blurred[:, 31].min() > 0 and blurred[:, 32].max() < 255
    np.testing.assert_array_equal(blurred[:, :29], 0)  # 7 px kernel: reaches 3 px only
    np.testing.assert_array_equal(blurred[:, 35:], 255)


def test_solarize_only_on_view_2_and_only_bright_values():
    config = AugmentationConfig(image_size=32, **dict(IDENTITY, solarize_prob=(0.0, 1.0)))
    augmenter = TwoViewAugmenter(config)
    bright = (128 + textured_image() // 2).astype(np.uint8)  # 128..255: no dark pixel
    for seed in seeds(4):
        views = augmenter(bright, seed=seed).numpy()
        np.testing.assert_array_equal(views[0], bright)
        np.testing.assert_array_equal(views[1], 255 - bright)
    dark = (textured_image() // 2).astype(np.uint8)  # 0..127: below the threshold
    np.testing.assert_array_equal(augmenter.view(dark, 1), dark)
    # The presets never solarize view 1.
    assert all(get_preset(name).solarize_prob[0] == 0 for name in PRESET_NAMES)


def test_flip_and_grayscale_forced_on():
    image = textured_image()
    flip = AugmentationConfig(image_size=32, **dict(IDENTITY, flip_prob=1.0))
    np.testing.assert_array_equal(TwoViewAugmenter(flip).view(image, 0), image[:, ::-1])
    gray = AugmentationConfig(image_size=32, **dict(IDENTITY, grayscale_prob=1.0))
    view = TwoViewAugmenter(gray).view(image, 1).numpy().astype(int)
    assert np.all(view[..., 0] == view[..., 1]) and np.all(view[..., 1] == view[..., 2])
    # ITU-R 601 weights, as torchvision's rgb_to_grayscale.
    expected = np.round(image.astype(float) @ np.array([0.2989, 0.587, 0.114]))
    np.testing.assert_allclose(view[..., 0], expected, atol=1)


def test_brightness_factors_stay_in_range_and_vary():
    config = AugmentationConfig(
        image_size=32,
        **dict(IDENTITY, jitter_prob=1.0),
        brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0,
    )
    augmenter = TwoViewAugmenter(config)
    image = np.full((32, 32, 3), 100, np.uint8)
    levels = {int(augmenter.view(image, 0, seed=seed)[0, 0, 0]) for seed in seeds(20)}
    assert min(levels) >= 60 and max(levels) <= 140  # factors in [0.6, 1.4]
    assert len(levels) > 10


def test_jitter_probability_zero_and_one():
    image = textured_image()
    base = dict(IDENTITY, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
    never = TwoViewAugmenter(AugmentationConfig(image_size=32, **dict(base, jitter_prob=0.0)))
    always = TwoViewAugmenter(AugmentationConfig(image_size=32, **dict(base, jitter_prob=1.0)))
    for seed in seeds(6):
        np.testing.assert_array_equal(never(image, seed=seed)[0], image)
        assert not np.array_equal(always(image, seed=seed)[0], image)


def test_jitter_order_matches_torchvision_permutations():
    # torchvision applies brightness (b), contrast (c), saturation (s) and hue
    # (h) in a uniformly random order. For each of the 24 orders, the result
    # must equal exactly one of the module's four cases, and each case must be
    # drawn with the share of the orders it stands for.
    rng = np.random.default_rng(0)
    # Reddish pixels: rotating the hue changes their gray level, so the
    # order matters; the factors keep every value inside 0..255 (no clipping).
    pixels = np.stack(
        [rng.uniform(140, 180, 256), rng.uniform(70, 100, 256), rng.uniform(70, 90, 256)], axis=-1
    ).astype(np.float32)
    factors = {"b": 1.1, "c": 0.7, "s": 1.15, "h": 0.08}
    weights = np.array([0.2989, 0.587, 0.114], np.float32)  # torchvision's gray

    def reference(order):
        x = pixels
        for name in order:
            if name == "b":
                x = x * factors["b"]
            elif name == "c":
                x = factors["c"] * x + (1 - factors["c"]) * (x @ weights).mean()
            elif name == "s":
                x = factors["s"] * x + (1 - factors["s"]) * (x @ weights)[:, None]
            else:
                x = tf.image.adjust_hue(x[:, None], factors["h"]).numpy()[:, 0]
            assert x.min() >= 0 and x.max() <= 255
        return x

    config = get_preset("cifar10")  # strengths 0.4, 0.4, 0.2, 0.1
    jitter_factors = tf.constant([
        (factors["b"] - 0.6) / 0.8, (factors["c"] - 0.6) / 0.8,
        (factors["s"] - 0.8) / 0.4, (factors["h"] / 0.1 + 1) / 2,
    ])
    # Midpoints of the four cases' intervals of the order draw, and their lengths.
    cases = {1 / 6: 1 / 3, 1 / 2: 1 / 3, 3 / 4: 1 / 6, 11 / 12: 1 / 6}
    outputs = {
        u: augment._colour_jitter(
            tf.constant(pixels), config,
            {"jitter": tf.constant(0.0), "jitter_factors": jitter_factors,
             "jitter_order": tf.constant(u)},
        ).numpy()
        for u in cases
    }
    counts = dict.fromkeys(cases, 0)
    for order in itertools.permutations("bcsh"):
        expected = reference(order)
        matches = [u for u, out in outputs.items() if np.abs(out - expected).max() < 0.05]
        assert len(matches) == 1, order
        counts[matches[0]] += 1
    assert {u: count / 24 for u, count in counts.items()} == pytest.approx(cases)
    # The cases do differ on these pixels by more than rounding.
    assert min(
        np.abs(outputs[u] - outputs[v]).max() for u in cases for v in cases if u < v
    ) > 1.0


def test_crop_is_a_window_of_the_image():
    # A quarter-area square crop of a 64 px image at 32 px is a 32x32 window, unscaled.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    config = AugmentationConfig(image_size=32, **dict(IDENTITY, crop_scale=(0.25, 0.25)))
    augmenter = TwoViewAugmenter(config)
    corners = set()
    for seed in seeds(6):
        view = augmenter.view(image, 0, seed=seed).numpy()
        matches = [
            (top, left)
            for top in range(33)
            for left in range(33)
            if np.array_equal(image[top:top + 32, left:left + 32], view)
        ]
        assert len(matches) == 1
        corners.add(matches[0])
    assert len(corners) > 1  # the position is random


def test_crop_falls_back_to_the_center_like_torchvision():
    # A full-area square crop cannot fit a 20 x 40 image: torchvision then
    # takes the largest centered crop with the ratio clamped into range.
    image = np.random.default_rng(1).integers(0, 256, (20, 40, 3), dtype=np.uint8)
    config = AugmentationConfig(image_size=20, **IDENTITY)
    view = TwoViewAugmenter(config).view(image, 0)
    np.testing.assert_array_equal(view, image[:, 10:30])
    with pytest.raises(ValueError, match="view_index"):
        TwoViewAugmenter(config).view(image, 2)


def test_crop_area_and_ratio_bounds():
    # With a strong zoom (4% of the area, ratio 1), the 32 px view of a 200 px
    # gradient covers a 40 px range of the gradient.
    y = np.linspace(0, 255, 200)
    image = np.repeat(np.repeat(y[:, None, None], 200, axis=1), 3, axis=2).astype(np.uint8)
    config = AugmentationConfig(image_size=32, **dict(IDENTITY, crop_scale=(0.04, 0.04)))
    view = TwoViewAugmenter(config).view(image, 0, seed=tf.constant([2, 2])).numpy().astype(int)
    spread = view[-1, 0, 0] - view[0, 0, 0]
    assert abs(spread - 255 * 40 / 200) < 8


# The flip, grayscale and solarization: probabilities and randomness.


def test_flip_grayscale_solarization_draw_per_image_per_epoch_and_reproducibly():
    # Only these steps are random here. The image is bright (128..255,
    # so solarized views are dark) and brightens from left to right (flipped
    # views darken), whether gray or not.
    image = (128 + textured_image() // 2).astype(np.uint8)
    config = AugmentationConfig(
        image_size=32, **dict(IDENTITY, flip_prob=0.3, grayscale_prob=0.2, solarize_prob=(0.0, 0.4))
    )
    dataset = tf.data.Dataset.from_tensors(image).repeat(400)

    def epoch(augmenter, parallel=None):
        views = np.stack(list(dataset.map(augmenter, num_parallel_calls=parallel))).astype(int)
        first_views = views[:, 0]
        left, right = first_views[:, :, :8], first_views[:, :, -8:]
        flipped = left.mean(axis=(1, 2, 3)) > right.mean(axis=(1, 2, 3))
        gray = (first_views[..., 0] == first_views[..., 2]).all(axis=(1, 2))
        solarized = views[:, 1].max(axis=(1, 2, 3)) < 128
        return np.array([flipped, gray, solarized], float)

    augmenter = TwoViewAugmenter(config, seed=4)
    first, second = epoch(augmenter), epoch(augmenter)
    # Each probability, per image (binomial standard error at most 0.025).
    for rates in (first, second, epoch(TwoViewAugmenter(config), tf.data.AUTOTUNE)):
        assert rates.mean(axis=1) == pytest.approx([0.3, 0.2, 0.4], abs=0.08)
    assert not np.array_equal(first, second)  # a new epoch draws anew
    np.testing.assert_array_equal(epoch(TwoViewAugmenter(config, seed=4)), first)
    # The three steps draw independently of one another.
    assert abs(np.corrcoef(first)[np.triu_indices(3, 1)]).max() < 0.2


def test_views_do_not_depend_on_the_global_dtype_policy():
    # The training sets a mixed_float16 policy before building the augmenter;
    # float16 holds 0..255 only to 1/8 above 128.
    image = textured_image()
    config = dataclasses.replace(get_preset("stl10", image_size=32), grayscale_prob=0.5,
                                 solarize_prob=(0.5, 0.5))
    augmenter = TwoViewAugmenter(config, seed=6)
    expected = np.stack([augmenter(image) for _ in range(8)])
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        augmenter = TwoViewAugmenter(config, seed=6)
        views = np.stack([augmenter(image) for _ in range(8)])
    finally:
        keras.config.set_dtype_policy(previous)
    np.testing.assert_array_equal(views, expected)


# The Keras 3 and keras-cv layers this module does not use, on concrete
# inputs: each computes something else than torchvision (and this module).


def jitter_only(**strengths):
    """An augmenter whose one random step is the colour jitter with these strengths."""
    jitter = dict(dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0), **strengths)
    return TwoViewAugmenter(
        AugmentationConfig(image_size=8, **dict(IDENTITY, jitter_prob=1.0), **jitter), seed=0
    )


def test_keras_brightness_adds_where_torchvision_multiplies():
    image = np.tile(np.array([50, 100, 200], np.uint8), (8, 8, 1))
    # Brightness factor fixed at 0.1 of the value range: + 25.5 on every value.
    for layer in (keras.layers.RandomBrightness(factor=(0.1, 0.1)),
                  keras.layers.RandomColorJitter(brightness_factor=(0.1, 0.1))):
        shifted = layer(image.astype(np.float32), training=True).numpy()
        np.testing.assert_allclose(shifted - image, 25.5)
    # Here (torchvision): every value times one factor in [0.6, 1.4].
    augmenter = jitter_only(brightness=0.4)
    for _ in range(5):
        pixel = augmenter.view(image, 0).numpy()[0, 0].astype(float)
        factor = pixel[1] / 100  # green never reaches 255
        assert 0.6 - 0.01 <= factor <= 1.4 + 0.01
        np.testing.assert_allclose(pixel, np.minimum(255, factor * np.array([50, 100, 200])),
                                   atol=1.5)


def test_keras_contrast_blends_each_channel_with_its_own_mean():
    # Half reddish, half bluish; green is 60 everywhere. The mean gray level is 80.64.
    image = np.tile(np.array([60, 60, 160], np.uint8), (8, 8, 1))
    image[:4] = [160, 60, 60]
    mean_gray = np.mean(image.astype(float) @ [0.2989, 0.587, 0.114])
    layer = keras.layers.RandomContrast(factor=0.4, seed=0)
    for _ in range(5):
        out = layer(image.astype(np.float32), training=True).numpy()
        np.testing.assert_allclose(out[..., 1], 60, atol=1e-4)  # its own mean: unchanged
        assert out[0, 0, 0] >= 160 - 1e-4  # factor=0.4 draws factors in [1, 1.4] only
    # Here (torchvision): every channel blends with the mean gray, factor in [0.6, 1.4].
    augmenter = jitter_only(contrast=0.4)
    factors = []
    for _ in range(8):
        out = augmenter.view(image, 0).numpy().astype(float)
        factor = (out[0, 0, 0] - mean_gray) / (160 - mean_gray)
        np.testing.assert_allclose(out[..., 1], factor * 60 + (1 - factor) * mean_gray, atol=1.5)
        factors.append(factor)
    assert 0.59 < min(factors) < 0.95 and 1.05 < max(factors) < 1.41


def test_keras_saturation_keeps_the_brightest_channel():
    image = np.tile(np.array([200, 100, 50], np.uint8), (8, 8, 1))
    gray = 200 * 0.2989 + 100 * 0.587 + 50 * 0.114
    layer = keras.layers.RandomSaturation(factor=0.2, seed=0)
    for _ in range(5):
        pixel = layer(image.astype(np.float32), training=True).numpy()[0, 0]
        assert pixel.max() == pytest.approx(200, abs=1e-3)  # HSV value kept
        assert np.ptp(pixel) <= 0.25 * 150 + 1e-3  # factor=0.2 always desaturates
    # Here (torchvision): blending with the gray image moves every channel, the
    # brightest too, and the saturation factor is in [0.8, 1.2].
    augmenter = jitter_only(saturation=0.2)
    for _ in range(5):
        pixel = augmenter.view(image, 0).numpy()[0, 0].astype(float)
        factor = np.ptp(pixel) / 150
        assert 0.8 - 0.01 <= factor <= 1.2 + 0.01
        np.testing.assert_allclose(pixel, factor * np.array([200, 100, 50]) + (1 - factor) * gray,
                                   atol=1.5)


def test_keras_hue_is_the_rotation_used_here():
    # The one jitter layer that computes the same thing: a shift of +-0.08 of
    # the colour wheel is tf.image.adjust_hue's rotation, which this module calls.
    image = np.tile(np.array([200, 100, 50], np.float32), (4, 4, 1))
    rotations = [tf.image.adjust_hue(image / 255, shift).numpy() * 255 for shift in (0.08, -0.08)]
    layer = keras.layers.RandomHue(factor=(0.16, 0.16), seed=0)
    for _ in range(4):
        out = layer(image, training=True).numpy()
        assert min(np.abs(out - rotated).max() for rotated in rotations) < 0.05


def test_library_blurs_pad_with_zeros():
    flat = np.full((1, 16, 16, 3), 200, np.float32)
    for blurred in (
        keras.layers.RandomGaussianBlur(factor=(1.0, 1.0), kernel_size=7, sigma=(1.0, 1.0))(
            flat, training=True),
        keras_cv.layers.RandomGaussianBlur(kernel_size=7, factor=(1.0, 1.0))(flat),
    ):
        blurred = np.asarray(blurred)
        assert blurred[0, 0, 0, 0] < 150  # the corner darkens
        np.testing.assert_allclose(blurred[0, 8, 8], 200, atol=1e-3)
    # Here (torchvision): reflected borders keep a flat image flat.
    config = AugmentationConfig(image_size=16, **dict(IDENTITY, blur_prob=(1.0, 1.0)),
                                blur_sigma=(1.0, 1.0), blur_kernel_size=7)
    np.testing.assert_array_equal(TwoViewAugmenter(config).view(flat[0].astype(np.uint8), 0),
                                  flat[0])
    # Keras reads its factor as a range of probabilities: factor=1.0 blurs about half.
    layer = keras.layers.RandomGaussianBlur(factor=1.0, kernel_size=7, sigma=(1.0, 1.0), seed=0)
    board = checkerboard(16)[None].astype(np.float32)
    changed = [not np.array_equal(layer(board, training=True), board) for _ in range(100)]
    assert 0.3 < np.mean(changed) < 0.7


def test_keras_cv_crop_and_resize_squashes_and_has_no_bicubic():
    image = np.random.default_rng(1).integers(0, 256, (20, 40, 3)).astype(np.float32)
    # Area 1, ratio 1 on a 20 x 40 image: the whole image squashed into 20 x 20
    # (its first and last columns kept), where torchvision crops the centered
    # square (test_crop_falls_back_to_the_center_like_torchvision).
    layer = keras_cv.layers.RandomCropAndResize((20, 20), (1.0, 1.0), (1.0, 1.0), seed=0)
    squashed = layer(image).numpy()
    np.testing.assert_allclose(squashed[:, 0], image[:, 0], atol=1e-3)
    np.testing.assert_allclose(squashed[:, -1], image[:, -1], atol=1e-3)
    assert np.abs(squashed - image[:, 10:30]).max() > 100
    # It resamples with tf.image.crop_and_resize: bilinear or nearest, no bicubic.
    bicubic = keras_cv.layers.RandomCropAndResize(
        (20, 20), (0.08, 1.0), (3 / 4, 4 / 3), interpolation="bicubic", seed=0
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="method"):
        bicubic(image)


def test_keras_solarization_cannot_hold_the_threshold_at_128():
    # Keras draws the threshold from [128 / 255, 128] here (the lower end is not
    # scaled by 255), so a value of 60 is often inverted.
    layer = keras.layers.Solarization(threshold_factor=(128 / 255, 128 / 255), seed=0)
    dark = np.full((2, 2, 3), 60, np.float32)
    outputs = {float(layer(dark, training=True)[0, 0, 0]) for _ in range(20)}
    assert outputs == {60.0, 195.0}
    # keras-cv's, used here, inverts exactly the values >= 128, as PIL.
    constant = keras_cv.core.ConstantFactorSampler(128.0)
    values = tf.constant([[[0.0, 60.0, 127.0], [128.0, 200.0, 255.0]]])
    solarized = keras_cv.layers.Solarization((0, 255), threshold_factor=constant)(values)
    np.testing.assert_array_equal(solarized, [[[0, 60, 127], [127, 55, 0]]])


def test_keras_cv_random_apply_needs_a_batch_axis_in_tf_data():
    # Why this module draws the probabilities itself (see its docstring).
    grayscale = keras_cv.layers.RandomApply(keras_cv.layers.Grayscale(output_channels=3),
                                            rate=0.5, seed=0)
    images = tf.data.Dataset.from_tensors(textured_image().astype(np.float32)).repeat(2)
    with pytest.raises(tf.errors.OperatorNotAllowedInGraphError):
        images.map(grayscale)
    batches_of_one = images.map(lambda image: grayscale(image[None])[0])
    assert [view.shape for view in batches_of_one] == [(32, 32, 3)] * 2


# The preview script.


@pytest.fixture(scope="module")
def show_script():
    spec = importlib.util.spec_from_file_location(
        "show_augmentations", ROOT / "scripts" / "show_augmentations.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shown_arrays(figure):
    """The images a figure's axes show, row by row: `[[original, view 1, view 2], ...]`."""
    axes = figure.get_axes()
    arrays = [np.asarray(axis.get_images()[0].get_array()) for axis in axes]
    return [arrays[index:index + 3] for index in range(0, len(arrays), 3)]


def test_show_augmentations_writes_the_grid_on_mock_cifar(show_script, tmp_path):
    output = tmp_path / "out" / "grid.png"
    with tfds.testing.mock_data(num_examples=5):
        rows, size = show_script.show_augmentations(
            "cifar10", None, "train", num_images=3, output=str(output), seed=0
        )
    assert (len(rows), size) == (3, 32)
    assert all(original.shape == (32, 32, 3) and views.shape == (2, 32, 32, 3) for original, views in rows)
    assert tf.io.decode_png(output.read_bytes()).shape[-1] in (3, 4)  # a PNG was written
    assert os.listdir(output.parent) == ["grid.png"]  # no temporary file left


def test_show_augmentations_main_with_flags_on_an_image_folder(show_script, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    originals = [textured_image(32, 48, seed=index) for index in range(2)]
    for index, image in enumerate(originals):
        (images / f"{index}.png").write_bytes(tf.io.encode_png(image).numpy())
    output = tmp_path / "grid.png"
    values = flags.FlagValues()
    show_script.define_flags(values)
    values([
        "show_augmentations", f"--dataset=folder:{images}", "--num_images=8",
        f"--output={output}", "--seed=3", "--image_size=32",
    ])
    show_script.main([], values)
    assert output.is_file()

    rows, size = show_script.augmentation_rows(f"folder:{images}", None, "train", 8, seed=3, image_size=32)
    figure = show_script.draw_grid(rows, size)
    shown = shown_arrays(figure)
    # Two rows (the folder's two images), each the original at its own shape, then its two views.
    assert len(shown) == 2
    assert {row[0].tobytes() for row in shown} == {image.tobytes() for image in originals}
    for (original, views), (shown_original, view_1, view_2) in zip(rows, shown):
        np.testing.assert_array_equal(shown_original, original)
        np.testing.assert_array_equal(view_1, views[0])
        np.testing.assert_array_equal(view_2, views[1])
        assert view_1.shape == view_2.shape == (32, 32, 3)
        assert not np.array_equal(view_1, view_2)
    assert [axis.get_title() for axis in figure.get_axes()[:3]] == ["original", "view 1 (32 px)", "view 2 (32 px)"]
    # The same seed gives the same views.
    again, _ = show_script.augmentation_rows(f"folder:{images}", None, "train", 8, seed=3, image_size=32)
    for (_, views), (_, views_again) in zip(rows, again):
        np.testing.assert_array_equal(views, views_again)
