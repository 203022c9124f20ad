"""Pretraining runs that the same code records on the TensorFlow backend (in
the test process) and on JAX (in a subprocess): tests/test_jax_training.py
compares them with each other and with the NumPy reference of
tests/test_models.py."""

import os

import keras
import numpy as np

from keras_directcopy import BYOL, DirectCopy, NonContrastiveModel, SimSiam, build_projector
from tests.helpers import tiny_encoder, two_view_images

PROJECTOR = dict(projector_hidden_dim=16, projection_dim=8)
STEPS = 3
BATCH = 8


def smooth_encoder():
    """`tests.helpers.tiny_encoder` with BatchNorm and a tanh for its ReLU.

    Two backends' float32 rounding differs by ~1e-7, and a ReLU passes or
    stops a gradient wherever a pre-activation sits within rounding of zero
    on one backend and not the other. With the ReLU, one output channel of
    the convolution kernel once ended three SGD steps 9e-4 apart on the two
    backends (every other weight within 5e-6): as large as three steps' weight
    decay. A smooth activation keeps the two runs within rounding, so the
    comparison can see a missing or doubled term of the step. (The
    backbones' own cross-backend agreement is tests/test_backends.py's.)
    """
    return tiny_encoder(batch_norm=True, activation="tanh")


# Every part of the step: BatchNorm in the encoder, both update orders of a
# direct predictor, coupled weight decay, SGD momentum, the symmetrized
# linear predictor, SimSiam's stop-gradient target with a trained MLP
# predictor, BYOL's copied target on the cosine momentum schedule.
CASES = {
    "directcopy": lambda: NonContrastiveModel(
        smooth_encoder(), predictor="directcopy", weight_decay=5e-3, **PROJECTOR
    ),
    "directpred_before_predict": lambda: NonContrastiveModel(
        smooth_encoder(), predictor="directpred",
        predictor_options={"update_order": "before_predict"}, **PROJECTOR,
    ),
    "linear": lambda: NonContrastiveModel(
        smooth_encoder(), predictor="linear", weight_decay=5e-3, **PROJECTOR
    ),
    "simsiam": lambda: SimSiam(smooth_encoder(), **PROJECTOR),
    "byol": lambda: BYOL(smooth_encoder(), total_steps=STEPS, tau_base=0.9, **PROJECTOR),
}


def to_numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def compiled(model, learning_rate=0.1, momentum=0.9, **compile_kwargs):
    model.compile(keras.optimizers.SGD(learning_rate, momentum=momentum), **compile_kwargs)
    return model


def projections(encoder, projector, views):
    """Projections of both views in training mode, float64 NumPy."""
    return [to_numpy(projector(encoder(v, training=True), training=True)).astype(np.float64) for v in views]


def record_direct_steps(model, steps=4, batch=8):
    """Trains `model` (a compiled model with a direct predictor) one batch at
    a time; returns what the NumPy reference needs and what the model did.

    Returns:
        A dict: the online and target projections of each batch, from the
        networks as they were before its step; the logged losses; `F` after
        the first step; `F` and `W_p` after the last.
    """
    online, target, losses = [], [], []
    first_F = None
    for step in range(steps):
        images = two_view_images(batch, seed=10 + step)
        views = (images[:, 0], images[:, 1])
        online.append(projections(model.encoder, model.projector, views))
        target.append(projections(model.target_encoder, model.target_projector, views))
        losses.append(fit_steps(model, images, 1, batch)["loss"][0])
        if step == 0:
            first_F = to_numpy(model.predictor.correlation)
    return {
        "online": online, "target": target, "losses": losses, "first_F": first_F,
        "F": to_numpy(model.predictor.correlation), "W_p": to_numpy(model.predictor.matrix),
    }


def fit_steps(model, images, steps, batch_size):
    return model.fit(
        images, batch_size=batch_size, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0
    ).history


def record_case(name, weights_path):
    """Runs case `name` for `STEPS` steps from the weights in `weights_path`
    (written there first if the file does not exist); returns the per-step
    losses and every weight of the model after them."""
    keras.utils.set_random_seed(0)  # the same starting weights on every run
    model = compiled(CASES[name]())
    if os.path.exists(weights_path):
        model.load_weights(weights_path)
    else:
        model.save_weights(weights_path)
    losses = [fit_steps(model, two_view_images(BATCH, seed=20 + step), 1, BATCH)["loss"][0] for step in range(STEPS)]
    return {
        "losses": losses,
        "names": [w.path for w in model.weights],
        "weights": [to_numpy(w) for w in model.weights],
    }


# Significant bits of each mixed policy's compute dtype (float16 keeps 11,
# bfloat16 8), so a rounding is off by up to u = 2^-bits of the value.
SIGNIFICANT_BITS = {"mixed_float16": 11, "mixed_bfloat16": 8}
# How far this step's rounding errors grow, in units of u, in its update
# (see `mixed_precision_bound`).
STEP_AMPLIFICATION = 128


