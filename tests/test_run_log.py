"""The run log: cumulative cost across resumes and one record per epoch.
(The end-to-end resume after kill -9 is in test_pretrain.py.)"""

import json
import re
import subprocess

import keras
import numpy as np
import pytest

from keras_directcopy.configs import DATASET_CONTENTS_KEY
from keras_directcopy.training.run_log import (
    HISTORY_FILENAME, PROGRESS_FILENAME, RunLog, hardware_parts, read_history,
)
from keras_directcopy.utils.provenance import git_commit


def fit_with(run_log, epochs):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = np.ones((8, 3), np.float32)
    model.fit(x, x[:, :1], batch_size=4, epochs=epochs, callbacks=[run_log], verbose=0)


def test_totals_and_history_continue_after_resume(tmp_path):
    first = RunLog(str(tmp_path), command="first", git_commit="aaa")
    first.start(resumed=False)
    fit_with(first, epochs=2)
    first.flush()
    wall, cpu = first.progress["wall_time_s"], first.progress["cpu_time_s"]
    assert wall > 0 and cpu > 0

    second = RunLog(str(tmp_path), command="second", git_commit="bbb")
    second.start(resumed=True)
    fit_with(second, epochs=1)
    second.flush()
    progress = json.loads((tmp_path / PROGRESS_FILENAME).read_text())
    assert [(entry["command"], entry["git_commit"]) for entry in progress["invocations"]] == [
        ("first", "aaa"), ("second", "bbb")]
    assert progress["wall_time_s"] >= round(wall, 1) and progress["cpu_time_s"] >= round(cpu, 1)
    lines = (tmp_path / HISTORY_FILENAME).read_text().splitlines()
    assert len(lines) == 3 and all("loss" in json.loads(line) for line in lines)


def test_fresh_start_discards_an_old_history(tmp_path):
    (tmp_path / HISTORY_FILENAME).write_text(json.dumps({"epoch": 1, "loss": 9.0}) + "\n")
    (tmp_path / PROGRESS_FILENAME).write_text(json.dumps(
        {"wall_time_s": 1e6, "cpu_time_s": 1e6, "invocations": [{"command": "old"}]}
    ))
    run_log = RunLog(str(tmp_path), command="new")
    run_log.start(resumed=False)
    assert not (tmp_path / HISTORY_FILENAME).exists()
    progress = json.loads((tmp_path / PROGRESS_FILENAME).read_text())
    assert progress["wall_time_s"] < 1e6 and len(progress["invocations"]) == 1


