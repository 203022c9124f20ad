"""Report of a recipe pilot: candidates that share one architecture, each
the first epochs of its own full-length schedule, compared by kNN accuracy
at equal CPU-hours.

    python benchmarks/backbone_pilots/recipe_report.py benchmarks/backbone_pilots/cifar100_resnet18

`PILOT_DIR` holds one folder per candidate, with the `run.json` and
`history.jsonl` that `scripts/pretrain.py` writes, and `random_init.json`
(`scripts/evaluate.py --random_init` on the same architecture): the floor.
Writes `pilot.md` (the tables) and `knn_vs_cpu_hours.png` (the plot) in
`PILOT_DIR` and prints the tables.

CPU-hours are the pretraining process's CPU time, all threads, as each
epoch's record in `history.jsonl` holds it. kNN at a given CPU budget is
interpolated linearly between the two evaluations around it, never
extrapolated: a candidate that has not reached the budget gets no number.
"""

import json
import os
import sys

# The project's scripts/ folder: its runtime_defaults sets TensorFlow's environment before it loads.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "scripts"))
import runtime_defaults  # noqa: E402,F401

import numpy as np

# What the candidates of a recipe pilot may differ in: run.json's "recipe".
RECIPE_COLUMNS = (
    ("target", "target_init"),
    ("EMA", "ema"),
    ("EMA schedule", "ema_schedule"),
    ("learning rate", "lr"),
    ("rate schedule", "lr_schedule"),
    ("warmup epochs", "warmup_epochs"),
    ("schedule epochs", "epochs"),
)
TABLE_FILENAME = "pilot.md"
PLOT_FILENAME = "knn_vs_cpu_hours.png"
FLOOR_FILENAME = "random_init.json"


def candidate_curves(pilot_dir):
    """`{name: {"recipe": dict, "epochs": [...], "cpu_hours": [...], "knn": [...]}}`
    for every folder of `pilot_dir` with a `run.json`: the kNN evaluations
    (top-1 in %) of its `history.jsonl`, with the epoch and the cumulative
    CPU-hours at which each was taken, sorted by name."""
    curves = {}
    for name in sorted(os.listdir(pilot_dir)):
        folder = os.path.join(pilot_dir, name)
        if not os.path.exists(os.path.join(folder, "run.json")):
            continue
        with open(os.path.join(folder, "run.json")) as file:
            run = json.load(file)
        with open(os.path.join(folder, "history.jsonl")) as file:
            records = [json.loads(line) for line in file if line.strip()]
        evaluated = [record for record in records if "knn_accuracy" in record]
        curves[name] = {
            "recipe": run["recipe"],
            "epochs": [record["epoch"] for record in evaluated],
            "cpu_hours": [record["cpu_time_s"] / 3600 for record in evaluated],
            "knn": [100 * record["knn_accuracy"] for record in evaluated],
        }
    return curves


def knn_at(curve, cpu_hours):
    """kNN top-1 (%) of `curve` after `cpu_hours`, interpolated linearly
    between its evaluations; None outside their range."""
    hours, knn = curve["cpu_hours"], curve["knn"]
    if not hours or not hours[0] <= cpu_hours <= hours[-1]:
        return None
    return float(np.interp(cpu_hours, hours, knn))


def budgets(curves, step=0.5):
    """The CPU budgets of the equal-CPU-hours table: multiples of `step`
    hours up to the last evaluation of any candidate."""
    end = max(curve["cpu_hours"][-1] for curve in curves.values() if curve["cpu_hours"])
    return [step * index for index in range(1, int(end / step + 1e-9) + 1)]


