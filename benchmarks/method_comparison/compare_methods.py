"""Equal-budget comparison of predictors: same backbone, data, recipe, epochs
and seeds; only the predictor differs.

    python benchmarks/method_comparison/compare_methods.py --data_dir=~/tensorflow_datasets \
        --runs_dir=runs/comparison --results_dir=benchmarks/method_comparison/results/round1 \
        --pretrain_flags=--ema_schedule=cosine,--target_init=copy,--projector_bn_affine,--update_order=before_predict,--nolinear_symmetric,--linear_initializer=glorot

(the flags reproduce the first round's training step; see `LEGACY_STEP_FLAGS`).

Arms: by default `directcopy`, `directpred` and the trainable `linear`
predictor, each pretrained with `scripts/pretrain.py --config=CONFIG
--epochs=EPOCHS --predictor=ARM --seed=SEED`, and `random_init`, the backbone
with weights drawn from the seed and never trained (the floor). A results
folder holding a `study.json` defines its own arms instead, each a name, a
label and the `pretrain.py` flags that make it, e.g.

    {"arms": {"directcopy_spectral_eps0.3": {"label": "DirectCopy, spectral, eps 0.3",
              "flags": ["--predictor=directcopy", "--normalization=spectral", "--eps=0.3"]},
              "random_init": {"label": "random init (no training)"}}}

Every encoder is then measured by `scripts/evaluate.py` (kNN k = 200 and the
final-epoch linear probe on the test split).

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

# The project's scripts/ folder: its runtime_defaults sets TensorFlow's environment before it loads.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "scripts"))
import runtime_defaults  # noqa: E402,F401

from absl import app, flags
from comparison_report import load_arms, write_report

SCRIPTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "scripts")
RANDOM_INIT = "random_init"
STAGES = ("train", "evaluate", "collect", "report")
# The training step of this project before the reference code's behaviour
# became the default (BYOL's cosine EMA and copied target, affine projector
# BatchNorm, W_p set before the prediction, a Glorot-initialized
# unsymmetrized linear predictor): the setting of the first comparison in
# benchmarks/method_comparison/results/round1.
LEGACY_STEP_FLAGS = (
    "--ema_schedule=cosine", "--target_init=copy", "--projector_bn_affine",
    "--update_order=before_predict",
    "--nolinear_symmetric", "--linear_initializer=glorot",
)
RESULT_FILES = ("run.json", "history.jsonl", "eval.json")

flags.DEFINE_list("arms", [], "Arms to run, in order (default: every arm of the study).")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds; every arm runs each.")
flags.DEFINE_string("config", "cifar10_resnet20", "pretrain.py recipe shared by all arms.")
flags.DEFINE_integer("epochs", 10, "Pretraining epochs of every trained arm.")
flags.DEFINE_integer("knn_every", 2, "kNN monitor period in epochs (the curve in the plot).")
flags.DEFINE_string("data_dir", None, "tfds data directory (prepared with scripts/prepare_data.py).")
flags.DEFINE_string("runs_dir", "runs/comparison", "Working directory of the runs (backups, encoders).")
flags.DEFINE_string("results_dir", "benchmarks/method_comparison/results/round1", "Where the small result files go.")
flags.DEFINE_list("stages", list(STAGES), "Stages to run, in order.")
flags.DEFINE_list(
    "pretrain_flags", [],
    "Extra pretrain.py flags for every trained arm, e.g. the first round's settings: "
    f"{','.join(LEGACY_STEP_FLAGS)}.",
)

FLAGS = flags.FLAGS


def run_name(arm, seed):
    return f"{arm}_seed{seed}"


def train(arm, seed, run_dir, arm_flags):
    """Pretrains (or resumes) one arm; the random-init arm is only built."""
    if os.path.exists(os.path.join(run_dir, "run.json")):
        with open(os.path.join(run_dir, "run.json")) as file:
            if json.load(file)["epochs_done"] >= FLAGS.epochs:
                return
    if arm == RANDOM_INIT:
        return  # nothing to train: `evaluate` draws the weights with the seed
    command = [
        sys.executable, os.path.join(SCRIPTS_DIR, "pretrain.py"), f"--config={FLAGS.config}",
        f"--epochs={FLAGS.epochs}", *arm_flags, f"--seed={seed}",
        f"--knn_every={FLAGS.knn_every}", f"--output_dir={run_dir}", "--verbose=2",
        *FLAGS.pretrain_flags,
    ]
    if FLAGS.data_dir:
        command.append(f"--data_dir={FLAGS.data_dir}")
    print(f"[train] {run_name(arm, seed)}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)


def evaluate(arm, seed, run_dir, arm_flags):
    """Runs scripts/evaluate.py on a finished run's encoder (for the random-init
    arm, on the recipe's backbone with weights drawn from the seed), unless done."""
    output = os.path.join(run_dir, "eval.json")
    if arm == RANDOM_INIT:
        from keras_directcopy.configs import get_config

        # The trained arms' architecture: the recipe's, unless --pretrain_flags changes it.
        config = get_config(FLAGS.config)
        backbone = _flag_value(FLAGS.pretrain_flags, "backbone", config.backbone)
        width = _flag_value(FLAGS.pretrain_flags, "width_multiplier", config.width_multiplier)
        source = ["--random_init", f"--backbone={backbone}", f"--width_multiplier={width}"]
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


def _flag_value(flag_list, name, default):
    """The value of `--name=VALUE` in `flag_list` (the last one), else `default`."""
    values = [f.split("=", 1)[1] for f in flag_list if f.startswith(f"--{name}=")]
    return values[-1] if values else default


def collect(arm, seed, run_dir, arm_flags):
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
    arms = load_arms(FLAGS.results_dir)
    selected = FLAGS.arms or list(arms)
    unknown = sorted(set(FLAGS.stages) - set(STAGES)) + sorted(set(selected) - set(arms))
    if unknown:
        raise app.UsageError(f"Unknown stages or arms {unknown}; stages: {STAGES}, arms: {tuple(arms)}.")
    for stage in STAGES:
        if stage not in FLAGS.stages:
            continue
        if stage == "report":
            print(write_report(FLAGS.results_dir))
            continue
        for seed in FLAGS.seeds:
            for arm in selected:
                run_dir = os.path.join(FLAGS.runs_dir, run_name(arm, seed))
                step = {"train": train, "evaluate": evaluate, "collect": collect}[stage]
                step(arm, seed, run_dir, arms[arm].get("flags", []))


if __name__ == "__main__":
    app.run(main)
