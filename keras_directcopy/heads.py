"""MLP heads: the projector, and the BYOL-style MLP predictor."""

import keras

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
