"""Evaluation of an encoder on a labelled dataset: weighted kNN and the linear
probe on the same cached features, with the record `scripts/evaluate.py` writes.

kNN is `keras_directcopy.evaluation.knn` (k = 200 neighbours by cosine
similarity, votes weighted by `exp(similarity / 0.1)`); the linear probe's
protocol is `keras_directcopy.evaluation.linear_probe`'s.
"""

import os
import time

import keras
import numpy as np

from keras_directcopy.data import datasets as data
from keras_directcopy.data import known_folders
from keras_directcopy.evaluation import knn
from keras_directcopy.evaluation.linear_probe import (
    DEFAULT_LINEAR_BATCH_SIZE,
    DEFAULT_LINEAR_EPOCHS,
    linear_probe_on_features,
)
from keras_directcopy.presets import zoo
from keras_directcopy.utils.provenance import git_commit, hardware_summary


def evaluate_encoder(
    encoder,
    dataset,
    data_dir,
    *,
    knn_k=knn.DEFAULT_K,
    knn_temperature=knn.DEFAULT_TEMPERATURE,
    linear_probe=True,
    linear_epochs=DEFAULT_LINEAR_EPOCHS,
    batch_size=DEFAULT_LINEAR_BATCH_SIZE,
    max_train_examples=None,
    max_test_examples=None,
    preset=None,
    seed=0,
    return_head=False,
    verbose=0,
):
    """kNN and linear-probe accuracy of a frozen encoder on a labelled dataset.

    The encoder runs once over the train and test splits (unaugmented, at the
    encoder's input size, or the dataset's when the encoder takes any size);
    the same features feed the kNN classifier (after l2-normalization,
    `knn.knn_predict`) and the linear probe (`linear_probe_on_features`).
    The features are held in memory: `N * D * 4` bytes, 0.12 GB for CIFAR
    with a ResNet-18, about 11 GB for ImageNet with a ResNet-50.

    Args:
        encoder: model from `(B, H, W, 3)` 0..255 images to `(B, D)` features.
        dataset: a labelled dataset name of `data.get_dataset_spec`.
        data_dir: tfds data directory.
        knn_k: kNN neighbours.
        knn_temperature: kNN vote temperature.
        linear_probe: False skips the linear probe (`"linear_probe": None`
            in the metrics, and no head).
        linear_epochs: linear-probe epochs.
        batch_size: batch size of feature extraction and of the probe.
        max_train_examples, max_test_examples: use only the first N examples
            of a split (None: all), for quick checks.
        preset: pretrained preset name to record (None if not from the zoo).
        seed: linear-probe seed.
        return_head: also return the trained linear head.
        verbose: progress, as Keras' `fit()` verbosity: 0 silent; 1 a
            progress bar while each split is encoded and per probe epoch; 2
            a line per tenth of each split and per probe epoch.

    Returns:
        The metrics dict (with `return_head=True`, `(metrics, head)`):

        ```
        {"dataset": str, ["data_folder": str,] "encoder": str, "preset": str | None,
         "knn": {"top1", "k", "temperature", "train_split", "test_split",
                 "train_examples", "test_examples"},
         "linear_probe": {"top1", "train_top1", "epochs", "batch_size",
                          "optimizer", "learning_rate", "weight_decay",
                          "feature_normalization", "final_epoch": True},
         "hardware": {...}, "git_commit": str, "wall_time_s": float}
        ```

        Accuracies are fractions in 0..1; the split names are the tfds split
        expressions read. A `folder:` dataset is recorded by the name of the
        known dataset it is identified as (`"imagenette"`), else as
        `folder:/abs/path`, with its absolute path as `data_folder`
        (`data.dataset_record`); other datasets have no `data_folder`.

    Raises:
        FileNotFoundError: if the dataset is not prepared (the message names
            `scripts/prepare_data.py`).
        ValueError: on an unlabelled or unknown dataset, or bad limits.
    """
    start_time = time.time()
    # An encoder of fixed input size is evaluated at it: a folder's size is then
    # not measured (nor printed as if it were used).
    fixed_size = _fixed_input_size(encoder)
    spec = data.get_dataset_spec(dataset, image_size=fixed_size)
    if not spec.labelled:
        raise ValueError(
            f"Dataset {dataset!r} has no labels, so it cannot be evaluated; use a labelled "
            "dataset, e.g. cifar10."
        )
    splits = {
        "train": _limited_split(spec.train_split, max_train_examples, "max_train_examples"),
        "test": _limited_split(spec.test_split, max_test_examples, "max_test_examples"),
    }
    image_size = fixed_size or spec.image_size
    features = {}
    for role, split in splits.items():
        images = data.evaluation_dataset(spec, data_dir, split, batch_size, image_size)
        total = data.num_examples(spec, data_dir, split) if verbose else None
        features[role] = encode_with_progress(encoder, images, total, f"the {split} split", verbose)
    (train_features, train_labels), (test_features, test_labels) = features["train"], features["test"]

    predictions = knn.knn_predict(
        knn.l2_normalize(train_features), train_labels, knn.l2_normalize(test_features),
        spec.num_classes, k=knn_k, temperature=knn_temperature,
    )
    probe = head = None
    if linear_probe:
        if verbose:
            print(f"Linear probe: {linear_epochs} epochs on the features of {len(train_labels)} "
                  "training images.", flush=True)
        probe = linear_probe_on_features(
            train_features, train_labels, test_features, test_labels, spec.num_classes,
            epochs=linear_epochs, batch_size=batch_size, seed=seed, return_head=return_head,
            verbose=verbose,
        )
        head = probe.pop("head", None)
    metrics = {
        **data.dataset_record(dataset),
        "encoder": encoder.name,
        "preset": preset,
        "knn": {
            "top1": float(np.mean(predictions == test_labels)),
            "k": int(knn_k),
            "temperature": float(knn_temperature),
            "train_split": splits["train"],
            "test_split": splits["test"],
            "train_examples": int(len(train_labels)),
            "test_examples": int(len(test_labels)),
        },
        "linear_probe": probe,
        "hardware": hardware_summary(),
        "git_commit": git_commit(),
        "wall_time_s": round(time.time() - start_time, 1),
    }
    return (metrics, head) if return_head else metrics


