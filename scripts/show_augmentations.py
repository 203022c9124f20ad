"""Writes a PNG grid of two-view augmentations, to look at them.

One row per image: the original | view 1 | view 2, each tile `S x S` where
`S` is the preset's view size. The original is resized to fit the tile with
its aspect ratio kept (gray bars pad the rest). Tiles under 96 px are
enlarged by an integer factor, nearest neighbour, so CIFAR's 32 px views are
shown at 96 px with their pixels visible. Tiles are separated by a 4 px
white margin.

    python scripts/show_augmentations.py --dataset=cifar10 \
        --data_dir=~/tensorflow_datasets --output=runs/augmentations.png

`--dataset` is one of cifar10, cifar100, stl10, imagenet2012 (prepared in
`--data_dir`, see scripts/prepare_data.py) or folder:/path/to/images.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_directcopy import augment, data  # noqa: E402
from keras_directcopy.io_utils import atomic_save  # noqa: E402

MARGIN = 4  # px of white between tiles and around the grid
MIN_TILE = 96  # tiles smaller than this are enlarged by an integer factor
_PAD_GRAY = 128


def define_flags(flag_values=flags.FLAGS):
    """Defines the script's flags (in `flag_values`), so importing it defines none."""
    flags.DEFINE_string(
        "dataset", "cifar10", "cifar10 | cifar100 | stl10 | imagenet2012 | folder:/path/to/images.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "data_dir", None, "tfds data directory (None: the tfds default).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "split", "train", "tfds split to take the images from (ignored for folders).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "num_images", 8, "Number of images (rows).", lower_bound=1, flag_values=flag_values
    )
    flags.DEFINE_string(
        "output", "augmentations.png", "Path of the PNG to write.", flag_values=flag_values
    )
    flags.DEFINE_integer("seed", 0, "Seed of the augmentations.", flag_values=flag_values)
    flags.DEFINE_integer(
        "image_size", None, "View size; by default the preset's (32, 96 or 224; 224 for folders).",
        lower_bound=1, flag_values=flag_values,
    )


def upscale_factor(image_size):
    """Integer enlargement of `image_size` tiles: 3 at 32 px, 1 from 96 px up."""
    return max(1, MIN_TILE // image_size)


def grid_shape(num_rows, image_size):
    """`(height, width, 3)` of the grid for `num_rows` images of `image_size` views."""
    tile = image_size * upscale_factor(image_size)
    return (num_rows * tile + (num_rows + 1) * MARGIN, 3 * tile + 4 * MARGIN, 3)


def make_grid(rows, image_size):
    """Assembles the grid.

    Args:
        rows: list of `(original, views)`: uint8 `(H, W, 3)` and uint8
            `(2, S, S, 3)`.
        image_size: `S`.

    Returns:
        uint8 tensor of shape `grid_shape(len(rows), image_size)`.
    """
    factor = upscale_factor(image_size)
    tile = image_size * factor
    white = tf.fill([tile, MARGIN, 3], tf.constant(255, tf.uint8))
    lines = [tf.fill([MARGIN, 3 * tile + 4 * MARGIN, 3], tf.constant(255, tf.uint8))]
    for original, views in rows:
        tiles = [_fit(original, image_size), views[0], views[1]]
        if factor > 1:
            tiles = [
                tf.cast(tf.image.resize(t, (tile, tile), method="nearest"), tf.uint8) for t in tiles
            ]
        line = [white]
        for t in tiles:
            line += [t, white]
        lines += [tf.concat(line, axis=1), lines[0]]
    return tf.concat(lines, axis=0)


def _fit(image, size):
    """The whole image, aspect ratio kept, on a gray `size x size` tile."""
    image = tf.convert_to_tensor(image)
    height, width = int(image.shape[0]), int(image.shape[1])
    scale = size / max(height, width)
    new_height = max(1, min(size, round(height * scale)))
    new_width = max(1, min(size, round(width * scale)))
    resized = tf.image.resize(image, (new_height, new_width), method="bicubic", antialias=True)
    resized = tf.cast(tf.round(tf.clip_by_value(resized, 0, 255)), tf.uint8)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    return tf.pad(
        resized,
        [[top, size - new_height - top], [left, size - new_width - left], [0, 0]],
        constant_values=_PAD_GRAY,
    )


def write_png_atomically(path, image):
    """Encodes uint8 `(H, W, 3)` as PNG and writes it atomically."""
    encoded = tf.io.encode_png(image).numpy()

    def write(temporary):
        with open(temporary, "wb") as file:
            file.write(encoded)

    atomic_save(path, write)


def show_augmentations(dataset, data_dir, split, num_images, output, seed, image_size=None):
    """Writes the grid of `num_images` images of `dataset` to `output`.

    Returns:
        `(rows, image_size)`: how many images the grid shows (fewer than
        `num_images` if the split is smaller) and the view size.

    Raises:
        ValueError: if the split has no images.
    """
    # get_preset takes "folder:/path" names as the "folder" preset.
    config = augment.get_preset(dataset, image_size=image_size)
    augmenter = augment.TwoViewAugmenter(config, seed=seed)
    images = data.load_split(dataset, data_dir, split).take(num_images)
    # Sequential map: with a seeded augmenter the grid is reproducible.
    pairs = images.map(lambda image, label: (image, augmenter(image)))
    rows = [(original, views) for original, views in pairs]
    if not rows:
        raise ValueError(f"Split {split!r} of {dataset!r} has no images.")
    grid = make_grid(rows, config.image_size)
    write_png_atomically(output, grid)
    return len(rows), config.image_size


def main(argv, flag_values=flags.FLAGS):
    del argv
    values = flag_values
    rows, size = show_augmentations(
        values.dataset, values.data_dir, values.split, values.num_images, values.output,
        values.seed, values.image_size,
    )
    print(
        f"Wrote {values.output}: {rows} image(s) x (original | view 1 | view 2), "
        f"{size} px views."
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
