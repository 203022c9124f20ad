"""Fine-tuning a pretrained encoder with a new linear classifier.

Recipe (lightly's fine-tune benchmark, after SimCLR): SGD with momentum 0.9,
a peak learning rate for batches of 256 with cosine decay to 0 over all
steps, no weight decay by default, 30 epochs. Training images get a random
crop of the image zero-padded by 1/8 of its side and a random horizontal flip,
drawn per image (`data.datasets.supervised_train_dataset`); test images are
the unaugmented evaluation pipeline. `freeze_encoder=True` trains only the
classifier, with the encoder's BatchNorm in inference mode.
"""

import dataclasses
import json
import math
import os
import time

import keras

from keras_directcopy.data import datasets
from keras_directcopy.evaluation.classifier import build_classifier
from keras_directcopy.models.fused_batchnorm import use_fused_kernel
from keras_directcopy.utils.files import atomic_save, atomic_write_text
from keras_directcopy.utils.provenance import git_commit, hardware_summary

CLASSIFIER_FILENAME = "classifier.keras"
RESULTS_FILENAME = "finetune.json"


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe.

    Attributes:
        epochs: training epochs.
        batch_size: batch size.
        lr: peak learning rate (SGD, cosine decay to 0 over all steps).
        momentum: SGD momentum.
        weight_decay: decoupled weight decay of the SGD optimizer (0: none).
        dropout: dropout rate on the features before the classifier, in [0, 1).
        freeze_encoder: train only the classifier; the encoder stays frozen.
        max_train_examples: train on the first N training examples only.
        max_test_examples: test on the first N test examples only.
        seed: seed of the initialization, shuffling and augmentation.
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float = 0.0
    freeze_encoder: bool = False
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}.")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}.")


def finetune(encoder, dataset, data_dir, output_dir, config=FinetuneConfig(), *, preset=None,
             encoder_path=None, verbose="auto"):
    """Fine-tunes `build_classifier(encoder)` on a labelled dataset.

    Writes `<output_dir>/classifier.keras` (images to logits; reloads with
    `keras.saving.load_model(..., safe_mode=True)`) and
    `<output_dir>/finetune.json` (the returned results), both atomically.

    Args:
        encoder: a Keras model from images to features; trained in place
            unless `config.freeze_encoder`.
        dataset: a labelled dataset name, see `data.datasets.get_dataset_spec`.
        data_dir: tfds data directory (or anything for a `folder:` dataset).
        output_dir: where the two files go.
        config: a `FinetuneConfig`.
        preset, encoder_path: what the encoder came from, recorded.
        verbose: Keras `fit()` verbosity.

    Returns:
        The results dict: the dataset (and, for a folder, `data_folder`, as
        `datasets.dataset_record` records them), splits, example count,
        `test_top1` after the final epoch, final training loss and accuracy,
        the recipe, hardware, commit and `wall_time_s`.

    Raises:
        ValueError: on an unlabelled dataset.
    """
    start_time = time.time()
    keras.utils.set_random_seed(config.seed)
    # An encoder of fixed input size trains at it: a folder's size is then not measured.
    spec = datasets.get_dataset_spec(dataset, image_size=encoder.input_shape[1])
    if not spec.labelled:
        raise ValueError(f"Dataset {dataset!r} has no labels; fine-tune on a labelled dataset.")
    train_split, test_split = spec.train_split, spec.test_split
    train_examples = datasets.num_examples(spec, data_dir, train_split)
    if config.max_train_examples:
        train_split = f"{train_split}[:{config.max_train_examples}]"
        train_examples = min(train_examples, config.max_train_examples)
    if config.max_test_examples:
        test_split = f"{test_split}[:{config.max_test_examples}]"
    image_size = encoder.input_shape[1] or spec.image_size

    steps_per_epoch = max(1, math.ceil(train_examples / config.batch_size))
    total_steps = config.epochs * steps_per_epoch
    train_data = datasets.supervised_train_dataset(
        spec, data_dir, train_split, config.batch_size, image_size, seed=config.seed
    )
    test_data = datasets.evaluation_dataset(spec, data_dir, test_split, config.batch_size, image_size)

    model = build_classifier(
        encoder, spec.num_classes, freeze_encoder=config.freeze_encoder, dropout=config.dropout
    )
    # The training calls of the encoder's BatchNorm (when it is not frozen)
    # with TensorFlow's fused kernel: Keras' arithmetic, in less time.
    use_fused_kernel(model)
    model.compile(
        optimizer=keras.optimizers.SGD(
            keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=total_steps),
            momentum=config.momentum,
            weight_decay=config.weight_decay or None,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    history = model.fit(train_data, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                        verbose=verbose, shuffle=False)  # the pipeline shuffles, seeded
    test_loss, test_top1 = model.evaluate(test_data, verbose=0)

    output_dir = os.path.expanduser(output_dir)
    atomic_save(os.path.join(output_dir, CLASSIFIER_FILENAME), model.save)
    results = {
        # A folder identified as a known dataset is recorded by its name, beside the folder.
        **datasets.dataset_record(dataset),
        "encoder": encoder.name,
        "encoder_path": encoder_path,
        "preset": preset,
        "train_split": train_split,
        "test_split": test_split,
        "train_examples": train_examples,
        "test_top1": float(test_top1),
        "test_loss": float(test_loss),
        "final_train_loss": float(history.history["loss"][-1]),
        "final_train_top1": float(history.history["accuracy"][-1]),
        "steps": total_steps,
        "optimizer": "sgd",
        **{("learning_rate" if name == "lr" else name): value
           for name, value in dataclasses.asdict(config).items()
           if name not in ("max_train_examples", "max_test_examples")},
        "final_epoch": True,
        "hardware": hardware_summary(),
        "git_commit": git_commit(),
        "wall_time_s": round(time.time() - start_time, 1),
    }
    atomic_write_text(os.path.join(output_dir, RESULTS_FILENAME), json.dumps(results, indent=2))
    return results