def encode_with_progress(encoder, images, total, description, verbose=0):
    """`knn.encode_dataset(encoder, images)`, reporting the images encoded so far.

    Args:
        encoder: model from images to `(B, D)` features.
        images: `(images, labels)` batches.
        total: how many images `images` holds, for the report (None: unknown).
        description: what is encoded, e.g. `"the train split"`.
        verbose: 0 silent; 1 a Keras progress bar; 2 a line per tenth of
            `total` (per `PROGRESS_LINE_BATCHES` batches when unknown).

    Returns:
        `(features, labels)` as `knn.encode_dataset` returns them.
    """
    if not verbose:
        return knn.encode_dataset(encoder, images)
    print(f"Encoding {description}" + (f" ({total} images)" if total else "") + "...", flush=True)
    return knn.encode_dataset(encoder, _reported(images, total, description, verbose))


# Batches between two progress lines (verbose=2) when the number of images is unknown.
PROGRESS_LINE_BATCHES = 20


def _reported(batches, total, description, verbose):
    """Yields `batches`, reporting after each how many images were consumed."""
    bar = keras.utils.Progbar(total, unit_name="image") if verbose == 1 else None
    done = reported = 0

    def print_line():
        print(f"  {description}: {done}" + (f"/{total}" if total else "") + " images encoded", flush=True)

    for index, batch in enumerate(batches):
        yield batch
        # Resumed once the consumer has encoded the batch and asks for the next.
        done += int(batch[1].shape[0])
        if bar is not None:
            bar.update(done)
        elif (done - reported >= total / 10) if total else ((index + 1) % PROGRESS_LINE_BATCHES == 0):
            print_line()
            reported = done
    if bar is None and done != reported:
        print_line()


def resolve_dataset(dataset, preset=None, preset_dataset=None):
    """The dataset to evaluate a preset's encoder on, and whether its numbers
    will be comparable with the preset's model card.

    A preset trained on a known folder dataset (`data.known_folders`, e.g.
    `imagenette`) needs the user's copy of the folder: the name alone is
    refused, and a folder that is not identified as that dataset is
    evaluated with a warning saying what differs.

    Args:
        dataset: the dataset asked for (`--dataset`), or None for the preset's.
        preset: the preset's registry name, for messages (None: not a registry preset).
        preset_dataset: the dataset the preset was trained on, or None.

    Returns:
        `(dataset, warning)`: the dataset name to evaluate on (None if
        neither is given), and a line to print, or None.

    Raises:
        ValueError: if the dataset to use is the name of a known folder
            dataset; the message says to pass `--dataset=folder:ROOT`, the
            layout and where to get it.
    """
    chosen = dataset or preset_dataset
    if chosen and known_folders.is_known_folder(chosen):
        trained_on_it = chosen == preset_dataset and preset
        raise ValueError(known_folders.folder_required_message(chosen, preset if trained_on_it else None))
    on_folder = bool(chosen) and chosen.startswith(data.FOLDER_PREFIX)
    if not (on_folder and known_folders.is_known_folder(preset_dataset)):
        return chosen, None
    folder = data.folder_path(chosen)
    if not os.path.isdir(folder):
        return chosen, None  # reading it says so
    found = known_folders.differences(data.count_folder_images(folder), preset_dataset)
    if not found:
        return chosen, None
    return chosen, known_folders.not_comparable_warning(folder, preset_dataset, found, preset)


