"""Per-epoch history and cumulative cost of a pretraining run that may be
interrupted and resumed any number of times.

A run directory holds:

* `history.jsonl`: one JSON object per finished epoch, with the epoch's
  logs (loss, `knn_accuracy` where evaluated), the learning rate at its end
  (`lr`) and the run's cumulative wall-clock and CPU seconds at that point.
  An epoch that was interrupted after its line was written and then redone
  appears twice; `read_history` keeps the last line of each epoch. The file
  is rewritten whole, atomically, at each epoch, so a write that fails (a
  full disk) leaves it as it was rather than with half a line.
* `progress.json`: the cumulative totals and, for every invocation, its
  command, git commit, recipe (what it trains: `configs.recipe_fields`, the
  dataset by content and the image size), machine
  (`utils.provenance.hardware_summary`), the step it started at and the
  totals when it started, so that `run.json`
  reports the cost of the whole run rather than of its last invocation,
  which code each part ran, and on which machine (a long run resumed on
  another machine has parts of different speed: `hardware_parts`), and so
  that a run is only resumed with the recipe it was started with
  (`RunLog.check_recipe`).

CPU seconds are the process's CPU time (`time.process_time`: all threads,
input pipeline included), so a run's cost in CPU-hours does not depend on
how busy the machine was.
"""

import json
import os
import time

import keras
import numpy as np

from keras_directcopy.configs import recipe_differences
from keras_directcopy.utils.files import atomic_write_text

HISTORY_FILENAME = "history.jsonl"
PROGRESS_FILENAME = "progress.json"


class RunLog(keras.callbacks.Callback):
    """Writes `history.jsonl` and `progress.json` in `output_dir`.

    Create it when the invocation starts (its clock starts then, so start-up
    and data loading count), then call `start(resumed)` once the backup has
    been restored or not.

    Args:
        output_dir: the run directory.
        command: the command line of this invocation, recorded in
            `progress.json`.
        git_commit: the commit of the code this invocation runs, recorded
            beside its command (a resumed run may span commits).
        hardware: the machine this invocation runs on
            (`utils.provenance.hardware_summary()`), recorded beside it.
        recipe: what this invocation trains, a JSON-serializable dict
            (`training.loop.recipe_record`), recorded beside it and checked
            against the run's by `check_recipe`.
        write: False on non-chief workers of a multi-worker run.
        flush_seconds: also write `progress.json` during an epoch at most
            this often, so an interruption loses at most this much time
            from the totals.
    """

    def __init__(self, output_dir, command=None, git_commit=None, hardware=None, recipe=None,
                 write=True, flush_seconds=60.0):
        super().__init__()
        self.output_dir = output_dir
        self.history_path = os.path.join(output_dir, HISTORY_FILENAME)
        self.progress_path = os.path.join(output_dir, PROGRESS_FILENAME)
        self.command = command
        self.git_commit = git_commit
        self.hardware = hardware
        self.recipe = recipe
        self.write = write
        self.flush_seconds = flush_seconds
        self.progress = {"wall_time_s": 0.0, "cpu_time_s": 0.0, "invocations": []}
        self._mark = (time.time(), time.process_time())
        self._last_flush = self._mark[0]

    def start(self, resumed, step=0):
        """Continues the totals of a resumed run, or starts them from zero
        (a fresh run also truncates an old `history.jsonl`), and records
        this invocation, which starts at optimizer step `step`."""
        if resumed and os.path.exists(self.progress_path):
            with open(self.progress_path) as file:
                self.progress = json.load(file)
        elif self.write and os.path.exists(self.history_path):
            os.remove(self.history_path)
        self.progress["invocations"].append(
            {"command": self.command, "git_commit": self.git_commit,
             "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "recipe": self.recipe, "hardware": self.hardware, "first_step": int(step),
             # The run's totals before this invocation: where its cost begins.
             "run_wall_time_s_at_start": round(self.progress["wall_time_s"], 1),
             "run_cpu_time_s_at_start": round(self.progress["cpu_time_s"], 1)}
        )
        self.flush()

    def check_recipe(self):
        """Refuses to resume a run that was trained with another recipe.

        Call it before resuming from a backup. The recipe is compared with
        the one the run's latest invocation recorded; runs from before
        invocations recorded one are not checked.

        Raises:
            ValueError: naming each setting that differs, its value in the
                run and in this invocation, and the two ways on.
        """
        if self.recipe is None or not os.path.exists(self.progress_path):
            return
        with open(self.progress_path) as file:
            invocations = json.load(file).get("invocations", [])
        recorded = [entry for entry in invocations if entry.get("recipe") is not None]
        if not recorded:
            return
        differences = recipe_differences(recorded[-1]["recipe"], self.recipe)
        if differences:
            raise ValueError(
                f"{self.output_dir} holds a run trained with other settings than this command's: "
                f"{'; '.join(differences)}. Resume it with the settings it was started with (its last "
                f"command: {recorded[-1].get('command')}), or pass another --output_dir to start a "
                "new run (to go on from this run's weights under new settings on purpose, copy its "
                "backup/ folder alone into the new one). Only where the data is, how often to monitor "
                "and back up, and which kernels compute the step may change when resuming."
            )

    def totals(self):
        """`(wall_time_s, cpu_time_s)` of the whole run so far."""
        now = (time.time(), time.process_time())
        self.progress["wall_time_s"] += now[0] - self._mark[0]
        self.progress["cpu_time_s"] += now[1] - self._mark[1]
        self._mark = now
        return self.progress["wall_time_s"], self.progress["cpu_time_s"]

    def flush(self):
        """Writes `progress.json` with the totals so far."""
        self.totals()
        self._last_flush = time.time()
        if self.write:
            atomic_write_text(self.progress_path, json.dumps(_rounded(self.progress), indent=2))

    def on_train_batch_end(self, batch, logs=None):
        if time.time() - self._last_flush > self.flush_seconds:
            self.flush()

    def on_epoch_end(self, epoch, logs=None):
        self.flush()
        record = {"epoch": epoch + 1, "step": int(self.model.optimizer.iterations.numpy())}
        record.update({key: _scalar(value) for key, value in (logs or {}).items()})
        record.update(lr=learning_rate(self.model.optimizer),
                      wall_time_s=round(self.progress["wall_time_s"], 1),
                      cpu_time_s=round(self.progress["cpu_time_s"], 1))
        if self.write:
            history = ""
            if os.path.exists(self.history_path):
                with open(self.history_path) as file:
                    history = file.read()
            atomic_write_text(self.history_path, history + json.dumps(record) + "\n")


