"""Fine-tune a pretrained encoder, with a new linear classifier, on a labelled dataset.

    python scripts/finetune.py --preset=directcopy_resnet20_cifar10 \
        --data_dir=~/tensorflow_datasets --output_dir=runs/c10_r20_finetune

    python scripts/finetune.py --encoder=runs/c10_r20/encoder.keras --dataset=cifar10 \
        --data_dir=~/tensorflow_datasets --output_dir=runs/ft --freeze_encoder

The recipe (lightly's fine-tune benchmark, after SimCLR) and the augmentation
are `keras_directcopy.evaluation.finetune`'s. Writes
`<output_dir>/classifier.keras` and `finetune.json`, both atomically, and
prints the test accuracy after the final epoch.
"""

import os
import sys

import runtime_defaults  # noqa: E402,F401 (this folder: TensorFlow's environment, set before it loads)

from absl import app, flags, logging  # noqa: E402
from encoder_flags import (  # noqa: E402 (this folder)
    check_encoder_flags,
    data_dir,
    define_encoder_flags,
    load_encoder_and_dataset,
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
RECIPE_FLAGS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "dropout", "freeze_encoder",
                "max_train_examples", "max_test_examples", "seed")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # tfds logs every file it opens
    try:
        check_encoder_flags()
        from keras_directcopy.evaluation.finetune import FinetuneConfig, finetune

        config = FinetuneConfig(**{name: getattr(FLAGS, name) for name in RECIPE_FLAGS})
        from keras_directcopy.data.datasets import ensure_prepared

        encoder, preset, dataset = load_encoder_and_dataset()
        ensure_prepared(dataset, data_dir(), download=FLAGS.download)
        results = finetune(
            encoder, dataset, data_dir(), FLAGS.output_dir, config, preset=preset,
            encoder_path=FLAGS.encoder, verbose=FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose),
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(
        f"Final-epoch test top-1 accuracy on {results['dataset']} ({results['test_split']}): "
        f"{100 * results['test_top1']:.2f}% after {config.epochs} epochs "
        f"({'frozen encoder' if config.freeze_encoder else 'full fine-tune'}). "
        f"Classifier in {os.path.join(FLAGS.output_dir, 'classifier.keras')}."
    )


if __name__ == "__main__":
    app.run(main)
