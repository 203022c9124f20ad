"""Linear-network theory lab: which features DirectCopy and DirectPred keep.

    python benchmarks/theory_lab/linear_theory.py --output_dir=benchmarks/theory_lab/figures

Runs the experiments of `keras_directcopy.theory.linear_network` (seeded, CPU, NumPy) and
writes, in `--output_dir`:

* `theory_trajectories.png`: `||W u_i||` over training, coloured by the
  augmentation variance `sigma_i^2`, for DirectCopy (`F + eps I`), DirectPred
  (`F^(1/2) + eps I`) and the lambda_max-normalized DirectCopy
  (`F / ||F||_2 + eps I`), under which every direction decays.
* `theory_thresholds.png`: final `||W u_i||` against `sigma_i^2` for several
  weight decays `eta` (including 0), simulation (dots) against the closed-form
  fixed points (lines), with the predicted thresholds as dashed lines.
* `theory_sample_complexity.png`: downstream test error against the number
  of labelled samples, for a linear probe on raw inputs, on the features
  learned by DirectCopy (SGD on samples) and on the top principal components.
* `theory_lab.json`: every number behind the figures, the predicted and
  empirical thresholds, the command, the hardware and the run time.

Every file is written to a temporary file in the same directory and then
renamed, so an interrupted run never leaves a truncated figure.
"""

import json
import os
import platform
import sys
import time

# The project's scripts/ folder: its runtime_defaults sets TensorFlow's environment before it loads.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "scripts"))
import runtime_defaults  # noqa: E402,F401

import matplotlib

matplotlib.use("Agg")  # no display

import numpy as np
import tensorflow as tf
from absl import app, flags
from matplotlib import pyplot as plt
from matplotlib.lines import Line2D

from keras_directcopy.theory import linear_network
from keras_directcopy.utils.files import atomic_save, atomic_write_text
from keras_directcopy.utils.provenance import cpu_model


def define_flags(flag_values=flags.FLAGS):
    """Defines the script's flags (in `flag_values`), so importing it defines none."""
    flags.DEFINE_string("output_dir", "benchmarks/theory_lab/figures", "Directory of the figures and the JSON.",
                        flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Seed of the bases, initializations and samples.",
                         flag_values=flag_values)
    flags.DEFINE_float("eps", 0.2, "Predictor regularizer eps.", flag_values=flag_values)
    flags.DEFINE_list(
        "weight_decays", ["0", "0.02", "0.05", "0.1"], "Weight decays eta of the threshold figure.",
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "trajectory_weight_decay", 0.05, "Weight decay of the trajectory figure and the probe.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "quick", False, "Short runs and few directions, only to check that the script works.",
        flag_values=flag_values,
    )


FLAGS = flags.FLAGS

METHOD_LABELS = {"directcopy": "DirectCopy", "directpred": "DirectPred"}


# ---------------------------------------------------------------------------
# Experiments.
# ---------------------------------------------------------------------------


