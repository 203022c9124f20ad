"""Schedules of training hyper-parameters.

Written with `keras.ops`, so they run on every Keras backend.
"""

import math

from keras import ops

# How the target's EMA momentum evolves over training:
# * "constant": `tau_base` throughout, as in the DirectPred/DirectCopy
#   reference code (facebookresearch/luckmatters, ssl/real-dataset,
#   byol_trainer.py, `BYOLTrainer._update_target_network_parameters` with
#   `m: 0.996` from config/byol_config.yaml);
# * "cosine": BYOL's schedule (Grill et al. 2020), rising from `tau_base` to 1.
EMA_SCHEDULES = ("constant", "cosine")


def check_ema_schedule(schedule):
    """Raises ValueError unless `schedule` is one of `EMA_SCHEDULES`."""
    if schedule not in EMA_SCHEDULES:
        raise ValueError(
            f"Unknown ema_schedule {schedule!r}. Valid schedules: {', '.join(EMA_SCHEDULES)}."
        )


def target_momentum(step, total_steps, tau_base=0.996, schedule="cosine"):
    """EMA momentum of the target network at `step`.

    With `schedule="cosine"` (BYOL, Grill et al. 2020),
    ``tau = 1 - (1 - tau_base) * (cos(pi * step / total_steps) + 1) / 2``:
    `tau_base` at step 0, rising on a cosine to 1 at `total_steps` (and held
    there after). With `schedule="constant"`, or with `total_steps=None`, the
    momentum stays at `tau_base`.

    Args:
        step: current step, Python number or scalar tensor of the Keras
            backend (e.g. the optimizer's `iterations`).
        total_steps: number of training steps, or None.
        tau_base: momentum at step 0.
        schedule: one of `EMA_SCHEDULES`.

    Returns:
        The momentum, a Python float for Python input, else a float32 tensor.
    """
    check_ema_schedule(schedule)
    if schedule == "constant" or total_steps is None:
        return tau_base if not ops.is_tensor(step) else ops.convert_to_tensor(tau_base, "float32")
    if not ops.is_tensor(step):
        progress = min(float(step), total_steps) / total_steps
        return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * progress) + 1.0) / 2.0
    progress = ops.minimum(ops.cast(step, "float32"), float(total_steps)) / float(total_steps)
    return 1.0 - (1.0 - tau_base) * (ops.cos(math.pi * progress) + 1.0) / 2.0
