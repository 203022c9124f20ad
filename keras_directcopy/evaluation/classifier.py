"""An image classifier on a pretrained encoder, for linear training or fine-tuning."""

import keras


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
