"""End-to-end pretraining: data, model, strategy, resume, monitoring, outputs.

`scripts/pretrain.py` is a command-line wrapper around `pretrain()`.
"""

import dataclasses
import json
import os

import keras

from keras_directcopy import configs
from keras_directcopy.data import augment
from keras_directcopy.data import datasets as data
from keras_directcopy.evaluation.knn import KNNMonitor, knn_accuracy
from keras_directcopy.models.backbones import build_backbone
from keras_directcopy.models.non_contrastive import NonContrastiveModel
from keras_directcopy.models.predictors import DIRECT_METHODS
from keras_directcopy.training import strategies
from keras_directcopy.training.callbacks import (
    EndAfterEpoch,
    ResumableBackup,
    TimeEstimate,
    non_finite_loss_error,
    write_weights,
)
from keras_directcopy.training.preemption import BackupOnPreemption, PreemptionNotice, RunInterrupted, WorkerLost
from keras_directcopy.training.run_log import RunLog, hardware_parts, learning_rate
from keras_directcopy.utils.files import atomic_save_all, atomic_write_text
from keras_directcopy.utils.provenance import git_commit, hardware_summary
from keras_directcopy.utils.run_lock import claim_output_dir

EVAL_BATCH_SIZE = 256
# The time estimate (`callbacks.TimeEstimate`): the first steps, which trace
# and compile, are not timed; the next ones are.
SKIPPED_STEPS = 3
TIMED_STEPS = 20


def pretrain(config, output_dir, strategy="default", tpu=None, verbose="auto", command=None,
             stop_at_epoch=None, recipe=None):
    """Pretrains an encoder as `config` says and writes it to `output_dir`.

    Writes `encoder.keras`, `encoder.weights.h5` and `run.json` (config,
    commands, git commit, hardware, wall-clock and CPU time of the whole run
    across resumes, final metrics), the per-epoch `history.jsonl` (see
    `run_log`), TensorBoard logs in `tensorboard/` and the resumable backup
    in `backup/`. Re-running the same call after an interruption resumes
    from the backup.

    Before the first step it prints the plan (`training_plan`): dataset,
    backbone and width, image size, epochs, steps per epoch, in all and
    still to run, global batch, strategy and replicas, output directory.
    Unless `verbose` is 0, a `callbacks.TimeEstimate` then prints once,
    after the first timed steps, the seconds per step and the estimated
    time of the steps that remain.

    The call holds `output_dir` (`utils.run_lock`): another process that
    pretrains into it meanwhile is refused. SIGTERM during training backs
    the run up at the next step boundary and raises `Preempted`
    (`preemption`); in a multi-worker run, a worker that stops makes the
    others raise `WorkerLost`. Either way, the same call resumes from the
    backup. For a `folder:` dataset, run.json's config records as
    `dataset` what `data.dataset_record` does: the name of the known dataset
    the folder is identified as (e.g. `imagenette`), else `folder:/abs/path`;
    `data_folder` is the folder's absolute path, and `image_size` the size
    measured from its images unless the config sets one.

    Args:
        config: a `PretrainConfig`.
        output_dir: where outputs go (created).
        strategy: a name of `strategies.STRATEGY_NAMES`, or a strategy.
        tpu: TPU name or address for `strategy="tpu"`.
        verbose: Keras `fit()` verbosity.
        command: the command line that started this call, for `run.json`.
        stop_at_epoch: end this call after this epoch (and its kNN
            evaluation), with the learning-rate and EMA schedules still
            spanning `config.epochs`: a budgeted part of a long run. Its
            `run.json` says so (`epochs_done` below `config.epochs`); the
            same call without it continues from the backup, and the finished
            run is the one an uninterrupted call gives. None: train to the end.
        recipe: where `config` comes from, for the plan (e.g.
            `--config=quickstart`); None: not printed.

    Returns:
        The dict written to `run.json`.

    Raises:
        NonFiniteLossError: if the loss became NaN or infinite.
        preemption.Preempted: on SIGTERM, once the backup is written.
        preemption.WorkerLost: when another worker of a multi-worker run
            stopped.
        utils.files.WriteFailed: a write failed (a full disk); the file it
            was replacing, the backup among them, is as it was.
        utils.run_lock.OutputDirError: `output_dir` is a file, cannot be
            written, or another process holds it (`OutputDirInUse`).
        ValueError, FileNotFoundError: on bad configuration or missing data,
            before any training.
    """
    if stop_at_epoch is not None and not 1 <= stop_at_epoch:
        # Before the run log, so a bad value leaves nothing in output_dir.
        raise ValueError(f"--stop_at_epoch={stop_at_epoch} is invalid: it must be an epoch, 1 or more.")
    # Before anything is written there, and before the strategy is made: a
    # second run is refused at once.
    with claim_output_dir(output_dir, task=strategies.non_chief_task(strategy), command=command), \
            PreemptionNotice() as notice:
        return _pretrain_holding(config, output_dir, strategy, tpu, verbose, command, stop_at_epoch, notice,
                                 recipe)


