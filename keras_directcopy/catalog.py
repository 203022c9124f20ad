"""The names of the datasets and pretraining methods, spelled once.

Several parts of the package name the same datasets and methods: the input
pipelines (`data.datasets`, `data.known_folders`, `data.offline`), the
predictors (`models.predictors`), the preset checks and the model cards
(`presets`). They import the names from here instead of keeping copies.

Contract: every key is the name a command line or a record uses
(`--dataset=cifar10`, `"method": "directcopy"`, `folder:ROOT`); every value is
what a message or a model card shows. This module is a leaf: it imports
nothing, so every part of the package (and every script) may import it
without pulling in another part.
"""

# A dataset read from an image folder is named `folder:ROOT`.
FOLDER_PREFIX = "folder:"

# The datasets distributed as a labelled image folder: read from a copy of
# the folder (`folder:ROOT`), and recorded by name when the folder is
# identified as one (`data.known_folders` holds what identifies each).
FOLDER_DATASETS = ("imagenette",)

# The name of each dataset in messages and model cards.
DATASET_DISPLAY_NAMES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "stl10": "STL-10",
    "imagenet2012": "ImageNet-1k (ILSVRC 2012)",
    "imagenette": "Imagenette (imagenette2)",
}

# The Hugging Face Hub dataset id of each dataset the presets are trained
# on; a model card names any other dataset by its tfds name.
HUB_DATASET_IDS = {
    "cifar10": "uoft-cs/cifar10",
    "cifar100": "uoft-cs/cifar100",
    "imagenet2012": "ILSVRC/imagenet-1k",
    "imagenette": "frgfm/imagenette",
}

# The label sets of a dataset's images other than its own `label`, read as
# `NAME:LABEL` (`--dataset=cifar100:coarse_label`): the tfds feature of each
# and its number of classes.
OTHER_LABELS = {"cifar100": {"coarse_label": 20}}

# The display name of each label set of `OTHER_LABELS` that has one; another
# is named by its dataset and tfds feature.
LABEL_SET_NAMES = {
    "cifar100:coarse_label": "CIFAR-100 coarse labels (20 superclasses)",
}

# The display name of each pretraining method a preset records (`"method"`).
METHOD_NAMES = {
    "directcopy": "DirectCopy",
    "directpred": "DirectPred",
    "directset": "DirectSet",
    "byol": "BYOL",
    "simsiam": "SimSiam",
}

# The methods whose predictor is set from the features' correlation, not
# trained by gradient descent (`models.predictors`).
DIRECT_METHODS = ("directcopy", "directpred", "directset")
