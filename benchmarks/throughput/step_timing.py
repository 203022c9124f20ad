"""Throughput of the pretraining step and of the two-view augmentation, on
this machine (`benchmarks/throughput/benchmark.py`).

Speeds differ several-fold between machines of the same kind, so compare
configurations measured side by side, and read them with the CPU model and
AVX-512 support that `utils.provenance.cpu_model` records.
"""

import re
import resource
import time

import keras
import numpy as np
import tensorflow as tf

from keras_directcopy import configs
from keras_directcopy.data import augment
from keras_directcopy.data import datasets as data
from keras_directcopy.models.backbones import build_backbone
from keras_directcopy.models.non_contrastive import NonContrastiveModel
from keras_directcopy.models.predictors import DIRECT_METHODS
from keras_directcopy.training.loop import build_model


def measure(backbone, predictor, input_kind, xla, batch_size, warmup_steps, steps, dataset, data_dir,
            recipe=None, fused_batchnorm=True, steps_per_execution=1, batched_augmentation=None):
    """Times the pretraining step of one configuration in this process.

    Args:
        backbone: a backbone name.
        predictor: a predictor mode (`models.predictors.PREDICTOR_NAMES`).
        input_kind: `"synthetic"` (one random batch, repeated: costs nothing
            to produce) or `"real"` (the augmented pipeline of `dataset`).
        xla: compile the train step with XLA.
        batch_size: global batch size.
        warmup_steps: untimed steps first (compilation included).
        steps: timed steps.
        dataset, data_dir: the dataset of the image size and of real input.
        recipe: a `configs.CONFIGS` name: build the model and optimizer as
            `scripts/pretrain.py --config=recipe` does (its weight decay,
            target, predictor settings, lr and momentum), with `backbone` and
            `predictor`; by default the model's defaults and SGD(0.01, 0.9).
        fused_batchnorm: BatchNorm with TensorFlow's fused kernel (the
            default of training) or Keras' op-by-op path
            (`models.fused_batchnorm`).
        steps_per_execution: train steps per call of the compiled train
            function (Keras' `compile(steps_per_execution=...)`, the
            `--steps_per_execution` of pretraining); `warmup_steps` and
            `steps` must be multiples of it.
        batched_augmentation: real input augmented by the batch (True), by
            the image (False) or, None, by the batch where supported
            (`data.pretrain_dataset`).

    Returns:
        A dict: the configuration, `pairs_per_s`, `step_ms`, `update_percent`
        (the direct predictor's update timed alone, compiled the same way, as a
        percentage of a step; None for other predictors), `peak_mb` and
        `memory_kind` (the GPU allocator's peak, or the process's peak
        resident set size on a CPU, which includes the TensorFlow runtime).
    """
    if warmup_steps % steps_per_execution or steps % steps_per_execution or not warmup_steps:
        raise ValueError(
            f"warmup_steps={warmup_steps} and steps={steps} must be multiples of steps_per_execution="
            f"{steps_per_execution} (and warmup_steps at least one of them): the timer runs per execution.")
    on_jax = keras.backend.backend() == "jax"
    if on_jax:
        # JAX runs the step through XLA (`jax.jit`); it has no fused BatchNorm
        # kernel switch: Keras' BatchNormalization, compiled.
        xla, fused_batchnorm = True, False
    keras.utils.set_random_seed(0)
    size = data.get_dataset_spec(dataset).image_size
    if recipe:
        config = configs.get_config(
            recipe, backbone=backbone, predictor=predictor, fused_batchnorm=fused_batchnorm
        )
        model = build_model(config, size, total_steps=warmup_steps + steps)
        optimizer = keras.optimizers.SGD(config.lr, momentum=config.momentum)
    else:
        model = NonContrastiveModel(
            build_backbone(backbone, (size, size, 3)), predictor=predictor, fused_batchnorm=fused_batchnorm
        )
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    model.compile(optimizer, jit_compile=xla, steps_per_execution=steps_per_execution)
    if input_kind == "synthetic":
        batch = np.random.default_rng(0).integers(0, 256, (batch_size, 2, size, size, 3), np.uint8)
        inputs = tf.data.Dataset.from_tensors(batch).repeat()
    else:
        augmenter = augment.TwoViewAugmenter(augment.get_preset(dataset))
        inputs = data.pretrain_dataset(
            dataset, data_dir, batch_size, augmenter, batched_augmentation=batched_augmentation
        ).repeat()

    times = []

    def record_time(batch, logs):
        # Reading the loss waits for the step to finish: JAX dispatches
        # steps asynchronously, and TensorFlow's are done by now anyway.
        float(keras.ops.convert_to_numpy(logs["loss"]))
        times.append(time.perf_counter())

    timer = keras.callbacks.LambdaCallback(on_train_batch_end=record_time)
    model.fit(inputs, epochs=1, steps_per_epoch=warmup_steps + steps, callbacks=[timer], verbose=0)
    # One time per execution of `steps_per_execution` steps.
    step_seconds = (times[-1] - times[warmup_steps // steps_per_execution - 1]) / steps

    update_percent = None
    if predictor in DIRECT_METHODS:
        features = np.random.default_rng(1).normal(
            size=(2 * batch_size, model.predictor.correlation.shape[0])
        ).astype(np.float32)
        update = _compiled_update(model.predictor, xla)
        for _ in range(3):
            update(features)
        repeats = 50
        start = time.perf_counter()
        for _ in range(repeats):
            update(features)
        update_percent = 100 * (time.perf_counter() - start) / repeats / step_seconds

    if tf.config.list_physical_devices("GPU"):
        peak_mb = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        memory_kind = "GPU peak"
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        memory_kind = "process peak RSS"
    return dict(
        backend=keras.backend.backend(), backbone=backbone, predictor=predictor, input=input_kind, xla=xla,
        batchnorm="fused" if fused_batchnorm else "keras", steps_per_execution=steps_per_execution,
        augmentation={True: "batch", False: "image"}.get(batched_augmentation, "auto"),
        pairs_per_s=batch_size / step_seconds, step_ms=1000 * step_seconds,
        update_percent=update_percent, peak_mb=peak_mb, memory_kind=memory_kind,
    )


def _compiled_update(predictor, xla):
    """`predictor.update(features)`, compiled as the train step compiles it,
    as a function that returns when the update is done.

    TensorFlow: a `tf.function` (with XLA when `xla`). JAX: the stateless
    update under `jax.jit`, as `models/train_step_jax.py` runs it, with the
    state carried from call to call.
    """
    if keras.backend.backend() != "jax":
        return tf.function(predictor.update, jit_compile=xla)
    import jax

    variables = predictor.non_trainable_variables

    def stateless_update(values, features):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            predictor.update(features)
        return [scope.get_current_value(variable) for variable in variables]

    jitted = jax.jit(stateless_update)
    state = [variable.value for variable in variables]

    def update(features):
        state[:] = jax.block_until_ready(jitted(state, features))

    return update


def augmenter_throughput(augmenter, input_size, images, repeats, batched=False):
    """Times `augmenter` in a parallel `tf.data` map over random uint8 images.

    Args:
        augmenter: a `TwoViewAugmenter` (or any callable, one uint8
            `(H, W, 3)` image to its two views, when not `batched`).
        input_size: side of the square source images.
        images: images per timed pass.
        repeats: timed passes, after an untimed warm-up (tracing, autotuning).
        batched: map `augmenter.augment_batch` over batches of 256 images,
            as `data.pretrain_dataset` does where it can, rather than
            `augmenter` over single images batched afterwards.

    Returns:
        One dict per pass: `pairs_per_s` (wall time) and `pairs_per_cpu_s`
        (CPU time of this process).
    """
    sources = np.random.default_rng(0).integers(0, 256, (512, input_size, input_size, 3), np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices(sources).repeat().take(images)
    if batched:
        dataset = dataset.batch(256).map(augmenter.augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(augmenter, num_parallel_calls=tf.data.AUTOTUNE).batch(256)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    for _ in dataset.take(4):
        pass
    results = []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        pairs = sum(int(batch.shape[0]) for batch in dataset)
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
        results.append(dict(pairs_per_s=pairs / wall, pairs_per_cpu_s=pairs / cpu))
    return results


def table(results):
    """A Markdown table of `measure` results, each row checked against the
    targets: real input at least 90% of synthetic throughput, and the
    DirectCopy update under 1% of a step."""
    def key(result):
        return (result.get("backend", "tensorflow"), result["backbone"], result["predictor"],
                result["xla"], result.get("batchnorm"))

    synthetic = {key(r): r["pairs_per_s"] for r in results if r["input"] == "synthetic"}
    rows = [
        "| backend | backbone | predictor | input | XLA | BatchNorm | pairs/s | ms/step | real/synthetic | predictor update (% of step) | peak memory (MB) | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        notes = []
        ratio = ""
        reference = synthetic.get(key(r))
        if r["input"] == "real" and reference:
            ratio = f"{100 * r['pairs_per_s'] / reference:.0f}%"
            if r["pairs_per_s"] < 0.9 * reference:
                notes.append("MISSED: real < 90% of synthetic")
        update = "" if r["update_percent"] is None else f"{r['update_percent']:.2f}%"
        if r["predictor"] == "directcopy" and r["update_percent"] is not None and r["update_percent"] >= 1:
            notes.append("MISSED: DirectCopy update >= 1%")
        input_kind = r["input"]
        if input_kind == "real" and r.get("augmentation", "auto") != "auto":
            input_kind += {"batch": ", by batch", "image": ", per image"}[r["augmentation"]]
        rows.append(
            f"| {r.get('backend', 'tensorflow')} | {r['backbone']} | {r['predictor']} | {input_kind} "
            f"| {'on' if r['xla'] else 'off'} "
            f"| {r.get('batchnorm', 'keras')} | {r['pairs_per_s']:.1f} | {r['step_ms']:.0f} | {ratio} | {update} "
            f"| {r['peak_mb']:.0f} | {'; '.join(notes) or 'ok'} |"
        )
    return "\n".join(rows)


def peer_table(rows):
    """A Markdown table of our step against its PyTorch peer, per backbone:
    every measurement in the order it was taken, the best of each, the
    ratio of our best to the peer's best (> 1: ours is faster), and the peak
    memory of those two (the process's peak RSS on a CPU)."""
    lines = [
        "| backbone | ours: pairs/s (XLA on / off, BatchNorm kernel, each round) | PyTorch: pairs/s (mode, each round) "
        "| ours best | PyTorch best | ours / PyTorch | peak RSS (MB), ours best / PyTorch best |",
        "|---|---|---|---|---|---|---|",
    ]
    for backbone, ours, theirs in rows:
        best_ours = max(ours, key=lambda result: result["pairs_per_s"])
        best_theirs = max(theirs, key=lambda result: result["pairs_per_s"])
        ours_text = ", ".join(
            "{:.1f} ({}, {})".format(result["pairs_per_s"], "on" if result["xla"] else "off",
                                     result.get("batchnorm", "keras"))
            for result in ours
        )
        theirs_text = ", ".join("{:.1f} ({})".format(result["pairs_per_s"], result["mode"]) for result in theirs)
        lines.append(
            f"| {backbone} | {ours_text} | {theirs_text} | {best_ours['pairs_per_s']:.1f} "
            f"| {best_theirs['pairs_per_s']:.1f} ({best_theirs['mode']}) "
            f"| {best_ours['pairs_per_s'] / best_theirs['pairs_per_s']:.2f} "
            f"| {best_ours['peak_mb']:.0f} / {best_theirs['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


# Where `profile_step` files each op, by its name scope, first match wins.
_PROFILE_CATEGORIES = (
    # The name scopes of the TensorFlow train step's parts outside the networks (models/train_step_tensorflow.py).
    ("the F and W_p update", re.compile(r"(^|/)predictor_update(_\d+)?/")),
    ("target EMA update", re.compile(r"(^|/)target_ema(_\d+)?/")),
    ("weight decay", re.compile(r"(^|/)weight_decay(_\d+)?/")),
    ("metrics", re.compile(r"(^|/)metrics(_\d+)?/")),
    ("convolutions", re.compile(r"/convolution")),
    ("BatchNorm", re.compile(r"(^|/)(\w+_)?bn\d?(_\d+)?/")),
    ("predictor's prediction", re.compile(r"predictor")),
    ("optimizer (SGD)", re.compile(r"/SGD/|/sgd/")),
    ("other forward and backward (ReLU, add, pooling, dense, loss)",
     re.compile(r"resnet\d+|projector|target_encoder|target_projector|gradient_tape")),
)
OTHER_CATEGORY = "the rest (ops outside the name scopes above)"


def profile_step(backbone, batch_size, steps, recipe="cifar10_resnet20", warmup_steps=3, logdir=None,
                 fused_batchnorm=True):
    """Where the time of our training step goes, by the TensorFlow profiler.

    Trains `steps` steps of `recipe` (with `backbone`) on one random batch,
    repeated, under `tf.profiler`, and files the time of every TensorFlow op
    run on the CPU by its name scope: convolutions, BatchNorm, the predictor's
    prediction, the optimizer, the rest of the forward and backward passes,
    the F and W_p update, the target's EMA update, weight decay, the metrics,
    and the remainder. Shares are of the summed op time over all compute
    threads.

    Args:
        backbone: a backbone name.
        batch_size, steps, warmup_steps: as `measure`.
        recipe: a `configs.CONFIGS` name.
        logdir: where the profiler writes its trace (a temporary directory
            by default, removed afterwards).
        fused_batchnorm: as `measure`.

    Returns:
        `{"op_seconds": float, "categories": {name: share}, "op_types":
        {op type: share}}`, shares in [0, 1], largest first.
    """
    import collections
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    keras.utils.set_random_seed(0)
    config = configs.get_config(recipe, backbone=backbone, fused_batchnorm=fused_batchnorm)
    size = data.get_dataset_spec(config.dataset).image_size
    model = build_model(config, size, total_steps=warmup_steps + steps)
    model.compile(keras.optimizers.SGD(config.lr, momentum=config.momentum), jit_compile=False)
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, 2, size, size, 3), np.uint8)
    inputs = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(inputs, epochs=1, steps_per_epoch=warmup_steps, verbose=0)
    with tempfile.TemporaryDirectory() as temporary:
        logdir = logdir or temporary
        tf.profiler.experimental.start(logdir)
        model.fit(inputs, epochs=1, steps_per_epoch=steps, verbose=0)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1], "rb") as file:
            space.ParseFromString(file.read())
    categories, op_types = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if "host:CPU" not in plane.name:
            continue
        names = {key: metadata.name for key, metadata in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the threads that run the ops
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" not in name or "::" in name:  # executor bookkeeping (ExecutorState::Process), not an op
                    continue
                scope, op_type = name.rsplit(":", 1)
                seconds = event.duration_ps / 1e12
                op_types[op_type] += seconds
                category = next((label for label, pattern in _PROFILE_CATEGORIES if pattern.search(scope)),
                                OTHER_CATEGORY)
                categories[category] += seconds
    total = sum(categories.values())
    return {
        "op_seconds": total,
        "categories": {name: seconds / total for name, seconds in categories.most_common()},
        "op_types": {name: seconds / total for name, seconds in op_types.most_common()},
    }


def onednn_kernel_times(verbose_output, steps):
    """oneDNN's own time per kind of primitive, read from its verbose log.

    With `ONEDNN_VERBOSE=1`, oneDNN (the convolution and BatchNorm library
    inside both TensorFlow's and PyTorch's CPU builds) prints a line per
    primitive it executes, ending with its wall time in milliseconds:
    ``onednn_verbose,v1,primitive,exec,cpu,KIND,IMPLEMENTATION,PROPAGATION,...,TIME``.
    Summing them per kind and propagation shows, for two frameworks running
    the same step, whether they ran the same kernels for the same time.

    Args:
        verbose_output: a process's standard output, as text; lines that are
            not oneDNN execution records are ignored.
        steps: the training steps the process ran (warm-up included), to
            give times and calls per step.

    Returns:
        `{"KIND PROPAGATION": {"ms": per step, "calls": per step,
        "implementations": [names]}}`, largest time first (a reorder's
        propagation is "undef": it is then left out of the name).
    """
    times, calls, implementations = {}, {}, {}
    for line in verbose_output.splitlines():
        fields = line.strip().split(",")
        if fields[0] != "onednn_verbose" or "exec" not in fields[:4]:
            continue
        at = fields.index("exec")
        # exec, engine, kind, implementation, propagation, ..., time.
        kind, implementation, propagation = fields[at + 2:at + 5]
        name = kind if propagation == "undef" else f"{kind} {propagation}"
        times[name] = times.get(name, 0.0) + float(fields[-1])
        calls[name] = calls.get(name, 0) + 1
        implementations.setdefault(name, set()).add(implementation)
    return {
        name: {"ms": times[name] / steps, "calls": calls[name] / steps,
               "implementations": sorted(implementations[name])}
        for name in sorted(times, key=times.get, reverse=True)
    }
