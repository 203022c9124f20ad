"""Named pretraining recipes for `scripts/pretrain.py --config=NAME`.

Every field can be overridden by the flag of the same name. Sources:

* `cifar10_resnet18`, `cifar100_resnet18`, `stl10_resnet18`: the DirectPred
  reference code (facebookresearch/luckmatters, `ssl/real-dataset`):
  `config/byol_config.yaml` gives batch 128, SGD lr 0.03, momentum 0.9,
  weight decay 4e-4, EMA 0.996 and the 512 -> 128 projector; its README's
  DirectPred command gives 100 epochs, rho 0.3 and eps 0.01.
  The warmup-plus-cosine learning-rate schedule is this project's
  (solo-learn's default), not the reference's.
* `imagenet_resnet50`: BYOL's architecture (Grill et al. 2020: 4096 -> 256
  projector, EMA 0.996) with SimSiam's SGD recipe (Chen & He 2021: lr
  0.05 x batch / 256, momentum 0.9, weight decay 1e-4, 100 epochs).
* `cifar10_resnet20`: the CIFAR recipe above on the 0.27M-parameter
  ResNet-20 for 90 epochs, about 8 CPU-hours on 2 CPU cores: the recipe of
  the shipped `directcopy_resnet20_cifar10` encoder. ResNet-20 was chosen
  over narrow ResNet-18s by an equal-budget pilot (kNN gain per CPU-hour,
  `scripts/results/backbone_pilot/`).
* `quickstart`: `cifar10_resnet20` for one epoch without warmup, about six
  minutes on 2 CPU cores.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """A full pretraining recipe. See the module docstring for sources."""

    dataset: str = "cifar10"
    data_dir: str | None = None
    backbone: str = "resnet20"
    width_multiplier: float = 1.0
    predictor: str = "directcopy"
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.03
    warmup_epochs: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 4e-4
    weight_decay_mode: str = "coupled"
    ema: float = 0.996
    rho: float = 0.3
    eps: float | None = None  # None: the predictor's default (0.25 DirectCopy, 0.01 DirectPred)
    alpha: float = 0.5
    normalization: str = "spectral"
    update_every: int = 1
    projector_hidden_dim: int | None = None
    projection_dim: int | None = None
    image_size: int | None = None  # None: the dataset's own
    knn_every: int = 10
    knn_k: int = 200
    seed: int = 0
    steps_per_execution: int = 1
    steps_per_epoch: int | None = None  # None: one pass over the pretraining split
    save_freq: str = "epoch"  # "epoch" or a number of steps
    jit_compile: str = "auto"  # "auto", "true" or "false"


_CIFAR = dict(
    dataset="cifar10", batch_size=128, lr=0.03, momentum=0.9, weight_decay=4e-4,
    ema=0.996, epochs=100,
)

CONFIGS = {
    # One epoch: no warmup, so the learning rate starts at its peak.
    "quickstart": PretrainConfig(
        **{**_CIFAR, "backbone": "resnet20", "epochs": 1, "warmup_epochs": 0.0, "knn_every": 1}
    ),
    "cifar10_resnet20": PretrainConfig(**{**_CIFAR, "backbone": "resnet20", "epochs": 90}),
    "cifar10_resnet18": PretrainConfig(**{**_CIFAR, "backbone": "resnet18"}),
    "cifar100_resnet18": PretrainConfig(**{**_CIFAR, "dataset": "cifar100", "backbone": "resnet18"}),
    "stl10_resnet18": PretrainConfig(**{**_CIFAR, "dataset": "stl10", "backbone": "resnet18"}),
    "imagenet_resnet50": PretrainConfig(
        dataset="imagenet2012", backbone="resnet50", batch_size=512, lr=0.1, momentum=0.9,
        weight_decay=1e-4, ema=0.996, epochs=100, warmup_epochs=0, knn_every=10,
    ),
}


def get_config(name, **overrides):
    """The named recipe with `overrides` (None values ignored) applied.

    Raises:
        ValueError: on an unknown recipe name or field, listing the valid ones.
    """
    if name not in CONFIGS:
        raise ValueError(f"Unknown config {name!r}. Valid configs: {', '.join(CONFIGS)}.")
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"Unknown config fields {unknown}. Valid fields: {', '.join(sorted(fields))}.")
    return dataclasses.replace(
        CONFIGS[name], **{k: v for k, v in overrides.items() if v is not None}
    )
