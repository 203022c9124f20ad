"""Recipes: the reference code's setting where a recipe claims it, every
field checked when a config is made, and one flag per field."""

import dataclasses
import typing

import keras
import pytest
from absl import flags

from keras_directcopy import configs
from keras_directcopy.configs import CONFIGS, PretrainConfig, get_config
from keras_directcopy.models.predictors import PREDICTOR_NAMES, DirectPredictor, LinearPredictor
from keras_directcopy.training import config_flags, preset_recipes
from keras_directcopy.training.loop import build_model, build_optimizer

# The reference code's behaviour (facebookresearch/luckmatters,
# ssl/real-dataset), field by field; see keras_directcopy/configs.py.
REFERENCE_STEP = dict(
    batch_size=128, lr=0.03, momentum=0.9, weight_decay=4e-4, weight_decay_mode="coupled",
    ema=0.996, ema_schedule="constant", target_init="independent", rho=0.3,
    projector_bn_affine=False, update_order="after_step", linear_symmetric=True,
    linear_initializer="pytorch",
)
REFERENCE_RECIPES = ("cifar10_resnet18", "cifar100_resnet18", "stl10_resnet18")


# The quickstart's named differences from the reference: one epoch that learns.
QUICKSTART_DIFFERENCES = dict(target_init="copy", ema=0.99, lr=0.06)


@pytest.mark.parametrize(
    "name", REFERENCE_RECIPES + ("cifar10_resnet20", "cifar100_resnet20", "imagenette_resnet18", "quickstart")
)
def test_recipes_citing_the_reference_use_its_training_step(name):
    config = CONFIGS[name]
    expected = {**REFERENCE_STEP, **(QUICKSTART_DIFFERENCES if name == "quickstart" else {})}
    assert {key: getattr(config, key) for key in REFERENCE_STEP} == expected
    expected_schedule = "constant" if name in REFERENCE_RECIPES else "warmup_cosine"
    assert config.lr_schedule == expected_schedule


def test_the_cifar100_recipe_is_the_cifar10_one_on_cifar100():
    cifar10, cifar100 = CONFIGS["cifar10_resnet20"], CONFIGS["cifar100_resnet20"]
    assert cifar100.dataset == "cifar100"
    assert dataclasses.replace(cifar100, dataset="cifar10") == cifar10


def test_the_imagenette_recipe_reads_a_folder_and_names_no_images():
    """`--config=imagenette_resnet18` alone is refused with the message that
    asks for the folder; with --dataset=folder:ROOT it trains the Imagenette
    preset's architecture, at its size, for its epochs."""
    from keras_directcopy.data.datasets import get_dataset_spec
    from keras_directcopy.presets.zoo import get_preset

    config = CONFIGS["imagenette_resnet18"]
    preset = get_preset("imagenette")
    assert (config.dataset, config.lr_schedule) == ("imagenette", "warmup_cosine")
    assert (config.backbone, config.width_multiplier) == (preset["backbone"], preset["backbone_kwargs"]["width_multiplier"])
    assert (config.image_size, config.epochs) == (preset["input_shape"][0], preset["epochs"])
    with pytest.raises(ValueError, match="pass --dataset=folder:ROOT"):
        get_dataset_spec(config.dataset)


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


# absl's name for the type of a flag that parses each field type.
ABSL_FLAG_TYPES = {bool: "bool", int: "int", float: "float", str: "string"}


def field_flags():
    values = flags.FlagValues()
    config_flags.define_flags(values)
    return values


def test_every_field_has_one_flag_of_its_type_whose_help_is_the_field_documentation():
    values = field_flags()
    fields = dataclasses.fields(PretrainConfig)
    assert sorted(values) == sorted(field.name for field in fields)
    attributes = " ".join(PretrainConfig.__doc__.split("Attributes:")[1].split())
    for field in fields:
        flag = values[field.name]
        value_type, = set(typing.get_args(field.type) or [field.type]) - {type(None)}
        documentation = config_flags.FIELD_DOCS[field.name]
        assert documentation and f"{field.name}: {documentation}" in attributes
        choices = configs.field_choices(field.name)
        if choices:
            assert value_type is str and flag.flag_type() == "string enum"
            assert flag.parser.enum_values == list(choices)
            assert flag.help == f"<{'|'.join(choices)}>: {documentation}"
        else:
            assert flag.flag_type() == ABSL_FLAG_TYPES[value_type]
            assert flag.help == documentation
        assert flag.default is None, "an unset flag must leave the recipe's value"
    assert (values["eps"].flag_type(), values["linear_symmetric"].flag_type()) == ("float", "bool")
    assert values["predictor"].parser.enum_values == list(PREDICTOR_NAMES)
    assert "0.1 DirectCopy" in values["eps"].help


