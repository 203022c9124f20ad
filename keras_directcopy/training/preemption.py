"""Graceful preemption: SIGTERM backs the run up at the next step boundary
and ends it, and the same command resumes with no step lost.

Preemptible and spot VMs, TPU VMs, Kubernetes and Slurm announce the end of
a job with SIGTERM and a grace period before SIGKILL. `PreemptionNotice`
turns SIGTERM into a flag; `BackupOnPreemption`, a Keras callback, reads it
after every step (every `steps_per_execution` steps), writes the backup
through the run's `ResumableBackup` (the same atomic file periodic backups
use, holding the optimizer step) and raises `Preempted`, which
`scripts/pretrain.py` turns into a one-line message and the exit code
`RESUMABLE_EXIT_CODE`.

Why a Keras callback driven by the signal rather than tf.distribute's
`tf.distribute.experimental.PreemptionCheckpointHandler` (TensorFlow 2.21):

* The handler asks the GCE metadata server which platform it is on (an HTTP
  request with a 5 s timeout) when it is made; on GCP CPU VMs and TPU VMs it
  then does nothing at all ("does not support usage with TPU or CPU device on
  GCP"), and on GCP GPU VMs it watches the host-maintenance event instead
  of SIGTERM; so a spot VM's SIGTERM is not handled on GCP.
* It saves and restores a `tf.train.Checkpoint` of its own and counts steps
  by its own calls; the run's backup is a Keras weights file whose position
  is the optimizer's step, which `fit()` and the resume already use.
* It is TensorFlow's; the callback serves the JAX backend as well.

What the handler's design gives and this one keeps: every worker of a
multi-worker run stops at the same step, whichever got the signal. The
handler agrees on that step through the coordination service; here each
worker all-reduces its flag after every step (`strategies.any_worker`), so a
worker never stops while another waits for it in the next all-reduce.

Signals that arrive while the chief runs the kNN evaluation of an epoch take
effect after it and one more step.
"""

import signal
import threading

import keras

# EX_TEMPFAIL of sysexits.h: "a temporary failure; the user is invited to
# retry". The exit code of a run that stopped for a reason outside it
# (preemption, a lost worker) and resumes from its backup when started again.
RESUMABLE_EXIT_CODE = 75

PREEMPTION_SIGNALS = (signal.SIGTERM,)


class RunInterrupted(RuntimeError):
    """A run stopped before its end for a reason outside it; the same
    command resumes it from its backup.

    Attributes:
        step: the optimizer step the run reached.
    """

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


class Preempted(RunInterrupted):
    """The run received a preemption signal and was backed up at `step`."""


class WorkerLost(RunInterrupted):
    """A worker of a multi-worker run stopped; the others stopped with it."""


class PreemptionNotice:
    """While active (`with`), records the arrival of a preemption signal
    (`PREEMPTION_SIGNALS`) instead of letting it end the process.

    Python runs signal handlers in the main thread only: elsewhere (a
    `pretrain` call from another thread) the signals keep their handlers,
    and `requested` stays False.

    TensorFlow's coordination service, which `MultiWorkerMirroredStrategy`
    starts, installs a SIGTERM handler of its own (TSL's `SigtermNotifier`,
    for its preemption sync manager, which this package does not use), and
    it replaces this one: call `install()` again once the strategy is made.

    Attributes:
        requested: a `threading.Event`, set when a signal arrived.
        signal_name: the name of the signal that arrived, or None.
    """

    def __init__(self):
        self.requested = threading.Event()
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        self.install()
        return self

    def install(self):
        """(Re)installs the handler of each signal (in the main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in PREEMPTION_SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name
        self.requested.set()


class BackupOnPreemption(keras.callbacks.Callback):
    """After each step, if a preemption signal arrived (on any worker),
    writes the backup and raises `Preempted`.

    Raising, rather than `model.stop_training`, ends `fit()` at once: the
    epoch's end-of-epoch work (its history record, the kNN evaluation) is
    not run for an epoch that is not over.

    Args:
        notice: the active `PreemptionNotice`.
        backup: the run's `callbacks.ResumableBackup`.
        any_worker: `strategies.any_worker(strategy)`.
        describe: `step -> str`, the message of `Preempted` at that step.
    """

    def __init__(self, notice, backup, any_worker, describe):
        super().__init__()
        self.notice = notice
        self.backup = backup
        self.any_worker = any_worker
        self.describe = describe

    def on_train_batch_end(self, batch, logs=None):
        if not self.any_worker(self.notice.requested.is_set()):
            return
        if not self.backup.save(logs):
            return  # a non-finite loss: TerminateOnNaN stops the run, and that is the error to report
        step = int(self.model.optimizer.iterations.numpy())
        raise Preempted(self.describe(step), step)
