"""Equal-budget comparison of predictors: same backbone, data, recipe, epochs
and seeds; only the predictor differs.

    python scripts/compare_methods.py --data_dir=~/tensorflow_datasets \
        --runs_dir=runs/comparison --results_dir=scripts/results/cifar10_comparison \
        --pretrain_flags=--ema_schedule=cosine,--target_init=copy,--projector_bn_affine,--update_order=before_predict,--nolinear_symmetric,--linear_initializer=glorot

(the flags reproduce the first round's training step; see `LEGACY_STEP_FLAGS`).

Arms: `directcopy`, `directpred` and the trainable `linear` predictor, each
pretrained with `scripts/pretrain.py --config=CONFIG --epochs=EPOCHS
--predictor=ARM --seed=SEED`, and `random_init`, the backbone with weights drawn
from the seed and never trained (the floor). Every encoder is then measured
by `scripts/evaluate.py` (kNN k = 200 and the final-epoch linear probe on the
test split).

Stages (`--stages`, all by default), each of which skips what is done, so
re-running the command after an interruption continues where it stopped
(a pretraining run resumes from its backup):

* `train`: the pretraining runs, one after another, in `runs_dir/ARM_seedS`.
* `evaluate`: `eval.json` beside each finished encoder.
* `collect`: copies `run.json`, `history.jsonl` and `eval.json` of every
  finished run to `results_dir/ARM_seedS/` (small files, kept in git).
* `report`: from `results_dir` alone, writes `results.md` (the table in the
  README) and `knn_over_epochs.png`.
"""

import json
import os
import shutil
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from comparison_report import ARM_LABELS, write_report  # noqa: E402 (this folder)

SCRIPTS_DIR = os.path.dirname(os.path.abspath(__file__))
TRAINED_ARMS = ("directcopy", "directpred", "linear")
RANDOM_INIT = "random_init"
STAGES = ("train", "evaluate", "collect", "report")
# The training step of this project before the reference code's behaviour
# became the default (BYOL's cosine EMA and copied target, affine projector
# BatchNorm, W_p set before the prediction, a Glorot-initialized
# unsymmetrized linear predictor): the setting of the first comparison in
# scripts/results/cifar10_comparison.
LEGACY_STEP_FLAGS = (
    "--ema_schedule=cosine", "--target_init=copy", "--projector_bn_affine",
    "--update_order=before_predict",
    "--nolinear_symmetric", "--linear_initializer=glorot",
)
RESULT_FILES = ("run.json", "history.jsonl", "eval.json")

flags.DEFINE_list("arms", [*TRAINED_ARMS, RANDOM_INIT], "Arms to run.")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds; every arm runs each.")
flags.DEFINE_string("config", "cifar10_resnet20", "pretrain.py recipe shared by all arms.")
flags.DEFINE_integer("epochs", 10, "Pretraining epochs of every trained arm.")
flags.DEFINE_integer("knn_every", 2, "kNN monitor period in epochs (the curve in the plot).")
flags.DEFINE_string("data_dir", None, "tfds data directory (prepared with scripts/prepare_data.py).")
flags.DEFINE_string("runs_dir", "runs/comparison", "Working directory of the runs (backups, encoders).")
flags.DEFINE_string("results_dir", "scripts/results/cifar10_comparison", "Where the small result files go.")
flags.DEFINE_list("stages", list(STAGES), "Stages to run, in order.")
flags.DEFINE_list(
    "pretrain_flags", [],
    "Extra pretrain.py flags for every trained arm, e.g. the first round's settings: "
    f"{','.join(LEGACY_STEP_FLAGS)}.",
)

FLAGS = flags.FLAGS


def run_name(arm, seed):
    return f"{arm}_seed{seed}"


def train(arm, seed, run_dir):
    """Pretrains (or resumes) one arm; the random-init arm is only built."""
    if os.path.exists(os.path.join(run_dir, "run.json")):
        with open(os.path.join(run_dir, "run.json")) as file:
            if json.load(file)["epochs_done"] >= FLAGS.epochs:
                return
    if arm == RANDOM_INIT:
        return  # nothing to train: `evaluate` draws the weights with the seed
    command = [
        sys.executable, os.path.join(SCRIPTS_DIR, "pretrain.py"), f"--config={FLAGS.config}",
        f"--epochs={FLAGS.epochs}", f"--predictor={arm}", f"--seed={seed}",
        f"--knn_every={FLAGS.knn_every}", f"--output_dir={run_dir}", "--verbose=2",
        *FLAGS.pretrain_flags,
    ]
    if FLAGS.data_dir:
        command.append(f"--data_dir={FLAGS.data_dir}")
    print(f"[train] {run_name(arm, seed)}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)


def evaluate(arm, seed, run_dir):
    """Runs scripts/evaluate.py on a finished run's encoder (for the random-init
    arm, on the recipe's backbone with weights drawn from the seed), unless done."""
    output = os.path.join(run_dir, "eval.json")
    if arm == RANDOM_INIT:
        from keras_directcopy.configs import get_config

        config = get_config(FLAGS.config)
        source = ["--random_init", f"--backbone={config.backbone}",
                  f"--width_multiplier={config.width_multiplier}"]
        os.makedirs(run_dir, exist_ok=True)
    elif os.path.exists(os.path.join(run_dir, "encoder.keras")):
        source = [f"--encoder={os.path.join(run_dir, 'encoder.keras')}"]
    else:
        return  # not trained yet
    if os.path.exists(output):
        return
    command = [
        sys.executable, os.path.join(SCRIPTS_DIR, "evaluate.py"), *source, "--dataset=cifar10",
        f"--seed={seed}", f"--output={output}",
    ]
    if FLAGS.data_dir:
        command.append(f"--data_dir={FLAGS.data_dir}")
    print(f"[evaluate] {run_name(arm, seed)}", flush=True)
    subprocess.run(command, check=True)


def collect(arm, seed, run_dir):
    """Copies the small result files of a finished, evaluated run."""
    if not os.path.exists(os.path.join(run_dir, "eval.json")):
        return
    target = os.path.join(FLAGS.results_dir, run_name(arm, seed))
    os.makedirs(target, exist_ok=True)
    for name in RESULT_FILES:
        if os.path.exists(os.path.join(run_dir, name)):
            shutil.copyfile(os.path.join(run_dir, name), os.path.join(target, name))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = sorted(set(FLAGS.stages) - set(STAGES)) + sorted(set(FLAGS.arms) - set(ARM_LABELS))
    if unknown:
        raise app.UsageError(f"Unknown stages or arms {unknown}; stages: {STAGES}, arms: {tuple(ARM_LABELS)}.")
    for stage in STAGES:
        if stage not in FLAGS.stages:
            continue
        if stage == "report":
            print(write_report(FLAGS.results_dir))
            continue
        for seed in FLAGS.seeds:
            for arm in FLAGS.arms:
                run_dir = os.path.join(FLAGS.runs_dir, run_name(arm, seed))
                {"train": train, "evaluate": evaluate, "collect": collect}[stage](arm, seed, run_dir)


if __name__ == "__main__":
    app.run(main)
