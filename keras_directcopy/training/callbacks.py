"""Training callbacks: exact resume, non-finite-loss stop, learning-rate log."""

import math
import os

import keras

from keras_directcopy.utils.files import atomic_save


class NonFiniteLossError(RuntimeError):
    """Raised after training stopped on a NaN or infinite loss."""


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
        if self.save_freq == "epoch" or not _finite_loss(logs):
            return
        if int(self.model.optimizer.iterations.numpy()) % self.save_freq == 0:
            self._save_model()

    def on_epoch_end(self, epoch, logs=None):
        if _finite_loss(logs):
            self._save_model()

    def _save_model(self):
        if not self.write:
            return
        atomic_save(self.path, lambda temporary: self.model.save_weights(temporary, overwrite=True))

    def on_train_end(self, logs=None):
        pass


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss and remembers where.

    After `fit()` returns, `check()` raises `NonFiniteLossError` with the
    step, the loss and what to try.
    """

    def __init__(self):
        super().__init__()
        self.bad_step = None
        self.bad_loss = None

    def on_train_batch_end(self, batch, logs=None):
        if not _finite_loss(logs):
            self.bad_step = int(self.model.optimizer.iterations.numpy())
            self.bad_loss = (logs or {}).get("loss")
            self.model.stop_training = True

    def check(self, learning_rate):
        """Raises `NonFiniteLossError` if training stopped on a bad loss."""
        if self.bad_step is None:
            return
        raise NonFiniteLossError(
            f"Training stopped: the loss became {self.bad_loss} at step {self.bad_step}. "
            f"Lower --lr (now {learning_rate}) or --batch_size, or raise --warmup_epochs. "
            "The last backup before it is intact: re-running the same command resumes from it."
        )


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs as `lr`."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def _finite_loss(logs):
    loss = (logs or {}).get("loss")
    if loss is None:
        return True
    return math.isfinite(float(keras.ops.convert_to_numpy(loss).reshape(-1)[0]))
