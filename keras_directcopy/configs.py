"""Named pretraining recipes for `scripts/pretrain.py --config=NAME`.

Every field can be overridden by the flag of the same name (`training.config_flags.define_flags`
makes one per field, from its type and its entry in `PretrainConfig`'s
Attributes), and every field is checked when a config is made
(`PretrainConfig.__post_init__`), so a bad value fails before any data is
read, with a message naming the flag.

Sources. "The reference" is the DirectPred/DirectCopy reference code,
facebookresearch/luckmatters, `ssl/real-dataset`:

* `cifar10_resnet18`, `cifar100_resnet18`, `stl10_resnet18`, the reference's
  setting:
  - batch 128 (`trainer.batch_size`), SGD lr 0.03, momentum 0.9 and weight
    decay 4e-4 coupled into the gradient as PyTorch's SGD does
    (`optimizer.params`), the predictor trained with the same optimizer
    (`predictor_optimizer_same: true`): config/byol_config.yaml;
  - 100 epochs, rho 0.3 (`dyn_lambda`) and eps 0.01 (`dyn_eps`): the
    DirectPred command in the reference's README.md;
  - EMA momentum 0.996, constant (`trainer.m`, config/byol_config.yaml;
    byol_trainer.py, `_update_target_network_parameters`), the target with
    its own random initialization (main.py builds it separately;
    byol_trainer.py, `train`, leaves `initializes_target_network()`
    commented out);
  - lr 0.03 constant, no warmup: main.py builds no learning-rate scheduler;
  - the 512 -> 128 projector whose BatchNorm has no affine parameters
    (`network.projection_head`, `trainer.projector_params.has_bn_affine:
    false`, config/byol_config.yaml; models/mlp_head.py, `MLPHead`);
  - `W_p` set after the optimizer step, batch t predicted with
    `W_p(F_{t-1})` (byol_trainer.py, `BYOLTrainer.train` calling
    `regulate_predictor` after `optimizer.step()`);
  - the `linear` baseline symmetrized after every step
    (`predictor_reg: "symmetric"`, config/byol_config.yaml; byol_trainer.py,
    `regulate_predictor`), initialized as PyTorch's `nn.Linear`, no bias
    (`predictor_params.has_bias=false` in the README's command).
* `cifar10_resnet20`: the CIFAR recipe above on the 0.27M-parameter
  ResNet-20 for 90 epochs, with one
  named difference: this project's learning-rate schedule, a one-epoch
  linear warmup then a cosine decay to 0 (`lr_schedule="warmup_cosine"`,
  solo-learn's default), which suits a short CPU budget. ResNet-20 was
  chosen over narrow ResNet-18s by an equal-budget pilot
  (`benchmarks/backbone_pilots/cifar10/`). The shipped
  `directcopy_resnet20_cifar10` encoder was trained before the reference's
  target, projector and predictor behaviour were options, with
  `--ema_schedule=cosine --target_init=copy --projector_bn_affine
  --update_order=before_predict` (its preset's `train_command` says so).
* `cifar100_resnet20`: `cifar10_resnet20` on CIFAR-100's 50,000 training
  images (same image size and count, so the same cost).
* `imagenette_resnet18`: the `cifar10_resnet20` recipe (the reference's
  step with a warmup-cosine learning rate) on Imagenette's 9,469 training
  images, read from the user's copy (`--dataset=folder:ROOT`; the name alone
  names no images), with a half-width ResNet-18 (256 features, the
  ImageNet stem, the 512 -> 128 projector of images up to 96 px) at 96 px
  for 560 epochs of 73 steps of batch 128. The equal-budget pilot
  `benchmarks/backbone_pilots/imagenette/` chose 96 px over lightly's
  128 px; `benchmarks/presets/` gives the run's cost.
* `quickstart`: `cifar10_resnet20` for one epoch without warmup, with a
  target copied from the online network (`target_init="copy"`, BYOL's), EMA
  0.99 and lr 0.06 (lightly's CIFAR-10 BYOL benchmark settings): the
  reference's independent target at 0.996 still holds
  0.996^390 (about 21%) of its random weights after one epoch, so the
  online network spends the epoch predicting a mostly random network.
* `imagenet_resnet50`: BYOL's architecture and target (Grill et al. 2020:
  4096 -> 256 projector with affine BatchNorm, a target copied from the
  online network, EMA 0.996 on a cosine to 1) with SimSiam's SGD recipe
  (Chen & He 2021: lr 0.05 x batch / 256 on a cosine, momentum 0.9, weight
  decay 1e-4, 100 epochs).

The default recipe. `scripts/pretrain.py` without `--config` trains the
recipe of the shipped preset of its dataset (`default_preset`,
`preset_config`): each preset's registry entry (`zoo/NAME.json`) records the
recipe it was trained with as data, `"pretrain_recipe": {"config": NAME,
"overrides": {FIELD: VALUE, ...}}`, and the dataset's alias (`cifar10`,
`cifar100`, ...) names the preset. So the default follows the alias: when
an alias moves to another preset, the default recipe moves with it. A
folder of one's own images (`folder:ROOT`) has a default only when it is
identified as a known dataset with a preset (Imagenette); for any other
folder there is none, and `--config` must name one: no recipe was chosen
for unknown images, and a long run on a guessed one would waste its budget.
"""

