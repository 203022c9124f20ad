"""Pretrain an encoder with DirectCopy, DirectPred, DirectSet, BYOL or SimSiam.

    python scripts/pretrain.py --config=cifar10_resnet18 --data_dir=~/tensorflow_datasets \
        --output_dir=runs/c10_r18 --strategy=mirrored

Without `--config` it trains the recipe of the shipped preset of the dataset
(`--dataset`, default cifar10): the preset the dataset's alias names, with
the recipe its registry entry records (`training.preset_recipes.default_preset`,
`"pretrain_recipe"` in `zoo/NAME.json`), e.g. for CIFAR-10 that of the
bundled `directcopy_resnet20_cifar10` encoder, 90 epochs. A folder of one's
own images has no preset unless it is identified as a known dataset
(Imagenette), so it needs `--config`; the error says so and lists the
recipes. The recipe's flags are recorded in the command run.json keeps, so
the command reproduces the run if an alias moves to another preset later.
One epoch that checks the pipeline end to end is `--config=quickstart`.

Before the first step the run prints its plan (recipe, dataset, backbone,
image size, epochs, steps, global batch, strategy and replicas, output
directory) and, after its first timed steps, unless `--verbose=0`, the
seconds per step and the estimated time of the steps that remain.

A labelled image folder with the class folders and image counts of a known
folder dataset (Imagenette: fast.ai's imagenette2) is identified as it, and
run.json records its name (`"dataset": "imagenette"` in the config) and the
folder (`"data_folder"`); the command, with the path passed, is recorded as
run. The bare name, `--dataset=imagenette`, is refused: pass the folder.

    python scripts/pretrain.py --config=stl10_resnet18 --dataset=folder:~/imagenette2 \
        --output_dir=runs/imagenette

`--stop_at_epoch=N` ends this invocation after epoch N, with the learning-rate
and EMA schedules still spanning `--epochs`: a budgeted part of a long run
(e.g. the first epochs of each candidate of a pilot). run.json then records
`epochs_done` N; the same command without the flag continues from the
backup, and the flag is left out of the recorded command, since the finished
run is the one an uninterrupted command gives.

    python scripts/pretrain.py --config=cifar10_resnet20 --stop_at_epoch=30 \
        --output_dir=runs/c10_r20

`--config` picks a full recipe (see keras_directcopy/configs.py for each and
its source); the flag of each `PretrainConfig` field, made from the field
(`config_flags.define_flags`), overrides that field of it. Re-running the same
command after an interruption resumes from `<output_dir>/backup`.

One run at a time writes into an output directory: a second command into the
directory of a live run stops at once and names it. On SIGTERM (a preempted
VM, a job scheduler's notice) the run backs up at the next step boundary and
exits with code 75 (`preemption.RESUMABLE_EXIT_CODE`), as does every worker
of a multi-worker run when one of them stops; the same command resumes.

`--backend=jax` trains on Keras' JAX backend (its data pipelines are still
tf.data), with `--strategy=default` or `data_parallel` (all local devices):

    python scripts/pretrain.py --backend=jax --strategy=data_parallel --config=cifar10_resnet18 \
        --data_dir=~/tensorflow_datasets --output_dir=runs/c10_r18_jax
"""

import os
import shlex
import signal
import sys

import runtime_defaults  # noqa: E402,F401 (this folder: TensorFlow's environment, set before it loads)
# utils.backend.PRETRAINING_BACKENDS, spelled out: it is needed before
# Keras (which keras_directcopy imports) fixes the backend of the process.
BACKENDS = ("tensorflow", "jax")


def backend_from_argv(argv):
    """The value of `--backend` in `argv` (`--backend=jax` or `--backend jax`), or None.

    Read before Keras is imported, which fixes the backend of the process.
    """
    for index, argument in enumerate(argv):
        if argument.startswith("--backend="):
            return argument.split("=", 1)[1]
        if argument == "--backend" and index + 1 < len(argv):
            return argv[index + 1]
    return None


if __name__ == "__main__":
    if backend_from_argv(sys.argv[1:]) in BACKENDS:
        os.environ["KERAS_BACKEND"] = backend_from_argv(sys.argv[1:])
    elif backend_from_argv(sys.argv[1:]) is None and os.environ.get("KERAS_BACKEND", BACKENDS[0]) not in BACKENDS:
        # Checked before Keras is imported: the training package refuses other backends.
        sys.exit(
            f"error: pretraining runs on the {' and '.join(BACKENDS)} Keras backends, and "
            f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}. Unset KERAS_BACKEND (TensorFlow is "
            "the default) or pass --backend=jax."
        )

from absl import app, flags, logging  # noqa: E402
from encoder_flags import define_download_flag  # noqa: E402 (this folder)

from keras_directcopy import configs
from keras_directcopy.training import config_flags  # noqa: E402
from keras_directcopy.training.strategies import STRATEGY_NAMES  # noqa: E402


