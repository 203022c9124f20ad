"""The model card template as package data: setup.cfg installs this directory
as `keras_directcopy.model_card_templates`, which `keras_directcopy.presets.model_card` reads
with `importlib.resources`. It holds no code."""
