"""Pretrained presets: the registry (the top-level `zoo/`), `load_pretrained`
and `list_pretrained` (`zoo`), and Hugging Face Hub folders with their model
cards (`hub`). Uses `keras_directcopy.models`, never the training stack."""

from keras_directcopy.presets.zoo import get_preset, list_pretrained, load_pretrained
