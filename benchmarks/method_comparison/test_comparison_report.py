"""benchmarks/method_comparison/comparison_report.py: the method-comparison table and plot are
computed from the result files alone."""

import json
import shutil
import sys
from pathlib import Path

import comparison_report  # this study's folder, which benchmarks/conftest.py puts on sys.path
import numpy as np
import pytest
from absl import app, flags

STUDY = Path(__file__).resolve().parent
PILOTS = STUDY.parent / "backbone_pilots"


def write_run(results_dir, arm, seed, knn, linear, curve=(), cpu_time_s=None):
    folder = results_dir / f"{arm}_seed{seed}"
    folder.mkdir(parents=True)
    evaluation = {"knn": {"top1": knn, "k": 200, "test_examples": 10000},
                  "linear_probe": {"top1": linear, "epochs": 100}}
    (folder / "eval.json").write_text(json.dumps(evaluation))
    run = {"config": {"backbone": "resnet18", "width_multiplier": 0.25, "batch_size": 128,
                      "lr": 0.03, "weight_decay": 0.0004, "ema": 0.996},
           "epochs_done": len(curve), "steps": 390 * len(curve), "steps_per_epoch": 390,
           "pretrain_examples": 50000, "hardware": {"cpu_count": 2, "processor": "x86_64"}}
    if cpu_time_s is not None:
        run["cpu_time_s"] = cpu_time_s
    if curve:
        (folder / "run.json").write_text(json.dumps(run))
        lines = [json.dumps({"epoch": e + 1, "knn_accuracy": a}) for e, a in enumerate(curve)]
        (folder / "history.jsonl").write_text("\n".join(lines) + "\n")


def test_table_has_mean_sample_std_and_every_seed(tmp_path):
    write_run(tmp_path, "directpred", 0, 0.60, 0.65, curve=(0.4, 0.6), cpu_time_s=3600)
    write_run(tmp_path, "directcopy", 0, 0.70, 0.75, curve=(0.5, 0.7), cpu_time_s=3600)
    write_run(tmp_path, "directcopy", 1, 0.72, 0.76, curve=(0.5, 0.72), cpu_time_s=7200)
    write_run(tmp_path, "random_init", 0, 0.30, 0.35)
    (tmp_path / "linear_seed0").mkdir()  # not evaluated yet: left out

    text = comparison_report.write_report(str(tmp_path))
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == [
        "DirectCopy", "DirectPred", "random init (no training)"]
    std = np.std([70.0, 72.0], ddof=1)
    assert f"| 71.00 ± {std:.2f} | 75.50 ± {np.std([75.0, 76.0], ddof=1):.2f} |" in rows[0]
    assert "70.00 / 72.00" in rows[0] and "| 1.00 / 2.00 |" in rows[0]
    assert "| 60.00 | 65.00 |" in rows[1] and "0 (not trained)" in rows[2]
    assert "width multiplier 0.25), 2 epochs of 390 steps at batch 128" in text
    assert (tmp_path / "results.md").read_text() == text
    png = (tmp_path / "knn_over_epochs.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    series = comparison_report.knn_series(comparison_report.load_results(str(tmp_path)))
    assert series["runs"] == {"directcopy": {0: ([1, 2], [50.0, 70.0]), 1: ([1, 2], [50.0, 72.0])},
                              "directpred": {0: ([1, 2], [40.0, 60.0])}}
    assert series["random_init"] == [30.0]


def test_no_results_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="compare_methods.py"):
        comparison_report.write_report(str(tmp_path))


@pytest.mark.parametrize("pilot, first_row", [
    ("cifar10", "| resnet18, width 0.25 | 32 |"),
    ("imagenette", "| resnet18, width 0.5 | 96 | 2,803,680 | 256 | 50 of 560 |"),
])
def test_each_pilot_readme_matches_its_result_files(pilot, first_row):
    pilot_dir = PILOTS / pilot
    table = comparison_report.pilot_table(str(pilot_dir))
    assert table in (pilot_dir / "README.md").read_text()
    assert (pilot_dir / "pilot.md").read_text() == table + "\n"
    rows = table.splitlines()[2:]
    # One row per candidate that ran (a run.json beside its random_init.json).
    ran = [folder for folder in pilot_dir.iterdir() if (folder / "run.json").exists()]
    assert len(rows) == len(ran) >= 1 and rows[0].startswith(first_row)


def parse_command_line(*arguments):
    """`(argv, flag values)` of `comparison_report.py ARGUMENTS`, as app.run parses them."""
    values = flags.FlagValues()
    comparison_report.define_flags(values)
    return values(["comparison_report.py", *arguments]), values


