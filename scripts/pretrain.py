"""Pretrain an encoder with DirectCopy, DirectPred, DirectSet, BYOL or SimSiam.

    python scripts/pretrain.py --config=cifar10_resnet18 --data_dir=~/tensorflow_datasets \
        --output_dir=runs/c10_r18 --strategy=mirrored

`--config` picks a full recipe (see keras_directcopy/configs.py for each and
its source); every other flag overrides one field of it. Re-running the same
command after an interruption resumes from `<output_dir>/backup`.
"""

import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from keras_directcopy.configs import (  # noqa: E402
    CONFIGS,
    JIT_COMPILE_SETTINGS,
    LR_SCHEDULES,
    MIXED_PRECISION_POLICIES,
    PretrainConfig,
)
from keras_directcopy.predictors import (  # noqa: E402
    LINEAR_INITIALIZERS,
    NORMALIZATIONS,
    PREDICTOR_NAMES,
    UPDATE_ORDERS,
)
from keras_directcopy.models import TARGET_INITS  # noqa: E402
from keras_directcopy.schedules import EMA_SCHEDULES  # noqa: E402
from keras_directcopy.strategies import STRATEGY_NAMES  # noqa: E402

flags.DEFINE_enum("config", "quickstart", list(CONFIGS), "Named recipe; other flags override it.")
flags.DEFINE_string("output_dir", None, "Where the encoder, run.json, logs and backup go.", required=True)
flags.DEFINE_enum("strategy", "default", list(STRATEGY_NAMES), "tf.distribute strategy.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_integer(
    "logical_cpus", None,
    "Split the CPU into this many logical devices (to run --strategy=mirrored on a CPU-only machine).",
)
flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras fit() verbosity.")

# One override flag per PretrainConfig field; None keeps the recipe's value.
flags.DEFINE_string("dataset", None, "cifar10 | cifar100 | stl10 | imagenet2012 | folder:/path.")
flags.DEFINE_string("data_dir", None, "tfds data directory (prepared offline with scripts/prepare_data.py).")
flags.DEFINE_string("backbone", None, "resnet20 | resnet18 | resnet34 | resnet50.")
flags.DEFINE_float("width_multiplier", None, "Channel width multiplier of the backbone.")
flags.DEFINE_enum("predictor", None, list(PREDICTOR_NAMES), "Predictor mode.")
flags.DEFINE_integer("epochs", None, "Training epochs.")
flags.DEFINE_integer("batch_size", None, "Global batch size (summed over replicas).")
flags.DEFINE_float("lr", None, "Learning rate (the peak, with warmup_cosine).")
flags.DEFINE_enum(
    "lr_schedule", None, list(LR_SCHEDULES),
    "warmup_cosine: linear warmup, then cosine decay to 0; constant: the reference code's.",
)
flags.DEFINE_float("warmup_epochs", None, "Linear learning-rate warmup, in epochs.")
flags.DEFINE_float("momentum", None, "SGD momentum.")
flags.DEFINE_float("weight_decay", None, "Weight decay coefficient.")
flags.DEFINE_enum("weight_decay_mode", None, ["coupled", "decoupled"], "Coupled L2 (PyTorch SGD) or decoupled.")
flags.DEFINE_float("ema", None, "Target EMA momentum (at step 0 if cosine); 0 = SimSiam-style target.")
flags.DEFINE_enum(
    "ema_schedule", None, list(EMA_SCHEDULES),
    "constant: the reference code's fixed momentum; cosine: BYOL's rise to 1.",
)
flags.DEFINE_enum(
    "target_init", None, list(TARGET_INITS),
    "independent: the target's own random weights (the reference code's); copy: BYOL's.",
)
flags.DEFINE_float("rho", None, "Running-correlation weight of the direct predictors.")
flags.DEFINE_float("eps", None, "eps of the direct predictors (default 0.25 DirectCopy, 0.01 DirectPred/Set).")
flags.DEFINE_float("alpha", None, "DirectSet exponent.")
flags.DEFINE_enum("normalization", None, list(NORMALIZATIONS), "DirectCopy normalization.")
flags.DEFINE_integer("update_every", None, "Set the direct predictor every this many steps.")
flags.DEFINE_enum(
    "update_order", None, list(UPDATE_ORDERS),
    "after_step: the reference's (batch t predicted with W_p(F_{t-1})); before_predict: with W_p(F_t).",
)
flags.DEFINE_boolean("linear_symmetric", None, "Symmetrize the linear predictor after every step.")
flags.DEFINE_enum("linear_initializer", None, list(LINEAR_INITIALIZERS), "Linear predictor initialization.")
flags.DEFINE_integer("projector_hidden_dim", None, "Projector hidden width.")
flags.DEFINE_integer("projection_dim", None, "Projector output width.")
flags.DEFINE_boolean(
    "projector_bn_affine", None,
    "Learned scale and offset in the projector's BatchNorm (the reference code has none).",
)
flags.DEFINE_integer("image_size", None, "Training image size (default: the dataset's).")
flags.DEFINE_integer("knn_every", None, "kNN monitor period in epochs (0: off); the last epoch is always evaluated.")
flags.DEFINE_integer("knn_k", None, "Neighbours of the kNN monitor.")
flags.DEFINE_integer("seed", None, "Random seed.")
flags.DEFINE_integer("steps_per_execution", None, "Train steps per compiled call.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: one pass over the data).")
flags.DEFINE_string("save_freq", None, "Backup every epoch ('epoch') or every N steps.")
flags.DEFINE_enum("jit_compile", None, list(JIT_COMPILE_SETTINGS), "XLA for the train step.")
flags.DEFINE_enum(
    "mixed_precision", None, list(MIXED_PRECISION_POLICIES),
    "Compute in float16 (with dynamic loss scaling) or bfloat16; variables stay float32.",
)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # tfds logs every file it opens
    if FLAGS.logical_cpus:
        import tensorflow as tf

        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * FLAGS.logical_cpus,
        )
    from keras_directcopy.configs import get_config
    from keras_directcopy.callbacks import NonFiniteLossError
    from keras_directcopy.training import pretrain

    import dataclasses

    overrides = {f.name: getattr(FLAGS, f.name) for f in dataclasses.fields(PretrainConfig)}
    try:
        config = get_config(FLAGS.config, **overrides)
        run = pretrain(
            config, os.path.expanduser(FLAGS.output_dir), strategy=FLAGS.strategy,
            tpu=FLAGS.tpu, verbose=FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose),
            command=shlex.join(["python", "scripts/pretrain.py", *sys.argv[1:]]),
        )
    except (ValueError, FileNotFoundError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    metrics = run["final_metrics"]
    summary = (f"Finished {run['steps']} steps; the run took {run['wall_time_s']:.0f} s wall-clock, "
               f"{run['cpu_time_s'] / 3600:.2f} CPU-hours.")
    if "knn_accuracy" in metrics:
        summary += f" kNN accuracy (k={config.knn_k}) on the test split: {100 * metrics['knn_accuracy']:.2f}%."
    print(summary + f" Encoder and run.json in {FLAGS.output_dir}.")


if __name__ == "__main__":
    app.run(main)
