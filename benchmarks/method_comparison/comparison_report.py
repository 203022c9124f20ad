"""The table and plot of a method comparison, from its result files alone.

    python benchmarks/method_comparison/comparison_report.py RESULTS_DIR
    python benchmarks/method_comparison/comparison_report.py --pilot PILOT_DIR

`RESULTS_DIR` holds one folder per run, `ARM_seedS/`, with the `run.json`,
`history.jsonl` and `eval.json` that `compare_methods.py` collected, and
optionally `study.json`, the study's arms (names, labels, flags, in order).
`write_report(results_dir)` writes `results.md` (the Markdown table the
README shows) and `knn_over_epochs.png`, and returns the table; the same
files always give the same table, which is how a test checks that the
README matches the committed results. With `--pilot`, `PILOT_DIR` is the
backbone pilot's folder and the script writes its `pilot.md` instead
(`write_pilot_table`).
"""

import json
import os
import re
import sys

# The project's scripts/ folder: its runtime_defaults sets TensorFlow's environment before it loads.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "scripts"))
import runtime_defaults  # noqa: E402,F401

import numpy as np
from absl import app, flags

RUN_PATTERN = re.compile(r"^(?P<arm>[a-z0-9_.]+)_seed(?P<seed>\d+)$")
STUDY_FILENAME = "study.json"
# The arms of a results folder without a study.json: one per predictor.
DEFAULT_ARMS = {
    "directcopy": {"label": "DirectCopy", "flags": ["--predictor=directcopy"]},
    "directpred": {"label": "DirectPred", "flags": ["--predictor=directpred"]},
    "linear": {"label": "linear predictor (trained)", "flags": ["--predictor=linear"]},
    "random_init": {"label": "random init (no training)"},
}
TABLE_FILENAME = "results.md"
PLOT_FILENAME = "knn_over_epochs.png"


def load_arms(results_dir):
    """`{arm: {"label", "flags"}}`, in the study's order: from
    `results_dir/study.json` when it exists, else `DEFAULT_ARMS`.

    Raises:
        ValueError: if an arm name does not fit `RUN_PATTERN` (lower-case
            letters, digits, `_` and `.`) or a trained arm has no flags.
    """
    path = os.path.join(results_dir, STUDY_FILENAME)
    if not os.path.exists(path):
        return dict(DEFAULT_ARMS)
    with open(path) as file:
        arms = json.load(file)["arms"]
    for name, arm in arms.items():
        if not RUN_PATTERN.match(f"{name}_seed0"):
            raise ValueError(f"{path}: arm name {name!r} must use only a-z, 0-9, '_' and '.'.")
        if name != "random_init" and not arm.get("flags"):
            raise ValueError(f"{path}: arm {name!r} needs the pretrain.py flags that make it.")
    return arms


def load_results(results_dir):
    """`{arm: [run, ...]}`, each run a dict with `seed`, `run`, `eval` and
    `history` (the per-epoch records; empty for the random-init arm)."""
    from keras_directcopy.training.run_log import read_history

    results = {}
    for name in sorted(os.listdir(results_dir)):
        match = RUN_PATTERN.match(name)
        folder = os.path.join(results_dir, name)
        if not match or not os.path.exists(os.path.join(folder, "eval.json")):
            continue
        with open(os.path.join(folder, "eval.json")) as file:
            evaluation = json.load(file)
        run = {}  # the random-init arm has no pretraining run
        if os.path.exists(os.path.join(folder, "run.json")):
            with open(os.path.join(folder, "run.json")) as file:
                run = json.load(file)
        history_path = os.path.join(folder, "history.jsonl")
        history = read_history(history_path) if os.path.exists(history_path) else []
        results.setdefault(match["arm"], []).append(
            dict(seed=int(match["seed"]), run=run, eval=evaluation, history=history)
        )
    if not results:
        raise FileNotFoundError(
            f"No evaluated runs in {results_dir!r}: run benchmarks/method_comparison/compare_methods.py first."
        )
    order = list(load_arms(results_dir))
    rank = lambda arm: order.index(arm) if arm in order else len(order)
    return {arm: results[arm] for arm in sorted(results, key=rank)}


