"""Fine-tuning a pretrained encoder with a new linear classifier.

The classifier is `build_classifier(encoder, ...)` with the linear probe's
head (`models.heads.build_linear_head`): the features are standardized per
dimension with the mean and variance of the encoder's features of the
(unaugmented) training images, then a `Dense` layer initialized to zero
gives the logits. The features of an encoder one did not train can be on
any scale; on a small one a head on the raw features barely moves in a few
epochs. Standardized, they are on the scale the settings below were chosen
for, whatever the encoder. Dropout, when asked for, sits between the two.

The recipe depends on whether the encoder trains. Its sources:

| setting | frozen encoder (`freeze_encoder=True`) | full fine-tune |
|---|---|---|
| optimizer | Adam (linear probe) | SGD, momentum 0.9 (lightly's fine-tune benchmark, after SimCLR) |
| learning rate | 3e-3, cosine decay to 0 (see below) | 0.05, cosine decay to 0 over all steps (lightly) |
| weight decay | 1e-3, coupled L2 on the head's kernel and bias (linear probe) | none (lightly) |
| head | standardized features, zero-initialized `Dense` (linear probe) | the same |
| encoder | frozen, BatchNorm in inference mode (Keras transfer-learning guide) | trained, BatchNorm trains (lightly) |
| BatchNorm moving statistics | kept | momentum 0.9, PyTorch's default, under which lightly's recipe runs |

The linear probe's learning rate, a constant 3e-4, is set for its 100
epochs on cached features; a frozen fine-tune runs fewer epochs (30 by
default, often a handful) on augmented images, and takes ten times that
rate, decayed to 0 as in the full fine-tune, so that it learns at least as
well as the probe does in as many epochs (`tests/test_finetune.py` holds it
to that).

Both train for 30 epochs (lightly) on batches of 256. Training images get
a random crop of the image zero-padded by 1/8 of its side and a random
horizontal flip, drawn per image (`data.datasets.supervised_train_dataset`,
lightly's CIFAR recipe); evaluation images are the unaugmented evaluation
pipeline. A frozen fine-tune is then the linear probe
(`evaluation.linear_probe`) trained on augmented images.

Which images:

* `validation_split=F` holds out a class-balanced, seeded fraction `F` of
  the training images (`select_training_images`), on which the classifier
  is evaluated after every epoch (`val_accuracy`). Without it, every epoch
  is evaluated on the test split, and labelled so (`test_accuracy`); the
  reported result is still the final epoch's, never the best one's.
* `labels_fraction=F` trains on a class-balanced, seeded fraction `F` of
  the (remaining) training images: the 1% and 10% label regimes.

Resuming: `keras.callbacks.BackupAndRestore` backs the model and optimizer
up in `<output_dir>/backup` after every epoch; the same call after an
interruption resumes after the last backed-up epoch, and a finished run
trains no further. A resumed run reads its images from the start of the
seeded stream again, so it is not bit-identical to an uninterrupted one.
"""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_directcopy.data import datasets
from keras_directcopy.evaluation.classifier import build_classifier
from keras_directcopy.evaluation.evaluate import encode_with_progress
from keras_directcopy.evaluation.linear_probe import DEFAULT_LINEAR_WEIGHT_DECAY, FEATURE_NORMALIZATION
from keras_directcopy.models.fused_batchnorm import nested_layers, use_fused_kernel
from keras_directcopy.models.heads import build_linear_head, set_feature_statistics
from keras_directcopy.utils.files import atomic_save, atomic_write_text
from keras_directcopy.utils.provenance import git_commit, hardware_summary