def _recipe_value(recipe, field):
    value = recipe.get(field)
    if field == "target_init":
        return {"copy": "copied", "independent": "own random weights"}.get(value, value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def report_tables(curves, floor):
    """The pilot's Markdown: the candidates' recipes, kNN at equal
    CPU-hours, and every evaluation."""
    names = list(curves)
    columns = budgets(curves)
    lines = ["| candidate | " + " | ".join(title for title, _ in RECIPE_COLUMNS) + " |",
             "|---|" + "---|" * len(RECIPE_COLUMNS)]
    for name in names:
        recipe = curves[name]["recipe"]
        lines.append(f"| `{name}` | " + " | ".join(_recipe_value(recipe, f) for _, f in RECIPE_COLUMNS) + " |")
    lines += ["", f"kNN top-1 (%) at equal CPU-hours, interpolated between evaluations; — where a candidate has "
              f"not been evaluated on both sides (random init: {floor:.2f}%):", "",
              "| candidate | " + " | ".join(f"{b:g} CPU-h" for b in columns) + " |",
              "|---|" + "---|" * len(columns)]
    for name in names:
        cells = [knn_at(curves[name], b) for b in columns]
        lines.append(f"| `{name}` | " + " | ".join("—" if c is None else f"{c:.2f}" for c in cells) + " |")
    lines += ["", "Every evaluation:", "", "| candidate | epoch | CPU-hours | kNN top-1 (%) |", "|---|---|---|---|"]
    for name in names:
        curve = curves[name]
        for epoch, hours, knn in zip(curve["epochs"], curve["cpu_hours"], curve["knn"]):
            lines.append(f"| `{name}` | {epoch} | {hours:.2f} | {knn:.2f} |")
    return "\n".join(lines)


def plot_knn_against_cpu_hours(curves, floor, path, title):
    """Plots each candidate's kNN evaluations against CPU-hours, and the
    random-init floor as a dashed line, to the PNG `path`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from keras_directcopy.utils.files import atomic_save

    figure, axes = plt.subplots(figsize=(8, 4.2), dpi=150, layout="constrained")
    for index, (name, curve) in enumerate(curves.items()):
        axes.plot(curve["cpu_hours"], curve["knn"], marker="osD^vP*X"[index % 8], markersize=5, linewidth=1.6,
                  color=plt.get_cmap("tab10").colors[index % 10], label=name)
    axes.axhline(floor, color="0.45", linestyle="--", linewidth=1.4, label="random init")
    axes.set_xlim(left=0)
    axes.set_xlabel("pretraining CPU-hours")
    axes.set_ylabel("kNN top-1 accuracy on the test set (%)")
    axes.set_title(title)
    axes.grid(True, color="0.9", linewidth=0.8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    atomic_save(path, lambda temporary: figure.savefig(temporary, format="png", metadata={"Software": None}))
    plt.close(figure)


def write_report(pilot_dir):
    """Writes `pilot.md` and `knn_vs_cpu_hours.png` in `pilot_dir`; returns the Markdown."""
    from keras_directcopy.utils.files import atomic_write_text

    curves = candidate_curves(pilot_dir)
    if not curves:
        raise ValueError(f"No candidate in {pilot_dir}: pass the pilot's folder, whose candidate folders hold "
                         "run.json and history.jsonl.")
    floor_path = os.path.join(pilot_dir, FLOOR_FILENAME)
    if not os.path.exists(floor_path):
        raise ValueError(f"{floor_path} is missing: write it with scripts/evaluate.py --random_init on the "
                         "candidates' architecture (--output=...).")
    with open(floor_path) as file:
        floor = 100 * json.load(file)["knn"]["top1"]
    text = report_tables(curves, floor)
    atomic_write_text(os.path.join(pilot_dir, TABLE_FILENAME), text + "\n")
    title = f"{os.path.basename(os.path.abspath(pilot_dir))}: kNN top-1 against pretraining CPU-hours"
    plot_knn_against_cpu_hours(curves, floor, os.path.join(pilot_dir, PLOT_FILENAME), title)
    return text


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} PILOT_DIR")
    try:
        print(write_report(sys.argv[1]))
    except ValueError as error:
        sys.exit(f"error: {error}")