def test_parsed_flags_override_only_their_fields_of_the_recipe():
    values = field_flags()
    values(["pretrain.py", "--eps=0.2", "--ema_schedule=cosine", "--nolinear_symmetric"])
    recipe = CONFIGS["cifar10_resnet18"]
    assert (recipe.eps, recipe.ema_schedule, recipe.linear_symmetric) != (0.2, "cosine", False)
    config = config_flags.config_from_flags("cifar10_resnet18", values)
    assert config == dataclasses.replace(recipe, eps=0.2, ema_schedule="cosine", linear_symmetric=False)


def test_flag_values_are_checked_as_the_field_and_choices_by_the_flag():
    values = field_flags()
    values(["pretrain.py", "--lr=-0.1"])
    with pytest.raises(ValueError, match=r"--lr=-0\.1 is invalid: it must be a number > 0\."):
        config_flags.config_from_flags("quickstart", values)
    with pytest.raises(flags.IllegalFlagValueError, match=r"value should be one of <resnet18\|"):
        field_flags()(["pretrain.py", "--backbone=resnet19"])


def test_a_field_without_documentation_or_of_a_type_no_flag_parses_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        """A config.

        Attributes:
            epochs: Training epochs.
        """

        epochs: int = 1
        download: bool = False

    with pytest.raises(TypeError, match=r"undocumented \['download'\]"):
        config_flags._field_docs(Undocumented)

    @dataclasses.dataclass(frozen=True)
    class Listed:
        seeds: list[int] | None = None

    with pytest.raises(TypeError, match=r"Listed\.seeds is a list\[int\] \| None; a flag can set only"):
        config_flags.field_value_types(Listed)


# The default recipe: without --config, that of the shipped preset of the dataset.


def recipe_of(*arguments):
    """The `config_flags.Recipe` that the field flags `arguments` choose without --config."""
    values = field_flags()
    values(["pretrain.py", *arguments])
    return config_flags.recipe_from_flags(None, values)


def test_without_config_the_recipe_is_the_one_the_cifar10_preset_records():
    """CIFAR-10 by default: the shipped encoder's recipe (90 epochs), not the
    one-epoch quickstart; a field flag still overrides it."""
    from keras_directcopy.presets.zoo import get_preset

    recipe = recipe_of()
    expected = get_config(
        "cifar10_resnet20", ema_schedule="cosine", target_init="copy", projector_bn_affine=True,
        update_order="before_predict",
    )
    assert recipe.config == expected and recipe.config.epochs == get_preset("cifar10")["epochs"] == 90
    assert recipe.config != CONFIGS["quickstart"]
    assert recipe.preset == "directcopy_resnet20_cifar10"
    assert recipe.flags == ("--config=cifar10_resnet20", "--ema_schedule=cosine", "--target_init=copy",
                            "--projector_bn_affine", "--update_order=before_predict")
    assert "the recipe of preset directcopy_resnet20_cifar10" in recipe.describe()
    assert recipe_of("--epochs=3").config == dataclasses.replace(expected, epochs=3)
    # A named recipe is that recipe, whatever the dataset.
    values = field_flags()
    values(["pretrain.py", "--dataset=cifar100"])
    named = config_flags.recipe_from_flags("quickstart", values)
    assert named.config == get_config("quickstart", dataset="cifar100") and named.preset is None


@pytest.mark.parametrize(
    "dataset, preset, config",
    [
        ("cifar100", "directcopy_resnet20_cifar100", "cifar100_resnet20"),
        ("cifar100:coarse_label", "directcopy_resnet20_cifar100", "cifar100_resnet20"),
        ("stl10", "directcopy_resnet18_stl10", "stl10_resnet18"),
        # No preset has the alias imagenet2012: the one aliased preset trained on it.
        ("imagenet2012", "directcopy_resnet50_imagenet", "imagenet_resnet50"),
    ],
)
def test_without_config_each_dataset_gets_its_presets_recipe(dataset, preset, config):
    recipe = recipe_of(f"--dataset={dataset}")
    assert recipe.preset == preset and recipe.flags == (f"--config={config}",)
    assert recipe.config == get_config(config, dataset=dataset)


def write_registry_entry(directory, entry):
    import json

    (directory / f"{entry['name']}.json").write_text(json.dumps(entry, indent=2) + "\n")


def test_the_default_follows_the_alias_to_another_preset(tmp_path, monkeypatch):
    """A registry in which the alias cifar100 names another preset (a private
    registry's entry of the same name shadows the shipped one): the default
    recipe of --dataset=cifar100 is the new preset's, with no change of code."""
    from keras_directcopy.presets import zoo

    shipped = zoo.get_preset("directcopy_resnet20_cifar100")
    write_registry_entry(tmp_path, {**shipped, "aliases": []})
    write_registry_entry(tmp_path, {
        **shipped, "name": "directcopy_resnet18_cifar100", "backbone": "resnet18",
        "pretrain_recipe": {"config": "cifar100_resnet18", "overrides": {"eps": 0.2}},
    })
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(tmp_path))
    assert preset_recipes.default_preset("cifar100") == "directcopy_resnet18_cifar100"
    recipe = recipe_of("--dataset=cifar100")
    assert recipe.config == get_config("cifar100_resnet18", eps=0.2)
    assert recipe.flags == ("--config=cifar100_resnet18", "--eps=0.2")
    assert preset_recipes.preset_config("cifar100", epochs=7) == get_config("cifar100_resnet18", eps=0.2, epochs=7)


