"""Input pipelines: tfds datasets and image folders, two-view and evaluation.

Datasets are named as on the command line:

* `cifar10`, `cifar100`: pretrain on `train`, evaluate on `train` / `test`.
  `cifar100:coarse_label` is CIFAR-100 labelled by its 20 superclasses (the
  tfds `coarse_label` feature) instead of its 100 classes.
* `stl10`: pretrain on `train+unlabelled`, evaluate on `train` / `test`.
* `imagenet2012`: pretrain on `train`, evaluate on `train` / `validation`;
  tfds prepares it from the official tars in `<data_dir>/downloads/manual`.
* `folder:/path/to/images`: every `.jpg`, `.jpeg` and `.png` below the path,
  recursively, unlabelled (pretraining only).

Data is never downloaded (`download=False`): prepare it first, with
`scripts/prepare_data.py` on an offline machine or `tfds build` on a connected
one. Images come out as uint8 `(H, W, 3)`; the encoders normalize them.
"""

import dataclasses
import os

import tensorflow as tf
from absl import logging

FOLDER_PREFIX = "folder:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Leading bytes of the image formats the folder source reads.
_MAGIC_BYTES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Splits and sizes of a named dataset.

    Attributes:
        name: tfds name, or `"folder"`.
        pretrain_split: split (tfds split expression) used for pretraining.
        train_split, test_split: labelled splits for kNN / linear evaluation,
            or None where there are no labels.
        num_classes: number of classes (0 if unlabelled).
        image_size: side of the square images the recipes train at.
        folder: the image folder, for `folder:` datasets.
        label_key: the tfds feature used as the label.
    """

    name: str
    pretrain_split: str
    train_split: str | None
    test_split: str | None
    num_classes: int
    image_size: int
    folder: str | None = None
    label_key: str = "label"

    @property
    def labelled(self):
        return self.train_split is not None


TFDS_DATASETS = {
    "cifar10": DatasetSpec("cifar10", "train", "train", "test", 10, 32),
    "cifar100": DatasetSpec("cifar100", "train", "train", "test", 100, 32),
    "stl10": DatasetSpec("stl10", "train+unlabelled", "train", "test", 10, 96),
    "imagenet2012": DatasetSpec("imagenet2012", "train", "train", "validation", 1000, 224),
}
DATASET_NAMES = tuple(TFDS_DATASETS) + (FOLDER_PREFIX + "PATH",)
# Other label features, named `NAME:LABEL_KEY`: label key -> number of classes.
OTHER_LABELS = {"cifar100": {"coarse_label": 20}}


def get_dataset_spec(dataset, image_size=224):
    """The `DatasetSpec` of a dataset name (see the module docstring).

    Args:
        dataset: a name of `TFDS_DATASETS`, `NAME:LABEL_KEY` of
            `OTHER_LABELS` (e.g. `cifar100:coarse_label`), or `folder:/path`.
        image_size: training size for `folder:` datasets.

    Raises:
        ValueError: on an unknown name, listing the valid ones.
    """
    if dataset.startswith(FOLDER_PREFIX):
        folder = os.path.expanduser(dataset[len(FOLDER_PREFIX):])
        if not folder:
            raise ValueError("Give the image folder after 'folder:', e.g. folder:/data/images.")
        return DatasetSpec("folder", "all", None, None, 0, image_size, folder=folder)
    name, _, label_key = dataset.partition(":")
    if label_key in OTHER_LABELS.get(name, {}):
        num_classes = OTHER_LABELS[name][label_key]
        return dataclasses.replace(
            TFDS_DATASETS[name], label_key=label_key, num_classes=num_classes
        )
    if dataset not in TFDS_DATASETS:
        other = ", ".join(f"{base}:{key}" for base, keys in OTHER_LABELS.items() for key in keys)
        raise ValueError(
            f"Unknown dataset {dataset!r}. Valid datasets: {', '.join(DATASET_NAMES)} "
            f"(and, with another label feature, {other})."
        )
    return TFDS_DATASETS[dataset]


def load_split(dataset, data_dir, split):
    """Loads one split as `(image, label)` pairs, without augmentation.

    Args:
        dataset: dataset name, see `get_dataset_spec`.
        data_dir: tfds data directory (None: the tfds default); ignored for
            `folder:` datasets.
        split: tfds split expression, e.g. `"train"` or `"train+unlabelled"`;
            `folder:` datasets have the single split `"all"`.

    Returns:
        A `tf.data.Dataset` of `(uint8 (H, W, 3), int64 scalar)`; the label
        (the spec's `label_key` feature) is -1 for unlabelled images.

    Raises:
        FileNotFoundError: if the dataset is not prepared in `data_dir`, or the
            folder has no images; the message names the fix.
        ValueError: on an unknown dataset or an unreadable image file.
    """
    spec = get_dataset_spec(dataset)
    if spec.folder is not None:
        return _folder_dataset(spec.folder)
    import tensorflow_datasets as tfds

    # The supervised pairs carry `label`; another label needs the full example.
    supervised = spec.label_key == "label"
    try:
        images = tfds.load(
            spec.name, split=split, data_dir=data_dir, download=False, as_supervised=supervised
        )
    except (AssertionError, tfds.core.DatasetNotFoundError) as error:
        location = data_dir or "the default tfds data directory (~/tensorflow_datasets)"
        raise FileNotFoundError(
            f"Dataset {spec.name!r} is not prepared in {location}, and this run does "
            "not download. Prepare it first: `python scripts/prepare_data.py "
            f"--dataset={spec.name} --data_dir={data_dir or '~/tensorflow_datasets'}` "
            "(offline, from local files), or `tfds build "
            f"{spec.name} --data_dir=...` on a machine with internet, then pass "
            f"the same --data_dir. ({error})"
        ) from error
    if not supervised:
        images = images.map(lambda example: (example["image"], example[spec.label_key]))
    return images.map(lambda image, label: (image, tf.cast(label, tf.int64)))


def pretrain_dataset(
    dataset,
    data_dir,
    global_batch_size,
    augmenter,
    *,
    seed=None,
    shuffle_buffer=10_000,
    cache=None,
    input_context=None,
):
    """The two-view pretraining pipeline.

    Each image is augmented twice, independently (per image, never per
    batch), and the views are stacked, so a batch is one tensor
    `(batch, 2, S, S, 3)` uint8 — the form `fit()` accepts under every
    `tf.distribute` strategy. Batches drop the remainder.

    Args:
        dataset: dataset name, see `get_dataset_spec`.
        data_dir: tfds data directory.
        global_batch_size: batch size summed over all replicas.
        augmenter: callable, one uint8 `(H, W, 3)` image to `(2, S, S, 3)`
            (`keras_directcopy.augment.TwoViewAugmenter`).
        seed: shuffle seed (None: random).
        shuffle_buffer: images in the shuffle buffer.
        cache: keep the decoded images in memory; by default only for
            datasets of at most 64 px (CIFAR: 150 MB for 50,000 images).
        input_context: `tf.distribute.InputContext` when built through
            `strategy.distribute_datasets_from_function`: the data are then
            sharded per input pipeline (worker) and batched per replica.

    Returns:
        A `tf.data.Dataset` yielding uint8 `(batch, 2, S, S, 3)`, where batch
        is the global batch, or the per-replica batch under `input_context`.
    """
    spec = get_dataset_spec(dataset)
    images = load_split(dataset, data_dir, spec.pretrain_split).map(lambda image, label: image)
    batch_size = global_batch_size
    if input_context is not None:
        # Shard before shuffling, so that workers see disjoint images.
        images = images.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    if cache if cache is not None else spec.image_size <= 64:
        images = images.cache()
    images = images.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    views = images.map(augmenter, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    views = views.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    if input_context is not None:
        # Sharded by hand above; do not let tf.distribute shard again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return views.with_options(options)


def evaluation_dataset(dataset, data_dir, split, batch_size, image_size=None):
    """Labelled, unaugmented images for kNN and linear evaluation.

    Images are resized so that the shorter side is `image_size / 0.875` and
    center-cropped to `image_size` (the standard ImageNet evaluation
    transform), or passed through unchanged when they already have that
    size (CIFAR at 32 px, STL-10 at 96 px).

    Args:
        dataset: dataset name with labels, see `get_dataset_spec`.
        data_dir: tfds data directory.
        split: `"train"` or `"test"` (mapped to the dataset's own split
            names, e.g. ImageNet's `validation`), or a tfds split expression.
        batch_size: batch size.
        image_size: output side; by default the dataset's.

    Returns:
        A `tf.data.Dataset` of `(uint8 (batch, S, S, 3), int64 (batch,))`, in
        the split's order, keeping the last partial batch.

    Raises:
        ValueError: if the dataset has no labels.
    """
    spec = get_dataset_spec(dataset)
    if not spec.labelled:
        raise ValueError(
            f"Dataset {dataset!r} has no labels, so it cannot be evaluated; evaluate "
            "on a labelled dataset, e.g. --eval_dataset=cifar10."
        )
    split = {"train": spec.train_split, "test": spec.test_split}.get(split, split)
    image_size = image_size or spec.image_size
    images = load_split(dataset, data_dir, split)
    transform = lambda image, label: (center_crop(image, image_size), label)  # noqa: E731
    return images.map(transform, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(
        tf.data.AUTOTUNE
    )


def center_crop(image, size, crop_fraction=0.875):
    """Resize-then-center-crop of one uint8 `(H, W, 3)` image to `(size, size, 3)`.

    The shorter side is resized to `size / crop_fraction`, then the central
    `size` x `size` is kept. An image that is already `size` x `size` is
    returned unchanged.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]

    def resize_and_crop():
        target = tf.cast(tf.math.ceil(size / crop_fraction), tf.float32)
        scale = target / tf.cast(tf.minimum(height, width), tf.float32)
        new_size = tf.cast(
            tf.math.ceil(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32
        )
        resized = tf.image.resize(image, new_size, method="bicubic", antialias=True)
        top = (new_size[0] - size) // 2
        left = (new_size[1] - size) // 2
        cropped = resized[top:top + size, left:left + size]
        return tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8)

    already_sized = tf.logical_and(tf.equal(height, size), tf.equal(width, size))
    result = tf.cond(already_sized, lambda: tf.cast(image, tf.uint8), resize_and_crop)
    return tf.ensure_shape(result, (size, size, 3))


def find_images(folder):
    """All image files below `folder`, recursively, sorted, checked readable.

    Each file's first bytes are read to check it is a JPEG or PNG, so that a
    bad file fails here, by name, not later inside the input pipeline.

    Returns:
        The sorted list of paths.

    Raises:
        FileNotFoundError: if the folder does not exist or has no images.
        ValueError: naming the first file that is unreadable or not an image.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Image folder {folder!r} does not exist. Pass --dataset=folder:/path/to/images "
            "with a directory that contains .jpg or .png files."
        )
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder, followlinks=True)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise FileNotFoundError(
            f"Found no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder!r} or its "
            "subfolders. Point --dataset=folder:... at the directory holding them."
        )
    for path in paths:
        try:
            with open(path, "rb") as file:
                header = file.read(8)
        except OSError as error:
            raise ValueError(f"Cannot read image file {path!r}: {error}. Fix or remove it.") from error
        if not any(header.startswith(magic) for magic in _MAGIC_BYTES):
            raise ValueError(
                f"{path!r} is not a JPEG or PNG image (it starts with {header!r}). "
                "Fix or remove it."
            )
    logging.info("Found %d images in %s.", len(paths), folder)
    print(f"Found {len(paths)} images in {folder}.")
    return paths


def _folder_dataset(folder):
    paths = find_images(folder)

    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.ensure_shape(image, (None, None, 3)), tf.constant(-1, tf.int64)

    return tf.data.Dataset.from_tensor_slices(paths).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE
    )


def num_examples(dataset, data_dir, split):
    """Number of images in a split (a tfds split expression, or a folder's `all`).

    Raises:
        FileNotFoundError: as `load_split`, if the data are not prepared.
    """
    spec = get_dataset_spec(dataset)
    if spec.folder is not None:
        return len(find_images(spec.folder))
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(spec.name, data_dir=data_dir)
        return builder.info.splits[split].num_examples
    except (AssertionError, KeyError, tfds.core.DatasetNotFoundError):
        # Same message as loading would give.
        load_split(dataset, data_dir, split)
        raise
