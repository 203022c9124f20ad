"""Heads on top of an encoder: the projector, the BYOL-style MLP predictor,
and the linear classification head (linear probe, `include_top=True`)."""

import keras
import numpy as np

# Projector widths (hidden, output). CIFAR/STL-size: 512 -> 128 as in the
# DirectPred reference code's CIFAR/STL configs; ImageNet-size: 4096 -> 256 as
# in BYOL (Grill et al., 2020).
SMALL_IMAGE_PROJECTOR = (512, 128)
LARGE_IMAGE_PROJECTOR = (4096, 256)
SMALL_IMAGE_MAX_SIZE = 96  # CIFAR (32 px) and STL-10 (96 px) count as small.


def default_projector_dims(image_size):
    """`(hidden_dim, output_dim)` of the projector for square images of `image_size` px."""
    if image_size is not None and image_size <= SMALL_IMAGE_MAX_SIZE:
        return SMALL_IMAGE_PROJECTOR
    return LARGE_IMAGE_PROJECTOR


def mlp_head(
    input_dim, hidden_dim, output_dim, *, synchronized_bn=False, bn_affine=True, name="projector"
):
    """Dense -> BatchNorm -> ReLU -> Dense, as a functional model.

    Args:
        input_dim: width of the input features.
        hidden_dim: width of the hidden layer.
        output_dim: width of the output.
        synchronized_bn: synchronize BatchNorm statistics across replicas
            under `tf.distribute` (the batch statistics of the global batch).
        bn_affine: give the BatchNorm its learned scale and offset (gamma,
            beta). False normalizes only, as PyTorch's
            `BatchNorm1d(affine=False)`.
        name: model name.

    Returns:
        A `keras.Model` mapping `(N, input_dim)` to `(N, output_dim)`.
    """
    inputs = keras.Input((input_dim,), name=f"{name}_input")
    x = keras.layers.Dense(hidden_dim, name=f"{name}_dense_1")(inputs)
    x = keras.layers.BatchNormalization(
        center=bn_affine, scale=bn_affine, synchronized=synchronized_bn, name=f"{name}_bn"
    )(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    outputs = keras.layers.Dense(output_dim, name=f"{name}_dense_2")(x)
    return keras.Model(inputs, outputs, name=name)


def build_projector(input_dim, hidden_dim, output_dim, *, synchronized_bn=False, bn_affine=False):
    """The projector head `g`: `(N, input_dim) -> (N, output_dim)`. See `mlp_head`.

    The DirectPred reference code's projector has `bn_affine=False`
    (facebookresearch/luckmatters, ssl/real-dataset, config/byol_config.yaml:
    `projector_params.has_bn_affine: false`; models/mlp_head.py,
    `MLPHead._create_normalization`), so weight decay never touches a BatchNorm
    scale or offset there; that is the default here. BYOL's projector has
    them: pass `bn_affine=True`.
    """
    return mlp_head(
        input_dim, hidden_dim, output_dim,
        synchronized_bn=synchronized_bn, bn_affine=bn_affine, name="projector",
    )


# ---------------------------------------------------------------------------
# The classification head of a frozen encoder (linear probe, `include_top=True`).
# ---------------------------------------------------------------------------

# Dimensions with a smaller training variance are centred but not scaled:
# dividing a (near-)constant feature by its tiny std would turn noise into
# huge inputs.
MIN_FEATURE_VARIANCE = 1e-12


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