def run_trajectories(eps, weight_decay, seed, quick):
    """(a) `||W u_i||` over training for each predictor rule."""
    sigma2 = np.linspace(0.0, 5.5, 6 if quick else 12)
    setting = linear_network.make_setting(1.0, sigma2, seed=seed)
    horizon = 100.0 if quick else 1000.0  # gradient-flow time
    normalized_horizon = 30.0  # the normalized rule decays ~10 decades by then
    runs = {}
    for name, method, normalization, length in [
        ("directcopy", "directcopy", "none", horizon),
        ("directpred", "directpred", "none", horizon),
        ("directcopy_spectral", "directcopy", "spectral", normalized_horizon),
        ("directpred_spectral", "directpred", "spectral", normalized_horizon),
    ]:
        lr = 0.5 * linear_network.stable_learning_rate(
            1.0, sigma2, weight_decay, eps, method, normalization, 1e-3
        )
        steps = int(np.ceil(length / lr))
        result = linear_network.simulate_population(
            setting, method, weight_decay, eps, normalization, learning_rate=lr,
            steps=steps, init_scale=1e-3, record_every=max(1, steps // 200), seed=seed,
        )
        runs[name] = result
    predicted = {
        method: linear_network.predicted_final_norms(1.0, sigma2, weight_decay, eps, method, 1e-3)
        for method in linear_network.METHODS
    }
    return sigma2, runs, predicted


def run_thresholds(eps, weight_decays, seed, quick):
    """(b) final norms against `sigma^2` for several weight decays."""
    # An offset grid, so that no predicted threshold falls on a direction.
    sigma2 = 0.03 + (0.3 if quick else 0.1) * np.arange(20 if quick else 60)
    setting = linear_network.make_setting(1.0, sigma2, seed=seed)
    # A small start keeps p(0) = eps + O(init) close to the eps of the growth
    # condition (DirectPred's p is linear in the norm).
    init = 1e-5
    horizon = 100.0 if quick else 1000.0
    runs = []
    for method in linear_network.METHODS:
        for eta in weight_decays:
            lr = 0.5 * linear_network.stable_learning_rate(1.0, sigma2, eta, eps, method, "none", init)
            steps = int(np.ceil(horizon / lr))
            result = linear_network.simulate_population(
                setting, method, eta, eps, learning_rate=lr, steps=steps,
                init_scale=init, record_every=steps, seed=seed,
            )
            predicted = linear_network.predicted_final_norms(1.0, sigma2, eta, eps, method, init)
            kept = result.final_norms > init  # grew: the sign of g(p(0))
            predicted_kept = predicted > 0
            runs.append(
                dict(
                    method=method,
                    weight_decay=eta,
                    steps=steps,
                    learning_rate=lr,
                    growth_threshold=_rounded(float(linear_network.growth_threshold(1.0, eta, eps))),
                    # None for eta = 0: a fixed point exists for every sigma^2.
                    fixed_point_threshold=_rounded(_finite(linear_network.fixed_point_threshold(1.0, eta))),
                    empirical_threshold=_rounded(linear_network.empirical_threshold(sigma2, kept)),
                    num_kept=int(kept.sum()),
                    final_norms=result.final_norms.tolist(),
                    predicted_final_norms=predicted.tolist(),
                    # Over kept directions at least 0.5 (in sigma^2) inside
                    # the threshold, whose convergence time is short.
                    max_relative_error_kept=_max_relative_error(
                        result.final_norms, predicted,
                        predicted_kept
                        & (sigma2 < linear_network.growth_threshold(1.0, eta, eps) - 0.5),
                    ),
                    max_norm_discarded=float(
                        result.final_norms[~predicted_kept].max(initial=0.0)
                    ),
                )
            )
    return sigma2, init, runs


def run_sample_complexity(eps, weight_decay, seed, quick):
    """(c) downstream error against the number of labelled samples."""
    num_signal, num_nuisance = (4, 12) if quick else (8, 32)
    # Signal directions: low augmentation variance, data variance 1. Nuisance
    # directions: high augmentation variance and twice the data variance, so
    # that variance alone (PCA) would pick the nuisance.
    data_variance = np.r_[np.ones(num_signal), 2.0 * np.ones(num_nuisance)]
    sigma2 = np.r_[0.5 * np.ones(num_signal), 8.0 * np.ones(num_nuisance)]
    setting = linear_network.make_setting(data_variance, sigma2, seed=seed + 1)
    steps = 500 if quick else 2500
    result = linear_network.simulate_sgd(
        setting, "directcopy", weight_decay, eps, steps=steps, batch_size=256,
        record_every=max(1, steps // 100), seed=seed + 2,
    )
    rng = np.random.default_rng(seed + 3)
    unlabelled, _, _ = setting.sample(rng, 10000)
    covariance = unlabelled.T @ unlabelled / len(unlabelled)
    pca = np.linalg.eigh(covariance)[1][:, -num_signal:].T
    coefficients = np.r_[rng.standard_normal(num_signal), np.zeros(num_nuisance)]
    signal_variance = float(np.sum(coefficients**2 * data_variance))
    noise_std = np.sqrt(0.1 * signal_variance)  # label noise: 10% of the variance
    sample_sizes = [2, 4, 8, 16, 32, 64] if quick else [
        2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256,
    ]
    representations = {"raw": np.eye(setting.dim), "learned": result.weights, "pca": pca}
    trials = 20 if quick else 100
    errors = linear_network.sample_complexity(
        setting, representations, coefficients, sample_sizes,
        trials=trials, noise_std=noise_std, seed=seed + 4,
    )
    predicted = linear_network.predicted_final_norms(
        data_variance, sigma2, weight_decay, eps, "directcopy", 1e-3
    )
    return dict(
        num_signal=num_signal,
        num_nuisance=num_nuisance,
        signal=dict(data_variance=1.0, augmentation_variance=0.5),
        nuisance=dict(data_variance=2.0, augmentation_variance=8.0),
        weight_decay=weight_decay,
        sgd=dict(steps=steps, batch_size=256, learning_rate=result.learning_rate),
        final_norms_signal=result.final_norms[:num_signal].tolist(),
        final_norms_nuisance=result.final_norms[num_signal:].tolist(),
        predicted_norm_signal=float(predicted[0]),
        predicted_norm_nuisance=float(predicted[-1]),
        noise_std=float(noise_std),
        sample_sizes=sample_sizes,
        mean_error={k: v[0].tolist() for k, v in errors.items()},
        std_error={k: v[1].tolist() for k, v in errors.items()},
        trials=trials,
        samples_to_error_0_2={
            k: linear_network.samples_to_reach(sample_sizes, v[0], 0.2) for k, v in errors.items()
        },
    )


def _rounded(value, digits=6):
    # Grid midpoints such as 3.9800000000000004 print as 3.98.
    return None if value is None else round(value, digits)


def _finite(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _max_relative_error(actual, expected, mask):
    if not mask.any():
        return None
    return float(np.max(np.abs(actual[mask] - expected[mask]) / expected[mask]))


# ---------------------------------------------------------------------------
# Figures: each writes its PNG and returns the series it plotted.
# ---------------------------------------------------------------------------

DPI = 150  # 8-10 inch figures: 1200-1500 px, shown at ~800 px in the README
STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9.5,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "0.9", "grid.linewidth": 0.8, "savefig.dpi": DPI,
}
START_COLOR = "0.55"  # the starting norm / the error of predicting 0
PALETTE = plt.get_cmap("tab10").colors


def _save(figure, path):
    """Writes `figure` as a PNG at `path` atomically, then closes it."""
    atomic_save(path, lambda temporary: figure.savefig(
        temporary, format="png", metadata={"Software": None}))
    plt.close(figure)


def _variance_colormap():
    # viridis without its pale yellow end, which vanishes on white.
    return matplotlib.colors.ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.88, 256)))


