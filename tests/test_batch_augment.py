"""The batched two-view augmentation (`data/batch_augment.py`) against the
per-image one (`data/augment.py`): each piece against the TensorFlow kernel it
rewrites, whole views on the same random draws, and its own randomness."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_directcopy.data import augment, batch_augment, view_parameters
from keras_directcopy.data.augment import AugmentationConfig, TwoViewAugmenter, get_preset

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


@pytest.fixture(scope="module")
def cifar_images():
    """The first 64 training images of the real CIFAR-10, uint8 `(64, 32, 32, 3)`."""
    with np.load(SHARED_CIFAR10 / "cifar10_part1of3.npz") as arrays:
        return arrays["x_train"][:64]


def test_resize_matrices_are_tensorflows_bicubic_resize_of_the_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 28, 3)).astype(np.float32)
    for _ in range(60):
        height, width = rng.integers(1, 41), rng.integers(1, 29)
        top, left = rng.integers(0, 41 - height), rng.integers(0, 29 - width)
        side = int(rng.choice([16, 32, 45]))
        expected = tf.image.resize(
            image[top : top + height, left : left + width], (side, side), "bicubic", antialias=False
        )
        rows = batch_augment.resize_matrices(tf.constant([top]), tf.constant([height]), 40, side)
        columns = batch_augment.resize_matrices(tf.constant([left]), tf.constant([width]), 28, side)
        resized = tf.einsum("brh,bhwc,bsw->brsc", rows, image[None], columns)[0]
        np.testing.assert_allclose(resized, expected, atol=3e-4, rtol=0)
        # As the batched path uses them: channels first.
        planes = tf.transpose(image[None], [0, 3, 1, 2])
        resized = tf.matmul(rows[:, None], tf.matmul(planes, columns[:, None], transpose_b=True))
        resized = tf.transpose(resized, [0, 2, 3, 1])[0]
        np.testing.assert_allclose(resized, expected, atol=3e-4, rtol=0)


def test_hue_rotation_is_tensorflows_adjust_hue_per_image():
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0, 255, (5, 500, 3)).astype(np.float32)
    pixels[0, :50] = pixels[0, :50, :1]  # gray pixels: no hue
    pixels[1, :50, 0] = pixels[1, :50, 1]  # ties between the top channels
    pixels[2, :50] = 0.0
    delta = np.array([0.1, -0.1, 0.03, -0.5, 0.5], np.float32)
    expected = [tf.image.adjust_hue(pixels[i][:, None], delta[i])[:, 0] for i in range(5)]
    rotated = batch_augment.rotate_hue(*np.moveaxis(pixels, -1, 0), delta)
    np.testing.assert_allclose(np.stack(rotated, axis=-1), np.stack(expected), atol=1e-3, rtol=0)


def test_blur_matrices_are_the_reflected_separable_blur():
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (3, 20, 20, 3)).astype(np.float32)
    sigma = np.array([0.1, 0.8, 2.0], np.float32)
    matrices = batch_augment.blur_matrices(tf.constant(sigma), 9, 20)
    blurred = tf.einsum("bij,bjwc,bkw->bikc", matrices, images, matrices)
    expected = [augment._gaussian_blur(tf.constant(images[i]), sigma[i], 9) for i in range(3)]
    np.testing.assert_allclose(blurred, np.stack(expected), atol=1e-3, rtol=0)


def per_image_draws(image_seeds, view_index):
    """The draws `TwoViewAugmenter.view` makes for each seed, stacked on a batch axis."""
    draws = [
        view_parameters.draw(tf.random.experimental.stateless_fold_in(seed, view_index))
        for seed in image_seeds
    ]
    return {name: tf.stack([d[name] for d in draws]) for name in draws[0]}


def assert_same_views(augmenter, images, view_index):
    """The batched and the per-image view of every image, on the same draws:
    equal to float32 rounding, i.e. at most one gray level apart, rarely."""
    image_seeds = [tf.constant([11, index], tf.int32) for index in range(len(images))]
    expected = np.stack(
        [augmenter.view(image, view_index, seed=seed) for image, seed in zip(images, image_seeds)]
    ).astype(np.int32)
    planes = tf.transpose(tf.cast(images, tf.float32), [0, 3, 1, 2])
    batched = batch_augment.augment_views(
        planes, augmenter.config, per_image_draws(image_seeds, view_index), view_index
    )
    assert batched.dtype == tf.uint8 and batched.shape == expected.shape
    difference = np.abs(batched.numpy().astype(np.int32) - expected)
    assert difference.max() <= 1
    # Off by one only where a value falls within rounding of a half.
    assert np.mean(difference > 0) < 1e-3, np.mean(difference > 0)


@pytest.mark.parametrize("view_index", [0, 1])
def test_cifar_preset_views_equal_the_per_image_ones(cifar_images, view_index):
    augmenter = TwoViewAugmenter(get_preset("cifar10"), seed=0)
    assert augmenter.supports_batches(cifar_images.shape[1:])
    assert_same_views(augmenter, cifar_images, view_index)


@pytest.mark.parametrize("view_index", [0, 1])
def test_stl10_preset_with_blur_equals_the_per_image_views(cifar_images, view_index):
    # Real images upsampled to STL-10's 96 px; view 1 always blurs, view 2 at 10%.
    images = tf.cast(tf.round(tf.image.resize(cifar_images[:24], (96, 96))), tf.uint8).numpy()
    config = dataclasses.replace(get_preset("stl10"), blur_prob=(1.0, 0.5), solarize_prob=(0.3, 0.5))
    assert_same_views(TwoViewAugmenter(config, seed=0), images, view_index)


@pytest.mark.parametrize(
    "changes",
    [
        # Every image jittered, in all four orders, grayscale and solarization often.
        dict(jitter_prob=1.0, grayscale_prob=0.5, solarize_prob=(0.5, 0.5)),
        # Operations of strength 0 left out; no flip; saturation above 1 and hue at its widest.
        dict(jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.9, hue=0.5, flip_prob=0.0),
        # A non-square source smaller than the view, and crops that rarely fit (the fallback).
        dict(crop_scale=(0.9, 1.0), crop_ratio=(3.0, 4.0)),
    ],
)
def test_other_configurations_equal_the_per_image_views(cifar_images, changes):
    config = dataclasses.replace(get_preset("cifar10"), **changes)
    images = cifar_images[:32, :24]  # (24, 32): wider than tall
    assert_same_views(TwoViewAugmenter(config, seed=0), images, 1)


def test_larger_images_are_supported_without_antialiasing_only(cifar_images):
    images = tf.cast(tf.image.resize(cifar_images[:16], (48, 40)), tf.uint8).numpy()
    antialiased = TwoViewAugmenter(get_preset("cifar10"), seed=0)
    assert not antialiased.supports_batches(images.shape[1:])
    with pytest.raises(ValueError, match="map the augmenter over single images"):
        antialiased.augment_batch(images)
    plain = TwoViewAugmenter(dataclasses.replace(get_preset("cifar10"), antialias=False), seed=0)
    assert plain.supports_batches(images.shape[1:])
    assert_same_views(plain, images, 0)


@pytest.mark.parametrize(
    "shape, interpolation",
    [((None, None, 3), "bicubic"), ((32, None, 3), "bicubic"), ((32, 32, 3), "bilinear"), ((32, 32), "bicubic")],
)
def test_unsupported_inputs_are_reported(shape, interpolation):
    config = dataclasses.replace(get_preset("cifar10"), interpolation=interpolation)
    assert not TwoViewAugmenter(config, seed=0).supports_batches(shape)


def test_augment_batch_gives_each_image_its_own_views_and_follows_its_seed():
    image = np.random.default_rng(3).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    images = np.repeat(image[None], 16, axis=0)
    augmenter = TwoViewAugmenter(get_preset("cifar10"), seed=0)
    views = augmenter.augment_batch(images)
    assert views.dtype == tf.uint8 and views.shape == (16, 2, 32, 32, 3)
    flat = views.numpy().reshape(32, -1)
    assert len({row.tobytes() for row in flat}) == 32, "identical images must get distinct views"
    # Fresh draws on every call; the same seed, the same views.
    assert not np.array_equal(augmenter.augment_batch(images), views)
    seed = tf.constant([5, 6], tf.int32)
    np.testing.assert_array_equal(
        augmenter.augment_batch(images, seed=seed), augmenter.augment_batch(images, seed=seed)
    )


def test_batched_draws_follow_the_configured_probabilities():
    # 4,096 pairs of views of one flat image at 200. Brightness (the only
    # jitter) moves it off 200; solarization turns 200 into 55.
    config = AugmentationConfig(
        image_size=8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
        contrast=0.0, saturation=0.0, hue=0.0, jitter_prob=0.3, grayscale_prob=0.0,
        blur_prob=(0.0, 0.0), solarize_prob=(0.0, 0.6),
    )
    images = np.full((4096, 8, 8, 3), 200, np.uint8)
    views = TwoViewAugmenter(config, seed=1).augment_batch(images).numpy()
    values = views[:, :, 0, 0, 0]
    assert np.all(views == values[:, :, None, None, None])  # flat views stay flat
    for view in (0, 1):
        jittered = np.mean(~np.isin(values[:, view], (200, 55)))
        assert abs(jittered - 0.3) < 0.03, (view, jittered)
    plain = values[:, 1][np.isin(values[:, 1], (200, 55))]
    assert abs(np.mean(plain == 55) - 0.6) < 0.03
    assert not np.any(values[:, 0] == 55)  # view 1 is never solarized
    # Independent draws for the two views of an image.
    either = np.mean((~np.isin(values, (200, 55))).any(axis=1))
    assert abs(either - (1 - 0.7 * 0.7)) < 0.03, either
