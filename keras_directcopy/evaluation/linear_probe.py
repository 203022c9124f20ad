"""Linear probe of a frozen encoder.

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
"""

import keras
import numpy as np
import tensorflow as tf

from keras_directcopy.evaluation import knn
from keras_directcopy.models.heads import build_linear_head, set_feature_statistics

DEFAULT_LINEAR_EPOCHS = 100
DEFAULT_LINEAR_BATCH_SIZE = 256
DEFAULT_LINEAR_LEARNING_RATE = 3e-4
DEFAULT_LINEAR_WEIGHT_DECAY = 1e-3
LINEAR_OPTIMIZER = "adam"
FEATURE_NORMALIZATION = "standardize_train_mean_std"
# Linear-probe batches per compiled training call: the head is tiny, so
# per-step dispatch would dominate.
_STEPS_PER_EXECUTION = 32
_PREDICT_BATCH_SIZE = 4096


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
