"""The recipe a shipped preset was trained with, as `scripts/pretrain.py`
trains it when no `--config` is given: the preset its dataset's alias names
(`default_preset`), and its recorded recipe as a config (`preset_config`).

The registry entry holds the recipe as data (`configs.preset_recipe`), so
the default follows an alias that moves to another preset.
"""

import os

from keras_directcopy.configs import CONFIGS, get_config, preset_recipe
from keras_directcopy.data import datasets as data
from keras_directcopy.presets import zoo


def preset_config(preset, **overrides):
    """The recipe a preset was trained with (`preset_recipe`), with
    `overrides` (None values ignored) applied, as `get_config` applies them.

    Args:
        preset: a preset name or dataset alias of the registry
            (`presets.zoo.get_preset`), or a registry entry.

    Raises:
        ValueError: on an unknown preset, as `preset_recipe`, or as
            `get_config` for an override.
    """
    if isinstance(preset, str):
        preset = zoo.get_preset(preset)
    name, recorded = preset_recipe(preset)
    return get_config(name, **{**recorded, **{k: v for k, v in overrides.items() if v is not None}})


def default_preset(dataset):
    """The preset whose recipe `scripts/pretrain.py` trains on `dataset`
    when no `--config` is given: the one the dataset's alias names.

    That is the registry preset with an alias equal to the dataset's name
    (`cifar10`, `cifar100:coarse_label` as `cifar100`), else the one preset
    with an alias that is trained on it (`imagenet2012`, aliased
    `imagenet`). A folder (`folder:ROOT`) is the known dataset it is
    identified as by its class folders and image counts (`imagenette`), if
    any; its files are listed, not read.

    Args:
        dataset: a `--dataset` value.

    Returns:
        The preset's name.

    Raises:
        ValueError: on an unknown dataset name (the message lists the valid
            ones), and when no preset is the dataset's (a folder of one's own
            images, a dataset no preset is trained on) or several are: the
            message asks for `--config` and lists the recipes.
        FileNotFoundError: on a folder that does not exist.
    """
    ask = (f"pass --config=NAME, one of {', '.join(CONFIGS)} (keras_directcopy/configs.py gives each "
           "recipe and its source)")
    if dataset.startswith(data.FOLDER_PREFIX):
        folder = data.folder_path(dataset)
        if not os.path.isdir(folder):
            data.get_dataset_spec(dataset)  # raises the missing folder's message
        name = data.identify_folder(folder)
        if name is None:
            raise ValueError(
                f"--dataset={dataset} is a folder of your own images, which has no shipped preset to "
                "take a default recipe from (a folder has one only when it is identified as a known "
                f"dataset, e.g. Imagenette): {ask}; for photos, --config=imagenette_resnet18, with "
                "--image_size for another size than its 96 px."
            )
    else:
        data.get_dataset_spec(dataset)  # an unknown name gets the message that lists the valid ones
        name = dataset.partition(":")[0]
    presets = zoo.list_pretrained()
    if any(name in preset["aliases"] for preset in presets):
        return zoo.get_preset(name)["name"]  # the preset `load_pretrained(name)` loads
    owners = [preset["name"] for preset in presets if preset["aliases"] and preset["dataset"] == name]
    if len(owners) != 1:
        which = f"several presets, {', '.join(owners)}, are" if owners else "no shipped preset is"
        raise ValueError(f"Without --config scripts/pretrain.py trains the recipe of the shipped preset of "
                         f"its dataset, and {which} the one of {name!r}: {ask}.")
    return owners[0]
