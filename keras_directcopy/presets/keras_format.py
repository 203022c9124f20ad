"""A preset's repository folder as a model in Keras' own saving format.

`add_keras_format(encoder, folder, config)` makes a repository folder also
what `keras.saving.save_model(encoder, folder, zipped=False)` writes, so that
plain Keras loads it, `keras.saving.load_model("hf://ORG/NAME")` with
built-in layers only and `safe_mode=True`, without this package. Keras' folder
format is a `config.json` (the serialized model) and a `model.weights.h5`;
Keras' hf:// loader reads these two files and nothing else.

The folder already holds the weights, once, as `model.weights.h5`
(`repo_layout.WEIGHTS_FILENAME`): `model.save_weights` and Keras' folder
format write the same file (`keras.src.saving.saving_lib`: `_save_state`
into an `H5IOStore`), so the trained file itself is what both loaders read,
and the sha256 `load_pretrained` checks is the one the registry records.
Only Keras' `config.json` is added: it is merged into the folder's
`config.json` beside this package's description of the encoder
(`hub_folder.repo_config`, which `zoo.load_pretrained` reads), with no key
in common. The folder is loaded back with Keras and must give the encoder's
features before it is accepted.
"""

import json
import os
import tempfile

from keras_directcopy.presets.repo_layout import CONFIG_FILENAME, write_json


def add_keras_format(encoder, folder, config):
    """Makes `folder` also a model in Keras' folder format, and checks it.

    Keras writes the encoder (`keras.saving.save_model(..., zipped=False)`)
    to a temporary folder, and its `config.json` (the serialized model) is
    merged into `folder`'s `config.json` beside `config` (Keras' hf://
    loader reads only the root `config.json`). Keras' own copy of the
    weights is discarded: `folder`'s `model.weights.h5` is the weights file
    `config["weights"]` names. Keras' `metadata.json` (its version and the
    time of saving) is left out, so that a folder rebuilt from the same
    files is the same; loading does not read it.

    Args:
        encoder: the encoder as `zoo.load_pretrained` loads it from `folder`.
        folder: a repository folder being built, with its files written,
            the weights as `model.weights.h5`.
        config: this package's description of the encoder
            (`hub_folder.repo_config`); no key of it may be one of Keras'.

    Raises:
        ValueError: if Keras' serialization names a class other than the
            built-in layers the backbones are made of, or if the folder,
            loaded with `keras.saving.load_model(folder, safe_mode=True)`,
            gives other features than `encoder`.
    """
    import keras
    import numpy as np

    from keras_directcopy.models.backbones import check_architecture_config

    with tempfile.TemporaryDirectory(prefix=".keras-format-", dir=folder) as keras_folder:
        keras.saving.save_model(encoder, keras_folder, zipped=False)
        with open(os.path.join(keras_folder, CONFIG_FILENAME), encoding="utf-8") as file:
            keras_config = json.load(file)
    # What keras.saving.load_model will deserialize: built-in layers only, as
    # for the architecture file load_pretrained reads.
    check_architecture_config(keras_config, origin=f"Keras' serialization of {config['name']}")
    shared = sorted(set(config) & set(keras_config))
    if shared:
        raise ValueError(
            f"Keras' serialization of the encoder has keys {shared} that config.json already "
            "uses, so the two cannot share the file; rename those fields of "
            "keras_directcopy.presets.hub_folder.repo_config."
        )
    write_json(os.path.join(folder, CONFIG_FILENAME), {**config, **keras_config})

    reloaded = keras.saving.load_model(folder, safe_mode=True)
    probe = np.random.default_rng(0).uniform(0, 255, (2, *encoder.input_shape[1:])).astype("float32")
    if not np.array_equal(np.asarray(reloaded(probe)), np.asarray(encoder(probe))):
        raise ValueError(
            f"{config['name']} loaded with keras.saving.load_model from the Keras format written "
            f"by keras {keras.__version__} gives other features than the encoder it was written "
            "from; nothing was written. Report this with the preset and the Keras version."
        )