def test_the_command_line_prints_the_report_of_a_results_folder(tmp_path, capsys):
    readme = (STUDY / "README.md").read_text()
    assert "python benchmarks/method_comparison/comparison_report.py benchmarks/method_comparison/results/round1" in readme
    write_run(tmp_path, "directcopy", 0, 0.70, 0.75, curve=(0.5, 0.7), cpu_time_s=3600)
    comparison_report.main(*parse_command_line(str(tmp_path)))
    printed = capsys.readouterr().out
    assert "| DirectCopy | 0 | 70.00 | 75.00 |" in printed
    assert printed == (tmp_path / comparison_report.TABLE_FILENAME).read_text() + "\n"
    with pytest.raises(app.UsageError, match="Pass one folder"):
        comparison_report.main(*parse_command_line())
    with pytest.raises(app.UsageError, match="Pass one folder"):
        comparison_report.main(*parse_command_line(str(tmp_path), str(tmp_path)))


@pytest.mark.slow
def test_the_pilot_command_of_its_readme_writes_the_committed_table(tmp_path):
    """`python benchmarks/method_comparison/comparison_report.py --pilot DIR`, as the pilot's README
    runs it (on a copy), and with the flag after the folder."""
    import subprocess

    pilot_dir = PILOTS / "cifar10"
    command = "python benchmarks/method_comparison/comparison_report.py --pilot benchmarks/backbone_pilots/cifar10"
    assert command in (pilot_dir / "README.md").read_text()
    copy = tmp_path / "pilot"
    shutil.copytree(pilot_dir, copy)
    (copy / comparison_report.PILOT_TABLE_FILENAME).unlink()
    result = subprocess.run([sys.executable, str(STUDY / "comparison_report.py"), "--pilot", str(copy)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (pilot_dir / comparison_report.PILOT_TABLE_FILENAME).read_text()
    assert (copy / comparison_report.PILOT_TABLE_FILENAME).read_text() == table
    assert result.stdout == table
    argv, values = parse_command_line(str(copy), "--pilot")
    assert argv[1:] == [str(copy)] and values.pilot


def test_method_comparison_readme_matches_its_result_files(tmp_path):
    """The README's table and the committed plot are what the committed
    run.json / history.jsonl / eval.json files give."""
    results_dir = STUDY / "results" / "round1"
    copy = tmp_path / "results"
    shutil.copytree(results_dir, copy)
    text = comparison_report.write_report(str(copy))
    assert (results_dir / comparison_report.TABLE_FILENAME).read_text() == text
    assert (copy / comparison_report.PLOT_FILENAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The plotted series are the kNN monitor of each run's history.jsonl and
    # the random-init evaluations, read here straight from the files.
    series = comparison_report.plot_knn_over_epochs(
        comparison_report.load_results(str(results_dir)), str(tmp_path / "plot.png"), {})
    expected = {}
    for folder in sorted(results_dir.glob("*_seed*")):
        arm, seed = folder.name.rsplit("_seed", 1)
        if arm == "random_init":
            continue
        records = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
        records = [r for r in records if "knn_accuracy" in r]
        expected.setdefault(arm, {})[int(seed)] = (
            [r["epoch"] for r in records], [100 * r["knn_accuracy"] for r in records])
    assert series["runs"] == expected
    assert [e for runs in expected.values() for e, _ in runs.values()] == [[2, 4, 6, 8, 10]] * 6
    floor = [json.loads((results_dir / f"random_init_seed{s}" / "eval.json").read_text())["knn"]["top1"]
             for s in (0, 1)]
    assert series["random_init"] == [100 * v for v in floor]
    readme = (STUDY / "README.md").read_text()
    assert text.strip() in readme
    assert f"(results/round1/{comparison_report.PLOT_FILENAME})" in readme
    results = comparison_report.load_results(str(results_dir))
    assert {arm: sorted(r["seed"] for r in runs) for arm, runs in results.items()} == {
        arm: [0, 1] for arm in comparison_report.DEFAULT_ARMS}
    trained = [r["run"] for arm, runs in results.items() if arm != "random_init" for r in runs]
    assert {(run["epochs_done"], run["config"]["backbone"]) for run in trained} == {(10, "resnet20")}
    assert not (results_dir / "resume").exists(), "the in-progress state outlived the comparison"


def test_a_study_file_names_orders_and_labels_the_arms(tmp_path):
    study = {"arms": {
        "directpred_eps0.1": {"label": "DirectPred, eps 0.1", "flags": ["--predictor=directpred", "--eps=0.1"]},
        "directcopy_frobenius_eps0.3": {
            "label": "DirectCopy, Frobenius, eps 0.3",
            "flags": ["--predictor=directcopy", "--normalization=frobenius", "--eps=0.3"]},
        "random_init": {"label": "random init (no training)"},
    }}
    (tmp_path / "study.json").write_text(json.dumps(study))
    write_run(tmp_path, "directcopy_frobenius_eps0.3", 0, 0.70, 0.75, curve=(0.5, 0.7), cpu_time_s=3600)
    write_run(tmp_path, "directpred_eps0.1", 0, 0.60, 0.65, curve=(0.4, 0.6), cpu_time_s=3600)
    write_run(tmp_path, "random_init", 0, 0.30, 0.35)
    final = {"collapse_std": 0.081, "pred_eig_max": 1.1, "pred_eig_min": 0.1, "pred_eff_rank": 97.5}
    run_file = tmp_path / "directpred_eps0.1_seed0" / "run.json"
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "final_metrics": final}))

    assert list(comparison_report.load_arms(str(tmp_path))) == list(study["arms"])
    text = comparison_report.write_report(str(tmp_path))
    labels = [line.split("|")[1].strip() for line in text.splitlines()[2:5]]
    assert labels == ["DirectPred, eps 0.1", "DirectCopy, Frobenius, eps 0.3", "random init (no training)"]
    assert "| DirectPred, eps 0.1 | 0 | 0.081 | 1.1 | 0.1 | 97.5 |" in text