def summary_table(results, labels):
    """Markdown table: mean ± sample standard deviation over seeds, then
    every seed's value, of kNN and linear-probe top-1 (percent); `labels`
    maps arm names to their row labels."""
    lines = [
        "| arm | seeds | kNN top-1 (%) | linear probe top-1 (%) | kNN per seed | linear per seed | CPU-hours per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, runs in results.items():
        knn = [100 * r["eval"]["knn"]["top1"] for r in runs]
        linear = [100 * r["eval"]["linear_probe"]["top1"] for r in runs]
        cpu_hours = [r["run"].get("cpu_time_s", 0.0) / 3600 for r in runs]
        lines.append(
            f"| {labels.get(arm, arm)} | {', '.join(str(r['seed']) for r in runs)} "
            f"| {_mean_spread(knn)} | {_mean_spread(linear)} "
            f"| {' / '.join(f'{v:.2f}' for v in knn)} | {' / '.join(f'{v:.2f}' for v in linear)} "
            f"| {' / '.join(f'{v:.2f}' for v in cpu_hours) if any(cpu_hours) else '0 (not trained)'} |"
        )
    return "\n".join(lines)


END_OF_RUN_METRICS = ("collapse_std", "pred_eig_max", "pred_eig_min", "pred_eff_rank")


def end_of_run_table(results, labels):
    """Markdown table of each trained run's last logged `collapse_std` and
    predictor spectrum (largest and smallest eigenvalue and effective rank
    of `W_p`; direct predictors only), per seed."""
    lines = [
        "| arm | seed | " + " | ".join(f"`{name}`" for name in END_OF_RUN_METRICS) + " |",
        "|---|---|" + "---|" * len(END_OF_RUN_METRICS),
    ]
    for arm, runs in results.items():
        for r in runs:
            final = r["run"].get("final_metrics")
            if not final:
                continue  # not trained (random init)
            cells = [f"{final[name]:.4g}" if name in final else "n/a" for name in END_OF_RUN_METRICS]
            lines.append(f"| {labels.get(arm, arm)} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def protocol_line(results):
    """One sentence naming the shared recipe, read from the runs' records."""
    trained = [r for arm, runs in results.items() for r in runs if r["run"].get("steps")]
    if not trained:
        return ""
    first = trained[0]["run"]
    config, hardware = first["config"], first.get("hardware", {})
    width = config.get("width_multiplier")
    return (
        f"Backbone {config['backbone']} (width multiplier {width}), {first['epochs_done']} epochs "
        f"of {first['steps_per_epoch']} steps at batch {config['batch_size']} "
        f"({first['pretrain_examples']} CIFAR-10 training images), lr {config['lr']}, weight decay "
        f"{config['weight_decay']}, EMA {config['ema']}; kNN k = {trained[0]['eval']['knn']['k']} "
        f"and a {trained[0]['eval']['linear_probe']['epochs']}-epoch linear probe (final epoch) on "
        f"the {trained[0]['eval']['knn']['test_examples']} test images. Hardware: "
        f"{hardware.get('cpu_count')}-core {hardware.get('processor')} CPU, no GPU; CPU-hours are "
        "process CPU time (all threads) of the whole pretraining run."
    )


def knn_series(results):
    """The data of the kNN plot: `{"runs": {arm: {seed: (epochs, top1 %)}},
    "random_init": [top1 %, ...]}`, the monitor's kNN top-1 after each epoch
    of each trained run (from its `history.jsonl`) and the random-init
    arm's final kNN top-1 per seed (from its `eval.json`)."""
    runs = {
        arm: {
            r["seed"]: (
                [rec["epoch"] for rec in r["history"] if "knn_accuracy" in rec],
                [100 * rec["knn_accuracy"] for rec in r["history"] if "knn_accuracy" in rec],
            )
            for r in arm_runs
        }
        for arm, arm_runs in results.items() if arm != "random_init"
    }
    floor = [100 * r["eval"]["knn"]["top1"] for r in results.get("random_init", [])]
    return {"runs": runs, "random_init": floor}


def plot_knn_over_epochs(results, path, labels):
    """Plots kNN top-1 after each epoch to the PNG `path`: one line per
    trained run (seeds share their arm's colour and differ by marker), the
    random-init mean as a dashed line; the legend sits right of the axes.

    Returns:
        `knn_series(results)`, the data plotted.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from keras_directcopy.utils.files import atomic_save

    series = knn_series(results)
    colors = plt.get_cmap("tab10").colors
    markers = "osD^vP*X"
    seeds = sorted({seed for runs in series["runs"].values() for seed in runs})
    figure, axes = plt.subplots(figsize=(8, 4.2), dpi=150, layout="constrained")
    handles = []
    for index, (arm, runs) in enumerate(series["runs"].items()):
        color = colors[index % len(colors)]
        for seed, (epochs, values) in runs.items():
            axes.plot(epochs, values, color=color, marker=markers[seeds.index(seed) % len(markers)],
                      markersize=5, linewidth=1.6)
        handles.append(Line2D([], [], color=color, linewidth=1.6,
                              label=f"{labels.get(arm, arm)} ({len(runs)} seed{'s' * (len(runs) > 1)})"))
    for seed in seeds if len(seeds) > 1 else []:
        handles.append(Line2D([], [], color="0.35", linestyle="none",
                              marker=markers[seeds.index(seed) % len(markers)], markersize=5,
                              label=f"seed {seed}"))
    floor = series["random_init"]
    if floor:
        axes.axhline(float(np.mean(floor)), color="0.45", linestyle="--", linewidth=1.4)
        handles.append(Line2D([], [], color="0.45", linestyle="--", linewidth=1.4,
                              label=f"random init, mean of {len(floor)} seed{'s' * (len(floor) > 1)}"))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(left=0)
    axes.set_xlabel("pretraining epoch")
    axes.set_ylabel("kNN top-1 accuracy on the test set (%)")
    axes.set_title("CIFAR-10: kNN top-1 during pretraining")
    axes.grid(True, color="0.9", linewidth=0.8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    atomic_save(path, lambda temporary: figure.savefig(temporary, format="png",
                                                       metadata={"Software": None}))
    plt.close(figure)
    return series


def write_report(results_dir):
    """Writes `results.md` and `knn_over_epochs.png` in `results_dir`;
    returns the Markdown (table plus protocol sentence)."""
    from keras_directcopy.utils.files import atomic_write_text

    results = load_results(results_dir)
    labels = {name: arm["label"] for name, arm in load_arms(results_dir).items()}
    text = summary_table(results, labels) + "\n\n" + protocol_line(results) + "\n"
    if any(r["run"].get("final_metrics") for runs in results.values() for r in runs):
        text += "\nAt the end of each run:\n\n" + end_of_run_table(results, labels) + "\n"
    atomic_write_text(os.path.join(results_dir, TABLE_FILENAME), text)
    plot_knn_over_epochs(results, os.path.join(results_dir, PLOT_FILENAME), labels)
    return text


def _encoder_size(config, image_size):
    """`(parameters, feature dim)` of a run's encoder, rebuilt from its config
    at the size it trained at (which sets the stem)."""
    from keras_directcopy.models.backbones import build_backbone

    encoder = build_backbone(
        config["backbone"], (image_size, image_size, 3), width_multiplier=config["width_multiplier"]
    )
    return encoder.count_params(), int(encoder.output_shape[-1])


def _mean_spread(values):
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


PILOT_TABLE_FILENAME = "pilot.md"


def pilot_table(pilot_dir):
    """Markdown table of the backbone pilot in `pilot_dir`: one folder per
    candidate with the pretraining `run.json` and `random_init.json`
    (`scripts/evaluate.py --random_init` on the same architecture).

    The criterion is kNN gain over random initialization per CPU-hour of
    pretraining, at an (approximately) equal CPU budget. A candidate may be
    the first epochs of a longer run (`pretrain.py --stop_at_epoch`): its
    epochs column then says of how many its schedule is. Rows are in the
    order of backbone, width and image size.
    """
    from keras_directcopy.data.datasets import get_dataset_spec

    lines = [
        "| candidate | image size (px) | encoder parameters | feature dim | epochs (of its schedule) "
        "| steps at batch 128 | CPU-hours | wall-clock (s) | kNN random init (%) | kNN after pilot (%) "
        "| gain (points) | gain per CPU-hour |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []  # ((backbone, width, image size), row): sorted by number, not by folder name
    for name in os.listdir(pilot_dir):
        folder = os.path.join(pilot_dir, name)
        if not os.path.exists(os.path.join(folder, "run.json")):
            continue
        with open(os.path.join(folder, "run.json")) as file:
            run = json.load(file)
        with open(os.path.join(folder, "random_init.json")) as file:
            floor = 100 * json.load(file)["knn"]["top1"]
        knn = 100 * run["final_metrics"]["knn_accuracy"]
        cpu_hours = run["cpu_time_s"] / 3600
        config = run["config"]
        # Runs record the size they trained at; older ones trained at their dataset's own.
        image_size = run.get("image_size") or config.get("image_size") or get_dataset_spec(
            config["dataset"]).image_size
        parameters, feature_dim = _encoder_size(config, image_size)
        row = (
            f"| {config['backbone']}, width {config['width_multiplier']} | {image_size} | {parameters:,} "
            f"| {feature_dim} | {run['epochs_done']} of {config['epochs']} | {run['steps']} "
            f"| {cpu_hours:.3f} | {run['wall_time_s']:.0f} "
            f"| {floor:.2f} | {knn:.2f} | {knn - floor:+.2f} | {(knn - floor) / cpu_hours:+.1f} |"
        )
        rows.append(((config["backbone"], config["width_multiplier"], image_size), row))
    return "\n".join(lines + [row for _, row in sorted(rows)])


def write_pilot_table(pilot_dir):
    """Writes `pilot.md` in `pilot_dir` and returns its table."""
    from keras_directcopy.utils.files import atomic_write_text

    table = pilot_table(pilot_dir)
    atomic_write_text(os.path.join(pilot_dir, PILOT_TABLE_FILENAME), table + "\n")
    return table


def define_flags(flag_values=flags.FLAGS):
    """Defines the script's flags (in `flag_values`), so importing it defines none."""
    flags.DEFINE_bool(
        "pilot", False, "The folder is the backbone pilot's: write its table (pilot.md).",
        flag_values=flag_values,
    )


def main(argv, flag_values=flags.FLAGS):
    """Prints (and writes) the report of the one folder in `argv[1:]`."""
    if len(argv) != 2:
        raise app.UsageError(
            f"Pass one folder, a comparison's results or the pilot's with --pilot; got {argv[1:]}."
        )
    results_dir = argv[1]
    print(write_pilot_table(results_dir) if flag_values.pilot else write_report(results_dir))


if __name__ == "__main__":
    define_flags()
    app.run(main)
