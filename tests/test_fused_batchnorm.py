"""The fused BatchNorm kernel computes what Keras' own BatchNormalization does:
outputs, gradients and moving statistics, layer by layer and over whole
pretraining steps; ineligible calls take Keras' path; layers stay built-in."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_directcopy import NonContrastiveModel, build_backbone
from keras_directcopy.models.fused_batchnorm import use_fused_kernel, uses_fused_kernel
from tests.helpers import tiny_encoder, two_view_images

# float32 rounding of sums over a few thousand values, relative to their scale.
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def batchnorm_pair(input_shape, **layer_kwargs):
    """Two identical built BatchNormalization layers; the second one fused."""
    layers = []
    for _ in range(2):
        layer = keras.layers.BatchNormalization(**layer_kwargs)
        layer.build(input_shape)
        channels = input_shape[layer_kwargs.get("axis", -1)]
        if layer.scale:
            layer.gamma.assign(np.linspace(0.5, 2.0, channels))
        if layer.center:
            layer.beta.assign(np.linspace(-1.0, 1.0, channels))
        layer.moving_mean.assign(np.full(channels, 0.3))
        layer.moving_variance.assign(np.full(channels, 1.7))
        layers.append(layer)
    assert use_fused_kernel(layers[1]) == 1
    return layers


def call_with_gradients(layer, x, training=True):
    upstream = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    gradients = tape.gradient(loss, [x] + layer.trainable_variables)
    return [y] + gradients + [layer.moving_mean, layer.moving_variance]


@pytest.mark.parametrize(
    "shape, layer_kwargs",
    [
        ((16, 6, 6, 5), {}),
        ((16, 6, 6, 5), dict(center=False, scale=False, momentum=0.9, epsilon=1e-5 * 2)),
        ((32, 7), dict(momentum=0.5)),
        ((4, 3, 3, 2), dict(axis=3)),
    ],
)
def test_fused_layer_matches_keras_outputs_gradients_and_moving_statistics(shape, layer_kwargs):
    keras_layer, fused_layer = batchnorm_pair(shape, **layer_kwargs)
    x = np.random.default_rng(0).normal(2.0, 3.0, shape).astype(np.float32)
    expected = call_with_gradients(keras_layer, x)
    got = call_with_gradients(fused_layer, x)
    assert len(got) == len(expected)
    names = ["outputs", "input gradient"] + [f"gradient of {v.name}" for v in keras_layer.trainable_variables]
    names += ["moving mean", "moving variance"]
    assert len(names) == len(expected)
    for name, a, b in zip(names, expected, got):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), **TOLERANCE, err_msg=name)
    # The moving statistics moved, so the comparison above tested the update.
    assert not np.allclose(fused_layer.moving_variance.numpy(), 1.7)


def test_fused_call_is_the_kernel_not_keras_ops():
    _, fused_layer = batchnorm_pair((8, 4, 4, 3))
    graph = tf.function(lambda x: fused_layer(x, training=True)).get_concrete_function(
        tf.TensorSpec((8, 4, 4, 3), tf.float32)
    ).graph
    op_types = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in op_types
    assert "SquaredDifference" not in op_types


@pytest.mark.parametrize(
    "shape, layer_kwargs, call_kwargs",
    [
        ((8, 4, 4, 3), {}, dict(training=False)),  # inference: moving statistics
        ((8, 4, 4, 3), dict(epsilon=1e-6), dict(training=True)),  # below the kernel's minimum
        ((8, 4, 3), {}, dict(training=True)),  # rank 3
        ((8, 4, 4, 3), dict(axis=1), dict(training=True)),  # not the last axis
    ],
)
def test_calls_the_kernel_cannot_compute_exactly_take_keras_path(shape, layer_kwargs, call_kwargs):
    keras_layer, fused_layer = batchnorm_pair(shape, **layer_kwargs)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    graph = tf.function(lambda x: fused_layer(x, **call_kwargs)).get_concrete_function(
        tf.TensorSpec(shape, tf.float32)
    ).graph
    assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}
    np.testing.assert_allclose(
        fused_layer(x, **call_kwargs).numpy(), keras_layer(x, **call_kwargs).numpy(), rtol=1e-6, atol=1e-6
    )


def test_synchronized_and_renormalized_layers_are_left_alone():
    synchronized = keras.layers.BatchNormalization(synchronized=True)
    renormalized = keras.layers.BatchNormalization(renorm=True)
    model = keras.Sequential([keras.Input((4, 4, 3)), synchronized, renormalized])
    assert use_fused_kernel(model) == 0
    assert not uses_fused_kernel(synchronized) and not uses_fused_kernel(renormalized)


def test_float16_inputs_are_normalized_in_float32_as_keras_does():
    keras_layer, fused_layer = batchnorm_pair((8, 4, 4, 3), dtype="mixed_float16")
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype(np.float16)
    expected, got = keras_layer(x, training=True), fused_layer(x, training=True)
    assert got.dtype == expected.dtype == "float16"
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(
        fused_layer.moving_variance.numpy(), keras_layer.moving_variance.numpy(), **TOLERANCE
    )


def test_switched_encoder_still_serializes_as_builtin_keras_layers(tmp_path):
    encoder = build_backbone("resnet20", (32, 32, 3))
    count = use_fused_kernel(encoder)
    assert count == sum(isinstance(layer, keras.layers.BatchNormalization) for layer in encoder.layers)
    assert use_fused_kernel(encoder) == count  # idempotent
    config = json.dumps(keras.saving.serialize_keras_object(encoder))
    assert "fused" not in config.lower()
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert all(type(layer).call is layer.call.__func__ for layer in reloaded.layers)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(reloaded(images).numpy(), encoder(images).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("predictor", ["directcopy", "mlp"])
def test_pretraining_steps_match_keras_batchnorm(predictor):
    """Three steps of the whole model (online and target encoders with
    BatchNorm, the projector's BatchNorm, an MLP predictor's) trained with
    and without the fused kernel end with the same weights and statistics."""
    images = two_view_images(24)
    results = []
    for fused in (False, True):
        keras.utils.set_random_seed(0)
        model = NonContrastiveModel(
            tiny_encoder(batch_norm=True), predictor=predictor, fused_batchnorm=fused,
            projector_hidden_dim=16, projection_dim=8,
        )
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9))
        history = model.fit(images, batch_size=8, epochs=1, steps_per_epoch=3, shuffle=False, verbose=0)
        results.append((history.history["loss"][-1], [w.numpy() for w in model.weights]))
    fused_batchnorms = sum(uses_fused_kernel(layer) for layer in model.encoder.layers)
    assert fused_batchnorms == 1
    (keras_loss, keras_weights), (fused_loss, fused_weights) = results
    assert fused_loss == pytest.approx(keras_loss, rel=1e-5)
    assert len(fused_weights) == len(keras_weights)
    for a, b in zip(keras_weights, fused_weights):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_the_option_is_saved_with_the_model():
    model = NonContrastiveModel(tiny_encoder(batch_norm=True), fused_batchnorm=False)
    assert model.get_config()["fused_batchnorm"] is False
    assert not any(uses_fused_kernel(layer) for layer in model.encoder.layers)
    restored = NonContrastiveModel.from_config(
        json.loads(json.dumps(NonContrastiveModel(tiny_encoder(batch_norm=True)).get_config()))
    )
    assert restored.fused_batchnorm
    assert any(uses_fused_kernel(layer) for layer in restored.encoder.layers)
    assert any(uses_fused_kernel(layer) for layer in restored.target_encoder.layers)
