"""The two augmented views of a pretraining batch, on every Keras backend."""

from keras import ops


def split_views(data):
    """Returns `(view1, view2)` from a training batch.

    Accepts the views stacked as one `(B, 2, H, W, C)` tensor (the form that
    works under every `tf.distribute` strategy and shards along the batch
    under JAX), or a pair `(view1, view2)` of `(B, H, W, C)` tensors. Labels,
    as in `(x, y)` data, are ignored.

    Raises:
        ValueError: naming the shape received, for anything else.
    """
    x = data
    if isinstance(x, (tuple, list)) and len(x) == 1:
        x = x[0]
    if isinstance(x, (tuple, list)) and len(x) == 2 and all(_rank(v) == 4 for v in x):
        return x[0], x[1]
    if isinstance(x, (tuple, list)) and x:  # (x, y) or (x, y, sample_weight)
        x = x[0]
    if _rank(x) == 5 and x.shape[1] == 2:
        return x[:, 0], x[:, 1]
    shape = tuple(x.shape) if _rank(x) is not None else type(x).__name__
    raise ValueError(
        "Expected two augmented views of each image, stacked as a "
        f"(batch, 2, height, width, channels) tensor or as a pair (view1, view2); "
        f"got {shape}. Build the dataset with both views of each image, e.g. "
        "tf.stack([augment(image), augment(image)]) per element."
    )


def _rank(value):
    """The rank of a tensor or array, None for anything else (or an unknown rank)."""
    if not (ops.is_tensor(value) or hasattr(value, "shape")):
        return None
    try:
        return len(value.shape)
    except (TypeError, ValueError):  # a TensorFlow shape of unknown rank
        return None
