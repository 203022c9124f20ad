"""The files of a preset's Hugging Face Hub repository: their names and format.

One place for what the writer (`hub_folder`), the model card that lists the
files (`model_card`) and the reader (`zoo.load_pretrained`) must agree on. A
repository's root holds, beside the preset's own files (its weights, head
and architecture file, named in its registry entry):

* `CONFIG_FILENAME`: this package's description of the encoder (marked by
  `CONFIG_FORMAT` and `CONFIG_FORMAT_VERSION`) merged with Keras' serialized
  model;
* `KERAS_WEIGHTS_FILENAME`: the weights under the name Keras' folder format
  gives them;
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
# reads no other name.
KERAS_WEIGHTS_FILENAME = "model.weights.h5"
# The names a preset's own files may not take: the folder writes these.
RESERVED_FILENAMES = (
    CONFIG_FILENAME, KERAS_WEIGHTS_FILENAME, METRICS_FILENAME, ADDITIONAL_METRICS_FILENAME,
    RUN_FILENAME, CARD_FILENAME,
)
# Marks a config.json as this package's architecture description. Version 2
# adds Keras' serialization of the encoder and `keras_weights`.
CONFIG_FORMAT = "keras_directcopy.encoder"
CONFIG_FORMAT_VERSION = 2


def write_json(path, value):
    """Writes `value` to `path` as a repository's JSON files are written."""
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")
