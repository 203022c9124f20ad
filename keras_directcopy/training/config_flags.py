"""Command-line flags for the pretraining recipes: one `--NAME` per
`PretrainConfig` field, for `scripts/pretrain.py`.

Each flag takes its field's type, its choices (`configs.field_choices`) and,
as help text, the field's entry under Attributes in `PretrainConfig`'s
docstring. A flag left unset keeps the `--config` recipe's value.
"""

import dataclasses
import sys
import types
import typing

import docstring_parser
from absl import flags

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
    (`define_flags`, after parsing).

    Raises:
        ValueError: as `get_config`, naming the flag of an invalid value.
    """
    return get_config(
        name, **{field.name: getattr(flag_values, field.name) for field in dataclasses.fields(PretrainConfig)}
    )