def test_a_study_arm_name_or_flags_that_cannot_work_are_refused(tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({"arms": {"DirectCopy eps 0.3": {"flags": ["--eps=0.3"]}}}))
    with pytest.raises(ValueError, match="must use only a-z, 0-9"):
        comparison_report.load_arms(str(tmp_path))
    (tmp_path / "study.json").write_text(json.dumps({"arms": {"directcopy_eps0.3": {"label": "x"}}}))
    with pytest.raises(ValueError, match="needs the pretrain.py flags"):
        comparison_report.load_arms(str(tmp_path))


@pytest.mark.slow
def test_compare_methods_runs_a_study_end_to_end(tmp_path):
    """benchmarks/method_comparison/compare_methods.py on a two-arm study, for real: pretraining
    (one tiny epoch), evaluation, collection and the report, on a 256-image
    slice of the real CIFAR-10 through tfds."""
    import os
    import subprocess

    from keras_directcopy.data import offline as offline_data

    data_dir = tmp_path / "tfds"
    shared = STUDY.parents[2] / "shared" / "data" / "cifar10"
    offline_data.prepare_cifar10(str(shared), str(data_dir), max_examples_per_split=256)
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    study = {"arms": {
        "directcopy_frobenius_eps0.3": {
            "label": "DirectCopy, Frobenius, eps 0.3",
            "flags": ["--predictor=directcopy", "--normalization=frobenius", "--eps=0.3"]},
        "random_init": {"label": "random init (no training)"},
    }}
    (results_dir / "study.json").write_text(json.dumps(study))
    command = [
        sys.executable, str(STUDY / "compare_methods.py"), f"--data_dir={data_dir}",
        f"--runs_dir={tmp_path / 'runs'}", f"--results_dir={results_dir}", "--seeds=0",
        "--config=quickstart", "--epochs=1", "--knn_every=1",
        "--pretrain_flags=--width_multiplier=0.25,--batch_size=32,--steps_per_epoch=2,--knn_k=20",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((results_dir / "directcopy_frobenius_eps0.3_seed0" / "run.json").read_text())
    assert (run["config"]["normalization"], run["config"]["eps"]) == ("frobenius", 0.3)
    assert run["config"]["width_multiplier"] == 0.25 and run["steps"] == 2
    floor = json.loads((results_dir / "random_init_seed0" / "eval.json").read_text())
    assert floor["knn"]["train_examples"] == 256
    text = (results_dir / comparison_report.TABLE_FILENAME).read_text()
    assert "| DirectCopy, Frobenius, eps 0.3 | 0 |" in text and "| random init (no training) | 0 |" in text


def test_round_two_table_in_the_readme_is_what_its_result_files_give(tmp_path):
    """Round 2 (a study.json folder): the committed table, and the README's
    copy of it, are what the committed run files give."""
    results_dir = STUDY / "results" / "round2"
    copy = tmp_path / "results"
    shutil.copytree(results_dir, copy)
    text = comparison_report.write_report(str(copy))
    assert (results_dir / comparison_report.TABLE_FILENAME).read_text() == text
    assert text.strip() in (STUDY / "README.md").read_text()
    # Every arm with a finished run is in the table, under its study label.
    study = json.loads((results_dir / "study.json").read_text())
    finished = {folder.name.rsplit("_seed", 1)[0] for folder in results_dir.glob("*_seed*")}
    for arm in finished:
        assert f"| {study['arms'][arm]['label']} |" in text
