"""Schedules of training hyper-parameters."""

import math

import tensorflow as tf


def target_momentum(step, total_steps, tau_base=0.996):
    """EMA momentum of the target network at `step` (BYOL, Grill et al. 2020).

    ``tau = 1 - (1 - tau_base) * (cos(pi * step / total_steps) + 1) / 2``:
    `tau_base` at step 0, rising on a cosine to 1 at `total_steps` (and held
    there after). With `total_steps=None` the momentum stays at `tau_base`.

    Args:
        step: current step, Python number or scalar tensor.
        total_steps: number of training steps, or None.
        tau_base: momentum at step 0.

    Returns:
        The momentum, a Python float for Python input, else a float32 tensor.
    """
    if total_steps is None:
        return tau_base if not tf.is_tensor(step) else tf.constant(tau_base, tf.float32)
    if not tf.is_tensor(step):
        progress = min(float(step), total_steps) / total_steps
        return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * progress) + 1.0) / 2.0
    progress = tf.minimum(tf.cast(step, tf.float32), float(total_steps)) / float(total_steps)
    return 1.0 - (1.0 - tau_base) * (tf.cos(math.pi * progress) + 1.0) / 2.0