import dataclasses
import math
import shlex

from keras_directcopy.models.backbones import BACKBONE_NAMES
from keras_directcopy.models.non_contrastive import TARGET_INITS, WEIGHT_DECAY_MODES
from keras_directcopy.models.predictor_matrices import NORMALIZATIONS
from keras_directcopy.models.predictors import LINEAR_INITIALIZERS, PREDICTOR_NAMES, UPDATE_ORDERS
from keras_directcopy.models.schedules import EMA_SCHEDULES

MIXED_PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")
# See `PretrainConfig`'s `lr_schedule`.
LR_SCHEDULES = ("warmup_cosine", "constant")
JIT_COMPILE_SETTINGS = ("auto", "true", "false")
# Smaller images leave nothing for the random crops to work with, and a
# ResNet's 5 downsamplings reduce them to a single pixel long before the end.
MIN_IMAGE_SIZE = 8
# The dataset of a command that names none (`PretrainConfig.dataset`).
DEFAULT_DATASET = "cifar10"
# The key of a preset's registry entry that holds its recipe (`preset_config`).
PRESET_RECIPE_KEY = "pretrain_recipe"


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """A full pretraining recipe. See the module docstring for sources.

    Each attribute below is also the help text of its `scripts/pretrain.py`
    flag (`define_flags`); a field with a fixed set of values takes one of
    `field_choices(name)`, which `--help` lists. None ("unset") is allowed
    only where an attribute says what it means.

    Attributes:
        dataset: Pretraining data: cifar10 | cifar100 | stl10 | imagenet2012
            | folder:/path (a folder of images; one with Imagenette's class
            folders and counts is recorded as imagenette).
        data_dir: tfds data directory (prepared offline with
            scripts/prepare_data.py); unset: tfds' default.
        backbone: Encoder architecture.
        width_multiplier: Channel width multiplier of the backbone.
        predictor: Predictor mode.
        epochs: Training epochs.
        batch_size: Global batch size (summed over replicas).
        lr: Learning rate (the peak, with warmup_cosine).
        lr_schedule: warmup_cosine: linear warmup over warmup_epochs, then
            cosine decay to 0 (solo-learn's default); constant: lr
            throughout, as the reference code (no scheduler in its main.py).
        warmup_epochs: Linear learning-rate warmup, in epochs.
        momentum: SGD momentum.
        weight_decay: Weight decay coefficient.
        weight_decay_mode: Coupled L2 (PyTorch SGD) or decoupled.
        ema: Target EMA momentum (at step 0 if cosine); 0 = SimSiam-style
            target.
        ema_schedule: constant: the reference code's fixed momentum; cosine:
            BYOL's rise to 1.
        target_init: independent: the target's own random weights (the
            reference code's); copy: BYOL's.
        rho: Running-correlation weight of the direct predictors.
        eps: eps of the direct predictors; unset: the predictor's default
            (0.1 DirectCopy, 0.01 DirectPred/Set).
        alpha: DirectSet exponent.
        normalization: DirectCopy normalization.
        update_every: Set the direct predictor every this many steps.
        update_order: after_step: the reference's (batch t predicted with
            W_p(F_{t-1})); before_predict: with W_p(F_t).
        linear_symmetric: Symmetrize the linear predictor after every step.
        linear_initializer: Linear predictor initialization.
        projector_hidden_dim: Projector hidden width; unset: the image
            size's (`heads.default_projector_dims`).
        projection_dim: Projector output width; unset: the image size's
            (`heads.default_projector_dims`).
        projector_bn_affine: Learned scale and offset in the projector's
            BatchNorm (the reference code has none).
        image_size: Training image size; unset: the dataset's own.
        knn_every: kNN monitor period in epochs (0: off); the last epoch is
            always evaluated.
        knn_k: Neighbours of the kNN monitor.
        seed: Random seed.
        steps_per_execution: Train steps per compiled call.
        steps_per_epoch: Steps per epoch; unset: one pass over the
            pretraining split.
        save_freq: Backup every epoch ('epoch') or every N steps.
        jit_compile: XLA for the train step.
        mixed_precision: Compute in float16 (with dynamic loss scaling) or
            bfloat16; variables stay float32. Unset: float32 throughout.
        fused_batchnorm: Compute BatchNorm in training with TensorFlow's
            fused kernel: Keras' arithmetic, to float32 rounding, in less
            time; false: Keras' op-by-op computation.

    Raises:
        ValueError: on construction, for any field out of its range or of
            the wrong type, naming the flag, the value and what is valid.
    """

    dataset: str = DEFAULT_DATASET
    data_dir: str | None = None
    backbone: str = "resnet20"
    width_multiplier: float = 1.0
    predictor: str = "directcopy"
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.03
    lr_schedule: str = "warmup_cosine"
    warmup_epochs: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 4e-4
    weight_decay_mode: str = "coupled"
    ema: float = 0.996
    ema_schedule: str = "constant"
    target_init: str = "independent"
    rho: float = 0.3
    eps: float | None = None
    alpha: float = 0.5
    normalization: str = "spectral"
    update_every: int = 1
    update_order: str = "after_step"
    linear_symmetric: bool = True
    linear_initializer: str = "pytorch"
    projector_hidden_dim: int | None = None
    projection_dim: int | None = None
    projector_bn_affine: bool = False
    image_size: int | None = None
    knn_every: int = 10
    knn_k: int = 200
    seed: int = 0
    steps_per_execution: int = 1
    steps_per_epoch: int | None = None
    save_freq: str = "epoch"
    jit_compile: str = "auto"
    mixed_precision: str | None = None
    fused_batchnorm: bool = True

    def __post_init__(self):
        for name, check in _FIELD_CHECKS.items():
            value = getattr(self, name)
            requirement = check(value)
            if requirement:
                raise ValueError(f"--{name}={value!r} is invalid: it must be {requirement}.")


