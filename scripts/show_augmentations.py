"""Draws a grid of two-view augmentations, to look at them (matplotlib).

One row per image: the original | view 1 | view 2, the original at its own
aspect ratio, the views `S x S` where `S` is the preset's view size, pixels
shown as squares (no smoothing), so CIFAR's 32 px views show their pixels.
Needs matplotlib: `pip install -c constraints.txt -e '.[figures]'`.

    python scripts/show_augmentations.py --dataset=cifar10 \
        --data_dir=~/tensorflow_datasets --output=runs/augmentations.png

`--dataset` is one of cifar10, cifar100, stl10, imagenet2012 (prepared in
`--data_dir`, see scripts/prepare_data.py) or folder:/path/to/images.
"""


import runtime_defaults  # noqa: E402,F401 (this folder: TensorFlow's environment, set before it loads)

from absl import app, flags  # noqa: E402

from keras_directcopy.data import augment  # noqa: E402
from keras_directcopy.data import datasets as data
from keras_directcopy.utils.files import atomic_save  # noqa: E402

TILE_INCHES = 1.6  # side of one image in the figure
DPI = 150


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


def augmentation_rows(dataset, data_dir, split, num_images, seed, image_size=None):
    """The first `num_images` images of a split and their two views.

    Returns:
        `(rows, image_size)`: a list of `(original, views)`, uint8 NumPy
        arrays `(H, W, 3)` and `(2, S, S, 3)`, and `S`.

    Raises:
        ValueError: if the split has no images.
    """
    # get_preset takes "folder:/path" names as the "folder" preset.
    config = augment.get_preset(dataset, image_size=image_size)
    augmenter = augment.TwoViewAugmenter(config, seed=seed)
    images = data.load_split(dataset, data_dir, split).take(num_images)
    # Sequential map: with a seeded augmenter the views are reproducible.
    pairs = images.map(lambda image, label: (image, augmenter(image)))
    rows = [(original.numpy(), views.numpy()) for original, views in pairs]
    if not rows:
        raise ValueError(f"Split {split!r} of {dataset!r} has no images.")
    return rows, config.image_size


def draw_grid(rows, image_size):
    """The matplotlib figure of `rows` (see `augmentation_rows`): one row per
    image, columns original | view 1 | view 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(rows), 3, figsize=(3 * TILE_INCHES, len(rows) * TILE_INCHES), squeeze=False,
        layout="constrained",
    )
    titles = ("original", f"view 1 ({image_size} px)", f"view 2 ({image_size} px)")
    for column, title in enumerate(titles):
        axes[0, column].set_title(title, fontsize=9)
    for row_axes, (original, views) in zip(axes, rows):
        for axis, image in zip(row_axes, (original, views[0], views[1])):
            axis.imshow(image, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
    return figure


def show_augmentations(dataset, data_dir, split, num_images, output, seed, image_size=None):
    """Draws the grid of `num_images` images of `dataset` into the PNG `output`
    (written atomically).

    Returns:
        `(rows, image_size)`: the rows drawn (see `augmentation_rows`; fewer
        than `num_images` if the split is smaller) and the view size.
    """
    rows, size = augmentation_rows(dataset, data_dir, split, num_images, seed, image_size)
    figure = draw_grid(rows, size)
    try:
        atomic_save(output, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)
    return rows, size


def main(argv, flag_values=flags.FLAGS):
    del argv
    values = flag_values
    rows, size = show_augmentations(
        values.dataset, values.data_dir, values.split, values.num_images, values.output,
        values.seed, values.image_size,
    )
    print(
        f"Wrote {values.output}: {len(rows)} image(s) x (original | view 1 | view 2), "
        f"{size} px views."
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
