"""Linear-network theory lab: which features DirectCopy and DirectPred keep.

    python scripts/linear_theory.py --output_dir=scripts/figures

Runs the experiments of `keras_directcopy.theory` (seeded, CPU, NumPy) and
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_directcopy import theory  # noqa: E402
from keras_directcopy.io_utils import atomic_write_text  # noqa: E402
from raster_plot import (  # noqa: E402
    GRAY, PALETTE, Axes, colorbar, colormap, draw_caption, draw_text, new_canvas, side_legend,
    write_png,
)

flags.DEFINE_string("output_dir", "scripts/figures", "Directory of the figures and the JSON.")
flags.DEFINE_integer("seed", 0, "Seed of the bases, initializations and samples.")
flags.DEFINE_float("eps", 0.2, "Predictor regularizer eps.")
flags.DEFINE_list(
    "weight_decays", ["0", "0.02", "0.05", "0.1"], "Weight decays eta of the threshold figure."
)
flags.DEFINE_float(
    "trajectory_weight_decay", 0.05, "Weight decay of the trajectory figure and the probe."
)
flags.DEFINE_bool(
    "quick", False, "Short runs and few directions, only to check that the script works."
)

FLAGS = flags.FLAGS

METHOD_LABELS = {"directcopy": "DirectCopy", "directpred": "DirectPred"}


# ---------------------------------------------------------------------------
# Experiments.
# ---------------------------------------------------------------------------


def run_trajectories(eps, weight_decay, seed, quick):
    """(a) `||W u_i||` over training for each predictor rule."""
    sigma2 = np.linspace(0.0, 5.5, 6 if quick else 12)
    setting = theory.make_setting(1.0, sigma2, seed=seed)
    horizon = 100.0 if quick else 1000.0  # gradient-flow time
    normalized_horizon = 30.0  # the normalized rule decays ~10 decades by then
    runs = {}
    for name, method, normalization, length in [
        ("directcopy", "directcopy", "none", horizon),
        ("directpred", "directpred", "none", horizon),
        ("directcopy_spectral", "directcopy", "spectral", normalized_horizon),
        ("directpred_spectral", "directpred", "spectral", normalized_horizon),
    ]:
        lr = 0.5 * theory.stable_learning_rate(
            1.0, sigma2, weight_decay, eps, method, normalization, 1e-3
        )
        steps = int(np.ceil(length / lr))
        result = theory.simulate_population(
            setting, method, weight_decay, eps, normalization, learning_rate=lr,
            steps=steps, init_scale=1e-3, record_every=max(1, steps // 200), seed=seed,
        )
        runs[name] = result
    predicted = {
        method: theory.predicted_final_norms(1.0, sigma2, weight_decay, eps, method, 1e-3)
        for method in theory.METHODS
    }
    return sigma2, runs, predicted


def run_thresholds(eps, weight_decays, seed, quick):
    """(b) final norms against `sigma^2` for several weight decays."""
    # An offset grid, so that no predicted threshold falls on a direction.
    sigma2 = 0.03 + (0.3 if quick else 0.1) * np.arange(20 if quick else 60)
    setting = theory.make_setting(1.0, sigma2, seed=seed)
    # A small start keeps p(0) = eps + O(init) close to the eps of the growth
    # condition (DirectPred's p is linear in the norm).
    init = 1e-5
    horizon = 100.0 if quick else 1000.0
    runs = []
    for method in theory.METHODS:
        for eta in weight_decays:
            lr = 0.5 * theory.stable_learning_rate(1.0, sigma2, eta, eps, method, "none", init)
            steps = int(np.ceil(horizon / lr))
            result = theory.simulate_population(
                setting, method, eta, eps, learning_rate=lr, steps=steps,
                init_scale=init, record_every=steps, seed=seed,
            )
            predicted = theory.predicted_final_norms(1.0, sigma2, eta, eps, method, init)
            kept = result.final_norms > init  # grew: the sign of g(p(0))
            predicted_kept = predicted > 0
            runs.append(
                dict(
                    method=method,
                    weight_decay=eta,
                    steps=steps,
                    learning_rate=lr,
                    growth_threshold=_rounded(float(theory.growth_threshold(1.0, eta, eps))),
                    # None for eta = 0: a fixed point exists for every sigma^2.
                    fixed_point_threshold=_rounded(_finite(theory.fixed_point_threshold(1.0, eta))),
                    empirical_threshold=_rounded(theory.empirical_threshold(sigma2, kept)),
                    num_kept=int(kept.sum()),
                    final_norms=result.final_norms.tolist(),
                    predicted_final_norms=predicted.tolist(),
                    # Over kept directions at least 0.5 (in sigma^2) inside
                    # the threshold, whose convergence time is short.
                    max_relative_error_kept=_max_relative_error(
                        result.final_norms, predicted,
                        predicted_kept
                        & (sigma2 < theory.growth_threshold(1.0, eta, eps) - 0.5),
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
    setting = theory.make_setting(data_variance, sigma2, seed=seed + 1)
    steps = 500 if quick else 2500
    result = theory.simulate_sgd(
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
    errors = theory.sample_complexity(
        setting, representations, coefficients, sample_sizes,
        trials=trials, noise_std=noise_std, seed=seed + 4,
    )
    predicted = theory.predicted_final_norms(
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
            k: theory.samples_to_reach(sample_sizes, v[0], 0.2) for k, v in errors.items()
        },
    )


def _rounded(value, digits=6):
    # Grid midpoints such as 3.9800000000000004 print as 3.98.
    return None if value is None else round(value, digits)


def _finite(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _max_relative_error(actual, expected, mask):
    if not mask.any():
        return None
    return float(np.max(np.abs(actual[mask] - expected[mask]) / expected[mask]))


PANEL_W, PANEL_H = 470, 330
MARGIN_L, MARGIN_T, MARGIN_R, MARGIN_B = 110, 70, 30, 70


def _panel_box(column):
    """Plotting area `(left, top, right, bottom)` of the panel in `column`."""
    left = column * (PANEL_W + MARGIN_L + MARGIN_R) + MARGIN_L
    return left, MARGIN_T, left + PANEL_W, MARGIN_T + PANEL_H


def figure_trajectories(sigma2, runs, eps, weight_decay):
    """(a): three panels of `||W u_i||` against time, coloured by `sigma_i^2`."""
    threshold = float(theory.growth_threshold(1.0, weight_decay, eps))
    panels = [
        ("directcopy", "DirectCopy  W_p = F + εI"),
        ("directpred", "DirectPred  W_p = F^1/2 + εI"),
        ("directcopy_spectral", "normalized  W_p = F/‖F‖ + εI"),
    ]
    colorbar_width = 90
    width = 3 * (PANEL_W + MARGIN_L + MARGIN_R) + colorbar_width
    image = new_canvas(PANEL_H + MARGIN_T + MARGIN_B + 80, width)
    vmax = float(sigma2.max())
    for column, (name, title) in enumerate(panels):
        result = runs[name]
        times = result.times
        axes = Axes(image, _panel_box(column), (0.0, times[-1]), (1e-12, 3.0), log_y=True)
        axes.hline(1e-3, GRAY)
        order = np.argsort(-sigma2)  # low-variance (bright) lines drawn last
        for i in order:
            axes.plot(times, result.norms[:, i], colormap(sigma2[i] / vmax))
        axes.decorate(title, "training time (steps x lr)", "‖W u_i‖")
    colorbar(image, (width - 70, MARGIN_T + 30, width - 55, MARGIN_T + PANEL_H - 10),
             0.0, vmax, "σ²")
    draw_caption(
        image, 16, PANEL_H + MARGIN_T + MARGIN_B + 10,
        f"x_i = 1, ε = {eps:g}, η = {weight_decay:g}: predicted threshold σ² < {threshold:g}. "
        "Unnormalized rules keep the low-variance directions; the normalized rule "
        "decays them all.",
    )
    return image


def figure_thresholds(sigma2, init, runs, eps):
    """(b): final norms against `sigma^2`, one panel per method, one colour per `eta`."""
    etas = sorted({run["weight_decay"] for run in runs})
    colors = {eta: PALETTE[i % len(PALETTE)] for i, eta in enumerate(etas)}
    width = 2 * (PANEL_W + MARGIN_L + MARGIN_R) + 250
    image = new_canvas(PANEL_H + MARGIN_T + MARGIN_B + 80, width)
    fine = np.linspace(sigma2.min(), sigma2.max(), 600)
    for column, method in enumerate(theory.METHODS):
        axes = Axes(image, _panel_box(column), (0.0, float(sigma2.max()) + 0.1), (1e-8, 3.0),
                    log_y=True)
        axes.hline(init, GRAY)
        for eta in etas:
            run = next(r for r in runs if r["method"] == method and r["weight_decay"] == eta)
            color = colors[eta]
            curve = theory.predicted_final_norms(1.0, fine, eta, eps, method, init)
            axes.plot(fine, np.where(curve > 0, curve, np.nan), color)
            axes.vline(run["growth_threshold"], color)
            axes.scatter(sigma2, run["final_norms"], color, radius=3)
        axes.decorate(f"{METHOD_LABELS[method]}: final norm of each direction",
                      "augmentation variance σ² of the direction", "final ‖W u_i‖")
    legend_x = 2 * (PANEL_W + MARGIN_L + MARGIN_R) - 10
    entries = [(f"η = {eta:g}", colors[eta]) for eta in etas]
    y = side_legend(image, legend_x, MARGIN_T + 10, entries)
    y += 10
    for line in ["dots: simulation", "lines: fixed point", "dashes: threshold", "gray: start"]:
        draw_text(image, legend_x, y, line)
        y += 22
    draw_caption(
        image, 16, PANEL_H + MARGIN_T + MARGIN_B + 10,
        f"x_i = 1, ε = {eps:g}. Kept iff σ² < (ε x - η)/ε² - x; each unit of η lowers "
        f"the threshold by 1/ε² = {1 / eps**2:g}. Dots below a line: not converged yet.",
    )
    return image


def figure_sample_complexity(result):
    """(c): test error against the number of labelled samples, per representation."""
    sizes = np.asarray(result["sample_sizes"], np.float64)
    width = PANEL_W + 400 + MARGIN_L + MARGIN_R
    image = new_canvas(PANEL_H + MARGIN_T + MARGIN_B + 80, width)
    ticks = [v for v in 2 ** np.arange(1, 12) if sizes.min() <= v <= sizes.max()]
    axes = Axes(image, _panel_box(0), (sizes.min() / 1.1, sizes.max() * 1.1), (0.0, 2.0),
                log_x=True, xticks=ticks)
    entries = []
    labels = {
        "raw": f"raw input ({result['num_signal'] + result['num_nuisance']} dims)",
        "learned": "DirectCopy features W x",
        "pca": f"top-{result['num_signal']} PCA",
    }
    for i, name in enumerate(["raw", "learned", "pca"]):
        mean = np.asarray(result["mean_error"][name])
        axes.plot(sizes, mean, PALETTE[i])
        axes.scatter(sizes, mean, PALETTE[i], radius=3)
        entries.append((labels[name], PALETTE[i]))
    axes.hline(1.0, GRAY)
    axes.decorate("Linear probe on a label of the kept directions",
                  "labelled samples n", "test error / label variance")
    side_legend(image, MARGIN_L + PANEL_W + MARGIN_R + 10, MARGIN_T + 10, entries)
    draw_caption(
        image, 16, PANEL_H + MARGIN_T + MARGIN_B + 10,
        f"{result['num_signal']} label directions (x=1, σ²=0.5), "
        f"{result['num_nuisance']} nuisance (x=2, σ²=8). Features learned by SGD on "
        "unlabelled pairs of views; ridge penalty by leave-one-out; mean of "
        f"{result['trials']} labelled sets per n. Gray: the error of predicting 0.",
    )
    return image


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
    write_png(os.path.join(output_dir, "theory_trajectories.png"),
              figure_trajectories(sigma2_a, runs_a, eps, FLAGS.trajectory_weight_decay))

    sigma2_b, init_b, runs_b = run_thresholds(eps, etas, FLAGS.seed, FLAGS.quick)
    write_png(os.path.join(output_dir, "theory_thresholds.png"),
              figure_thresholds(sigma2_b, init_b, runs_b, eps))

    result_c = run_sample_complexity(eps, FLAGS.trajectory_weight_decay, FLAGS.seed, FLAGS.quick)
    write_png(os.path.join(output_dir, "theory_sample_complexity.png"),
              figure_sample_complexity(result_c))

    summary = dict(
        command=" ".join(["python", "scripts/linear_theory.py"] + sys.argv[1:]),
        hardware=dict(
            machine=platform.machine(), processor=_cpu_model(),
            cpu_count=os.cpu_count(), python=platform.python_version(),
            numpy=np.__version__, tensorflow=tf.__version__,
        ),
        eps=eps,
        data_variance=1.0,
        trajectories=dict(
            weight_decay=FLAGS.trajectory_weight_decay,
            augmentation_variance=sigma2_a.tolist(),
            growth_threshold=float(
                theory.growth_threshold(1.0, FLAGS.trajectory_weight_decay, eps)
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
    app.run(main)