def test_read_history_keeps_the_last_record_of_a_redone_epoch(tmp_path):
    records = [{"epoch": 1, "loss": 3.0}, {"epoch": 2, "loss": 2.0},
               {"epoch": 2, "loss": 1.5}, {"epoch": 3, "loss": 1.0}]
    (tmp_path / HISTORY_FILENAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    history = read_history(str(tmp_path))
    assert [(r["epoch"], r["loss"]) for r in history] == [(1, 3.0), (2, 1.5), (3, 1.0)]


@pytest.mark.slow
def test_git_commit_marks_a_checkout_with_changed_tracked_files(tmp_path):
    def git(*arguments):
        return subprocess.run(["git", "-C", str(tmp_path), *arguments], check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git("rev-parse", "HEAD")
    (tmp_path / "untracked.txt").write_text("not code of the run\n")
    assert git_commit(str(tmp_path)) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(str(tmp_path)) == head + "-dirty"
    outside = tmp_path.parent / f"{tmp_path.name}_no_checkout"  # pytest's tmp is not in a repo
    outside.mkdir()
    assert git_commit(str(outside)) == "unknown"


AMD = {"cpu_model": "AMD EPYC 9B14", "avx512": True}
INTEL = {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_family_model": "family 6 model 207", "avx512": True}


def test_each_invocation_records_its_machine_first_step_and_the_totals_it_started_at(tmp_path):
    first = RunLog(str(tmp_path), command="first", hardware=AMD)
    first.start(resumed=False)
    fit_with(first, epochs=2)
    first.flush()
    second = RunLog(str(tmp_path), command="second", hardware=INTEL)
    second.start(resumed=True, step=4)
    progress = json.loads((tmp_path / PROGRESS_FILENAME).read_text())
    one, two = progress["invocations"]
    assert (one["hardware"], one["first_step"], one["run_cpu_time_s_at_start"]) == (AMD, 0, 0.0)
    assert (two["hardware"], two["first_step"]) == (INTEL, 4)
    # The second starts where the first's totals ended, so each one's cost is known.
    assert two["run_cpu_time_s_at_start"] == round(first.progress["cpu_time_s"], 1) > 0
    assert two["run_wall_time_s_at_start"] == round(first.progress["wall_time_s"], 1) > 0


def invocation(hardware, first_step, wall, cpu):
    return {"command": "c", "hardware": hardware, "first_step": first_step,
            "run_wall_time_s_at_start": wall, "run_cpu_time_s_at_start": cpu}


def test_hardware_parts_group_consecutive_invocations_on_one_machine_with_their_cost():
    progress = {"wall_time_s": 1000.0, "cpu_time_s": 1900.0, "invocations": [
        invocation(AMD, 0, 0.0, 0.0), invocation(AMD, 300, 200.0, 390.0),
        invocation(INTEL, 700, 450.0, 880.0), invocation(AMD, 900, 800.0, 1500.0)]}
    assert hardware_parts(progress) == [
        {"invocations": [1, 2], "hardware": AMD, "first_step": 0, "wall_time_s": 450.0, "cpu_time_s": 880.0},
        {"invocations": [3], "hardware": INTEL, "first_step": 700, "wall_time_s": 350.0, "cpu_time_s": 620.0},
        {"invocations": [4], "hardware": AMD, "first_step": 900, "wall_time_s": 200.0, "cpu_time_s": 400.0},
    ]
    parts = hardware_parts(progress)
    assert sum(part["cpu_time_s"] for part in parts) == progress["cpu_time_s"]


def test_hardware_parts_of_a_run_whose_first_invocations_predate_the_record():
    # Invocations recorded before progress.json held the machine: one part
    # without hardware, whose cost ends where the first recorded one starts.
    progress = {"wall_time_s": 900.0, "cpu_time_s": 1700.0, "invocations": [
        {"command": "c"}, {"command": "c"}, invocation(INTEL, 500, 600.0, 1100.0)]}
    assert hardware_parts(progress) == [
        {"invocations": [1, 2], "hardware": None, "first_step": 0, "wall_time_s": 600.0, "cpu_time_s": 1100.0},
        {"invocations": [3], "hardware": INTEL, "first_step": 500, "wall_time_s": 300.0, "cpu_time_s": 600.0},
    ]
    only_old = {"wall_time_s": 5.0, "cpu_time_s": 9.0, "invocations": [{"command": "c"}, {"command": "c"}]}
    assert hardware_parts(only_old) == [
        {"invocations": [1, 2], "hardware": None, "first_step": 0, "wall_time_s": 5.0, "cpu_time_s": 9.0}]


def test_the_cpu_record_names_family_and_model_numbers_where_the_cpu_reports_them():
    from keras_directcopy.utils.provenance import cpu_model

    cpu = cpu_model()
    with open("/proc/cpuinfo") as cpuinfo:
        text = cpuinfo.read()
    if "cpu family" in text:  # x86
        assert re.fullmatch(r"family \d+ model \d+", cpu["family_model"])
    else:
        assert cpu["family_model"] is None


RECIPE = {"dataset": "cifar10", "lr": 0.03, "epochs": 100, "image_size": 32, DATASET_CONTENTS_KEY: None}


def test_a_run_resumes_only_with_the_recipe_it_recorded(tmp_path):
    first = RunLog(str(tmp_path), command="python scripts/pretrain.py --lr=0.03", recipe=RECIPE)
    first.check_recipe()  # nothing recorded yet: a new run
    first.start(resumed=False)
    assert json.loads((tmp_path / PROGRESS_FILENAME).read_text())["invocations"][0]["recipe"] == RECIPE

    RunLog(str(tmp_path), recipe=dict(RECIPE)).check_recipe()  # the same recipe resumes
    # A config field added by a newer version of the package is not a change.
    RunLog(str(tmp_path), recipe={**RECIPE, "a_new_field": 1}).check_recipe()
    changed = RunLog(str(tmp_path), recipe={**RECIPE, "lr": 0.1, "epochs": 50})
    with pytest.raises(ValueError) as error:
        changed.check_recipe()
    message = str(error.value)
    assert "--epochs 100 in the run, 50 here" in message and "--lr 0.03 in the run, 0.1 here" in message
    assert "python scripts/pretrain.py --lr=0.03" in message and "another --output_dir" in message
    assert "copy its backup/ folder alone into the new one" in message
    moved = RunLog(str(tmp_path), recipe={**RECIPE, DATASET_CONTENTS_KEY: "0" * 64})
    with pytest.raises(ValueError, match="class folders or image counts are not the run's"):
        moved.check_recipe()


def test_runs_from_before_the_recipe_record_are_not_checked(tmp_path):
    (tmp_path / PROGRESS_FILENAME).write_text(json.dumps(
        {"wall_time_s": 1.0, "cpu_time_s": 1.0, "invocations": [{"command": "old"}]}
    ))
    RunLog(str(tmp_path), recipe=RECIPE).check_recipe()
    run_log = RunLog(str(tmp_path), recipe=RECIPE)
    run_log.start(resumed=True)
    # From now on the run has a recipe to be checked against.
    with pytest.raises(ValueError, match="--lr 0.03 in the run, 0.3 here"):
        RunLog(str(tmp_path), recipe={**RECIPE, "lr": 0.3}).check_recipe()
