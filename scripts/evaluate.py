"""kNN and linear-probe evaluation of a pretrained encoder.

    python scripts/evaluate.py --preset=directcopy_resnet20_cifar10 \
        --data_dir=~/tensorflow_datasets --output=runs/c10_r20/eval.json

    python scripts/evaluate.py --encoder=runs/c10_r20/encoder.keras --dataset=cifar10 \
        --data_dir=~/tensorflow_datasets --output=eval.json --save_head=head.weights.h5

    # A preset's other evaluations (scripts/register_preset.py --additional_metrics):
    # another label set of its images, another kNN k, the random-init floor.
    python scripts/evaluate.py --preset=cifar100 --dataset=cifar100:coarse_label --output=coarse.json
    python scripts/evaluate.py --preset=cifar100 --knn_k=20 --output=k20.json
    python scripts/evaluate.py --preset=cifar100 --random_init --seed=0 --output=floor.json

    # A preset trained on Imagenette reads the user's copy of the folder
    # (train/ and val/); it is recorded as "imagenette" if it is the same
    # dataset (class folders and image counts), else with a warning.
    python scripts/evaluate.py --preset=NAME --dataset=folder:~/imagenette2 --output=eval.json

The encoder stays frozen. kNN: k = 200 neighbours, cosine similarity,
temperature 0.1. Linear probe: a linear layer on standardized, unaugmented
features, and the test accuracy after its final epoch (the protocol is in
keras_directcopy/evaluation/linear_probe.py). The metrics JSON is written atomically.
It reports its progress, the images encoded and the probe's epochs (progress
bars on a terminal, lines in a log); --verbose=0 prints only the result.
With --random_init it records `"random_init": {"seed": SEED}` and keeps
`"preset"` naming the preset whose architecture was drawn at random. On a
`folder:` dataset it records `"data_folder"` (the absolute path), and as
`"dataset"` the known dataset the folder is identified as (`"imagenette"`),
else `folder:` and that path.
"""

import json
import os
import sys

import runtime_defaults  # noqa: E402,F401 (this folder: TensorFlow's environment, set before it loads)

from absl import app, flags, logging  # noqa: E402
from encoder_flags import (  # noqa: E402 (this folder)
    check_encoder_flags,
    data_dir,
    define_encoder_flags,
    keras_verbosity,
    load_encoder_and_dataset,
)

define_encoder_flags()
flags.DEFINE_integer("knn_k", 200, "kNN neighbours.", lower_bound=1)
flags.DEFINE_bool("linear_probe", True, "Also train and test the linear probe (--nolinear_probe: kNN only).")
flags.DEFINE_integer("linear_epochs", 100, "Linear-probe epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Batch size of feature extraction and the probe.", lower_bound=1)
flags.DEFINE_integer("max_train_examples", None, "Use only the first N training examples.", lower_bound=1)
flags.DEFINE_integer("max_test_examples", None, "Use only the first N test examples.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Linear-probe seed.")
flags.DEFINE_bool("random_init", False, "Evaluate the preset's (or --backbone's) architecture with random "
                  "weights drawn with --seed (a floor).")
flags.DEFINE_string("backbone", None, "With --random_init and no --preset: the architecture, a backbone name.")
flags.DEFINE_float("width_multiplier", 1.0, "With --backbone: its channel width multiplier.")
flags.DEFINE_integer("image_size", None, "With --backbone: its input side in px, the --image_size its "
                     "pretraining used (the stem and features depend on it); default: the dataset's.",
                     lower_bound=8)
flags.DEFINE_string("output", None, "Metrics JSON path (written atomically).")
flags.DEFINE_string("save_head", None, "Save the trained linear head here (a .weights.h5 file).")
flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Progress of the encoding and of the probe's "
                  "epochs: 0 none, 1 progress bars, 2 lines (auto: 1 on a terminal, else 2).")