def _pretrain_holding(config, output_dir, strategy, tpu, verbose, command, stop_at_epoch, notice, recipe):
    """`pretrain`, holding `output_dir` and watching for preemption (`notice`)."""
    run_log = RunLog(output_dir, command=command, git_commit=git_commit(),
                     hardware=hardware_summary())  # its clock starts now
    # `config` checked its own fields when it was made, before any data is
    # read or model built.
    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(config.mixed_precision)
    try:
        strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
        if isinstance(strategy, str):
            strategy = strategies.make_strategy(strategy, tpu=tpu)
        notice.install()  # again: a multi-worker strategy replaces the SIGTERM handler
        with strategies.run_scope(strategy):
            return _pretrain(config, output_dir, strategy, strategy_name, verbose, run_log, stop_at_epoch,
                             notice, recipe)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _pretrain(config, output_dir, strategy, strategy_name, verbose, run_log, stop_at_epoch, notice, recipe):
    """`pretrain`, under the dtype policy and in the run scope it has set."""
    # The epoch this call ends after; the schedules still span config.epochs.
    last_epoch = min(config.epochs, stop_at_epoch or config.epochs)
    keras.utils.set_random_seed(config.seed)
    # None: the dataset's size; a folder's is measured from its images (and printed).
    # Resolved once: the pipelines below take the spec.
    spec = data.get_dataset_spec(config.dataset, image_size=config.image_size)
    image_size = config.image_size or spec.image_size
    print(f"Training at {image_size} x {image_size} px"
          + (" (--image_size)." if config.image_size else f" (the default of {config.dataset})."))
    # A folder is recorded as the known dataset it is (Imagenette), by content.
    identity = data.identify_dataset(config.dataset)
    dataset_record = identity.record
    if identity.description:
        print(identity.description)
    preset = "folder" if spec.folder else spec.name
    augmenter = augment.TwoViewAugmenter(augment.get_preset(preset, image_size=image_size))

    examples = data.num_examples(spec, config.data_dir, spec.pretrain_split)
    steps_per_epoch = config.steps_per_epoch or examples // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"--batch_size={config.batch_size} is larger than the {examples} pretraining "
            f"images of {config.dataset}: lower it."
        )
    total_steps = config.epochs * steps_per_epoch
    # Synchronized BatchNorm under a multi-replica tf.distribute strategy.
    # (Under JAX's DataParallel the statistics are of the global batch already.)
    synchronized_bn = strategy.num_replicas_in_sync > 1 and not isinstance(strategy, strategies.JAXStrategy)

    with strategy.scope():
        model = build_model(config, image_size, total_steps, synchronized_bn=synchronized_bn)
        model.compile(
            optimizer=build_optimizer(config, steps_per_epoch, total_steps),
            jit_compile=strategies.use_xla(strategy, config.jit_compile),
            steps_per_execution=config.steps_per_execution,
        )

    def dataset_fn(input_context=None):
        return data.pretrain_dataset(
            spec, config.data_dir, config.batch_size, augmenter,
            seed=config.seed, input_context=input_context,
        ).repeat()

    if strategies.needs_distributed_dataset(strategy):
        train_data = strategy.distribute_datasets_from_function(dataset_fn)
    else:
        train_data = dataset_fn()

    chief = strategies.is_chief(strategy)  # output_dir exists: pretrain claimed it
    backup = ResumableBackup(
        os.path.join(output_dir, "backup"), save_freq=_save_freq(config.save_freq), write=chief
    )
    run_log.write = chief
    # Its message names the batch; the error raised after fit() names the
    # step and what to try.
    callbacks = [keras.callbacks.TerminateOnNaN()]
    knn_data = None
    # Monitoring reads and writes only on the chief; the other workers of a
    # multi-worker run just train.
    if chief and spec.labelled and config.knn_every > 0:
        knn_data = tuple(
            data.evaluation_dataset(spec, config.data_dir, split, EVAL_BATCH_SIZE, image_size)
            for split in ("train", "test")
        )
        callbacks.append(
            KNNMonitor(*knn_data, spec.num_classes, every_epochs=config.knn_every,
                       total_epochs=last_epoch, k=config.knn_k)
        )
    # After the kNN monitor, so each epoch's record holds its accuracy, and
    # before the backup, so an epoch is never backed up without its record.
    callbacks += [run_log, backup]

    def preempted_message(step):
        cause = notice.signal_name or "a preemption signal to another worker"
        return (f"Stopped by {cause} at step {step} of {total_steps}, backed up in {backup.path}: run the "
                "same command to resume from this step.")

    # After the backup, which it reuses when that has just saved this step.
    callbacks.append(BackupOnPreemption(notice, backup, strategies.any_worker(strategy), preempted_message))
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")))

    run_log.recipe = recipe_record(config, identity, image_size)
    if os.path.exists(backup.path):
        run_log.check_recipe()  # before the backup is restored, or overwritten
    with strategy.scope():  # restoring builds the optimizer's variables, which belong to the strategy
        done = backup.restore(model)
    run_log.start(resumed=bool(done), step=done)
    if done:
        print(f"Resuming from the backup at step {done} of {total_steps}.")
    to_run = max(last_epoch * steps_per_epoch - done, 0)
    print(training_plan(
        recipe=recipe, dataset=dataset_record["dataset"], examples=examples, split=spec.pretrain_split,
        backbone=config.backbone, width_multiplier=config.width_multiplier,
        parameters=int(model.encoder.count_params()), image_size=image_size, epochs=config.epochs,
        last_epoch=last_epoch, steps_per_epoch=steps_per_epoch, done=done, to_run=to_run,
        batch_size=config.batch_size, strategy=strategy_name, replicas=strategy.num_replicas_in_sync,
        output_dir=output_dir,
    ), flush=True)
    if verbose != 0:
        # After a progress bar's partial line (verbose 1), on a line of its own.
        newline = "\n" if verbose in (1, "auto") else ""
        # A window within the first epoch, where an epoch is short.
        timed_steps = max(1, min(TIMED_STEPS, steps_per_epoch - SKIPPED_STEPS - 1))
        callbacks.append(TimeEstimate(to_run, skip_steps=SKIPPED_STEPS, timed_steps=timed_steps,
                                      print_fn=lambda line: print(newline + line, flush=True)))
    logs = {}
    try:
        for initial_epoch, end_epoch, steps in _remaining_fits(done, steps_per_epoch, last_epoch):
            # `epochs` is the whole run's, for the progress bar ("Epoch 3/90");
            # EndAfterEpoch ends this fit at its own last epoch.
            history = model.fit(
                train_data, initial_epoch=initial_epoch, epochs=config.epochs, steps_per_epoch=steps,
                callbacks=[*callbacks, EndAfterEpoch(end_epoch)], verbose=verbose, shuffle=False,
            )
            logs.update({key: values[-1] for key, values in history.history.items()})
            error = non_finite_loss_error(logs, int(model.optimizer.iterations.numpy()), config.lr)
            if error:
                raise error
    except RunInterrupted:
        run_log.flush()  # the run's cost up to here
        raise
    except strategies.lost_worker_errors(strategy) as error:
        run_log.flush()
        step = int(model.optimizer.iterations.numpy())
        named = strategies.tasks_named_in(error)
        raise WorkerLost(
            f"A worker of this multi-worker run stopped or cannot be reached ({type(error).__name__}"
            f"{', naming ' + ' and '.join(named) if named else ''}), at step {step}. Start every worker "
            f"again with the same command: the run resumes from its last backup ({backup.path}), "
            "redoing at most --save_freq steps.",
            step,
        ) from error

    final = {key: _plain(value) for key, value in logs.items()}
    if logs:
        final["lr"] = learning_rate(model.optimizer)
    if "knn_accuracy" not in final and knn_data is not None:
        # Nothing trained in this call (already finished): evaluate the encoder as it is.
        final["knn_accuracy"] = knn_accuracy(model.encoder, *knn_data, spec.num_classes, k=config.knn_k)
    run_log.flush()
    run = {
        # `dataset` as recorded: a folder identified as a known dataset by its
        # name; the commands keep what was passed, and `data_folder` the folder.
        "config": {**dataclasses.asdict(config), "dataset": dataset_record["dataset"]},
        **({"data_folder": dataset_record["data_folder"]} if "data_folder" in dataset_record else {}),
        "commands": [entry["command"] for entry in run_log.progress["invocations"]],
        # What the run trains (every invocation that recorded it trained the
        # same: `RunLog.check_recipe`), and which invocations recorded it.
        "recipe": run_log.recipe,
        "recipe_recorded": [entry.get("recipe") is not None for entry in run_log.progress["invocations"]],
        "strategy": strategy_name,
        "backend": keras.backend.backend(),
        "num_replicas": strategy.num_replicas_in_sync,
        "steps": int(model.optimizer.iterations.numpy()),
        "steps_per_epoch": steps_per_epoch,
        "pretrain_examples": examples,
        "image_size": image_size,  # the size trained at, also when chosen from the data
        "encoder_parameters": int(model.encoder.count_params()),
        "feature_dim": int(model.encoder.output_shape[-1]),
        # The eps the direct predictor used: the config's, or the method's
        # default of this commit when the config leaves it unset (defaults
        # may change later; a model card states this value).
        "predictor_eps": _predictor_eps(model),
        "final_metrics": final,
        "epochs_done": int(model.optimizer.iterations.numpy()) // steps_per_epoch,
        "wall_time_s": round(run_log.progress["wall_time_s"], 1),
        "cpu_time_s": round(run_log.progress["cpu_time_s"], 1),
        "invocations": len(run_log.progress["invocations"]),
        "git_commit": run_log.git_commit,
        # One per invocation; a run started before this field existed has None there.
        "git_commits": [entry.get("git_commit") for entry in run_log.progress["invocations"]],
        "hardware": run_log.hardware,  # this invocation's machine
        # The machine and cost of each part of a run resumed on other machines.
        "hardware_parts": hardware_parts(run_log.progress),
    }
    if chief:
        save_encoder(model.encoder, output_dir)
        atomic_write_text(os.path.join(output_dir, "run.json"), json.dumps(run, indent=2))
    return run


