"""Fine-tune a pretrained encoder, with a new linear classifier, on a labelled dataset.

    python scripts/finetune.py --preset=directcopy_resnet20_cifar10 \
        --data_dir=~/tensorflow_datasets --output_dir=runs/c10_r20_finetune

    python scripts/finetune.py --encoder=runs/c10_r20/encoder.keras --dataset=folder:ROOT \
        --output_dir=runs/ft --freeze_encoder --validation_split=0.1

    # 1% of the labels (class-balanced, seeded); 0.1 and 1.0 likewise.
    python scripts/finetune.py --preset=cifar10 --labels_fraction=0.01 --output_dir=runs/c10_1pct

The recipe (the linear probe's settings with a frozen encoder, lightly's
fine-tune benchmark otherwise, on standardized features) and the
augmentation are `keras_directcopy.evaluation.finetune`'s. Every epoch is
evaluated on the held-out `--validation_split`, or, without it, on the test
split, and the output says which. Writes `<output_dir>/classifier.keras`,
`finetune.json` and `history.jsonl` (atomically), TensorBoard logs in
`<output_dir>/tensorboard`, and a backup in `<output_dir>/backup`: the same
command after an interruption resumes from it, and a finished run is not
trained again. Prints the test accuracy after the final epoch.
"""

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

from keras_directcopy.training.strategies import TENSORFLOW_STRATEGIES  # noqa: E402
from keras_directcopy.utils.files import WriteFailed  # noqa: E402

define_encoder_flags()
flags.DEFINE_string("output_dir", None, "Where classifier.keras, finetune.json, history.jsonl, the "
                    "TensorBoard logs and the backup go.", required=True)
flags.DEFINE_integer("epochs", 30, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Global batch size.", lower_bound=1)
flags.DEFINE_enum("optimizer", None, ["adam", "sgd"],
                  "Optimizer (default: adam with --freeze_encoder, as the linear probe; else sgd, as lightly).")
flags.DEFINE_float("lr", None, "Learning rate, the peak of the cosine schedule (default: 3e-3 with "
                   "--freeze_encoder, else 0.05).", lower_bound=0.0)
flags.DEFINE_enum("lr_schedule", "cosine", ["cosine", "constant"], "Learning-rate schedule: cosine decay to 0 "
                  "over all steps, or constant (the linear probe's).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0)
flags.DEFINE_float("weight_decay", None, "Weight decay: with adam, coupled L2 on the classifier (default "
                   "1e-3 with --freeze_encoder); with sgd, decoupled on every trained weight (default 0).",
                   lower_bound=0.0)
flags.DEFINE_float("dropout", 0.0, "Dropout on the standardized features before the classifier.")
flags.DEFINE_float("batchnorm_momentum", 0.9, "Momentum of the moving statistics of the encoder's BatchNorm "
                  "layers in a full fine-tune (PyTorch's default; Keras' 0.99 lags a short fine-tune).")
flags.DEFINE_bool("freeze_encoder", False, "Train only the classifier; the encoder stays frozen.")
flags.DEFINE_float("validation_split", None, "Hold out this fraction of the training images (class-balanced, "
                   "seeded) and evaluate on it after every epoch; by default every epoch is evaluated on "
                   "the test split, and labelled so.")
flags.DEFINE_float("labels_fraction", 1.0, "Train on this fraction of the training labels, class-balanced and "
                   "seeded (e.g. 0.01, 0.1, 1.0).")
flags.DEFINE_integer("max_train_examples", None, "Use the first N training examples only.", lower_bound=1)
flags.DEFINE_integer("max_test_examples", None, "Test on the first N test examples only.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the initialization, image selections, shuffling and augmentation.")
flags.DEFINE_enum("strategy", "default", list(TENSORFLOW_STRATEGIES),
                  "tf.distribute strategy: default, one_device, mirrored (this machine's GPUs, or its "
                  "logical CPUs), multi_worker (cluster from TF_CONFIG) or tpu.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_integer("logical_cpus", None, "Split the CPU into this many logical devices (to run "
                     "--strategy=mirrored on a CPU-only machine).", lower_bound=1)
flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Progress: 0 none, 1 progress bars, 2 a line "
                  "per epoch (auto: 1 on a terminal, else 2).")

FLAGS = flags.FLAGS
RECIPE_FLAGS = ("epochs", "batch_size", "batchnorm_momentum", "optimizer", "lr", "lr_schedule", "momentum", "weight_decay",
                "dropout", "freeze_encoder", "validation_split", "labels_fraction", "max_train_examples",
                "max_test_examples", "seed")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # tfds logs every file it opens
    if FLAGS.logical_cpus:
        import tensorflow as tf

        # Before anything initializes TensorFlow's devices.
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * FLAGS.logical_cpus,
        )
    try:
        check_encoder_flags()
        from keras_directcopy.data.datasets import ensure_prepared
        from keras_directcopy.evaluation.finetune import FinetuneConfig, finetune
        from keras_directcopy.training.strategies import end_process, is_chief, make_strategy, non_chief_task
        from keras_directcopy.utils.run_lock import claim_output_dir_until_exit

        config = FinetuneConfig(**{name: getattr(FLAGS, name) for name in RECIPE_FLAGS})
        # Before anything is written: one run at a time in an output directory.
        claim_output_dir_until_exit(FLAGS.output_dir, task=non_chief_task(FLAGS.strategy))
        strategy = make_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
        # The encoder's weights are the classifier's: created under the strategy.
        with strategy.scope():
            # Fine-tuning is on the user's own data: no model card to compare with.
            encoder, preset, dataset = load_encoder_and_dataset(compare_with_card=False)
        ensure_prepared(dataset, data_dir(), download=FLAGS.download)
        results = finetune(
            encoder, dataset, data_dir(), FLAGS.output_dir, config, preset=preset,
            encoder_path=FLAGS.encoder, verbose=keras_verbosity(FLAGS.verbose), strategy=strategy,
            write_outputs=is_chief(strategy),
        )
    except (ValueError, FileNotFoundError, WriteFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    evaluated = results["epoch_evaluation"]
    history = results["history"]
    if history:
        accuracy_key = "val_accuracy" if evaluated["split"] == "validation" else "test_accuracy"
        print(f"Top-1 accuracy after each epoch on the {evaluated['label']}: "
              + ", ".join(f"{100 * record[accuracy_key]:.2f}%" for record in history if accuracy_key in record)
              + ".")
    print(
        f"Final-epoch test top-1 accuracy on {results['dataset']} (test split {results['test_split']}): "
        f"{100 * results['test_top1']:.2f}% after {config.epochs} epochs "
        f"({'frozen encoder' if config.freeze_encoder else 'full fine-tune'}, "
        f"{results['train_examples']} training images"
        + (f", {config.labels_fraction:g} of the labels" if config.labels_fraction < 1 else "")
        + f"). Classifier in {os.path.join(FLAGS.output_dir, 'classifier.keras')}."
    )
    end_process(0)


if __name__ == "__main__":
    app.run(main)
