"""The PyTorch peer of `benchmarks/throughput/benchmark.py --peer=torch` computes our
DirectCopy step: from the same weights and batch, the same loss and `W_p`
over two steps (the second predicted with the matrix the first set), so the
benchmark compares equal work."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch_peer  # this study's folder, which benchmarks/conftest.py puts on sys.path

from keras_directcopy import configs
from keras_directcopy.models.backbones import INPUT_NORMALIZATION_STATS
from keras_directcopy.training.loop import build_model

BATCH = 8


# (loss, W_p, update) relative tolerances per step. In float64 the two steps
# agree to rounding: the same mathematics. In float32, step 1 starts from the
# same weights; step 2 from weights one SGD step left different by rounding,
# which also flips ReLUs whose input was within rounding of zero, so the
# second loss and W_p agree to fewer digits, and the weights are compared in
# float64 only. W_p's own floor is the power iteration's stopping tolerance
# (1e-7 relative on the top eigenvalue).
TOLERANCES = {
    "float64": [(1e-9, 1e-6, 1e-5), (1e-8, 1e-6, 1e-5)],
    "float32": [(1e-5, 1e-5, None), (1e-4, 3e-3, None)],
}


@pytest.fixture(params=["float64", "float32"])
def float_type(request):
    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(request.param)
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_floatx(previous[0])
    keras.config.set_dtype_policy(previous[1])


@pytest.mark.parametrize("backbone, width", [("resnet20", 0.5), ("resnet18", 0.125)])
def test_the_peer_step_computes_our_loss_and_predictor(backbone, width, float_type):
    keras.utils.set_random_seed(0)
    config = configs.get_config("cifar10_resnet20", backbone=backbone, width_multiplier=width)
    model = build_model(config, image_size=32, total_steps=2)
    model.compile(keras.optimizers.SGD(config.lr, momentum=config.momentum), jit_compile=False)
    mean, std = INPUT_NORMALIZATION_STATS["cifar10"]
    peer = torch_peer.DirectCopyStep(
        backbone, mean, std, width_multiplier=width,
        projector_dims=tuple(model.projector.get_layer(f"projector_dense_{i}").units for i in (1, 2)),
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, tau=config.ema,
        rho=config.rho, eps=model.predictor.eps, dtype=getattr(torch, float_type),
    )
    images = np.random.default_rng(0).integers(0, 256, (BATCH, 2, 32, 32, 3)).astype(float_type)
    model(images[:2, 0])  # builds every variable before the copy
    torch_peer.copy_keras_weights(peer, model)
    views = torch.from_numpy(images).permute(0, 1, 4, 2, 3)

    before = online_weights(model)
    for step, (loss_tolerance, matrix_tolerance, update_tolerance) in enumerate(TOLERANCES[float_type]):
        ours = model.fit(tf.data.Dataset.from_tensors(images), epochs=1, verbose=0).history["loss"][0]
        theirs = peer.step(views)
        assert theirs == pytest.approx(ours, rel=loss_tolerance), f"loss of step {step + 1}"
        matrix_difference = relative_difference(peer.predictor.matrix.numpy(), model.predictor.matrix.numpy())
        assert matrix_difference < matrix_tolerance, f"W_p after step {step + 1}"
        if update_tolerance:  # the online weights moved the same way
            ours_moved = online_weights(model) - before
            theirs_moved = peer_online_weights(peer, model) - before
            assert relative_difference(theirs_moved, ours_moved) < update_tolerance


def relative_difference(actual, expected):
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def online_weights(model):
    """Every trainable online weight of the Keras model, flattened."""
    variables = model.encoder.trainable_variables + model.projector.trainable_variables
    return np.concatenate([v.numpy().ravel() for v in variables])


def peer_online_weights(peer, model):
    """The peer's online weights in the Keras model's order and layout."""
    modules = {**torch_peer.modules_by_keras_name(peer.encoder), **torch_peer.modules_by_keras_name(peer.projector)}
    values = []
    for layer in model.encoder.layers + model.projector.layers:
        if not layer.trainable_weights:
            continue
        module = modules[layer.name.removeprefix("projector_")]
        for value in (module.weight, module.bias)[:len(layer.trainable_weights)]:
            value = value.detach().numpy()
            if value.ndim == 4:
                value = value.transpose(2, 3, 1, 0)
            elif value.ndim == 2:
                value = value.T
            values.append(value.ravel())
    return np.concatenate(values)


@pytest.mark.parametrize("size, kernel_size, stride", [
    (8, 3, 2),  # TensorFlow pads at the bottom and right only: an explicit pad
    (8, 3, 1),  # symmetric: the convolution's own padding
    (7, 3, 2),  # symmetric at stride 2
    (8, 1, 2),  # no padding
    (20, 7, 2),  # the ImageNet stem: 2 pixels at the top, 3 at the bottom
])
def test_same_padding_matches_tensorflow(size, kernel_size, stride):
    """The peer's convolution pads "same" as TensorFlow does, whether it pads
    inside the convolution (symmetric) or explicitly (asymmetric)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, size, size, 3)).astype(np.float32)
    kernel = rng.normal(size=(kernel_size, kernel_size, 3, 4)).astype(np.float32)
    expected = tf.nn.conv2d(x, kernel, strides=stride, padding="SAME").numpy()
    conv = torch_peer.SameConv2d(3, 4, kernel_size, stride=stride)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(kernel).permute(3, 2, 0, 1))
        actual = conv(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