def training_plan(*, recipe, dataset, examples, split, backbone, width_multiplier, parameters, image_size,
                  epochs, last_epoch, steps_per_epoch, done, to_run, batch_size, strategy, replicas,
                  output_dir):
    """The plan `pretrain` prints before the first step: one block of
    `name: value` lines, the recipe's first when `recipe` is given.

    Args:
        recipe: where the config comes from (`--config=...`), or None.
        dataset: the dataset as recorded (`data.dataset_record`).
        examples, split: pretraining images and the split they are from.
        backbone, width_multiplier, parameters: the encoder.
        image_size: the size trained at.
        epochs: the run's; `last_epoch` the one this call ends after.
        steps_per_epoch: steps of one epoch; `done` those already run (a
            resumed run), `to_run` those this call runs.
        batch_size: the global batch, split over `replicas`.
        strategy: the strategy's name.
        output_dir: where the outputs go.
    """
    total = epochs * steps_per_epoch
    steps = f"{steps_per_epoch:,} per epoch, {total:,} in all"
    if done:
        steps += f"; {to_run:,} to run, from step {done:,} (resumed)"
    elif to_run != total:
        steps += f"; {to_run:,} to run"
    rows = [
        *([("recipe", recipe)] if recipe else []),
        ("dataset", f"{dataset} ({examples:,} images, {split})"),
        ("backbone", f"{backbone}, width {width_multiplier:g} ({parameters:,} parameters)"),
        ("image size", f"{image_size} x {image_size} px"),
        ("epochs", f"{epochs}" + (f" (this run stops after epoch {last_epoch}: --stop_at_epoch)"
                                  if last_epoch < epochs else "")),
        ("steps", steps),
        ("global batch", f"{batch_size}" + (f" ({batch_size / replicas:g} per replica)" if replicas > 1 else "")),
        ("strategy", f"{strategy}, {replicas} replica{'s' if replicas != 1 else ''}"),
        ("output dir", os.path.abspath(output_dir)),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(["Plan:", *(f"  {name + ':':<{width + 1}} {value}" for name, value in rows)])


def recipe_record(config, identity, image_size):
    """What a run trains, as each of its invocations records it
    (`RunLog.check_recipe` refuses to resume under another): the config's
    `configs.recipe_fields`, the image size trained at, and the dataset as
    `data.identify_dataset` identifies it, a folder by its contents rather
    than its path (a run may move to another machine, its data with it).

    Args:
        config: a `PretrainConfig`.
        identity: `data.identify_dataset(config.dataset)`.
        image_size: the image size trained at.
    """
    dataset = identity.record["dataset"]
    if dataset.startswith(data.FOLDER_PREFIX):
        dataset = data.FOLDER_PREFIX  # a folder not identified as a known dataset: its path may change
    return {**configs.recipe_fields(config), "dataset": dataset, "image_size": image_size,
            configs.DATASET_CONTENTS_KEY: identity.contents_sha256}


def build_model(config, image_size, total_steps, synchronized_bn=False):
    """The `NonContrastiveModel` a config describes (call inside the strategy
    scope, and under the config's mixed-precision policy, if any)."""
    encoder = build_backbone(
        config.backbone, (image_size, image_size, 3),
        width_multiplier=config.width_multiplier, synchronized_bn=synchronized_bn,
    )
    options = None
    if config.predictor in DIRECT_METHODS:
        options = dict(
            rho=config.rho, eps=config.eps, alpha=config.alpha,
            normalization=config.normalization, update_every=config.update_every,
            update_order=config.update_order,
        )
    elif config.predictor == "linear":
        options = dict(symmetric=config.linear_symmetric, initializer=config.linear_initializer)
    return NonContrastiveModel(
        encoder, predictor=config.predictor, predictor_options=options,
        projector_hidden_dim=config.projector_hidden_dim, projection_dim=config.projection_dim,
        projector_bn_affine=config.projector_bn_affine,
        tau_base=config.ema, ema_schedule=config.ema_schedule, target_init=config.target_init,
        total_steps=total_steps,
        weight_decay=config.weight_decay, weight_decay_mode=config.weight_decay_mode,
        synchronized_bn=synchronized_bn, fused_batchnorm=config.fused_batchnorm,
        name=config.predictor,
    )


def _predictor_eps(model):
    """The direct predictor's resolved eps, or None for a trained predictor."""
    return float(model.predictor.eps) if model.has_direct_predictor else None


def build_optimizer(config, steps_per_epoch, total_steps):
    """SGD with momentum. With `lr_schedule="warmup_cosine"`, a linear warmup
    to `config.lr` over `warmup_epochs`, then a cosine decay to 0; with
    `"constant"`, `config.lr` throughout (the reference code's)."""
    if config.lr_schedule == "constant":
        return keras.optimizers.SGD(config.lr, momentum=config.momentum)
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), max(total_steps - 1, 0))
    if warmup_steps:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(total_steps - warmup_steps, 1),
            warmup_target=config.lr, warmup_steps=warmup_steps,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=max(total_steps, 1))
    return keras.optimizers.SGD(schedule, momentum=config.momentum)