def figure_trajectories(sigma2, runs, eps, weight_decay, path):
    """(a): three panels of `||W u_i||` against time, coloured by `sigma_i^2`.

    Returns:
        `{"augmentation_variance", "growth_threshold", "panels": {run name:
        {"title", "time", "norms"}}}`; `norms[:, i]` is direction `i`'s line.
    """
    threshold = float(linear_network.growth_threshold(1.0, weight_decay, eps))
    titles = {
        "directcopy": "DirectCopy: $W_p = F + \\epsilon I$",
        "directpred": "DirectPred: $W_p = F^{1/2} + \\epsilon I$",
        "directcopy_spectral": "normalized DirectCopy: $W_p = F/\\|F\\|_2 + \\epsilon I$",
    }
    series = dict(
        augmentation_variance=np.asarray(sigma2).tolist(), growth_threshold=threshold,
        panels={name: dict(title=title, time=runs[name].times.tolist(),
                           norms=runs[name].norms.tolist())
                for name, title in titles.items()},
    )
    cmap = _variance_colormap()
    norm = matplotlib.colors.Normalize(0.0, float(np.max(sigma2)))
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, 3, figsize=(10, 3.6), sharey=True, layout="constrained")
        for ax, (name, panel) in zip(axes, series["panels"].items()):
            norms = np.asarray(panel["norms"])
            ax.axhline(1e-3, color=START_COLOR, linewidth=1, linestyle=":")
            for i in np.argsort(-np.asarray(sigma2)):  # low-variance lines drawn last
                ax.plot(panel["time"], norms[:, i], color=cmap(norm(sigma2[i])), linewidth=1.3)
            ax.set_yscale("log")
            ax.set_ylim(1e-12, 3.0)
            ax.set_xlim(0.0, panel["time"][-1])
            ax.set_title(panel["title"])
            ax.set_xlabel("training time $t$ (steps × learning rate)")
        axes[0].set_ylabel("norm $\\|W u_i\\|$ of direction $i$")
        axes[0].annotate("start", (0.98, 1e-3), xycoords=("axes fraction", "data"),
                         xytext=(0, 3), textcoords="offset points", color="0.4", fontsize=9,
                         ha="right")
        bar = figure.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=axes, shrink=0.9,
                              pad=0.01)
        bar.set_label("augmentation variance $\\sigma_i^2$")
        bar.ax.axhline(threshold, color="black", linewidth=1.5)
        bar.ax.text(-0.3, threshold, "threshold", transform=bar.ax.get_yaxis_transform(),
                    ha="right", va="center", fontsize=8.5, rotation=90)
        figure.suptitle(
            f"$\\|W u_i\\|$ over training ($x_i = 1$, $\\epsilon = {eps:g}$, "
            f"$\\eta = {weight_decay:g}$; predicted: kept iff $\\sigma_i^2 < {threshold:g}$)"
        )
        _save(figure, path)
    return series