def _number(low=None, high=None, *, low_open=False, high_open=False, integer=False, optional=False):
    """A field check: None when `value` is valid, else what a valid one is."""
    kind = "an integer" if integer else "a number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high}")
    requirement = kind + (" " + " and ".join(bounds) if bounds else "") + (" (or unset)" if optional else "")

    def check(value):
        if value is None:
            return None if optional else requirement
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return requirement
        if integer and not isinstance(value, int):
            return requirement
        if not math.isfinite(value):
            return requirement
        if low is not None and (value < low or (low_open and value == low)):
            return requirement
        if high is not None and (value > high or (high_open and value == high)):
            return requirement
        return None

    return check


def _one_of(choices, optional=False):
    requirement = "one of " + ", ".join(map(str, choices)) + (" (or unset)" if optional else "")

    def check(value):
        return None if (value in choices or (optional and value is None)) else requirement

    check.choices = tuple(choices)  # `define_flags` makes the field's flag an enum of these
    return check


def _boolean(value):
    return None if isinstance(value, bool) else "true or false"


def _text(value):
    return None if isinstance(value, str) and value else "a non-empty name"


def _save_freq(value):
    requirement = "'epoch' or a positive number of steps"
    if value == "epoch":
        return None
    try:
        return None if int(value) >= 1 else requirement
    except (TypeError, ValueError):
        return requirement