def save_encoder(encoder, output_dir):
    """Writes `encoder.keras`, `encoder.weights.h5` and the architecture
    `encoder.config.json`, atomically as one (`utils.files.atomic_save_all`),
    always in float32 (see `float32_copy`).

    The architecture file (`backbones.write_architecture`) ships with the
    weights when the encoder becomes a preset (`scripts/register_preset.py`,
    `scripts/publish.py`), so `load_pretrained` rebuilds exactly the trained
    encoder rather than re-deriving it from the code's defaults.
    """
    from keras_directcopy.models.backbones import ARCHITECTURE_FILENAME, write_architecture

    encoder = float32_copy(encoder)
    # All three written before any replaces its predecessor: a write that
    # fails (a full disk) leaves the previous encoder whole.
    atomic_save_all([
        (os.path.join(output_dir, "encoder.keras"), encoder.save),
        (os.path.join(output_dir, "encoder.weights.h5"), lambda path: write_weights(encoder, path)),
        (os.path.join(output_dir, ARCHITECTURE_FILENAME), lambda path: write_architecture(encoder, path)),
    ])


def float32_copy(encoder):
    """`encoder` itself if every layer computes in float32, else a float32
    clone holding the same weights.

    An encoder trained under a mixed-precision policy (`--mixed_precision`)
    keeps float32 variables but computes, and returns features, in
    float16/bfloat16; saved as it is, every later user would get that
    policy (slow on CPUs, and a precision the evaluation never chose). The
    policy is a training choice, so what is saved is float32.
    """
    if all(layer.dtype_policy.name == "float32" for layer in encoder.layers):
        return encoder

    def float32_layer(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(encoder, clone_function=float32_layer)
    copy.set_weights(encoder.get_weights())
    return copy


def _remaining_fits(done_steps, steps_per_epoch, epochs):
    """`(initial_epoch, last_epoch, steps_per_epoch)` of the fit calls still
    to run, the epochs 0-based from and 1-based to, as `fit()` counts them.

    A run interrupted mid-epoch first finishes that epoch's remaining steps,
    then runs the later epochs whole.
    """
    epoch, step_in_epoch = divmod(done_steps, steps_per_epoch)
    fits = []
    if epoch < epochs and step_in_epoch:
        fits.append((epoch, epoch + 1, steps_per_epoch - step_in_epoch))
        epoch += 1
    if epoch < epochs:
        fits.append((epoch, epochs, steps_per_epoch))
    return fits


def _save_freq(value):
    if value == "epoch":
        return "epoch"
    try:
        steps = int(value)
    except (TypeError, ValueError):
        steps = 0
    if steps < 1:
        raise ValueError(f"--save_freq must be 'epoch' or a positive number of steps, got {value!r}.")
    return steps


def _plain(value):
    value = keras.ops.convert_to_numpy(value)
    return float(value.reshape(-1)[0]) if value.size else None