def test_a_preset_that_records_no_recipe_or_a_bad_one_is_named(tmp_path, monkeypatch):
    from keras_directcopy.presets import zoo

    shipped = zoo.get_preset("directcopy_resnet20_cifar100")
    entry = {key: value for key, value in shipped.items() if key != configs.PRESET_RECIPE_KEY}
    write_registry_entry(tmp_path, entry)
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(tmp_path))
    with pytest.raises(ValueError) as error:
        recipe_of("--dataset=cifar100")
    assert ("Preset 'directcopy_resnet20_cifar100' records no recipe: add \"pretrain_recipe\": "
            "{\"config\": NAME, \"overrides\": {FIELD: VALUE, ...}}") in str(error.value)
    assert "--config=cifar100_resnet20" in str(error.value)  # its train_command, to copy from
    for recipe, message in [
        ("cifar100_resnet20", "records its recipe as 'cifar100_resnet20'; the form is"),
        ({"config": "cifar100_resnet21"}, "Unknown config 'cifar100_resnet21'"),
        ({"config": "cifar100_resnet20", "overrides": {"lr": -1}}, "--lr=-1 is invalid"),
    ]:
        with pytest.raises(ValueError, match=message):
            configs.preset_recipe({**entry, configs.PRESET_RECIPE_KEY: recipe})


def test_a_folder_of_ones_own_images_needs_a_config(tmp_path):
    """No preset is a default for images nobody chose a recipe for: the
    message asks for --config and names the recipes; a missing folder gets
    the missing folder's message."""
    with pytest.raises(ValueError) as error:
        recipe_of(f"--dataset=folder:{tmp_path}")
    message = str(error.value)
    assert f"--dataset=folder:{tmp_path} is a folder of your own images, which has no shipped preset" in message
    assert "pass --config=NAME, one of quickstart, cifar10_resnet20" in message
    assert "--config=imagenette_resnet18" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        recipe_of(f"--dataset=folder:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="Unknown dataset 'cifar11'"):
        recipe_of("--dataset=cifar11")


def test_a_folder_identified_as_a_known_dataset_gets_its_presets_recipe(tmp_path, monkeypatch):
    from keras_directcopy.data import datasets

    monkeypatch.setattr(datasets, "identify_folder", lambda folder: "imagenette")
    recipe = recipe_of(f"--dataset=folder:{tmp_path}")
    assert recipe.preset == "directcopy_resnet18_imagenette"
    assert recipe.config == get_config("imagenette_resnet18", dataset=f"folder:{tmp_path}")


def test_a_dataset_several_aliased_presets_train_on_has_no_default(tmp_path, monkeypatch):
    from keras_directcopy.presets import zoo

    shipped = zoo.get_preset("directcopy_resnet50_imagenet")
    write_registry_entry(tmp_path, {**shipped, "name": "byol_resnet50_imagenet", "aliases": ["imagenet_byol"]})
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="several presets, byol_resnet50_imagenet, directcopy_resnet50_imagenet, "
                                         "are the one of 'imagenet2012': pass --config=NAME"):
        recipe_of("--dataset=imagenet2012")


def test_recipe_flags_spell_each_override_as_its_flag():
    assert configs.recipe_flags("quickstart", {"projector_bn_affine": True, "linear_symmetric": False,
                                               "eps": None, "lr": 0.1}) == [
        "--config=quickstart", "--projector_bn_affine", "--nolinear_symmetric", "--lr=0.1"]


def test_run_recipe_is_the_commands_config_and_the_fields_that_differ():
    from keras_directcopy.configs import run_recipe

    trained = dataclasses.asdict(get_config("cifar10_resnet20", ema=0.99, target_init="copy", data_dir="/data"))
    for command in ("python scripts/pretrain.py --config=cifar10_resnet20 --ema=0.99 --target_init=copy",
                    "python scripts/pretrain.py --config cifar10_resnet20 --ema=0.99 --target_init=copy"):
        # data_dir is where the data was, not what was trained.
        assert run_recipe({"commands": [command], "config": trained}) == {
            "config": "cifar10_resnet20", "overrides": {"ema": 0.99, "target_init": "copy"}}
    # A command without --config trained the script's default of its time, the quickstart.
    quick = dataclasses.asdict(get_config("quickstart", epochs=2))
    assert run_recipe({"commands": ["python scripts/pretrain.py --epochs=2"], "config": quick}) == {
        "config": "quickstart", "overrides": {"epochs": 2}}
    with pytest.raises(ValueError, match="names --config=gone, which is not a recipe of this version"):
        run_recipe({"commands": ["python scripts/pretrain.py --config=gone"], "config": quick})
