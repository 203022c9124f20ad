"""Weighted k-nearest-neighbour evaluation of an encoder, and its callback.

The protocol of InstDisc (Wu et al., 2018), used as the online monitor by
lightly and solo-learn: features are l2-normalized, each test image takes the
`k = 200` training images of highest cosine similarity, and each neighbour
votes for its class with weight `exp(similarity / temperature)`,
`temperature = 0.1`. The predicted class has the largest summed vote.
"""

import keras
import numpy as np
import tensorflow as tf

DEFAULT_K = 200
DEFAULT_TEMPERATURE = 0.1


def encode_dataset(encoder, dataset):
    """Runs `encoder` in inference mode over `(images, labels)` batches.

    The raw features, without any normalization (`extract_features` gives
    the l2-normalized ones).

    Args:
        encoder: model from images to `(B, D)` features.
        dataset: iterable of `(images (B, H, W, 3), labels (B,))`.

    Returns:
        `(features, labels)`: float32 `(N, D)` and int64 `(N,)` numpy arrays.

    Raises:
        ValueError: if the dataset is empty or the features are not `(B, D)`.
    """
    if keras.backend.backend() == "tensorflow":
        # One traced function instead of eager calls: eager dispatch of a
        # ResNet's layers costs more than their compute on a CPU.
        infer = tf.function(lambda images: encoder(images, training=False), reduce_retracing=True)
    else:
        # Another backend (JAX, as pretraining on it monitors kNN): Keras'
        # compiled inference step, on NumPy batches.
        infer = lambda images: encoder.predict_on_batch(np.asarray(images))  # noqa: E731
    features, labels = [], []
    for images, batch_labels in dataset:
        batch_features = keras.ops.convert_to_numpy(infer(images))
        if batch_features.ndim != 2:
            raise ValueError(
                f"The encoder must output pooled (batch, features) vectors; got shape "
                f"{batch_features.shape}. Use an encoder with global pooling."
            )
        features.append(batch_features)
        labels.append(np.asarray(batch_labels))
    if not features:
        raise ValueError("The dataset is empty: there is nothing to encode.")
    return np.concatenate(features).astype(np.float32), np.concatenate(labels).astype(np.int64)


def extract_features(encoder, dataset):
    """`encode_dataset` with the features l2-normalized, as kNN compares them.

    Returns:
        `(features, labels)`: float32 `(N, D)` l2-normalized, int64 `(N,)`.
    """
    features, labels = encode_dataset(encoder, dataset)
    return l2_normalize(features), labels


def l2_normalize(features):
    """Rows of a `(N, D)` array scaled to unit l2 norm, float32."""
    return tf.math.l2_normalize(features, axis=1).numpy().astype(np.float32)


def knn_predict(
    train_features,
    train_labels,
    test_features,
    num_classes,
    k=DEFAULT_K,
    temperature=DEFAULT_TEMPERATURE,
    chunk_size=512,
):
    """Weighted kNN class predictions.

    Args:
        train_features: `(N, D)` l2-normalized memory bank.
        train_labels: `(N,)` integer labels in `[0, num_classes)`.
        test_features: `(M, D)` l2-normalized queries.
        num_classes: number of classes.
        k: neighbours per query (capped at N).
        temperature: vote weight is `exp(cosine similarity / temperature)`.
        chunk_size: queries per similarity block, to bound memory.

    Returns:
        int64 `(M,)` predicted classes.
    """
    bank = tf.constant(train_features)
    bank_labels = tf.constant(train_labels, tf.int64)
    k = min(k, len(train_features))
    predictions = []
    for start in range(0, len(test_features), chunk_size):
        queries = tf.constant(test_features[start:start + chunk_size])
        similarity = tf.matmul(queries, bank, transpose_b=True)
        top_similarity, top_index = tf.math.top_k(similarity, k=k)
        weights = tf.exp(top_similarity / temperature)
        votes = tf.one_hot(tf.gather(bank_labels, top_index), num_classes) * weights[..., None]
        predictions.append(tf.argmax(tf.reduce_sum(votes, axis=1), axis=1).numpy())
    return np.concatenate(predictions)


def knn_accuracy(encoder, train_dataset, test_dataset, num_classes, k=DEFAULT_K,
                 temperature=DEFAULT_TEMPERATURE):
    """Top-1 accuracy (0..1) of weighted kNN on `encoder`'s features.

    Args:
        encoder: model from images to features.
        train_dataset, test_dataset: `(images, labels)` batches; the training
            images form the memory bank.
        num_classes, k, temperature: see `knn_predict`.
    """
    train_features, train_labels = extract_features(encoder, train_dataset)
    test_features, test_labels = extract_features(encoder, test_dataset)
    predictions = knn_predict(
        train_features, train_labels, test_features, num_classes, k=k, temperature=temperature
    )
    return float(np.mean(predictions == test_labels))


class KNNMonitor(keras.callbacks.Callback):
    """Logs `knn_accuracy` of `model.encoder` every `every_epochs` epochs and
    after the last one.

    The value is added to the epoch logs, so the progress bar, History and
    TensorBoard show it.

    Args:
        train_dataset, test_dataset: labelled `(images, labels)` batches.
        num_classes: number of classes.
        every_epochs: evaluation period in epochs.
        total_epochs: the last epoch (1-based) is always evaluated.
        k, temperature: see `knn_predict`.
    """

    def __init__(self, train_dataset, test_dataset, num_classes, every_epochs=1,
                 total_epochs=None, k=DEFAULT_K, temperature=DEFAULT_TEMPERATURE):
        super().__init__()
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.num_classes = num_classes
        self.every_epochs = every_epochs
        self.total_epochs = total_epochs
        self.k = k
        self.temperature = temperature
        self.last_accuracy = None

    def on_epoch_end(self, epoch, logs=None):
        finished = epoch + 1
        if finished % self.every_epochs and finished != self.total_epochs:
            return
        self.last_accuracy = knn_accuracy(
            self.model.encoder, self.train_dataset, self.test_dataset, self.num_classes,
            k=self.k, temperature=self.temperature,
        )
        if logs is not None:
            logs["knn_accuracy"] = self.last_accuracy
        print(f"\nEpoch {finished}: kNN accuracy (k={self.k}) {100 * self.last_accuracy:.2f}%")