def define_flags(flag_values=flags.FLAGS):
    """Defines the script's own flags in `flag_values`, then one override
    flag per `PretrainConfig` field (`config_flags.define_flags`: name, type and
    help text from the field), so importing the script defines none."""
    flags.DEFINE_enum(
        "config", None, list(configs.CONFIGS),
        "Named recipe; the field flags override it. Unset: the recipe of the shipped preset of "
        "--dataset (the preset its alias names, e.g. cifar10: directcopy_resnet20_cifar10, 90 "
        "epochs); a folder of your own images needs one. quickstart: one epoch, to check the "
        "pipeline.", flag_values=flag_values,
    )
    flags.DEFINE_string(
        "output_dir", None, "Where the encoder, run.json, logs and backup go.", required=True,
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "backend", None, list(BACKENDS),
        "Keras backend to train on (default: KERAS_BACKEND, else tensorflow). The data "
        "pipelines are tf.data on both.", flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "strategy", "default", list(STRATEGY_NAMES),
        "Distribution: default, one_device, mirrored, multi_worker, tpu (tf.distribute, on "
        "TensorFlow); default, data_parallel (keras.distribution over the local devices, on JAX).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "tpu", None, "TPU name or grpc:// address for --strategy=tpu.", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "logical_cpus", None,
        "Split the CPU into this many logical devices (to run --strategy=mirrored on a CPU-only machine).",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "verbose", "auto", ["auto", "0", "1", "2"], "Keras fit() verbosity.", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "stop_at_epoch", None,
        "End this invocation after this epoch; the schedules still span --epochs, and the same "
        "command without it continues from the backup.", lower_bound=1, flag_values=flag_values,
    )
    define_download_flag(flag_values)
    config_flags.define_flags(flag_values)


def recorded_command(argv, recipe_flags=()):
    """The command run.json records: `argv` without `--stop_at_epoch`, which
    only says when an invocation ends (as an interruption would), so every
    part of a run records the same command; `recipe_flags` (the default
    recipe's `--config` and field flags, when `argv` names none) come first,
    so the command names its recipe and later flags still override it."""
    kept, skip_value = list(recipe_flags), False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg in ("--stop_at_epoch", "-stop_at_epoch"):
            skip_value = True  # absl also reads "--flag VALUE"
        elif not arg.startswith(("--stop_at_epoch=", "-stop_at_epoch=")):
            kept.append(arg)
    return shlex.join(["python", "scripts/pretrain.py", *kept])


FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # tfds logs every file it opens
    import keras

    if FLAGS.backend and keras.backend.backend() != FLAGS.backend:
        # Keras was imported with another backend before the flag was read.
        raise app.UsageError(
            f"--backend={FLAGS.backend}, but Keras runs on {keras.backend.backend()!r} in this "
            f"process; run with KERAS_BACKEND={FLAGS.backend} set."
        )
    if FLAGS.logical_cpus:
        import tensorflow as tf

        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * FLAGS.logical_cpus,
        )
    from keras_directcopy.data.datasets import ensure_prepared
    from keras_directcopy.training.callbacks import NonFiniteLossError
    from keras_directcopy.training.loop import pretrain
    from keras_directcopy.training.preemption import RESUMABLE_EXIT_CODE, RunInterrupted, WorkerLost
    from keras_directcopy.training.strategies import end_process, non_chief_task
    from keras_directcopy.utils.files import WriteFailed
    from keras_directcopy.utils.run_lock import claim_output_dir

    output_dir = os.path.expanduser(FLAGS.output_dir)
    try:
        recipe = config_flags.recipe_from_flags(FLAGS.config, FLAGS)
        config = recipe.config
        command = recorded_command(sys.argv[1:], recipe.flags if recipe.preset else ())
        # Claimed before the data is prepared (perhaps downloaded): a second
        # run into this directory, or one that cannot be written, stops at once.
        # `pretrain` claims it again, which the holder may.
        with claim_output_dir(output_dir, task=non_chief_task(FLAGS.strategy), command=command):
            ensure_prepared(config.dataset, config.data_dir, download=FLAGS.download)
            run = pretrain(
                config, output_dir, strategy=FLAGS.strategy,
                tpu=FLAGS.tpu, verbose=FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose),
                command=command, stop_at_epoch=FLAGS.stop_at_epoch, recipe=recipe.describe(),
            )
    except RunInterrupted as interruption:
        # Preempted, or a worker lost: a restart policy restarts the job on this
        # code, which a later SIGTERM (every worker gets one) must not change.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"interrupted: {interruption}", file=sys.stderr)
        end_process(RESUMABLE_EXIT_CODE, wait_for_workers=not isinstance(interruption, WorkerLost))
    except WriteFailed as error:
        print(f"error: {error} Make room (or lift the limit) and run the same command again: the "
              "run resumes from its last backup.", file=sys.stderr)
        sys.exit(1)
    except (ValueError, FileNotFoundError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    metrics = run["final_metrics"]
    if run["epochs_done"] < config.epochs:
        summary = (f"Stopped after epoch {run['epochs_done']} of {config.epochs} (--stop_at_epoch): the "
                   "same command without it continues from the backup. So far")
    else:
        summary = f"Finished {run['steps']} steps;"
    summary += (f" the run took {run['wall_time_s']:.0f} s wall-clock, "
                f"{run['cpu_time_s'] / 3600:.2f} CPU-hours.")
    if "knn_accuracy" in metrics:
        summary += f" kNN accuracy (k={config.knn_k}) on the test split: {100 * metrics['knn_accuracy']:.2f}%."
    print(summary + f" Encoder and run.json in {FLAGS.output_dir}.")
    end_process(0)


if __name__ == "__main__":
    define_flags()
    app.run(main)
