"""Evaluation of a frozen encoder: weighted kNN, linear probe, and fine-tuning.

Linear probe protocol
---------------------
The linear probe follows the linear evaluation of the DirectPred reference
code (`facebookresearch/luckmatters`, `ssl/real-dataset/linear_feature_eval.py`),
the code base DirectCopy builds on:

* The encoder is frozen and runs once, in inference mode (BatchNorm uses its
  moving statistics), over the unaugmented train and test images
  (`data.evaluation_dataset`: resize and center crop, or the images as they
  are at the dataset's own size). The pooled features are cached.
* Features are standardized per dimension with the mean and standard
  deviation of the training split (no batch statistics; dimensions whose
  variance is below `MIN_FEATURE_VARIANCE`, e.g. channels no image activates,
  are centred only, as scikit-learn's `StandardScaler` does). Standardizing
  puts every dimension on the same scale, so one learning rate and weight
  decay suit every encoder; l2-normalization fixes only each vector's length
  and leaves weakly active dimensions tiny. The probe stays a linear (affine)
  function of the raw features.
* A single `Dense` layer (multinomial logistic regression), initialized to
  zero, is trained on the cached features with softmax cross-entropy, Adam
  with a constant learning rate of `3e-4`, coupled L2 weight decay `1e-3` on
  the kernel and the bias (PyTorch's `Adam(weight_decay=...)`, i.e.
  `wd * w` added to the gradient), and a reshuffled order every epoch.
* Differences from the reference: batches of 256 for 100 epochs instead of
  128 for 50 (the same number of optimizer steps); zero instead of random
  initial weights (the loss is convex, so this removes a source of
  run-to-run variance, not a different optimum); and the reported accuracy
  is the test accuracy after the final epoch, never the best epoch, so the
  test split is not used for model selection.

solo-learn (`solo/methods/linear.py`) and lightly
(`lightly/utils/benchmarking/linear_classifier.py`) train the same kind of
linear layer on frozen features, but on augmented images with SGD, which
needs the encoder at every step; cached features make the probe fast enough
for a CPU.

kNN
---
`keras_directcopy.knn`: k = 200 neighbours by cosine similarity, votes
weighted by `exp(similarity / 0.1)`.
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_directcopy import data, knn
from keras_directcopy.training import git_commit, hardware_summary

DEFAULT_LINEAR_EPOCHS = 100
DEFAULT_LINEAR_BATCH_SIZE = 256
DEFAULT_LINEAR_LEARNING_RATE = 3e-4
DEFAULT_LINEAR_WEIGHT_DECAY = 1e-3
LINEAR_OPTIMIZER = "adam"
FEATURE_NORMALIZATION = "standardize_train_mean_std"
# Dimensions with a smaller training variance are centred but not scaled:
# dividing a (near-)constant feature by its tiny std would turn noise into
# huge inputs.
MIN_FEATURE_VARIANCE = 1e-12
# Linear-probe batches per compiled training call: the head is tiny, so
# per-step dispatch would dominate.
_STEPS_PER_EXECUTION = 32
_PREDICT_BATCH_SIZE = 4096


def build_linear_head(feature_dim, num_classes, weight_decay=0.0, name="linear_head"):
    """The linear-probe head: standardization, then one `Dense` layer.

    The standardization is a `keras.layers.Normalization` whose mean and
    variance are weights (non-trainable), so `head.save_weights(...)` stores
    them with the classifier, and a head rebuilt by this function reloads a
    `.weights.h5` file completely. Until `set_feature_statistics` is called,
    the normalization is the identity.

    Args:
        feature_dim: int, `D`, the encoder's feature size.
        num_classes: int, number of classes.
        weight_decay: coupled L2 weight decay (gradient `+ weight_decay * w`)
            on the kernel and the bias; only for training, 0 for inference.
        name: model name.

    Returns:
        A functional `keras.Model` from `(N, D)` raw features to
        `(N, num_classes)` logits.
    """
    # An L2 regularizer adds l2 * sum(w^2) to the loss, whose gradient is
    # 2 * l2 * w; half the decay gives PyTorch's coupled `wd * w`.
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    features = keras.Input((feature_dim,), name="features")
    standardized = keras.layers.Normalization(axis=-1, name="standardize")(features)
    logits = keras.layers.Dense(
        num_classes,
        # Zeros: the problem is convex, and starting from uniform predictions
        # keeps random initial weights out of short probes' results.
        kernel_initializer="zeros",
        kernel_regularizer=regularizer,
        bias_regularizer=regularizer,
        name="logits",
    )(standardized)
    return keras.Model(features, logits, name=name)


def set_feature_statistics(head, train_features):
    """Sets the head's standardization to the per-dimension mean and variance
    of `train_features` `(N, D)` (variances below `MIN_FEATURE_VARIANCE`
    become 1)."""
    features = np.asarray(train_features, np.float64)
    mean = features.mean(axis=0)
    variance = features.var(axis=0)
    variance = np.where(variance < MIN_FEATURE_VARIANCE, 1.0, variance)
    layer = head.get_layer("standardize")
    layer.set_weights([mean.astype(np.float32), variance.astype(np.float32), np.array(len(features))])
    # The layer caches its broadcast statistics; refresh them from the new weights.
    layer.finalize_state()


def linear_probe_on_features(
    train_features,
    train_labels,
    test_features,
    test_labels,
    num_classes,
    *,
    epochs=DEFAULT_LINEAR_EPOCHS,
    batch_size=DEFAULT_LINEAR_BATCH_SIZE,
    learning_rate=DEFAULT_LINEAR_LEARNING_RATE,
    weight_decay=DEFAULT_LINEAR_WEIGHT_DECAY,
    seed=0,
    return_head=False,
    verbose=0,
):
    """Trains the linear probe on cached features (see the module docstring).

    Args:
        train_features, test_features: float `(N, D)`, `(M, D)` raw features.
        train_labels, test_labels: int `(N,)`, `(M,)` in `[0, num_classes)`.
        num_classes: int, number of classes.
        epochs: training epochs.
        batch_size: examples per optimizer step.
        learning_rate: constant Adam learning rate.
        weight_decay: coupled L2 weight decay on the kernel and bias.
        seed: seed of the shuffling (the weights start at zero); a run is
            reproducible on the same machine.
        return_head: also return the trained head (without its training-only
            regularizer) under the key `"head"`.
        verbose: Keras `fit()` verbosity.

    Returns:
        A dict: `top1` (test top-1 accuracy in 0..1 after the final epoch),
        `train_top1` (training accuracy of that same final head), `epochs`,
        `batch_size`, `optimizer`, `learning_rate`, `weight_decay`,
        `feature_normalization`, `final_epoch` (True), and with
        `return_head=True` `head`: a `keras.Model`, `(N, D)` features to
        `(N, num_classes)` logits, built by `build_linear_head`.

    Raises:
        ValueError: on empty inputs, mismatched shapes, labels outside
            `[0, num_classes)` or non-positive `epochs` / `batch_size`.
    """
    train_features = np.asarray(train_features, np.float32)
    test_features = np.asarray(test_features, np.float32)
    train_labels = np.asarray(train_labels, np.int64)
    test_labels = np.asarray(test_labels, np.int64)
    _check_probe_inputs(
        train_features, train_labels, test_features, test_labels, num_classes, epochs, batch_size
    )
    feature_dim = train_features.shape[1]

    head = build_linear_head(feature_dim, num_classes, weight_decay=weight_decay)
    set_feature_statistics(head, train_features)
    head.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=_STEPS_PER_EXECUTION,
    )
    batches = (
        tf.data.Dataset.from_tensor_slices((train_features, train_labels))
        .shuffle(len(train_features), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    head.fit(batches, epochs=epochs, verbose=verbose, shuffle=False)  # shuffled above, seeded

    # The same weights for the returned head, without the training-only regularizer.
    final_head = build_linear_head(feature_dim, num_classes)
    final_head.set_weights(head.get_weights())
    final_head.get_layer("standardize").finalize_state()
    results = {
        "top1": top1_accuracy(final_head, test_features, test_labels),
        "train_top1": top1_accuracy(final_head, train_features, train_labels),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "optimizer": LINEAR_OPTIMIZER,
        "learning_rate": float(learning_rate),
        "weight_decay": float(weight_decay),
        "feature_normalization": FEATURE_NORMALIZATION,
        "final_epoch": True,
    }
    if return_head:
        results["head"] = final_head
    return results


def linear_probe(
    encoder,
    train_dataset,
    test_dataset,
    num_classes,
    *,
    epochs=DEFAULT_LINEAR_EPOCHS,
    batch_size=DEFAULT_LINEAR_BATCH_SIZE,
    learning_rate=DEFAULT_LINEAR_LEARNING_RATE,
    weight_decay=DEFAULT_LINEAR_WEIGHT_DECAY,
    seed=0,
    return_head=False,
    verbose=0,
):
    """Linear evaluation of a frozen encoder (protocol: module docstring).

    The encoder runs once over each dataset in inference mode; the head is
    then trained on the cached features.

    Args:
        encoder: model from `(B, H, W, 3)` images to `(B, D)` features.
        train_dataset, test_dataset: unaugmented `(images, labels)` batches,
            e.g. from `data.evaluation_dataset`.
        num_classes: int, number of classes.
        epochs, batch_size, learning_rate, weight_decay, seed, return_head,
            verbose: see `linear_probe_on_features`; `batch_size` is the
            probe's, the datasets keep their own.

    Returns:
        The dict of `linear_probe_on_features`: final-epoch test `top1`,
        `train_top1`, the protocol parameters and, with `return_head=True`,
        `head` (`(N, D)` raw features to logits; `head(encoder(images))`
        classifies images, and `build_classifier(encoder, num_classes,
        head=head)` makes that one model).

    Raises:
        ValueError: see `linear_probe_on_features` and `knn.encode_dataset`.
    """
    train_features, train_labels = knn.encode_dataset(encoder, train_dataset)
    test_features, test_labels = knn.encode_dataset(encoder, test_dataset)
    return linear_probe_on_features(
        train_features, train_labels, test_features, test_labels, num_classes,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        weight_decay=weight_decay, seed=seed, return_head=return_head, verbose=verbose,
    )


def top1_accuracy(classifier, inputs, labels):
    """Fraction (0..1) of `inputs` whose largest logit is at `labels`."""
    logits = classifier.predict(inputs, batch_size=_PREDICT_BATCH_SIZE, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def build_classifier(encoder, num_classes, freeze_encoder=True, dropout=0.0, head=None, name=None):
    """An image classifier on top of `encoder`, for linear training or fine-tuning.

    With `freeze_encoder=True` the encoder's weights are frozen
    (`encoder.trainable = False`) and it runs in inference mode, so its
    BatchNorm layers keep normalizing with their moving statistics and never
    update them, even inside `fit()`: in Keras 3 a non-trainable
    BatchNormalization always runs in inference mode, which is what the Keras
    transfer-learning guide relies on. (Calling the encoder with
    `training=False` alone is not enough: a `training` value passed to the
    outer model overrides it.) With `freeze_encoder=False` every layer
    trains, and BatchNorm uses batch statistics in `fit()`.

    Note that this sets `encoder.trainable` on the encoder passed in, which
    becomes a layer of the returned model (its weights are shared).

    Args:
        encoder: functional model, `(N, H, W, 3)` 0..255 images to `(N, D)`
            pooled features, with a fully defined feature size `D`.
        num_classes: int, number of classes.
        freeze_encoder: bool, freeze the encoder (see above).
        dropout: dropout rate on the features before the head (0: none).
        head: optional model from `(N, D)` features to logits, e.g. the
            `"head"` returned by `linear_probe(..., return_head=True)`; by
            default a new `Dense(num_classes)` layer. It stays trainable.
        name: model name (default `"<encoder name>_classifier"`).

    Returns:
        A functional `keras.Model` from images to `(N, num_classes)` logits,
        made of standard Keras layers only, so `model.save(...)` reloads with
        `keras.saving.load_model(path, safe_mode=True)`.

    Raises:
        ValueError: if the encoder's output is not `(N, D)`, `dropout` is not
            in `[0, 1)`, or `head` does not map `D` features to
            `num_classes` logits.
    """
    if len(encoder.output_shape) != 2 or encoder.output_shape[-1] is None:
        raise ValueError(
            f"The encoder must output pooled (batch, features) vectors; its output shape is "
            f"{encoder.output_shape}. Use an encoder with global pooling."
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout}.")
    feature_dim = int(encoder.output_shape[-1])
    if head is not None and (
        tuple(head.input_shape) != (None, feature_dim) or head.output_shape[-1] != num_classes
    ):
        raise ValueError(
            f"The head maps {head.input_shape} to {head.output_shape}, but this classifier needs "
            f"(None, {feature_dim}) features to (None, {num_classes}) logits."
        )
    encoder.trainable = not freeze_encoder
    images = keras.Input(encoder.input_shape[1:], name="images")
    # training=False as the transfer-learning guide does; trainable=False above
    # is what keeps BatchNorm in inference mode under fit().
    features = encoder(images, training=False) if freeze_encoder else encoder(images)
    if dropout:
        features = keras.layers.Dropout(dropout, name="feature_dropout")(features)
    if head is None:
        logits = keras.layers.Dense(num_classes, name="logits")(features)
    else:
        head.trainable = True
        logits = head(features)
    return keras.Model(images, logits, name=name or f"{encoder.name}_classifier")


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
        verbose: Keras `fit()` verbosity of the probe.

    Returns:
        The metrics dict (with `return_head=True`, `(metrics, head)`):

        ```
        {"dataset": str, "encoder": str, "preset": str | None,
         "knn": {"top1", "k", "temperature", "train_split", "test_split",
                 "train_examples", "test_examples"},
         "linear_probe": {"top1", "train_top1", "epochs", "batch_size",
                          "optimizer", "learning_rate", "weight_decay",
                          "feature_normalization", "final_epoch": True},
         "hardware": {...}, "git_commit": str, "wall_time_s": float}
        ```

        Accuracies are fractions in 0..1; the split names are the tfds split
        expressions read.

    Raises:
        FileNotFoundError: if the dataset is not prepared (the message names
            `scripts/prepare_data.py`).
        ValueError: on an unlabelled or unknown dataset, or bad limits.
    """
    start_time = time.time()
    spec = data.get_dataset_spec(dataset)
    if not spec.labelled:
        raise ValueError(
            f"Dataset {dataset!r} has no labels, so it cannot be evaluated; use a labelled "
            "dataset, e.g. cifar10."
        )
    splits = {
        "train": _limited_split(spec.train_split, max_train_examples, "max_train_examples"),
        "test": _limited_split(spec.test_split, max_test_examples, "max_test_examples"),
    }
    image_size = _fixed_input_size(encoder) or spec.image_size
    features = {}
    for role, split in splits.items():
        images = data.evaluation_dataset(dataset, data_dir, split, batch_size, image_size)
        features[role] = knn.encode_dataset(encoder, images)
    (train_features, train_labels), (test_features, test_labels) = features["train"], features["test"]

    predictions = knn.knn_predict(
        knn.l2_normalize(train_features), train_labels, knn.l2_normalize(test_features),
        spec.num_classes, k=knn_k, temperature=knn_temperature,
    )
    probe = head = None
    if linear_probe:
        probe = linear_probe_on_features(
            train_features, train_labels, test_features, test_labels, spec.num_classes,
            epochs=linear_epochs, batch_size=batch_size, seed=seed, return_head=return_head,
            verbose=verbose,
        )
        head = probe.pop("head", None)
    metrics = {
        "dataset": dataset,
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
    from keras_directcopy import zoo

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


def _check_probe_inputs(train_x, train_y, test_x, test_y, num_classes, epochs, batch_size):
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"Features must be (N, D) with the same D; got {train_x.shape} and {test_x.shape}."
        )
    if not len(train_x) or not len(test_x):
        raise ValueError("The linear probe needs at least one training and one test example.")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(
            f"Features and labels differ in length: {len(train_x)} vs {len(train_y)}, "
            f"{len(test_x)} vs {len(test_y)}."
        )
    for labels in (train_y, test_y):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"Labels must be in [0, {num_classes}); got {labels.min()}..{labels.max()}."
            )
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive; got {epochs}, {batch_size}.")
