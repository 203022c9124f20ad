"""Fine-tune a pretrained encoder, with a new linear classifier, on a labelled dataset.

    python scripts/finetune.py --preset=directcopy_resnet20_cifar10 \
        --data_dir=~/tensorflow_datasets --output_dir=runs/c10_r20_finetune

    python scripts/finetune.py --encoder=runs/c10_r20/encoder.keras --dataset=cifar10 \
        --data_dir=~/tensorflow_datasets --output_dir=runs/ft --freeze_encoder

Recipe (lightly's fine-tune benchmark, after SimCLR): SGD with momentum 0.9,
`--lr` for batches of 256, cosine decay to 0 over all steps, no weight decay
by default, 30 epochs. Training images get a random crop of the image
zero-padded by 1/8 of its side, and a random horizontal flip, drawn per image;
test images are the unaugmented evaluation pipeline. `--freeze_encoder`
trains only the classifier, with the encoder's BatchNorm in inference mode.

Writes `<output_dir>/classifier.keras` (images to logits; reloads with
`keras.saving.load_model(..., safe_mode=True)`) and `finetune.json`, both
atomically, and prints the test accuracy after the final epoch.
"""

import dataclasses
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from encoder_flags import (  # noqa: E402 (this folder)
    check_encoder_flags, data_dir, define_encoder_flags, load_encoder_and_dataset,
)

define_encoder_flags()
flags.DEFINE_string("output_dir", None, "Where classifier.keras and finetune.json go.", required=True)
flags.DEFINE_integer("epochs", 30, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Batch size.", lower_bound=1)
flags.DEFINE_float("lr", 0.05, "Peak learning rate (SGD, cosine decay to 0).", lower_bound=0.0)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0)
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay of the SGD optimizer.", lower_bound=0.0)
flags.DEFINE_float("dropout", 0.0, "Dropout on the features before the classifier.")
flags.DEFINE_bool("freeze_encoder", False, "Train only the classifier; the encoder stays frozen.")
flags.DEFINE_integer("max_train_examples", None, "Train on the first N training examples only.", lower_bound=1)
flags.DEFINE_integer("max_test_examples", None, "Test on the first N test examples only.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the initialization, shuffling and augmentation.")
flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras fit() verbosity.")

FLAGS = flags.FLAGS
# Padding of the random crop, as a fraction of the side (4 px at 32 px).
PAD_FRACTION = 1 / 8
SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass(frozen=True)
class Run:
    dataset: str
    train_split: str
    test_split: str
    image_size: int
    num_classes: int
    train_examples: int


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # tfds logs every file it opens
    start_time = time.time()
    try:
        check_encoder_flags()
        if not 0.0 <= FLAGS.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1); got {FLAGS.dropout}.")
        import keras

        from keras_directcopy.data import ensure_prepared

        keras.utils.set_random_seed(FLAGS.seed)
        encoder, preset, dataset = load_encoder_and_dataset()
        ensure_prepared(dataset, data_dir(), download=FLAGS.download)
        run = describe_run(encoder, dataset)
        results = finetune(encoder, run, preset)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    results["wall_time_s"] = round(time.time() - start_time, 1)

    from keras_directcopy.io_utils import atomic_write_text

    atomic_write_text(
        os.path.join(os.path.expanduser(FLAGS.output_dir), "finetune.json"),
        json.dumps(results, indent=2),
    )
    print(
        f"Final-epoch test top-1 accuracy on {run.dataset} ({run.test_split}): "
        f"{100 * results['test_top1']:.2f}% after {FLAGS.epochs} epochs "
        f"({'frozen encoder' if FLAGS.freeze_encoder else 'full fine-tune'}). "
        f"Classifier in {os.path.join(FLAGS.output_dir, 'classifier.keras')}."
    )


