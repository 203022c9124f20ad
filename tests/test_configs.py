"""Recipes: the reference code's setting where a recipe claims it, and every
field checked when a config is made."""

import dataclasses

import keras
import pytest

from keras_directcopy.configs import CONFIGS, PretrainConfig, get_config
from keras_directcopy.predictors import DirectPredictor, LinearPredictor
from keras_directcopy.training import build_model, build_optimizer

# The reference code's behaviour (facebookresearch/luckmatters,
# ssl/real-dataset), field by field; see keras_directcopy/configs.py.
REFERENCE_STEP = dict(
    batch_size=128, lr=0.03, momentum=0.9, weight_decay=4e-4, weight_decay_mode="coupled",
    ema=0.996, ema_schedule="constant", target_init="independent", rho=0.3,
    projector_bn_affine=False, update_order="after_step", linear_symmetric=True,
    linear_initializer="pytorch",
)
REFERENCE_RECIPES = ("cifar10_resnet18", "cifar100_resnet18", "stl10_resnet18")


@pytest.mark.parametrize("name", REFERENCE_RECIPES + ("cifar10_resnet20", "quickstart"))
def test_recipes_citing_the_reference_use_its_training_step(name):
    config = CONFIGS[name]
    assert {key: getattr(config, key) for key in REFERENCE_STEP} == REFERENCE_STEP
    expected_schedule = "constant" if name in REFERENCE_RECIPES else "warmup_cosine"
    assert config.lr_schedule == expected_schedule


def test_the_byol_style_recipe_uses_byols_target_and_projector():
    config = CONFIGS["imagenet_resnet50"]
    assert (config.ema_schedule, config.target_init, config.projector_bn_affine) == ("cosine", "copy", True)


def test_a_config_builds_the_model_it_describes():
    config = get_config(
        "quickstart", width_multiplier=0.25, update_order="before_predict", ema_schedule="cosine",
        target_init="copy", projector_bn_affine=True,
    )
    model = build_model(config, 32, total_steps=10)
    assert isinstance(model.predictor, DirectPredictor)
    assert model.predictor.update_order == "before_predict"
    assert (model.ema_schedule, model.target_init, model.total_steps) == ("cosine", "copy", 10)
    assert model.projector.get_layer("projector_bn").scale
    linear = build_model(
        get_config("quickstart", width_multiplier=0.25, predictor="linear", linear_symmetric=False), 32, 10
    )
    assert isinstance(linear.predictor, LinearPredictor) and not linear.predictor.symmetric


def test_constant_learning_rate_is_constant():
    optimizer = build_optimizer(CONFIGS["cifar10_resnet18"], steps_per_epoch=10, total_steps=100)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.03)
    warm = build_optimizer(CONFIGS["cifar10_resnet20"], steps_per_epoch=10, total_steps=100)
    schedule = warm.learning_rate if callable(warm.learning_rate) else warm._learning_rate
    assert float(schedule(0)) == 0.0 and float(schedule(10)) == pytest.approx(0.03)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("lr", -0.1, "--lr=-0.1 is invalid: it must be a number > 0."),
        ("lr", float("nan"), "--lr=nan is invalid"),
        ("batch_size", 0, "--batch_size=0 is invalid: it must be an integer >= 1."),
        ("batch_size", 12.5, "--batch_size=12.5 is invalid: it must be an integer >= 1."),
        ("epochs", True, "--epochs=True is invalid"),
        ("image_size", 0, "--image_size=0 is invalid: it must be an integer >= 8 (or unset)."),
        ("eps", -0.01, "--eps=-0.01 is invalid: it must be a number >= 0 (or unset)."),
        ("momentum", 1.0, "--momentum=1.0 is invalid: it must be a number >= 0 and < 1."),
        ("rho", -0.1, "--rho=-0.1 is invalid"),
        ("alpha", 0.0, "--alpha=0.0 is invalid: it must be a number > 0."),
        ("width_multiplier", 0.0, "--width_multiplier=0.0 is invalid"),
        ("weight_decay", -1e-4, "--weight_decay=-0.0001 is invalid: it must be a number >= 0."),
        ("update_every", 0, "--update_every=0 is invalid"),
        ("knn_k", 0, "--knn_k=0 is invalid"),
        ("steps_per_epoch", 0, "--steps_per_epoch=0 is invalid"),
        ("save_freq", "often", "--save_freq='often' is invalid: it must be 'epoch' or a positive number"),
        ("ema_schedule", "linear", "it must be one of constant, cosine"),
        ("update_order", "first", "it must be one of after_step, before_predict"),
        ("target_init", "zeros", "it must be one of independent, copy"),
        ("lr_schedule", "step", "it must be one of warmup_cosine, constant"),
        ("mixed_precision", "float16", "it must be one of mixed_float16, mixed_bfloat16 (or unset)"),
        ("backbone", "resnet19", "it must be one of resnet18, resnet34, resnet50, resnet20"),
        ("projector_bn_affine", "yes", "--projector_bn_affine='yes' is invalid: it must be true or false."),
    ],
)
def test_invalid_fields_are_rejected_with_the_flag_value_and_range(field, value, message):
    with pytest.raises(ValueError) as error:
        get_config("quickstart", **{field: value})
    assert message in str(error.value)
    with pytest.raises(ValueError):
        dataclasses.replace(PretrainConfig(), **{field: value})


def test_unknown_recipe_and_field_are_rejected():
    with pytest.raises(ValueError, match="Valid configs: quickstart"):
        get_config("cifar10_resnet21")
    with pytest.raises(ValueError, match=r"Unknown config fields \['learning_rate'\]"):
        get_config("quickstart", learning_rate=0.1)