_FIELD_CHECKS = {
    "dataset": _text,
    "backbone": _one_of(BACKBONE_NAMES),
    "width_multiplier": _number(0, low_open=True),
    "predictor": _one_of(PREDICTOR_NAMES),
    "epochs": _number(1, integer=True),
    "batch_size": _number(1, integer=True),
    "lr": _number(0, low_open=True),
    "lr_schedule": _one_of(LR_SCHEDULES),
    "warmup_epochs": _number(0),
    "momentum": _number(0, 1, high_open=True),
    "weight_decay": _number(0),
    "weight_decay_mode": _one_of(WEIGHT_DECAY_MODES),
    "ema": _number(0, 1, high_open=True),
    "ema_schedule": _one_of(EMA_SCHEDULES),
    "target_init": _one_of(TARGET_INITS),
    "rho": _number(0, 1, high_open=True),
    "eps": _number(0, optional=True),
    "alpha": _number(0, low_open=True),
    "normalization": _one_of(NORMALIZATIONS),
    "update_every": _number(1, integer=True),
    "update_order": _one_of(UPDATE_ORDERS),
    "linear_symmetric": _boolean,
    "linear_initializer": _one_of(LINEAR_INITIALIZERS),
    "projector_hidden_dim": _number(1, integer=True, optional=True),
    "projection_dim": _number(1, integer=True, optional=True),
    "projector_bn_affine": _boolean,
    "image_size": _number(MIN_IMAGE_SIZE, integer=True, optional=True),
    "knn_every": _number(0, integer=True),
    "knn_k": _number(1, integer=True),
    "seed": _number(0, integer=True),
    "steps_per_execution": _number(1, integer=True),
    "steps_per_epoch": _number(1, integer=True, optional=True),
    "save_freq": _save_freq,
    "jit_compile": _one_of(JIT_COMPILE_SETTINGS),
    "mixed_precision": _one_of(MIXED_PRECISION_POLICIES, optional=True),
    "fused_batchnorm": _boolean,
}


# The reference's setting (module docstring): config/byol_config.yaml and the
# DirectPred command of its README.md.
_CIFAR = dict(
    dataset="cifar10", batch_size=128, lr=0.03, momentum=0.9, weight_decay=4e-4,
    weight_decay_mode="coupled", ema=0.996, ema_schedule="constant", target_init="independent",
    epochs=100, rho=0.3, projector_bn_affine=False, update_order="after_step",
    linear_symmetric=True, linear_initializer="pytorch",
)
_REFERENCE_LR = dict(lr_schedule="constant", warmup_epochs=0.0)

CONFIGS = {
    # One epoch: no warmup, so the learning rate starts at its peak.
    # One epoch that learns: a copied target and lightly's CIFAR-10 BYOL rate and momentum.
    "quickstart": PretrainConfig(
        **{**_CIFAR, "backbone": "resnet20", "epochs": 1, "warmup_epochs": 0.0, "knn_every": 1,
           "target_init": "copy", "ema": 0.99, "lr": 0.06}
    ),
    "cifar10_resnet20": PretrainConfig(**{**_CIFAR, "backbone": "resnet20", "epochs": 90}),
    "cifar100_resnet20": PretrainConfig(
        **{**_CIFAR, "dataset": "cifar100", "backbone": "resnet20", "epochs": 90}
    ),
    # Read from the user's copy of imagenette2: --dataset=folder:ROOT.
    "imagenette_resnet18": PretrainConfig(
        **{**_CIFAR, "dataset": "imagenette", "backbone": "resnet18", "width_multiplier": 0.5,
           "image_size": 96, "epochs": 560}
    ),
    "cifar10_resnet18": PretrainConfig(**{**_CIFAR, **_REFERENCE_LR, "backbone": "resnet18"}),
    "cifar100_resnet18": PretrainConfig(
        **{**_CIFAR, **_REFERENCE_LR, "dataset": "cifar100", "backbone": "resnet18"}
    ),
    "stl10_resnet18": PretrainConfig(
        **{**_CIFAR, **_REFERENCE_LR, "dataset": "stl10", "backbone": "resnet18"}
    ),
    "imagenet_resnet50": PretrainConfig(
        dataset="imagenet2012", backbone="resnet50", batch_size=512, lr=0.1, momentum=0.9,
        weight_decay=1e-4, ema=0.996, ema_schedule="cosine", target_init="copy",
        projector_bn_affine=True,
        epochs=100, warmup_epochs=0, knn_every=10,
    ),
}


