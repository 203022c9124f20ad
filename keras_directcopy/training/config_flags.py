"""Command-line flags for the pretraining recipes: one `--NAME` per
`PretrainConfig` field, for `scripts/pretrain.py`.

Each flag takes its field's type, its choices (`configs.field_choices`) and,
as help text, the field's entry under Attributes in `PretrainConfig`'s
docstring. A flag left unset keeps the recipe's value: the `--config`
recipe's, or without `--config` that of the shipped preset of the dataset
(`preset_recipes.default_preset`, `recipe_from_flags`).
"""

import dataclasses
import sys
import types
import typing

import docstring_parser
from absl import flags

from keras_directcopy import configs
from keras_directcopy.configs import PretrainConfig, field_choices, get_config

# absl lists under --help the flags of the module that calls DEFINE_*; this
# module defines the field flags for the script that calls `define_flags`, so
# it disclaims them and they count as that script's.
flags.disclaim_key_flags()


_FLAG_DEFINERS = {
    bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}


def _field_docs(config_class):
    """`{field: text}` from the Attributes section of the dataclass
    `config_class`'s docstring, each text on one line, in field order.

    Raises:
        TypeError: if the section leaves out a field or names a non-field.
    """
    names = [field.name for field in dataclasses.fields(config_class)]
    if sys.flags.optimize >= 2:  # python -OO dropped the docstring: no help texts
        return dict.fromkeys(names, "")
    parsed = docstring_parser.parse(config_class.__doc__, style=docstring_parser.DocstringStyle.GOOGLE)
    docs = {
        param.arg_name: " ".join(param.description.split())
        for param in parsed.params if param.args[0] == "attribute"
    }
    missing, unknown = sorted(set(names) - set(docs)), sorted(set(docs) - set(names))
    if missing or unknown:
        raise TypeError(
            f"{config_class.__name__}'s docstring must document every field under Attributes, "
            f"and only fields: undocumented {missing}, not fields {unknown}."
        )
    return {name: docs[name] for name in names}


# The documentation of each field: its flag's help text.
FIELD_DOCS = _field_docs(PretrainConfig)


def field_value_types(config_class=PretrainConfig):
    """`{field: bool, int, float or str}`: each field's type, without the
    `| None` of the fields that may be unset.

    Raises:
        TypeError: for a field of any other type, which no flag could set.
    """
    value_types = {}
    for name, annotation in typing.get_type_hints(config_class).items():
        value_type = annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
            value_type = kinds[0] if len(kinds) == 1 else annotation
        if value_type not in _FLAG_DEFINERS:
            raise TypeError(
                f"{config_class.__name__}.{name} is a {annotation}; a flag can set only "
                f"{', '.join(kind.__name__ for kind in _FLAG_DEFINERS)}, each optionally | None."
            )
        value_types[name] = value_type
    return value_types


def define_flags(flag_values=flags.FLAGS):
    """Defines `--NAME` in `flag_values` for every `PretrainConfig` field.

    A flag has its field's type (an enum of `field_choices` where there are
    some), its field's `FIELD_DOCS` entry as help text and no default: a
    flag left unset keeps the `--config` recipe's value (`config_from_flags`).
    """
    for name, value_type in field_value_types().items():
        choices = field_choices(name)
        if choices:
            flags.DEFINE_enum(name, None, list(choices), FIELD_DOCS[name], flag_values=flag_values)
        else:
            _FLAG_DEFINERS[value_type](name, None, FIELD_DOCS[name], flag_values=flag_values)


def config_from_flags(name, flag_values=flags.FLAGS):
    """The recipe `name` with the value of every field flag that is set
    (`define_flags`, after parsing); `name` None: the default recipe of the
    flags' dataset (`recipe_from_flags`).

    Raises:
        ValueError: as `get_config`, naming the flag of an invalid value, or
            as `recipe_from_flags`.
    """
    return recipe_from_flags(name, flag_values).config


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A recipe chosen on the command line.

    Attributes:
        config: the `PretrainConfig`, field flags applied.
        flags: the flags that name the recipe before the field flags
            (`configs.recipe_flags`): `--config=NAME`, then the preset's own
            field values when no `--config` was given.
        preset: the preset whose recipe it is when no `--config` was given,
            else None.
    """

    config: PretrainConfig
    flags: tuple
    preset: str | None = None

    def describe(self):
        """One line: where the recipe comes from, with its flags."""
        named = " ".join(self.flags)
        if self.preset is None:
            return named
        return f"{named} (no --config: the recipe of preset {self.preset}, the default for this dataset)"


def recipe_from_flags(name, flag_values=flags.FLAGS):
    """The `Recipe` the flags choose: recipe `name`, or when `name` is None
    the recipe of the shipped preset of the flags' dataset (`--dataset`,
    else `configs.DEFAULT_DATASET`): the preset its alias names
    (`preset_recipes.default_preset`), trained as its registry entry records
    (`configs.preset_recipe`). Every field flag that is set overrides it.

    Raises:
        ValueError: as `get_config` (naming the flag of an invalid value), as
            `preset_recipes.default_preset` (no preset for the dataset: the message
            asks for --config) or `configs.preset_recipe`.
        FileNotFoundError: as `preset_recipes.default_preset`, for a missing folder.
    """
    overrides = {field.name: getattr(flag_values, field.name) for field in dataclasses.fields(PretrainConfig)}
    if name is not None:
        return Recipe(get_config(name, **overrides), (f"--config={name}",))
    # The registry and the dataset readers load Keras and TensorFlow: not before a recipe is needed.
    from keras_directcopy.presets.zoo import get_preset
    from keras_directcopy.training import preset_recipes

    dataset = overrides["dataset"] or configs.DEFAULT_DATASET
    preset = preset_recipes.default_preset(dataset)
    entry = get_preset(preset)
    config_name, recorded = configs.preset_recipe(entry)
    # The preset's own dataset (`imagenette`) gives way to the folder named.
    config = preset_recipes.preset_config(entry, **{**overrides, "dataset": dataset})
    return Recipe(config, tuple(configs.recipe_flags(config_name, recorded)), preset)
