"""The preset registry as package data: setup.cfg installs this directory as
`keras_directcopy.zoo_data`, which `keras_directcopy.presets.zoo` reads with
`importlib.resources`. It holds no code."""
