"""Known labelled-folder datasets: image folders recognised by their content.

Some datasets are distributed as a folder of images rather than through tfds,
Imagenette (fast.ai's `imagenette2`) first among them. They are read like any
labelled folder (`--dataset=folder:ROOT`, see `datasets`), and a folder whose
class folders and per-class image counts are those of a known dataset is
*identified* as it: records (run.json, the metrics JSON of
`scripts/evaluate.py`) then name it (`"dataset": "imagenette"`) beside the
folder (`"data_folder"`), so a preset can be trained and evaluated on it and
its numbers compared with another user's copy of the same images.

Identification compares file counts, never pixels: a copy at another
resolution (`imagenette2-320`, `imagenette2-160`) holds the same files and
is the same dataset (its accuracies may still differ a little, since the
evaluation resizes other pixels). The name alone (`--dataset=imagenette`) is not a
dataset: it says nothing about where the images are, and what gets
recorded as it is decided by content, so `datasets.get_dataset_spec` refuses
it with `folder_required_message`.

This module is the registry and its wording only; counting a folder's files
is `datasets.count_folder_images`, and `datasets.identify_folder` puts the
two together. Each known dataset's display name and Hub dataset id are the
catalog's (`keras_directcopy.catalog`), which the model cards read too; the
datasets registered here are the catalog's `FOLDER_DATASETS`.
"""

import dataclasses

from keras_directcopy.catalog import DATASET_DISPLAY_NAMES, HUB_DATASET_IDS

# The split whose class folders are a folder's classes (`datasets.TRAIN_FOLDER`).
TRAIN_SPLIT = "train"
# Differences of one kind listed in full in a message; the rest are counted.
MAX_LISTED = 5


@dataclasses.dataclass(frozen=True)
class KnownFolder:
    """A labelled image-folder dataset, as distributed.

    Attributes:
        name: the name records use, e.g. `"imagenette"`.
        display_name: its name in messages and model cards.
        class_names: the class folder names, in sorted order (the label order
            of `datasets.folder_classes`).
        counts: `{split: per-class image counts, in class_names order}`.
        hub_dataset_id: its Hugging Face Hub dataset id, for model cards.
        layout: a one-line description of the folder's layout, e.g. "the
            imagenette2 layout: train/<wnid>/*.JPEG and ...".
        source: where to get the folder.
    """

    name: str
    display_name: str
    class_names: tuple
    counts: dict
    hub_dataset_id: str
    layout: str
    source: str

    def split_counts(self, split):
        """`{class name: image count}` of one split."""
        return dict(zip(self.class_names, self.counts[split]))

    def total(self, split):
        """The number of images of one split."""
        return sum(self.counts[split])


IMAGENETTE = KnownFolder(
    name="imagenette",
    display_name=DATASET_DISPLAY_NAMES["imagenette"],
    # WordNet ids: tench, English springer, cassette player, chain saw,
    # church, French horn, garbage truck, gas pump, golf ball, parachute.
    class_names=(
        "n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
        "n03394916", "n03417042", "n03425413", "n03445777", "n03888257",
    ),
    counts={
        "train": (963, 955, 993, 858, 941, 956, 961, 931, 951, 960),
        "val": (387, 395, 357, 386, 409, 394, 389, 419, 399, 390),
    },
    hub_dataset_id=HUB_DATASET_IDS["imagenette"],
    layout=(
        "the imagenette2 layout: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, 10 ImageNet classes "
        "in folders named by WordNet id, 9,469 train and 3,925 val images"
    ),
    source=(
        "https://github.com/fastai/imagenette (imagenette2.tgz, or the same images resized: "
        "imagenette2-320.tgz, imagenette2-160.tgz)"
    ),
)

KNOWN_FOLDERS = {known.name: known for known in (IMAGENETTE,)}


def is_known_folder(name):
    """Whether `name` is the name of a known folder dataset."""
    return name in KNOWN_FOLDERS


def get_known_folder(name):
    """The `KnownFolder` named `name`.

    Raises:
        ValueError: on an unknown name, listing the known ones.
    """
    if name not in KNOWN_FOLDERS:
        raise ValueError(
            f"Unknown folder dataset {name!r}; the known ones are {', '.join(sorted(KNOWN_FOLDERS))}."
        )
    return KNOWN_FOLDERS[name]