def figure_thresholds(sigma2, init, runs, eps, path):
    """(b): final norms against `sigma^2`, one panel per method, one colour per `eta`.

    Returns:
        `{method: {eta: {"augmentation_variance", "final_norms" (dots),
        "fixed_point" (line, NaN where none), "fine_variance" (its x),
        "growth_threshold" (dashes)}}}`, plus `"init_scale"` (the start line).
    """
    etas = sorted({run["weight_decay"] for run in runs})
    fine = np.linspace(np.min(sigma2), np.max(sigma2), 600)
    series = {"init_scale": init}
    for method in linear_network.METHODS:
        series[method] = {}
        for eta in etas:
            run = next(r for r in runs if r["method"] == method and r["weight_decay"] == eta)
            curve = linear_network.predicted_final_norms(1.0, fine, eta, eps, method, init)
            series[method][eta] = dict(
                augmentation_variance=np.asarray(sigma2).tolist(),
                final_norms=list(run["final_norms"]),
                fine_variance=fine.tolist(),
                fixed_point=np.where(curve > 0, curve, np.nan).tolist(),
                growth_threshold=run["growth_threshold"],
            )
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True, layout="constrained")
        for ax, method in zip(axes, linear_network.METHODS):
            ax.axhline(init, color=START_COLOR, linewidth=1, linestyle=":")
            for index, eta in enumerate(etas):
                data, color = series[method][eta], PALETTE[index % len(PALETTE)]
                ax.plot(data["fine_variance"], data["fixed_point"], color=color, linewidth=1.4)
                ax.axvline(data["growth_threshold"], color=color, linewidth=1.1, linestyle="--")
                ax.plot(data["augmentation_variance"], data["final_norms"], color=color,
                        linestyle="none", marker="o", markersize=3.2)
            ax.set_yscale("log")
            ax.set_ylim(1e-8, 3.0)
            ax.set_xlim(0.0, float(np.max(sigma2)) + 0.1)
            ax.set_title(f"{METHOD_LABELS[method]}")
            ax.set_xlabel("augmentation variance $\\sigma_i^2$ of the direction")
        axes[0].set_ylabel("final norm $\\|W u_i\\|$")
        handles = [Line2D([], [], color=PALETTE[i % len(PALETTE)], linewidth=6,
                          label=f"$\\eta = {eta:g}$") for i, eta in enumerate(etas)]
        handles += [
            Line2D([], [], color="0.3", linestyle="none", marker="o", markersize=4,
                   label="simulation"),
            Line2D([], [], color="0.3", linewidth=1.4, label="fixed point (closed form)"),
            Line2D([], [], color="0.3", linewidth=1.1, linestyle="--",
                   label="predicted threshold"),
            Line2D([], [], color=START_COLOR, linewidth=1, linestyle=":",
                   label=f"starting norm {init:g}"),
        ]
        figure.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
        figure.suptitle(
            f"Final norm of each direction ($x_i = 1$, $\\epsilon = {eps:g}$): kept iff "
            "$\\sigma_i^2 < (\\epsilon x_i - \\eta)/\\epsilon^2 - x_i$"
        )
        _save(figure, path)
    return series