FLAGS = flags.FLAGS
HEAD_SUFFIX = ".weights.h5"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # tfds logs every file it opens
    try:
        check_flags()
        import keras

        from keras_directcopy.data.datasets import ensure_prepared
        from keras_directcopy.evaluation import evaluate_encoder

        if FLAGS.random_init:
            keras.utils.set_random_seed(FLAGS.seed)
        if FLAGS.backbone:
            from keras_directcopy.data.datasets import get_dataset_spec
            from keras_directcopy.models.backbones import build_backbone

            size = FLAGS.image_size or get_dataset_spec(FLAGS.dataset).image_size
            encoder = build_backbone(
                FLAGS.backbone, (size, size, 3), width_multiplier=FLAGS.width_multiplier
            )
            preset, dataset = None, FLAGS.dataset
        else:
            encoder, preset, dataset = load_encoder_and_dataset(weights=not FLAGS.random_init)
        ensure_prepared(dataset, data_dir(), download=FLAGS.download)

        metrics, head = evaluate_encoder(
            encoder, dataset, data_dir(),
            knn_k=FLAGS.knn_k, linear_probe=FLAGS.linear_probe, linear_epochs=FLAGS.linear_epochs,
            batch_size=FLAGS.batch_size,
            max_train_examples=FLAGS.max_train_examples, max_test_examples=FLAGS.max_test_examples,
            preset=preset, seed=FLAGS.seed, return_head=True, verbose=keras_verbosity(FLAGS.verbose),
        )
        if FLAGS.random_init:
            from keras_directcopy.evaluation.evaluate import random_init_metrics

            # Not the preset's weights: marked so they never pass for them,
            # while `preset` still names the architecture's preset.
            architecture = preset or (
                f"{FLAGS.backbone} (width multiplier {FLAGS.width_multiplier}"
                + (f", {FLAGS.image_size} px)" if FLAGS.image_size else ")")
            )
            metrics = random_init_metrics(metrics, FLAGS.seed, architecture)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)

    from keras_directcopy.catalog import FOLDER_PREFIX
    from keras_directcopy.evaluation.evaluate import compare_with_recorded_knn
    from keras_directcopy.presets.zoo import is_registry_name
    from keras_directcopy.utils.files import atomic_save, atomic_write_text, sha256_file

    if FLAGS.save_head:
        path = os.path.expanduser(FLAGS.save_head)
        atomic_save(path, head.save_weights)
        # The metrics name the head they measured, so that registering a head
        # with its metrics (scripts/register_preset.py --head) can check the pair.
        metrics["linear_probe"]["head_sha256"] = sha256_file(path)
        print(f"Linear head saved to {FLAGS.save_head} (sha256 {metrics['linear_probe']['head_sha256']}).")
    if FLAGS.output:
        atomic_write_text(os.path.expanduser(FLAGS.output), json.dumps(metrics, indent=2))
    knn, probe = metrics["knn"], metrics["linear_probe"]
    if FLAGS.random_init:
        source = metrics["encoder"]
    else:
        source = f"preset {preset}" if preset else FLAGS.encoder
    probe_text = (
        f", linear probe top-1 {100 * probe['top1']:.2f}% after {probe['epochs']} epochs" if probe else ""
    )
    # A folder is named as recorded: a known dataset's name (and the folder), or folder:PATH.
    recorded = metrics["dataset"]
    if metrics.get("data_folder") and not recorded.startswith(FOLDER_PREFIX):
        recorded += f" in {metrics['data_folder']}"
    print(
        f"{recorded} ({source}): kNN (k={knn['k']}) top-1 {100 * knn['top1']:.2f}%{probe_text} "
        f"[{knn['train_examples']} train / {knn['test_examples']} test images, "
        f"{metrics['wall_time_s']:.0f} s]"
        + (f"; metrics in {FLAGS.output}" if FLAGS.output else "")
    )
    if preset and not FLAGS.random_init and is_registry_name(preset):
        print(compare_with_recorded_knn(preset, knn, metrics["dataset"]))


def check_flags():
    """Fails fast, before any data is read, on inconsistent flags."""
    if FLAGS.backbone:
        if not (FLAGS.random_init and FLAGS.dataset) or FLAGS.preset or FLAGS.encoder:
            raise ValueError(
                "--backbone is for --random_init without --preset or --encoder; it also needs --dataset."
            )
    elif FLAGS.image_size:
        raise ValueError(
            "--image_size is for --random_init --backbone: a preset or saved encoder is evaluated "
            "at its own input size."
        )
    else:
        check_encoder_flags()
    if FLAGS.save_head and not FLAGS.linear_probe:
        raise ValueError("--save_head needs the linear probe: drop --nolinear_probe.")
    if FLAGS.save_head and not FLAGS.save_head.endswith(HEAD_SUFFIX):
        raise ValueError(f"--save_head must end with {HEAD_SUFFIX}; got {FLAGS.save_head!r}.")


if __name__ == "__main__":
    app.run(main)
