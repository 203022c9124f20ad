"""Pretrained presets. Uses `keras_directcopy.models`, never the training stack.

* `zoo`: the registry (the top-level `zoo/`), `load_pretrained` and
  `list_pretrained`.
* `class_names`: the class names of a preset's classifier, `decode_predictions`.
* `registration`: a finished run and its metrics recorded as a preset.
* `checks`: whether a preset's records may be published.
* `model_card`: the preset's model card.
* `repo_layout`: the files of a preset's Hub repository.
* `hub_folder`: writing that repository as a folder, checked.
* `keras_format`: the folder as a model in Keras' own saving format.
* `upload`: publishing the folder to the Hugging Face Hub.
"""

from keras_directcopy.presets.class_names import class_names, decode_predictions
from keras_directcopy.presets.zoo import get_preset, list_pretrained, load_pretrained
