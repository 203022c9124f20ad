"""ResNet encoders: architecture, preprocessing, safe save/load."""

import json

import keras
import numpy as np
import pytest

from keras_directcopy.models.backbones import (
    BACKBONE_NAMES,
    build_backbone,
    read_architecture,
    resnet18,
    resnet20,
    resnet50,
    write_architecture,
)


def trainable_parameters(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_resnet20_is_the_he_et_al_cifar_network():
    model = resnet20()
    # He et al. (2016) report 0.27M parameters for ResNet-20 (with its
    # 10-way classifier of 650 weights, which the encoder leaves out).
    assert 0.26e6 < trainable_parameters(model) < 0.28e6
    assert model.output_shape == (None, 64)
    convolutions = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convolutions) == 19  # 1 stem + 3 stages x 3 blocks x 2


@pytest.mark.parametrize(
    "name, input_shape, features, parameters",
    [
        # torchvision's counts without the classifier, with the CIFAR stem's
        # 3x3 convolution in place of the 7x7 where the input is small.
        ("resnet18", (32, 32, 3), 512, 11_176_512 - 9_408 + 1_728),
        ("resnet34", (32, 32, 3), 512, 21_284_672 - 9_408 + 1_728),
        ("resnet50", (224, 224, 3), 2048, 23_508_032),
        ("resnet18", (224, 224, 3), 512, 11_176_512),
    ],
)
def test_resnets_match_torchvision_parameter_counts(name, input_shape, features, parameters):
    model = build_backbone(name, input_shape)
    assert model.output_shape == (None, features)
    assert trainable_parameters(model) == parameters


def test_stem_depends_on_input_size():
    small, large = resnet18((64, 64, 3)), resnet18((96, 96, 3))
    assert small.get_layer("stem_conv").kernel_size == (3, 3)
    assert small.get_layer("stem_conv").strides == (1, 1)
    assert "stem_pool" not in [l.name for l in small.layers]
    assert large.get_layer("stem_conv").kernel_size == (7, 7)
    assert large.get_layer("stem_pool").strides == (2, 2)
    assert resnet18((224, 224, 3), stem="cifar").get_layer("stem_conv").kernel_size == (3, 3)


def test_width_multiplier_scales_channels():
    assert resnet20(width_multiplier=2).output_shape == (None, 128)
    assert resnet18(width_multiplier=0.5).output_shape == (None, 256)
    assert resnet50((64, 64, 3), width_multiplier=0.25).output_shape == (None, 512)


def test_preprocessing_is_inside_the_model():
    model = resnet20()
    assert isinstance(model.get_layer("rescale"), keras.layers.Rescaling)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    from_uint8 = model(images, training=False)
    from_float = model(images.astype(np.float32), training=False)
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-6)
    # The normalization layer maps CIFAR-10's mean pixel to zero.
    normalize = keras.Model(model.input, model.get_layer("normalize").output)
    mean_pixel = np.array([0.4914, 0.4822, 0.4465], np.float32) * 255
    np.testing.assert_allclose(
        normalize(np.broadcast_to(mean_pixel, (1, 32, 32, 3))), 0.0, atol=1e-5
    )


def test_encoder_reloads_with_safe_mode_and_no_custom_objects(tmp_path):
    for model in [resnet20(), resnet50((32, 32, 3), width_multiplier=0.125)]:
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
        np.testing.assert_array_equal(loaded(images), model(images))


def test_synchronized_batch_norm_option():
    model = resnet20(synchronized_bn=True)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and all(l.synchronized for l in norms)


def test_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        build_backbone("resnet19")
    for name in BACKBONE_NAMES:
        assert name in str(error.value)


@pytest.mark.parametrize("name, input_shape", [
    ("resnet20", (32, 32, 3)), ("resnet18", (96, 96, 3)), ("resnet50", (None, None, 3)),
])
def test_architecture_file_round_trip(name, input_shape, tmp_path):
    """The architecture file rebuilds the same model; with the same weights,
    the same outputs."""
    model = build_backbone(name, input_shape, width_multiplier=0.125)
    path = tmp_path / "encoder.config.json"
    write_architecture(model, path)
    assert not list(tmp_path.glob(".partial-*"))  # written atomically, nothing left behind
    rebuilt = read_architecture(path)
    assert json.loads(json.dumps(rebuilt.get_config())) == json.loads(json.dumps(model.get_config()))
    rebuilt.set_weights(model.get_weights())
    images = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3) if None in input_shape
                                              else (2, *input_shape)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt(images), model(images))