def random_init_metrics(metrics, seed, architecture):
    """Marks the metrics of a randomly initialized encoder as a floor.

    Such numbers must never pass for a pretrained encoder's: `encoder` says
    so in words, and `random_init` records it with the seed the weights were
    drawn with. `preset` keeps naming the preset whose architecture was
    built, so the floor can be registered beside that preset's own metrics
    (`scripts/register_preset.py --additional_metrics`); the registry and
    the model card refuse a record with `random_init` as the preset's
    `metrics`.

    Args:
        metrics: the dict `evaluate_encoder` returned for the encoder.
        seed: the seed its weights were drawn with (`keras.utils.set_random_seed`).
        architecture: what was built: a preset name, or a backbone description.

    Returns:
        A new metrics dict with `encoder` and `"random_init": {"seed": seed}` set.
    """
    return {
        **metrics,
        "encoder": f"{architecture} architecture, random initialization (seed {seed})",
        "random_init": {"seed": int(seed)},
    }


def load_encoder(preset=None, path=None, weights=True):
    """Loads an encoder from the zoo or from a saved `.keras` file.

    Args:
        preset: a name `zoo.load_pretrained` accepts (preset, dataset alias,
            local folder or `hf://` id).
        path: a `.keras` file, loaded with `safe_mode=True` (no code runs).
        weights: False builds the preset's architecture with random
            initialization (the floor any pretraining should beat).

    Returns:
        `(encoder, preset_name, dataset)`: the preset's registry name and
        pretraining dataset. For a folder or an `hf://` id the name is that
        argument and the dataset None; for a file both are None.

    Raises:
        ValueError: unless exactly one of `preset` and `path` is given; on an
            unknown preset (the zoo lists the valid ones).
        FileNotFoundError: if `path` does not exist, or preset weights are
            not available offline.
    """
    if (preset is None) == (path is None):
        raise ValueError("Give exactly one of a preset name and a .keras encoder path.")
    if not weights and path is not None:
        raise ValueError("Random initialization needs a preset (its architecture), not a .keras file.")
    if path is not None:
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Encoder file {path!r} does not exist.")
        return keras.saving.load_model(path, safe_mode=True), None, None

    name, dataset = preset, None
    if zoo.is_registry_name(preset):
        entry = zoo.get_preset(preset)
        name, dataset = entry["name"], entry["dataset"]
    return zoo.load_pretrained(preset, weights=weights), name, dataset


def _limited_split(split, limit, flag_name):
    if limit is None:
        return split
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"{flag_name} must be a positive integer or None; got {limit!r}.")
    return f"{split}[:{int(limit)}]"


def _fixed_input_size(encoder):
    """The encoder's square input side, or None if it accepts any size."""
    height, width = encoder.input_shape[1:3]
    if height is None or width is None:
        return None
    if height != width:
        raise ValueError(f"Only square encoder inputs are supported; got {height}x{width}.")
    return int(height)


def compare_with_recorded_knn(preset, knn, dataset=None):
    """A line setting the measured kNN beside the one the registry (and the
    model card) records for the registry preset `preset`, when both used the
    same protocol and labels.

    Args:
        preset: a registry preset name.
        knn: the `"knn"` entry of `evaluate_encoder`'s metrics.
        dataset: the dataset (label set) measured on; None: the recorded one.

    Returns:
        One line of text.
    """
    metrics = zoo.get_preset(preset).get("metrics") or {}
    recorded = metrics.get("knn")
    if not recorded:
        return f"The registry records no kNN accuracy for {preset} yet."
    # Another label set of the same images (cifar100:coarse_label) has the
    # same splits and k, but its accuracy is another quantity.
    recorded_dataset = metrics.get("dataset")
    if dataset is not None and recorded_dataset is not None and dataset != recorded_dataset:
        return (f"The model card's kNN top-1 ({100 * recorded['top1']:.2f}%) is on {recorded_dataset}; "
                f"this run used {dataset}, so the two are not comparable.")
    protocol = ("k", "temperature", "train_split", "test_split", "train_examples", "test_examples")
    if any(recorded.get(key) != knn.get(key) for key in protocol):
        return (f"The model card's kNN top-1 ({100 * recorded['top1']:.2f}%) was measured on "
                f"{recorded['train_examples']} train / {recorded['test_examples']} test images with "
                f"k={recorded['k']}; this run used another protocol, so the two are not comparable.")
    return (f"Model card of {preset}: kNN top-1 {100 * recorded['top1']:.2f}%; measured now: "
            f"{100 * knn['top1']:.2f}% (difference {100 * (knn['top1'] - recorded['top1']):+.2f} points).")
