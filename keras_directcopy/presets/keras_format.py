"""A preset's repository folder as a model in Keras' own saving format.

`add_keras_format(encoder, folder, config)` makes a repository folder also
what `keras.saving.save_model(encoder, folder, zipped=False)` writes, so that
plain Keras loads it, `keras.saving.load_model("hf://ORG/NAME")` with
built-in layers only and `safe_mode=True`, without this package. Keras'
hf:// loader reads the repository root's `config.json` and nothing else, so
that file holds two descriptions of the encoder side by side, with no key in
common: this package's (`hub_folder.repo_config`, which
`zoo.load_pretrained` reads) and Keras' serialized model. The weights go
under Keras' name, `model.weights.h5`, with their sha256 recorded as
`keras_weights`. The folder is loaded back with Keras and must give the
encoder's features before it is accepted.
"""

import json
import os
import tempfile

from keras_directcopy.presets.repo_layout import CONFIG_FILENAME, KERAS_WEIGHTS_FILENAME, write_json
from keras_directcopy.utils.files import sha256_file


def add_keras_format(encoder, folder, config):
    """Makes `folder` also a model in Keras' folder format, and checks it.

    Keras writes the encoder (`keras.saving.save_model(..., zipped=False)`:
    its `config.json` and `model.weights.h5`); the weights file is moved into
    `folder` and its sha256 recorded as `config["keras_weights"]`, and
    Keras' serialized model is merged into `folder`'s `config.json` beside
    `config` (Keras' hf:// loader reads only the root `config.json`). Keras'
    `metadata.json` (its version and the time of saving) is left out, so
    that a folder rebuilt from the same files is the same; loading does not
    read it.

    Args:
        encoder: the encoder as `zoo.load_pretrained` loads it from `folder`.
        folder: a repository folder being built, with its files written.
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
        os.replace(
            os.path.join(keras_folder, KERAS_WEIGHTS_FILENAME), os.path.join(folder, KERAS_WEIGHTS_FILENAME)
        )
    # What keras.saving.load_model will deserialize: built-in layers only, as
    # for the architecture file load_pretrained reads.
    check_architecture_config(keras_config, origin=f"Keras' serialization of {config['name']}")
    config = {
        **config,
        "keras_weights": {
            "filename": KERAS_WEIGHTS_FILENAME,
            "sha256": sha256_file(os.path.join(folder, KERAS_WEIGHTS_FILENAME)),
        },
    }
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
