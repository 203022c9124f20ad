"""Data: datasets (tfds and labelled image folders), the two-view
augmentation, and offline preparation of TFDS directories from local files.

* `datasets`: dataset specs, splits, the pretraining and evaluation pipelines.
* `known_folders`: labelled image folders the project knows (Imagenette),
  identified by their class folders and image counts.
* `augment`: the BYOL two-view augmentation per dataset.
* `offline`: writes TFDS directories from local arrays (`scripts/prepare_data.py`).
"""