def folder_required_message(name, preset=None):
    """Why `name` alone cannot be read, and what to pass instead.

    Args:
        name: a known folder dataset name.
        preset: the preset trained on it that is being evaluated, if any.

    Returns:
        One line naming the dataset, `--dataset=folder:ROOT`, its layout and
        where to get it.
    """
    known = get_known_folder(name)
    subject = (f"Preset {preset!r} was trained on {known.display_name}" if preset
               else f"{name!r} is {known.display_name}")
    return (
        f"{subject}, which is read from a folder: pass --dataset=folder:ROOT with ROOT holding "
        f"{' and '.join(f'{split}/' for split in known.counts)} ({known.layout}). Get it from "
        f"{known.source}. A folder with its class folders and image counts is recorded as {name!r}."
    )


def differences(counts, name):
    """How a folder's image counts differ from a known dataset's.

    Args:
        counts: `{split: {class folder: image count}}` of a folder, as
            `datasets.count_folder_images` returns.
        name: a known folder dataset name.

    Returns:
        A list of short texts, one per difference, in the order: missing
        split, missing classes, extra classes, split totals, class counts;
        empty when the folder is that dataset.
    """
    known = get_known_folder(name)
    found = []
    for split in known.counts:
        if split not in counts:
            found.append(f"no {split}/ folder")
            continue
        expected, actual = known.split_counts(split), counts[split]
        missing = [cls for cls in expected if cls not in actual]
        extra = sorted(cls for cls in actual if cls not in expected)
        if missing:
            found.append(f"{split}/ lacks class(es) {_listed(missing)}")
        if extra:
            found.append(f"{split}/ has class(es) {_listed(extra)} that {known.display_name} has not")
        total = sum(actual.values())
        if total != known.total(split):
            found.append(f"{split}/ has {total} images, not {known.total(split)}")
        wrong = [f"{cls} {actual[cls]} (not {count})" for cls, count in expected.items()
                 if cls in actual and actual[cls] != count]
        if wrong:
            found.append(f"{split}/ image counts differ: {_listed(wrong)}")
    return found


def identify(counts):
    """The known dataset a folder's image counts are those of, or None.

    Args:
        counts: `{split: {class folder: image count}}` (see `differences`).

    Returns:
        The name of the known folder dataset with the same class folders and
        per-class counts in each of its splits, or None.
    """
    return next((name for name in KNOWN_FOLDERS if not differences(counts, name)), None)


def related(counts):
    """The known datasets an unidentified folder may have been meant to be.

    Args:
        counts: `{split: {class folder: image count}}` (see `differences`).

    Returns:
        The names of the known datasets that share at least half of their
        class folders with the folder's `train/`, which has at least half of
        its classes from them: a copy with a class missing or added, not a
        superset such as ImageNet (whose 1,000 classes include Imagenette's 10).
    """
    classes = set(counts.get(TRAIN_SPLIT, {}))
    return [
        name for name, known in KNOWN_FOLDERS.items()
        if 2 * len(classes & set(known.class_names)) >= max(len(classes), len(known.class_names), 1)
    ]


def not_comparable_warning(folder, name, found, preset=None):
    """The warning for an evaluation on a folder that is not the known
    dataset `name` it is compared with (a preset's).

    Args:
        folder: the folder's path.
        name: the known folder dataset expected.
        found: its `differences` from it (non-empty).
        preset: the preset trained on `name`, if any.

    Returns:
        One line: what the folder is not, what differs, and that the numbers
        are not comparable with the model card's.
    """
    known = get_known_folder(name)
    trained = f", which preset {preset!r} was trained and evaluated on" if preset else ""
    return (
        f"{folder} is not {known.display_name}{trained}: {'; '.join(found)}. Evaluation runs on "
        "it, but its numbers are not comparable with the model card's."
    )


def _listed(items):
    """`a, b, c` for at most `MAX_LISTED` items, else the first ones and how many more."""
    items = list(items)
    shown = ", ".join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f"{shown} and {len(items) - MAX_LISTED} more"
