"""Data: datasets (tfds and labelled image folders), the two-view
augmentation, and offline preparation of TFDS directories from local files.

* `datasets`: dataset specs, splits, the pretraining and evaluation pipelines.
* `augment`: the BYOL two-view augmentation per dataset.
* `offline`: writes TFDS directories from local arrays (`scripts/prepare_data.py`).
"""
