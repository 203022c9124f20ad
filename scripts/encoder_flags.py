"""Flags shared by the scripts that take a pretrained encoder and a labelled
dataset (`evaluate.py`, `finetune.py`), and how they resolve to an encoder.

    --preset=NAME | --encoder=PATH.keras   the encoder (exactly one)
    --dataset=NAME                         default: the preset's dataset; or
                                           folder:ROOT with ROOT/train/<class>/
                                           and ROOT/val/<class>/ (or test/) images
                                           (needed for a preset trained on a
                                           folder dataset, e.g. Imagenette)
    --data_dir=DIR                         the tfds data directory
    --[no]download                         download a missing tfds dataset
"""

import os
import sys

from absl import flags

FLAGS = flags.FLAGS
# absl lists under --help the flags of the module that calls DEFINE_*; this
# module defines them for the script that calls `define_encoder_flags`, so it
# disclaims them and they count as that script's.
flags.disclaim_key_flags()


def define_encoder_flags(flag_values=FLAGS):
    """Defines `--preset`, `--encoder`, `--dataset`, `--data_dir` and `--download` in `flag_values`."""
    flags.DEFINE_string(
        "preset", None, "Pretrained preset name, dataset alias, local folder or hf:// id.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "encoder", None, "A saved encoder (.keras), instead of --preset.", flag_values=flag_values
    )
    flags.DEFINE_string("dataset", None, "Labelled dataset: cifar10 | cifar100 | stl10 | imagenet2012 | "
                        "folder:ROOT, with ROOT/train/<class>/*.jpg and ROOT/val/<class>/ (or test/) "
                        "(default: the preset's).", flag_values=flag_values)
    flags.DEFINE_string(
        "data_dir", None, "tfds data directory (prepared with scripts/prepare_data.py).",
        flag_values=flag_values,
    )
    define_download_flag(flag_values)


def define_download_flag(flag_values=FLAGS):
    """Defines `--download` (default True; `--nodownload` forbids it) in
    `flag_values`: what the scripts that read a tfds dataset pass to
    `data.ensure_prepared`."""
    flags.DEFINE_bool(
        "download", True,
        "Download the tfds dataset through tfds if it is missing from --data_dir; --nodownload fails "
        "instead (without network, prepare it with scripts/prepare_data.py).",
        flag_values=flag_values,
    )


def check_encoder_flags():
    """Fails fast, before TensorFlow loads, unless exactly one encoder source
    is given and an `--encoder` file comes with its `--dataset`."""
    if bool(FLAGS.preset) == bool(FLAGS.encoder):
        raise ValueError("Pass exactly one of --preset=NAME and --encoder=PATH.keras.")
    if FLAGS.encoder and not FLAGS.dataset:
        raise ValueError("--encoder needs --dataset, the labelled dataset to use.")


def data_dir():
    """`--data_dir` with `~` expanded, or None (tfds' default)."""
    return FLAGS.data_dir and os.path.expanduser(FLAGS.data_dir)


def load_encoder_and_dataset(weights=True, compare_with_card=True):
    """`(encoder, preset, dataset)` from the flags.

    The dataset is checked before the encoder is loaded: a preset trained on
    a folder dataset (Imagenette) without `--dataset` fails at once. On a
    folder, what it is recorded as is printed, and, with
    `compare_with_card`, a warning when the preset was trained on a known
    folder dataset that this folder is not
    (`evaluation.evaluate.resolve_dataset`).

    Args:
        weights: False builds the preset's architecture with random weights.
        compare_with_card: whether the numbers will be set beside the
            preset's model card (`evaluate.py`), so a folder that is not the
            card's dataset deserves a warning; False where the user's own
            data is the point (`finetune.py`).

    Returns:
        The encoder (a `keras.Model`), the registry preset name (None for an
        `--encoder` file or a folder), and the dataset name: `--dataset`, else
        the preset's.

    Raises:
        ValueError: a preset outside the registry and no `--dataset`; a
            preset trained on a folder dataset and no `--dataset`.
    """
    from keras_directcopy.data.datasets import identify_dataset
    from keras_directcopy.evaluation import load_encoder
    from keras_directcopy.evaluation.evaluate import resolve_dataset
    from keras_directcopy.presets import zoo

    entry = zoo.get_preset(FLAGS.preset) if FLAGS.preset and zoo.is_registry_name(FLAGS.preset) else {}
    dataset, warning = resolve_dataset(FLAGS.dataset, entry.get("name"), entry.get("dataset"))
    if not dataset:
        raise ValueError(f"--preset={FLAGS.preset} is not a registry preset: pass --dataset.")
    encoder, preset, _ = load_encoder(FLAGS.preset, FLAGS.encoder, weights=weights)
    if warning and compare_with_card:
        print(f"warning: {warning}", file=sys.stderr)
    else:
        description = identify_dataset(dataset).description
        if description:
            print(description)
    return encoder, preset, dataset


def keras_verbosity(value):
    """A `--verbose` value (`auto`, `0`, `1` or `2`) as Keras' `verbose`:
    `auto` is a progress bar (1) on a terminal and a line per epoch (2) in a
    log, where a bar's redrawn lines would pile up."""
    if value == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(value)