def describe_run(encoder, dataset):
    """Splits, sizes and example count; fails on unlabelled or unprepared data."""
    from keras_directcopy import data

    spec = data.get_dataset_spec(dataset)
    if not spec.labelled:
        raise ValueError(f"Dataset {dataset!r} has no labels; fine-tune on a labelled dataset.")
    train_split, test_split = spec.train_split, spec.test_split
    examples = data.num_examples(dataset, data_dir(), train_split)
    if FLAGS.max_train_examples:
        train_split = f"{train_split}[:{FLAGS.max_train_examples}]"
        examples = min(examples, FLAGS.max_train_examples)
    if FLAGS.max_test_examples:
        test_split = f"{test_split}[:{FLAGS.max_test_examples}]"
    height = encoder.input_shape[1]
    return Run(dataset, train_split, test_split, height or spec.image_size, spec.num_classes, examples)


def finetune(encoder, run, preset):
    """Trains `build_classifier(encoder)`, saves it and returns the results dict."""
    import keras

    from keras_directcopy import data
    from keras_directcopy.evaluation import build_classifier
    from keras_directcopy.io_utils import atomic_save
    from keras_directcopy.training import git_commit, hardware_summary

    tfds_dir = data_dir()
    steps_per_epoch = max(1, math.ceil(run.train_examples / FLAGS.batch_size))
    total_steps = FLAGS.epochs * steps_per_epoch
    train_data = training_dataset(run, tfds_dir)
    test_data = data.evaluation_dataset(
        run.dataset, tfds_dir, run.test_split, FLAGS.batch_size, run.image_size
    )

    model = build_classifier(
        encoder, run.num_classes, freeze_encoder=FLAGS.freeze_encoder, dropout=FLAGS.dropout
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            keras.optimizers.schedules.CosineDecay(FLAGS.lr, decay_steps=total_steps),
            momentum=FLAGS.momentum,
            weight_decay=FLAGS.weight_decay or None,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    verbose = FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)
    history = model.fit(train_data, epochs=FLAGS.epochs, steps_per_epoch=steps_per_epoch,
                        verbose=verbose, shuffle=False)  # the pipeline shuffles, seeded
    test_loss, test_top1 = model.evaluate(test_data, verbose=0)

    atomic_save(os.path.join(os.path.expanduser(FLAGS.output_dir), "classifier.keras"), model.save)
    return {
        "dataset": run.dataset,
        "encoder": encoder.name,
        "encoder_path": FLAGS.encoder,
        "preset": preset,
        "train_split": run.train_split,
        "test_split": run.test_split,
        "train_examples": run.train_examples,
        "test_top1": float(test_top1),
        "test_loss": float(test_loss),
        "final_train_loss": float(history.history["loss"][-1]),
        "final_train_top1": float(history.history["accuracy"][-1]),
        "epochs": FLAGS.epochs,
        "steps": total_steps,
        "batch_size": FLAGS.batch_size,
        "optimizer": "sgd",
        "learning_rate": FLAGS.lr,
        "momentum": FLAGS.momentum,
        "weight_decay": FLAGS.weight_decay,
        "dropout": FLAGS.dropout,
        "freeze_encoder": FLAGS.freeze_encoder,
        "seed": FLAGS.seed,
        "final_epoch": True,
        "hardware": hardware_summary(),
        "git_commit": git_commit(),
    }


def training_dataset(run, tfds_dir):
    """Endless augmented `(images, labels)` batches of the training split.

    Every image gets its own random crop and flip: a stream of seeds is
    zipped with the repeated images, so augmentations differ between epochs
    and a run is reproducible from `--seed`.
    """
    import tensorflow as tf

    from keras_directcopy import data

    # A folder is sorted by class: its file names are shuffled before the buffer.
    images = data.load_split(run.dataset, tfds_dir, run.train_split, shuffle_seed=FLAGS.seed)
    if run.image_size <= 64:
        images = images.cache()  # CIFAR: 150 MB decoded
    images = images.repeat().shuffle(SHUFFLE_BUFFER, seed=FLAGS.seed)
    seeds = tf.data.Dataset.random(seed=FLAGS.seed).batch(2)
    size = run.image_size
    padded = size + 2 * max(1, round(size * PAD_FRACTION))

    def augment(example, seed):
        image, label = example
        image = data.center_crop(image, size)
        image = tf.image.resize_with_crop_or_pad(image, padded, padded)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = tf.image.stateless_random_crop(image, (size, size, 3), seed=crop_seed)
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image, label

    return (
        tf.data.Dataset.zip((images, seeds))
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(FLAGS.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


if __name__ == "__main__":
    app.run(main)