def get_config(name, **overrides):
    """The named recipe with `overrides` (None values ignored) applied.

    Raises:
        ValueError: on an unknown recipe name or field, listing the valid
            ones, or on an invalid value (see `PretrainConfig`).
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


def preset_recipe(preset):
    """The recipe a preset's registry entry records: `(config name, overrides)`.

    The entry holds it as `"pretrain_recipe": {"config": NAME, "overrides":
    {FIELD: VALUE, ...}}` (`PRESET_RECIPE_KEY`): a named recipe of `CONFIGS`
    and the field values that differ from it, as JSON values (`"overrides"`
    may be left out when there are none).

    Args:
        preset: a registry entry (`presets.zoo.get_preset`).

    Raises:
        ValueError: if the entry records no recipe, or one of another form
            or with an unknown config, field or invalid value; the message
            names the preset and the form.
    """
    name, recipe = preset.get("name"), preset.get(PRESET_RECIPE_KEY)
    form = f'"{PRESET_RECIPE_KEY}": {{"config": NAME, "overrides": {{FIELD: VALUE, ...}}}}'
    if recipe is None:
        raise ValueError(
            f"Preset {name!r} records no recipe: add {form} to its registry entry (zoo/{name}.json), "
            f"the --config and field flags of its train_command ({preset.get('train_command')!r})."
        )
    if (not isinstance(recipe, dict) or set(recipe) - {"config", "overrides"}
            or not isinstance(recipe.get("config"), str) or not isinstance(recipe.get("overrides", {}), dict)):
        raise ValueError(f"Preset {name!r} records its recipe as {recipe!r}; the form is {form}.")
    overrides = dict(recipe.get("overrides") or {})
    try:
        get_config(recipe["config"], **overrides)
    except ValueError as error:
        raise ValueError(f"Preset {name!r} records a recipe that is not valid here: {error}") from error
    return recipe["config"], overrides


def run_recipe(run):
    """The recipe a finished run trained, in the registry's form
    (`{"config": NAME, "overrides": {FIELD: VALUE}}`, see `preset_recipe`):
    the `--config` of its first command (`quickstart` for a command without
    one, the script's default before defaults followed the presets) and the
    recipe fields (`recipe_fields`) whose recorded values differ from it.

    Args:
        run: a run's `run.json` as a dict (`commands`, `config`).

    Raises:
        ValueError: if the command names a recipe that does not exist.
    """
    words = shlex.split(run["commands"][0])
    name = "quickstart"
    for index, word in enumerate(words):
        if word.startswith("--config="):
            name = word.split("=", 1)[1]
        elif word == "--config" and index + 1 < len(words):
            name = words[index + 1]
    if name not in CONFIGS:
        raise ValueError(f"The run's command names --config={name}, which is not a recipe of this version: "
                         f"one of {', '.join(CONFIGS)}.")
    recorded = run["config"]
    overrides = {field: recorded[field] for field, value in recipe_fields(CONFIGS[name]).items()
                 if field in recorded and recorded[field] != value}
    return {"config": name, "overrides": overrides}


def recipe_flags(name, overrides=None):
    """The `scripts/pretrain.py` flags of recipe `name` with `overrides`:
    `--config=NAME`, then one flag per override in order (`--FIELD=VALUE`;
    `--FIELD` or `--noFIELD` for a boolean; an unset field is left out)."""
    arguments = [f"--config={name}"]
    for field, value in (overrides or {}).items():
        if isinstance(value, bool):
            arguments.append(f"--{field}" if value else f"--no{field}")
        elif value is not None:
            arguments.append(f"--{field}={value}")
    return arguments


def field_choices(name):
    """The values field `name` may take when its check allows only a fixed
    set (`--help` lists them), else None."""
    return getattr(_FIELD_CHECKS.get(name), "choices", None)


# Fields that say where the data is, how often to monitor and back up, and
# which kernels compute the step, but not what a run trains: an interrupted
# run may be resumed with other values of these (the data moved to another
# machine, a backup every 200 steps instead of every epoch), and with no
# other change (`recipe_fields`).
NON_RECIPE_FIELDS = (
    "data_dir", "knn_every", "knn_k", "save_freq", "steps_per_execution", "jit_compile", "fused_batchnorm",
)


def recipe_fields(config):
    """The fields of `config` that define what a run trains: all but
    `NON_RECIPE_FIELDS`, as a dict."""
    return {name: value for name, value in dataclasses.asdict(config).items() if name not in NON_RECIPE_FIELDS}


# The key of a run's recipe that holds its data folder's contents
# (`data.datasets.DatasetIdentity.contents_sha256`), not a flag.
DATASET_CONTENTS_KEY = "dataset_contents_sha256"


def recipe_differences(run_recipe, recipe):
    """The settings in which `recipe` differs from `run_recipe` (recipes as
    `training.loop.recipe_record` makes them), each as "--NAME VALUE in the
    run, VALUE here"; an empty list if none.

    Only settings both recipes hold are compared: a field added to
    `PretrainConfig` since the run started (or removed) is not a change of
    the run's recipe, so a run resumes under a newer version of the package.
    """
    differences = []
    for name in sorted(set(run_recipe) & set(recipe)):
        before, now = run_recipe[name], recipe[name]
        if before == now:
            continue
        if name == DATASET_CONTENTS_KEY:
            differences.append("the data folder's class folders or image counts are not the run's")
        else:
            differences.append(f"--{name} {before!r} in the run, {now!r} here")
    return differences
