"""benchmarks/theory_lab/linear_theory.py: the theory lab's figures plot what
its experiments computed, and the script writes them with their numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_directcopy.theory import linear_network

STUDY = Path(__file__).resolve().parent
EPS = 0.2
METHODS = linear_network.METHODS

@pytest.mark.slow
def test_theory_lab_script_writes_figures_and_numbers(tmp_path):
    completed = subprocess.run(
        [sys.executable, os.fspath(STUDY / "linear_theory.py"), "--quick",
         f"--output_dir={tmp_path}"],
        cwd=STUDY.parents[1], capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for name in ["theory_trajectories", "theory_thresholds", "theory_sample_complexity"]:
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        image = tf.io.decode_png(png, channels=3).numpy()
        assert image.shape[0] > 300 and image.shape[1] > 600
    summary = json.loads((tmp_path / "theory_lab.json").read_text())
    spacing = 0.3  # the --quick grid
    for run in summary["thresholds"]["runs"]:
        assert abs(run["empirical_threshold"] - run["growth_threshold"]) <= spacing / 2
    assert summary["sample_complexity"]["samples_to_error_0_2"]["learned"] is not None
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.fixture(scope="module")
def lab_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "linear_theory", STUDY / "linear_theory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines no flags: main's caller does
    return module


def test_theory_figures_plot_the_simulated_numbers(lab_script, tmp_path):
    """What each figure plots is what the experiments computed, point for point."""
    eta = 0.05
    sigma2, runs, _ = lab_script.run_trajectories(EPS, eta, seed=0, quick=True)
    series = lab_script.figure_trajectories(sigma2, runs, EPS, eta, tmp_path / "a.png")
    assert list(series["panels"]) == ["directcopy", "directpred", "directcopy_spectral"]
    for name, panel in series["panels"].items():
        np.testing.assert_array_equal(panel["norms"], runs[name].norms)
        np.testing.assert_array_equal(panel["time"], runs[name].times)
    assert series["growth_threshold"] == linear_network.growth_threshold(1.0, eta, EPS) == 2.75

    sigma2, init, runs = lab_script.run_thresholds(EPS, [0.0, 0.1], seed=0, quick=True)
    series = lab_script.figure_thresholds(sigma2, init, runs, EPS, tmp_path / "b.png")
    assert series["init_scale"] == init and len(runs) == 2 * len(METHODS)
    for run in runs:
        plotted = series[run["method"]][run["weight_decay"]]
        assert plotted["final_norms"] == run["final_norms"] and len(run["final_norms"]) == len(sigma2)
        assert plotted["growth_threshold"] == pytest.approx(
            linear_network.growth_threshold(1.0, run["weight_decay"], EPS))
        curve = linear_network.predicted_final_norms(
            1.0, np.asarray(plotted["fine_variance"]), run["weight_decay"], EPS, run["method"], init)
        np.testing.assert_array_equal(plotted["fixed_point"], np.where(curve > 0, curve, np.nan))

    result = dict(num_signal=2, num_nuisance=3, trials=5, sample_sizes=[2, 4, 8],
                  mean_error={"raw": [1.0, 0.5, 0.2], "learned": [0.4, 0.1, 0.05],
                              "pca": [1.2, 1.1, 1.0]})
    series = lab_script.figure_sample_complexity(result, tmp_path / "c.png")
    assert series["sample_sizes"] == result["sample_sizes"]
    assert series["mean_error"] == result["mean_error"]
    for name in "abc":
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