def figure_sample_complexity(result, path):
    """(c): test error against the number of labelled samples, per representation.

    Returns:
        `{"sample_sizes", "mean_error": {representation: [...]},
        "labels": {representation: legend label}}`.
    """
    labels = {
        "raw": f"raw input ({result['num_signal'] + result['num_nuisance']} dims)",
        "learned": "DirectCopy features $W x$",
        "pca": f"top-{result['num_signal']} principal components",
    }
    series = dict(
        sample_sizes=list(result["sample_sizes"]),
        mean_error={name: list(result["mean_error"][name]) for name in labels},
        labels=labels,
    )
    with plt.rc_context(STYLE):
        figure, ax = plt.subplots(figsize=(8, 3.9), layout="constrained")
        for index, (name, label) in enumerate(labels.items()):
            ax.plot(series["sample_sizes"], series["mean_error"][name], color=PALETTE[index],
                    marker="o", markersize=4, linewidth=1.6, label=label)
        ax.axhline(1.0, color=START_COLOR, linewidth=1, linestyle=":",
                   label="predicting 0 (error 1)")
        ax.set_xscale("log", base=2)
        sizes = series["sample_sizes"]
        ticks = [v for v in 2 ** np.arange(1, 12) if min(sizes) <= v <= max(sizes)]
        ax.set_xticks(ticks, [str(v) for v in ticks])
        ax.set_xlim(min(sizes) / 1.1, max(sizes) * 1.1)
        ax.set_ylim(0.0, max(2.0, 1.05 * max(max(v) for v in series["mean_error"].values())))
        ax.set_xlabel("labelled samples $n$")
        ax.set_ylabel("test error / label variance")
        figure.suptitle(
            f"Ridge probe on {result['num_signal']} label directions ($x = 1$, $\\sigma^2 = 0.5$) "
            f"and {result['num_nuisance']} nuisance ($x = 2$, $\\sigma^2 = 8$);\n"
            f"mean of {result['trials']} labelled sets per $n$"
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        _save(figure, path)
    return series


# ---------------------------------------------------------------------------


def main(argv):
    del argv
    start = time.perf_counter()
    eps = FLAGS.eps
    etas = [float(v) for v in FLAGS.weight_decays]
    output_dir = FLAGS.output_dir
    os.makedirs(output_dir, exist_ok=True)

    sigma2_a, runs_a, predicted_a = run_trajectories(
        eps, FLAGS.trajectory_weight_decay, FLAGS.seed, FLAGS.quick
    )
    figure_trajectories(sigma2_a, runs_a, eps, FLAGS.trajectory_weight_decay,
                        os.path.join(output_dir, "theory_trajectories.png"))

    sigma2_b, init_b, runs_b = run_thresholds(eps, etas, FLAGS.seed, FLAGS.quick)
    figure_thresholds(sigma2_b, init_b, runs_b, eps, os.path.join(output_dir, "theory_thresholds.png"))

    result_c = run_sample_complexity(eps, FLAGS.trajectory_weight_decay, FLAGS.seed, FLAGS.quick)
    figure_sample_complexity(result_c, os.path.join(output_dir, "theory_sample_complexity.png"))

    summary = dict(
        command=" ".join(["python", "benchmarks/theory_lab/linear_theory.py"] + sys.argv[1:]),
        hardware=dict(
            machine=platform.machine(), processor=cpu_model()["model"],
            cpu_count=os.cpu_count(), python=platform.python_version(),
            numpy=np.__version__, tensorflow=tf.__version__,
        ),
        eps=eps,
        data_variance=1.0,
        trajectories=dict(
            weight_decay=FLAGS.trajectory_weight_decay,
            augmentation_variance=sigma2_a.tolist(),
            growth_threshold=float(
                linear_network.growth_threshold(1.0, FLAGS.trajectory_weight_decay, eps)
            ),
            init_scale=1e-3,
            runs={
                name: dict(
                    learning_rate=r.learning_rate,
                    steps=int(r.steps[-1]),
                    final_norms=r.final_norms.tolist(),
                )
                for name, r in runs_a.items()
            },
            predicted_final_norms={k: v.tolist() for k, v in predicted_a.items()},
        ),
        thresholds=dict(augmentation_variance=sigma2_b.tolist(), init_scale=init_b, runs=runs_b),
        sample_complexity=result_c,
    )
    summary["runtime_s"] = round(time.perf_counter() - start, 1)
    atomic_write_text(
        os.path.join(output_dir, "theory_lab.json"),
        json.dumps(summary, indent=1, allow_nan=False) + "\n",
    )
    for run in runs_b:
        print(
            f"{run['method']:10s} eta={run['weight_decay']:<5g} threshold: predicted "
            f"{run['growth_threshold']:.3f}, empirical {run['empirical_threshold']}, "
            f"kept {run['num_kept']}/{len(sigma2_b)}"
        )
    print("samples to reach error 0.2:", result_c["samples_to_error_0_2"])
    print(f"wrote {output_dir} in {summary['runtime_s']} s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