def mixed_precision_bound(policy):
    """The largest relative error `||mixed - float32|| / ||float32||` of the
    update (all online weights as one vector) that `policy`'s arithmetic
    allows in `mixed_precision_update`: `STEP_AMPLIFICATION * 2^-bits`,
    1/16 for float16 and 1/2 for bfloat16.

    Why a multiple of u, and this one: the step's gradients are sums with
    heavy cancellation (the convolution kernel's runs over 32 x 8 x 8 =
    2,048 positions), so rounding each term by up to u moves a sum by u
    times its terms' absolute sum, tens of times its value. float16 sums in
    float32 on every CPU and its update is off by about 77u here; 128u bounds
    the same step for both formats. For bfloat16 that is 1/2: where a CPU
    has no bfloat16 dot-product instructions (AVX2-only CPUs, or TensorFlow
    without oneDNN) Eigen accumulates the sums in bfloat16 too, and with
    2,048 terms the worst case of that, (n - 1)u ~ 8 times the absolute sum,
    bounds nothing; 8 bits leave only the update's direction and size to
    within half its length (cosine > 0.86, norm within 50%). What the test
    can still catch is a wiring error: an update lost to bfloat16 weights,
    a missing loss scale (2^15 too small under float16), a dropped term.
    """
    return STEP_AMPLIFICATION * 2.0 ** -SIGNIFICANT_BITS[policy]


def mixed_precision_update(policy):
    """One DirectCopy step under the mixed-precision `policy`, against a
    float32 step from the same weights on the same batch.

    The float16 run starts its dynamic loss scale at 2^8: this tiny model's
    gradients overflow float16 at Keras' default 2^15, and that step would
    be skipped (as dynamic loss scaling does in the first steps of a real run).

    Returns:
        A dict: `relative_error`, `norm_ratio` and `cosine` of the mixed
        step's update of the online weights (all as one vector) against the
        float32 one, the encoder's `compute_dtype`, the dtypes of the online
        variables (`variable_dtypes`, a sorted list), the mixed step's `loss`
        and the optimizer's `iterations` after it.
    """
    keras.utils.set_random_seed(0)
    images = two_view_images(32, seed=6)
    reference = compiled(
        DirectCopy(tiny_encoder(), weight_decay=4e-4, target_init="copy", **PROJECTOR), momentum=0.0
    )
    initial = [reference.encoder.get_weights(), reference.projector.get_weights()]

    def online_weights(model):
        return np.concatenate([to_numpy(v).ravel() for v in model.online_variables])

    start = online_weights(reference)
    fit_steps(reference, images, 1, 32)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        encoder, projector = tiny_encoder(), build_projector(6, 16, 8)
        encoder.set_weights(initial[0])
        projector.set_weights(initial[1])
        # Built from the float32 model's weights, so the target copies them too.
        mixed = DirectCopy(encoder, projector=projector, weight_decay=4e-4, target_init="copy")
        optimizer = keras.optimizers.SGD(0.1)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**8)
        mixed.compile(optimizer)
        history = fit_steps(mixed, images, 1, 32)
    finally:
        keras.config.set_dtype_policy(previous)
    want = online_weights(reference) - start
    got = online_weights(mixed) - start
    return {
        "relative_error": float(np.linalg.norm(got - want) / np.linalg.norm(want)),
        "variable_dtypes": sorted({str(v.dtype) for v in mixed.online_variables}),
        "norm_ratio": float(np.linalg.norm(got) / np.linalg.norm(want)),
        "cosine": float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want))),
        "compute_dtype": mixed.encoder.layers[2].compute_dtype,
        "loss": float(history["loss"][0]),
        "iterations": int(to_numpy(mixed.optimizer.iterations)),
    }


def assert_moves_like_float32(result, policy):
    """`mixed_precision_update(policy)`'s result is a float32-weight step
    in `policy`'s compute dtype whose update is within
    `mixed_precision_bound(policy)` of the float32 step's."""
    assert result["compute_dtype"] == policy.split("_")[1]
    assert result["variable_dtypes"] == ["float32"], policy
    assert np.isfinite(result["loss"]) and result["iterations"] == 1
    assert result["relative_error"] < mixed_precision_bound(policy), (policy, result)


def record_all(weights_dir, data_parallel=False):
    """`record_case` of every case (weights files in `weights_dir`),
    `record_direct_steps` of a DirectCopy model and, on one device,
    `mixed_precision_update` under both mixed policies, as JSON-ready lists.

    With `data_parallel`, the cases run under JAX's
    `keras.distribution.DataParallel` over all local devices.
    """
    if data_parallel:
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    records = {name: record_case(name, os.path.join(weights_dir, f"{name}.weights.h5")) for name in CASES}
    direct = record_direct_steps(compiled(CASES["directcopy"](), momentum=0.0))
    mixed = {} if data_parallel else {
        policy: mixed_precision_update(policy) for policy in ("mixed_float16", "mixed_bfloat16")
    }
    return {
        "mixed": mixed,
        "cases": {
            name: {**r, "weights": [w.tolist() for w in r["weights"]]}
            for name, r in records.items()
        },
        "direct": {key: np.asarray(value).tolist() for key, value in direct.items()},
        "devices": len(keras.distribution.list_devices()) if data_parallel else 1,
    }
