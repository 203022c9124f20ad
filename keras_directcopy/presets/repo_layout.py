"""The files of a preset's Hugging Face Hub repository: their names and format.

One place for what the writer (`hub_folder`), the model card that lists the
files (`model_card`) and the reader (`zoo.load_pretrained`) must agree on. A
repository's root holds, beside the preset's own files (its head and
architecture file, named in its registry entry):

* `WEIGHTS_FILENAME`: the encoder weights, once: the name Keras' folder
  format gives them, so `keras.saving.load_model` and `load_pretrained`
  read the same file (the registry entry's `weights.filename` is the name
  of the run's and of a bundled copy, not the repository's);
* `CONFIG_FILENAME`: this package's description of the encoder (marked by
  `CONFIG_FORMAT` and `CONFIG_FORMAT_VERSION`; its `weights` entry names
  `WEIGHTS_FILENAME` with its sha256) merged with Keras' serialized model;
* `METRICS_FILENAME`, `ADDITIONAL_METRICS_FILENAME`, `RUN_FILENAME`: the
  records of `scripts/evaluate.py` and `scripts/pretrain.py`, as measured;
* `CARD_FILENAME`: the model card.

The JSON files are written by `write_json`: two-space indents and a final
newline, atomically.
"""

import json

from keras_directcopy.utils.files import atomic_write_text

CONFIG_FILENAME = "config.json"
METRICS_FILENAME = "metrics.json"
ADDITIONAL_METRICS_FILENAME = "additional_metrics.json"
RUN_FILENAME = "run.json"
CARD_FILENAME = "README.md"
# The weights file of Keras' folder format, next to its config.json
# (keras.src.saving.saving_lib._VARS_FNAME_H5); keras.saving.load_model
# reads no other name, so the repository's one weights file has it.
WEIGHTS_FILENAME = "model.weights.h5"
# The names a preset's own files may not take: the folder writes these.
RESERVED_FILENAMES = (
    CONFIG_FILENAME, WEIGHTS_FILENAME, METRICS_FILENAME, ADDITIONAL_METRICS_FILENAME,
    RUN_FILENAME, CARD_FILENAME,
)
# Marks a config.json as this package's architecture description. Version 2
# added Keras' serialization of the encoder and `keras_weights` (a second
# copy of the weights, as model.weights.h5); version 3 ships the weights
# once, as `WEIGHTS_FILENAME`, named by `weights`, and drops `keras_weights`.
# The reader takes the weights file `weights` names, so every version loads.
CONFIG_FORMAT = "keras_directcopy.encoder"
CONFIG_FORMAT_VERSION = 3


def write_json(path, value):
    """Writes `value` to `path` as a repository's JSON files are written."""
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")
