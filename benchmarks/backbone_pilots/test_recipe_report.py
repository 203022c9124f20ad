"""The recipe pilot's report (recipe_report.py): kNN at equal CPU-hours,
interpolated and never extrapolated, from each candidate's run files; and
the committed CIFAR-100 ResNet-18 pilot's README holds the report its
files give."""

import json
import shutil
from pathlib import Path

import pytest

import recipe_report

PILOT = Path(__file__).resolve().parent / "cifar100_resnet18"


def write_candidate(pilot_dir, name, evaluations, **recipe):
    """`evaluations`: (epoch, CPU-hours, kNN fraction); epochs without kNN go between them."""
    folder = pilot_dir / name
    folder.mkdir(parents=True)
    records = []
    for epoch, hours, knn in evaluations:
        records.append({"epoch": epoch - 0.5, "cpu_time_s": 3600 * hours - 1})  # an epoch without kNN
        records.append({"epoch": epoch, "cpu_time_s": 3600 * hours, "knn_accuracy": knn})
    (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "run.json").write_text(json.dumps({"recipe": {
        "target_init": "copy", "ema": 0.99, "ema_schedule": "cosine", "lr": 0.06,
        "lr_schedule": "warmup_cosine", "warmup_epochs": 2.0, "epochs": 90, **recipe}}))


def test_knn_at_equal_cpu_hours_is_interpolated_and_never_extrapolated(tmp_path):
    write_candidate(tmp_path, "fast", [(2, 0.4, 0.20), (4, 1.2, 0.30)])
    write_candidate(tmp_path, "slow", [(2, 0.8, 0.18), (4, 1.6, 0.26)], target_init="independent", lr=0.03)
    (tmp_path / "random_init.json").write_text(json.dumps({"knn": {"top1": 0.1315}}))
    (tmp_path / "not_a_candidate").mkdir()

    text = recipe_report.write_report(str(tmp_path))
    assert (tmp_path / "pilot.md").read_text() == text + "\n"
    assert (tmp_path / "knn_vs_cpu_hours.png").read_bytes().startswith(b"\x89PNG")
    assert "| `slow` | own random weights | 0.99 | cosine | 0.03 | warmup_cosine | 2 | 90 |" in text
    assert "(random init: 13.15%)" in text
    assert "| candidate | 0.5 CPU-h | 1 CPU-h | 1.5 CPU-h |" in text
    # fast: 20% at 0.4 h, 30% at 1.2 h -> 21.25% at 0.5 h, 27.50% at 1 h; not evaluated beyond 1.2 h.
    assert "| `fast` | 21.25 | 27.50 | — |" in text
    assert "| `slow` | — | 20.00 | 25.00 |" in text
    assert "| `slow` | 4 | 1.60 | 26.00 |" in text


def test_a_folder_without_candidates_or_floor_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="No candidate in"):
        recipe_report.write_report(str(tmp_path))
    write_candidate(tmp_path, "fast", [(2, 0.4, 0.20)])
    with pytest.raises(ValueError, match="random_init.json is missing: write it with scripts/evaluate.py"):
        recipe_report.write_report(str(tmp_path))


def test_the_committed_pilot_readme_holds_the_report_of_its_files(tmp_path):
    pilot = tmp_path / "pilot"
    shutil.copytree(PILOT, pilot)
    text = recipe_report.write_report(str(pilot))
    assert (PILOT / "pilot.md").read_text() == text + "\n"
    assert text in (PILOT / "README.md").read_text()