CLASSIFIER_FILENAME = "classifier.keras"
RESULTS_FILENAME = "finetune.json"
HISTORY_FILENAME = "history.jsonl"
BACKUP_DIRNAME = "backup"
TENSORBOARD_DIRNAME = "tensorboard"
# The recipe a backup was written with, beside it: a backup resumes only the same recipe.
RECIPE_FILENAME = "recipe.json"
# Where keras.callbacks.BackupAndRestore records the epochs it backed up.
_KERAS_BACKUP_METADATA = "training_metadata.json"

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
# The defaults each mode resolves None to; their sources are in the module
# docstring (3e-3 is ten times the linear probe's learning rate).
FROZEN_ENCODER_DEFAULTS = {"optimizer": "adam", "lr": 3e-3, "weight_decay": DEFAULT_LINEAR_WEIGHT_DECAY}
FULL_FINETUNE_DEFAULTS = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 0.0}
# The standardization's mean and variance are estimated from at most this
# many training images (a seeded sample of larger sets): an estimate of a
# variance from N samples is off by about sqrt(2 / N), 1.4% here.
STATISTICS_MAX_EXAMPLES = 10_000


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe; a None field takes its mode's default
    (`FROZEN_ENCODER_DEFAULTS` or `FULL_FINETUNE_DEFAULTS`, see `resolved`).

    Attributes:
        epochs: training epochs.
        batch_size: global batch size (split over the replicas of a strategy).
        optimizer: `"adam"` or `"sgd"`.
        lr: learning rate (the peak, with the cosine schedule).
        lr_schedule: `"cosine"` decay to 0 over all steps, or `"constant"`
            (the linear probe's schedule).
        momentum: SGD momentum.
        weight_decay: with Adam, coupled L2 weight decay on the head's kernel
            and bias (`weight_decay * w` added to the gradient, as the linear
            probe); with SGD, the optimizer's decoupled weight decay of every
            trained weight. 0: none.
        dropout: dropout rate on the standardized features, in [0, 1).
        freeze_encoder: train only the classifier; the encoder stays frozen.
        validation_split: hold out this fraction of the training images,
            class-balanced, for the evaluation after every epoch; None
            evaluates every epoch on the test split instead.
        labels_fraction: train on this fraction of the (remaining) training
            images, class-balanced, in (0, 1].
        max_train_examples: use the first N training examples only.
        max_test_examples: test on the first N test examples only.
        seed: seed of the initialization, the image selections, shuffling
            and augmentation.
        batchnorm_momentum: the momentum of the moving statistics of the
            encoder's BatchNorm layers in a full fine-tune (set on the
            encoder's layers); ignored with a frozen encoder. Keras' default,
            0.99, averages over about 100 steps, so after a short fine-tune
            the statistics used at test time still describe the encoder
            before it: 0.9 (PyTorch's 0.1) follows it within about 10 steps.
    """

    epochs: int = 30
    batch_size: int = 256
    batchnorm_momentum: float = 0.9
    optimizer: str | None = None
    lr: float | None = None
    lr_schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float | None = None
    dropout: float = 0.0
    freeze_encoder: bool = False
    validation_split: float | None = None
    labels_fraction: float = 1.0
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}.")
        if not 0.0 <= self.batchnorm_momentum < 1.0:
            raise ValueError(f"batchnorm_momentum must be in [0, 1), e.g. 0.9; got {self.batchnorm_momentum}.")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}.")
        if self.optimizer not in (None, *OPTIMIZERS):
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {self.lr_schedule!r}.")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be positive; got {self.lr}.")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"weight_decay must be at least 0; got {self.weight_decay}.")
        if self.validation_split is not None and not 0.0 < self.validation_split < 1.0:
            raise ValueError(
                f"validation_split must be in (0, 1), e.g. 0.1; got {self.validation_split}. Leave it "
                "unset to evaluate every epoch on the test split."
            )
        if not 0.0 < self.labels_fraction <= 1.0:
            raise ValueError(f"labels_fraction must be in (0, 1], e.g. 0.01, 0.1 or 1; got {self.labels_fraction}.")

    def resolved(self):
        """This recipe with every None field set to its mode's default."""
        defaults = FROZEN_ENCODER_DEFAULTS if self.freeze_encoder else FULL_FINETUNE_DEFAULTS
        # An optimizer chosen by hand brings its own decay default: none for SGD.
        optimizer = self.optimizer or defaults["optimizer"]
        default_decay = defaults["weight_decay"] if optimizer == defaults["optimizer"] else 0.0
        return dataclasses.replace(
            self,
            optimizer=optimizer,
            lr=self.lr if self.lr is not None else defaults["lr"],
            weight_decay=self.weight_decay if self.weight_decay is not None else default_decay,
        )


def set_batchnorm_momentum(model, momentum):
    """Sets the momentum of the moving statistics of every
    `keras.layers.BatchNormalization` inside `model` (nested models
    included); returns how many layers it set."""
    layers = [layer for layer in nested_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def class_balanced_indices(labels, fraction, seed, keep_one_out=False):
    """A seeded random `fraction` of each class's examples.

    Every class keeps `round(fraction * n)` of its `n` examples, at least
    one, so the subset has the class proportions of the whole.

    Args:
        labels: int `(N,)` labels.
        fraction: in (0, 1].
        seed: seed of the choice.
        keep_one_out: leave at least one example of every class unchosen
            (a held-out split must leave each class something to train on).

    Returns:
        The chosen positions in `labels`, sorted, int64.

    Raises:
        ValueError: with `keep_one_out`, on a class of a single example.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(fraction * len(members)))
        if keep_one_out:
            if len(members) < 2:
                raise ValueError(
                    f"Class {label} has a single training image, too few to hold one out for "
                    "validation; add images to it, or leave out --validation_split."
                )
            count = min(count, len(members) - 1)
        chosen.append(rng.choice(members, count, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


def finetune(encoder, dataset, data_dir, output_dir, config=FinetuneConfig(), *, preset=None,
             encoder_path=None, verbose="auto", strategy=None, write_outputs=True):
    """Fine-tunes `build_classifier(encoder)` on a labelled dataset (recipe: module docstring).

    Writes, atomically, `<output_dir>/classifier.keras` (images to logits;
    reloads with `keras.saving.load_model(..., safe_mode=True)`),
    `<output_dir>/finetune.json` (the returned results) and
    `<output_dir>/history.jsonl` (a line per epoch); TensorBoard logs go to
    `<output_dir>/tensorboard`, the backup to `<output_dir>/backup`.
    Calling it again with the same arguments after an interruption resumes
    from the backup; after a finished run it trains nothing and writes the
    outputs again.

    Args:
        encoder: a Keras model from images to features, created under
            `strategy.scope()` when a strategy is given; trained in place
            unless `config.freeze_encoder`.
        dataset: a labelled dataset name, see `data.datasets.get_dataset_spec`.
        data_dir: tfds data directory (or anything for a `folder:` dataset).
        output_dir: where the outputs go.
        config: a `FinetuneConfig`.
        preset, encoder_path: what the encoder came from, recorded.
        verbose: Keras `fit()` verbosity; nonzero also prints what is
            resumed and the progress of the feature statistics.
        strategy: a `tf.distribute` strategy to build, compile and train the
            classifier under (None: the default strategy).
        write_outputs: False on the workers of a multi-worker run other than
            the chief, which write nothing and resume from the chief's backup.

    Returns:
        The results dict: the dataset (and, for a folder, `data_folder`, as
        `datasets.dataset_record` records them), splits, example counts
        (`examples_per_class`, `{"train": [...], "validation": [...]}` by
        class index, where images were chosen; else None),
        `test_top1` after the final epoch, final training loss and accuracy,
        `epoch_evaluation` (the split evaluated after every epoch and its
        label) and `history` (every epoch's metrics), the resolved recipe,
        hardware, commit and `wall_time_s`.

    Raises:
        ValueError: on an unlabelled dataset; a backup written by another
            recipe (the message says how to start over).
    """
    start_time = time.time()
    config = config.resolved()
    keras.utils.set_random_seed(config.seed)
    strategy = strategy or tf.distribute.get_strategy()
    # An encoder of fixed input size trains at it: a folder's size is then not measured.
    spec = datasets.get_dataset_spec(dataset, image_size=encoder.input_shape[1])
    if not spec.labelled:
        raise ValueError(f"Dataset {dataset!r} has no labels; fine-tune on a labelled dataset.")
    train_split, test_split = spec.train_split, spec.test_split
    if config.max_train_examples:
        train_split = f"{train_split}[:{config.max_train_examples}]"
    if config.max_test_examples:
        test_split = f"{test_split}[:{config.max_test_examples}]"
    image_size = encoder.input_shape[1] or spec.image_size
    train_indices = validation_indices = per_class = None
    if config.validation_split is not None or config.labels_fraction < 1.0:
        labels = datasets.split_labels(spec, data_dir, train_split)
        train_indices, validation_indices = select_training_images(
            labels, config.validation_split, config.labels_fraction, config.seed
        )
        per_class = {role: np.bincount(labels[indices], minlength=spec.num_classes).tolist()
                     for role, indices in (("train", train_indices), ("validation", validation_indices))
                     if indices is not None}
    train_examples = (len(train_indices) if train_indices is not None
                      else datasets.num_examples(spec, data_dir, train_split))

    output_dir = os.path.expanduser(output_dir)
    backup_dir = os.path.join(output_dir, BACKUP_DIRNAME)
    recipe = {"dataset": datasets.dataset_record(dataset)["dataset"], "train_split": train_split,
              **dataclasses.asdict(config)}
    epochs_done = _check_backup(backup_dir, recipe)
    if write_outputs:
        atomic_write_text(os.path.join(backup_dir, RECIPE_FILENAME), json.dumps(recipe, indent=2))
    if verbose:
        _announce_backup(backup_dir, epochs_done, config.epochs)

    steps_per_epoch = max(1, math.ceil(train_examples / config.batch_size))
    total_steps = config.epochs * steps_per_epoch
    train_data = datasets.supervised_train_dataset(
        spec, data_dir, train_split, config.batch_size, image_size, seed=config.seed, indices=train_indices
    )
    test_data = datasets.evaluation_dataset(spec, data_dir, test_split, config.batch_size, image_size)
    if validation_indices is not None:
        evaluated = {"split": "validation", "examples": len(validation_indices), "label": (
            f"held-out validation split ({len(validation_indices)} training images, "
            f"{config.validation_split:g} of each class, seed {config.seed}, not trained on)")}
        epoch_data = datasets.evaluation_dataset(
            spec, data_dir, train_split, config.batch_size, image_size, indices=validation_indices
        )
    else:
        evaluated = {"split": "test", "examples": datasets.num_examples(spec, data_dir, test_split),
                     "label": f"test split ({test_split}; no validation_split was given)"}
        epoch_data = test_data

    with strategy.scope():
        head = _standardized_head(
            int(encoder.output_shape[-1]), spec.num_classes, config.dropout,
            weight_decay=config.weight_decay if config.optimizer == "adam" else 0.0,
        )
        model = build_classifier(encoder, spec.num_classes, freeze_encoder=config.freeze_encoder, head=head)
        if not config.freeze_encoder:
            set_batchnorm_momentum(encoder, config.batchnorm_momentum)
        # The training calls of the encoder's BatchNorm (when it is not frozen)
        # with TensorFlow's fused kernel: Keras' arithmetic, in less time.
        use_fused_kernel(model)
        model.compile(
            optimizer=_optimizer(config, total_steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    if epochs_done == 0:  # a backup restores the statistics it trained with
        statistics_indices = _statistics_sample(train_indices, train_examples, config.seed)
        statistics_images = datasets.evaluation_dataset(
            spec, data_dir, train_split, config.batch_size, image_size, indices=statistics_indices
        )
        features, _ = encode_with_progress(
            encoder, statistics_images, len(statistics_indices) if statistics_indices is not None
            else train_examples, "the training images for the feature statistics",
            verbose if verbose in (0, 1, 2) else 1,  # "auto" is a bar, as in fit()
        )
        set_feature_statistics(head, features)

    epoch_log = _EpochLog(os.path.join(output_dir, HISTORY_FILENAME), write=write_outputs)
    callbacks = [epoch_log]
    if evaluated["split"] == "test":
        callbacks.insert(0, _TestSplitLabels())  # before anything reads the epoch's logs
    if write_outputs:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, TENSORBOARD_DIRNAME)))
    # Last: an epoch is never backed up before its record is written.
    callbacks.append(_Backup(backup_dir, write=write_outputs))
    model.fit(train_data, epochs=config.epochs, steps_per_epoch=steps_per_epoch, validation_data=epoch_data,
              callbacks=callbacks, verbose=verbose, shuffle=False)  # the pipeline shuffles, seeded
    test_loss, test_top1 = model.evaluate(test_data, verbose=0)

    history = epoch_log.read()
    final = history[-1] if history else {}
    results = {
        # A folder identified as a known dataset is recorded by its name, beside the folder.
        **datasets.dataset_record(dataset),
        "encoder": encoder.name,
        "encoder_path": encoder_path,
        "preset": preset,
        "train_split": train_split,
        "test_split": test_split,
        "train_examples": train_examples,
        "validation_examples": len(validation_indices) if validation_indices is not None else 0,
        # Where images were chosen: how many of each class (None: the whole split).
        "examples_per_class": per_class,
        "test_top1": float(test_top1),
        "test_loss": float(test_loss),
        "final_train_loss": final.get("loss"),
        "final_train_top1": final.get("accuracy"),
        "epoch_evaluation": evaluated,
        "history": history,
        "steps": total_steps,
        "num_replicas": int(strategy.num_replicas_in_sync),
        "feature_normalization": FEATURE_NORMALIZATION,
        **{("learning_rate" if name == "lr" else name): value
           for name, value in dataclasses.asdict(config).items()
           if name not in ("max_train_examples", "max_test_examples")},
        "final_epoch": True,
        "hardware": hardware_summary(),
        "git_commit": git_commit(),
        "wall_time_s": round(time.time() - start_time, 1),
    }
    if write_outputs:
        atomic_save(os.path.join(output_dir, CLASSIFIER_FILENAME), model.save)
        atomic_write_text(os.path.join(output_dir, RESULTS_FILENAME), json.dumps(results, indent=2))
    return results


def select_training_images(labels, validation_split=None, labels_fraction=1.0, seed=0):
    """The training images to hold out and to train on, each class-balanced.

    Args:
        labels: int `(N,)` labels of the training split, in its order.
        validation_split: the fraction of every class held out (None: none).
        labels_fraction: the fraction of every class's remaining images
            trained on.
        seed: seed of both choices (independent streams).

    Returns:
        `(train, validation)`: sorted positions in `labels`, disjoint;
        `validation` is None without `validation_split`.

    Raises:
        ValueError: as `class_balanced_indices`.
    """
    candidates, validation = np.arange(len(labels)), None
    if validation_split is not None:
        validation = class_balanced_indices(labels, validation_split, seed, keep_one_out=True)
        candidates = np.setdiff1d(candidates, validation)
    if labels_fraction < 1.0:
        # Another stream than the validation split's, so the two choices are independent.
        candidates = candidates[class_balanced_indices(labels[candidates], labels_fraction, [seed, 1])]
    return candidates, validation


def _statistics_sample(train_indices, train_examples, seed):
    """The training images the feature statistics are estimated from (None: all)."""
    if train_examples <= STATISTICS_MAX_EXAMPLES:
        return train_indices
    positions = np.random.default_rng([seed, 2]).choice(train_examples, STATISTICS_MAX_EXAMPLES, replace=False)
    return np.sort(positions if train_indices is None else train_indices[positions])


def _standardized_head(feature_dim, num_classes, dropout, weight_decay):
    """`build_linear_head`'s standardization and zero-initialized `Dense`,
    with dropout between them when `dropout` is set."""
    head = build_linear_head(feature_dim, num_classes, weight_decay=weight_decay)
    if not dropout:
        return head
    features = keras.Input((feature_dim,), name="features")
    standardized = head.get_layer("standardize")(features)
    dropped = keras.layers.Dropout(dropout, name="feature_dropout")(standardized)
    return keras.Model(features, head.get_layer("logits")(dropped), name=head.name)


def _optimizer(config, total_steps):
    lr = config.lr
    if config.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=total_steps)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)  # its weight decay is the head's L2 term
    return keras.optimizers.SGD(lr, momentum=config.momentum, weight_decay=config.weight_decay or None)


def _announce_backup(backup_dir, epochs_done, epochs):
    if epochs_done >= epochs:
        print(f"The backup in {backup_dir} holds all {epochs} epochs: nothing to train; the outputs are "
              "written again.", flush=True)
    elif epochs_done:
        print(f"Resuming from the backup in {backup_dir} after epoch {epochs_done} of {epochs}.", flush=True)


def _check_backup(backup_dir, recipe):
    """The epochs the backup in `backup_dir` holds (0 without one).

    Raises:
        ValueError: if the backup was written by another recipe.
    """
    metadata_path = os.path.join(backup_dir, _KERAS_BACKUP_METADATA)
    if not os.path.exists(metadata_path):
        return 0
    recipe_path = os.path.join(backup_dir, RECIPE_FILENAME)
    if os.path.exists(recipe_path):
        with open(recipe_path) as file:
            backed_up = json.load(file)
        changed = [f"{name} {backed_up.get(name)!r} there, {value!r} now"
                   for name, value in recipe.items() if backed_up.get(name) != value]
        if changed:
            raise ValueError(
                f"The backup in {backup_dir} was written by another recipe ({'; '.join(changed)}). "
                "Run the original command to resume it, or pass another --output_dir (or delete the "
                "backup) to start over."
            )
    with open(metadata_path) as file:
        return int(json.load(file)["epoch"])


class _Backup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that keeps its backup after training, and keeps the
    previous one while it writes the next (a kill while writing leaves one
    to resume from). With `write=False` (a multi-worker run's workers other
    than the chief) it restores from the chief's backup and writes none."""

    def __init__(self, backup_dir, write=True):
        super().__init__(backup_dir, double_checkpoint=True, delete_checkpoint=False)
        self.write = write

    def _save_model(self):
        if self.write:
            super()._save_model()


class _TestSplitLabels(keras.callbacks.Callback):
    """Names `fit()`'s per-epoch validation metrics `test_*` where the
    validation data is the test split, so no log passes them off as a
    held-out validation split's."""

    def on_epoch_end(self, epoch, logs=None):
        for name in [name for name in (logs or {}) if name.startswith("val_")]:
            logs["test_" + name[len("val_"):]] = logs.pop(name)


class _EpochLog(keras.callbacks.Callback):
    """Every epoch's metrics, kept in a JSON-lines file that outlives an
    interrupted run: an epoch redone after resuming replaces its record."""

    def __init__(self, path, write=True):
        super().__init__()
        self.path = path
        self.write = write
        self.records = None

    def read(self):
        """The records: `{"epoch": 1-based, "loss": ..., "accuracy": ..., ...}`."""
        if self.records is not None:
            return list(self.records)
        if not os.path.exists(self.path):
            return []
        with open(self.path) as file:
            return [json.loads(line) for line in file if line.strip()]

    def on_epoch_begin(self, epoch, logs=None):
        if self.records is None:
            # The epochs from here on are (re)done in this run.
            self.records = [record for record in self.read() if record["epoch"] <= epoch]

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1}
        record.update({name: float(value) for name, value in (logs or {}).items()})
        self.records.append(record)
        if self.write:
            text = "".join(json.dumps(record) + "\n" for record in self.records)
            atomic_write_text(self.path, text)