def learning_rate(optimizer):
    """The optimizer's learning rate now, a float (that of its current step under a schedule)."""
    return _scalar(optimizer.learning_rate)


def hardware_parts(progress):
    """The run's consecutive parts that ran on one machine, from its
    `progress.json` contents.

    Consecutive invocations with the same `hardware` record form one part;
    invocations recorded before `progress.json` held the machine
    (`hardware` absent) form parts with `hardware` None. Returns a list of
    `{"invocations": [1-based numbers], "hardware": dict | None,
    "first_step": int | None, "wall_time_s": float | None,
    "cpu_time_s": float | None}`, where the times are the part's share of
    the run's totals, None where the invocations that bound it did not
    record the totals they started at.
    """
    invocations = progress.get("invocations", [])
    parts = []
    for number, invocation in enumerate(invocations, start=1):
        hardware = invocation.get("hardware")
        if parts and parts[-1]["hardware"] == hardware:
            parts[-1]["invocations"].append(number)
            continue
        parts.append({"invocations": [number], "hardware": hardware,
                      "first_step": invocation.get("first_step", 0 if number == 1 else None),
                      "_start": invocation})
    ends = [part["_start"] for part in parts[1:]] + [None]
    for part, next_start in zip(parts, ends):
        start = part.pop("_start")
        for key in ("wall_time_s", "cpu_time_s"):
            begin = 0.0 if part["invocations"][0] == 1 else start.get(f"run_{key}_at_start")
            end = progress.get(key) if next_start is None else next_start.get(f"run_{key}_at_start")
            part[key] = None if begin is None or end is None else round(end - begin, 1)
    return parts


def read_history(path):
    """The records of a `history.jsonl` (or of the run directory holding
    it), one per epoch in epoch order; for an epoch logged twice (redone
    after an interruption), the later record."""
    if os.path.isdir(path):
        path = os.path.join(path, HISTORY_FILENAME)
    by_epoch = {}
    with open(path) as file:
        for line in file:
            if line.strip():
                record = json.loads(line)
                by_epoch[record["epoch"]] = record
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _scalar(value):
    value = np.asarray(keras.ops.convert_to_numpy(value))
    return float(value.reshape(-1)[0]) if value.size else None


def _rounded(progress):
    return {**progress, "wall_time_s": round(progress["wall_time_s"], 1),
            "cpu_time_s": round(progress["cpu_time_s"], 1)}
