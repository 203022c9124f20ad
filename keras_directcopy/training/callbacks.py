"""Training callbacks: exact resume, the end of a fit after a given epoch,
and an estimate of the time the remaining steps take.

A non-finite loss is stopped by Keras' `TerminateOnNaN`, and the learning
rate is logged by Keras' `TensorBoard` (`epoch_learning_rate`) and by the
run log; graceful preemption is `preemption.BackupOnPreemption`.
"""

import io
import math
import os
import time

import keras

from keras_directcopy.utils.files import atomic_save


class NonFiniteLossError(RuntimeError):
    """Raised after training stopped on a NaN or infinite loss."""


def non_finite_loss_error(logs, step, learning_rate):
    """The `NonFiniteLossError` to raise after a `fit()` whose last logs are
    `logs`, if their loss is NaN or infinite (`TerminateOnNaN` then stopped
    it at `step`), else None."""
    if finite_loss(logs):
        return None
    return NonFiniteLossError(
        f"Training stopped: the loss became {_scalar(logs['loss'])} at step {step}. "
        f"Lower --lr (now {learning_rate}) or --batch_size, or raise --warmup_epochs. "
        "The last backup before it is intact: re-running the same command resumes from it."
    )


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that writes atomically and resumes mid-epoch exactly.

    Differences from the Keras callback, and why:

    * The backup is written to a temporary file and moved into place with
      `os.replace`, so a kill at any moment leaves the previous backup whole
      (Keras writes the live file in place).
    * The position is the optimizer's step counter, stored inside the
      weights file, so weights and position cannot disagree. `restore()`
      returns it, and the caller runs only the steps that remain (Keras
      restarts the interrupted epoch from its first batch).
    * It backs up at the end of every epoch, and also every `save_freq`
      steps when `save_freq` is an int.
    * A step with a non-finite loss is never backed up.
    * The backup is kept after training, so re-running a finished command
      does nothing.
    * `save()` backs up now (on a preemption signal).

    A write that fails (a full disk) raises `utils.files.WriteFailed` and
    leaves the previous backup as it was.

    Args:
        backup_dir: directory of the backup (created if needed).
        save_freq: `"epoch"`, or an int number of steps.
        write: False on non-chief workers of a multi-worker run, which
            restore from the shared directory but leave writing to the chief.
    """

    FILENAME = "backup.weights.h5"

    def __init__(self, backup_dir, save_freq="epoch", write=True):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
        self.path = os.path.join(backup_dir, self.FILENAME)
        self.write = write
        self._saved_step = None

    def restore(self, model):
        """Loads the backup into `model`, if there is one.

        Returns:
            The number of optimizer steps already done (0 without a backup).

        Raises:
            ValueError: if the backup file exists but cannot be read; the
                message says how to start over.
        """
        if not os.path.exists(self.path):
            return 0
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(self.path)
        except Exception as error:  # h5py raises OSError, Keras ValueError
            raise ValueError(
                f"The backup {self.path} cannot be loaded ({error}). It was written by a "
                "different model or configuration, or it is damaged. Re-run with the "
                "flags of the original run, or delete the backup directory to start over."
            ) from error
        return int(model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        # Restored by `restore()` before fit, which must know the position.
        pass

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        if int(self.model.optimizer.iterations.numpy()) % self.save_freq == 0:
            self.save(logs)

    def on_epoch_end(self, epoch, logs=None):
        self.save(logs)

    def save(self, logs=None):
        """Backs up the current step, unless it is backed up already or its
        loss (in `logs`) is not finite. Returns whether the backup holds the
        current step (on a worker that does not write, whether it would)."""
        if not finite_loss(logs):
            return False
        step = int(self.model.optimizer.iterations.numpy())
        if self.write and step != self._saved_step:
            atomic_save(self.path, lambda temporary: write_weights(self.model, temporary))
        self._saved_step = step
        return True

    def on_train_end(self, logs=None):
        pass


def write_weights(model, path):
    """Writes the file `model.save_weights(path)` writes (`.weights.h5`),
    built in memory and then written to `path` by Python.

    Keras' `save_weights` has HDF5 write to the disk itself. When a write
    fails midway (a full disk, a file-size limit), Keras leaves the file
    open (its `close()` is not in a `finally`), HDF5 fails again as the
    file's objects are released, and the process later dies of a
    segmentation fault in the garbage collector (Keras 3.15, h5py 3)
    instead of reporting the error. Built in memory, as Keras builds the
    weights inside a `.keras` archive, the file reaches the disk through a
    plain write, whose failure is an ordinary `OSError`.

    It calls what `keras.src.saving.saving_lib.save_weights_only` calls,
    with the store in memory; where those functions are missing (another
    Keras), it falls back to `model.save_weights`.
    """
    try:
        from keras.src.saving.saving_lib import H5IOStore, _save_state
    except ImportError:
        model.save_weights(path, overwrite=True)
        return
    buffer = io.BytesIO()
    store = H5IOStore(buffer, mode="w")
    try:
        _save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    finally:
        store.close()
    with open(path, "wb") as file:
        file.write(buffer.getbuffer())


class EndAfterEpoch(keras.callbacks.Callback):
    """Ends `fit()` after the epoch `last_epoch` (1-based).

    So a fit can be given the whole run's `epochs`, which the progress bar
    shows ("Epoch 3/90"), and still stop earlier: after the rest of an epoch
    interrupted mid-way, or at `--stop_at_epoch`.
    """

    def __init__(self, last_epoch):
        super().__init__()
        self.last_epoch = last_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.last_epoch:
            self.model.stop_training = True


class TimeEstimate(keras.callbacks.Callback):
    """Prints, once, the measured time per training step and the estimated
    wall time of the steps that remain.

    Contract:

    * Steps are optimizer steps, counted from the batch index `fit()` passes
      to `on_train_batch_end` (which, with `steps_per_execution` k, sees
      every k-th step), across all the `fit()` calls the callback is given
      to.
    * The first `skip_steps` steps of each `fit()` are not timed: they
      include tracing and compilation. Then the clock runs over at least
      `timed_steps` steps within one epoch: a window that an epoch end would
      fall in (a backup, a kNN evaluation) starts again at the next epoch.
      At both ends of the window the step's loss is read back, so the time
      includes the device's work where dispatch is asynchronous (GPUs, JAX).
    * When the window closes it calls `print_fn` once with one line: the
      seconds per step and the estimate for the steps of `total_steps` not
      yet run, which leaves out the time spent at epoch ends (kNN
      evaluations, backups). A run too short to fill a window prints
      nothing.

    Args:
        total_steps: the steps the `fit()` calls run in all (on a resumed
            run, those that remain).
        skip_steps: steps not timed at the start of each `fit()`.
        timed_steps: steps the window times, at least.
        print_fn: called with the line (default: `print`, flushed).
        clock: seconds, monotonic (default `time.perf_counter`).
    """

    def __init__(self, total_steps, skip_steps=3, timed_steps=20, print_fn=None, clock=time.perf_counter):
        super().__init__()
        if skip_steps < 0 or timed_steps < 1:
            raise ValueError(f"skip_steps={skip_steps} and timed_steps={timed_steps}: they must be >= 0 and >= 1.")
        self.total_steps, self.skip_steps, self.timed_steps = total_steps, skip_steps, timed_steps
        self.print_fn = print_fn or (lambda line: print(line, flush=True))
        self.clock = clock
        self.steps = 0  # steps run, over all fits
        self.estimate = None  # (seconds per step, seconds for the steps that remain), once printed
        self._fit_steps = 0
        self._last_batch = -1
        self._start = None  # (time, steps) where the window opened

    def on_train_begin(self, logs=None):
        self._fit_steps, self._start = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._last_batch, self._start = -1, None

    def on_train_batch_end(self, batch, logs=None):
        done = batch - self._last_batch
        self._last_batch = batch
        self.steps += done
        self._fit_steps += done
        if self.estimate is not None or self._fit_steps < self.skip_steps:
            return
        if self._start is None:
            _wait_for(logs)
            self._start = (self.clock(), self.steps)
            return
        timed = self.steps - self._start[1]
        if timed < self.timed_steps:
            return
        _wait_for(logs)
        per_step = (self.clock() - self._start[0]) / timed
        remaining = max(self.total_steps - self.steps, 0)
        self.estimate = (per_step, per_step * remaining)
        self.print_fn(
            f"Timing: {per_step:.3g} s per step over {timed} steps; the {remaining:,} "
            + ("step that remains takes" if remaining == 1 else "steps that remain take")
            + f" about {format_duration(per_step * remaining)}, besides the kNN evaluations and backups "
            "at epoch ends."
        )


def format_duration(seconds):
    """`seconds` for people: `42 s`, `12 min 5 s`, `3 h 20 min`, `2 d 4 h`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _wait_for(logs):
    """Waits for the step that produced `logs`: reads its loss back."""
    if logs and "loss" in logs:
        _scalar(logs["loss"])


def finite_loss(logs):
    """Whether the loss in `logs` is finite (True without a loss)."""
    loss = (logs or {}).get("loss")
    return loss is None or math.isfinite(_scalar(loss))


def _scalar(value):
    # A multi-worker run logs rank-1 values (see models/distribute.py).
    return float(keras.ops.convert_to_numpy(value).reshape(-1)[0])
