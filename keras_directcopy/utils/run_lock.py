"""One run at a time in an output directory, and a one-line error for a
directory no run can write.

`claim_output_dir(output_dir)` checks that the directory can hold a run
(creating it if missing) and holds its lock until the `with` block ends; a
second process that claims it meanwhile gets `OutputDirInUse`, naming the
holder. The lock is an advisory `flock` on the file `.run.lock` in the
directory: the kernel releases it when its process ends, however it ends
(exit, kill -9, a crash), and after a power loss nothing holds it, so a lock
left by a dead run never blocks the next one, which is how a killed run
resumes. The file holds the holder's process id, host, command and start
time, for that error, and is removed when the lock is released.

The workers of one multi-worker run share their output directory: each task
other than the chief claims a lock of its own (`task`), so that every worker
of a second run into the directory is refused, and none of the first run's.

On shared storage, Linux carries `flock` locks between hosts over NFS (as
POSIX locks). Where the filesystem refuses locks (ENOLCK, EOPNOTSUPP,
ENOSYS), the run goes on with a warning and no lock.
"""

import atexit
import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
import warnings

LOCK_FILENAME = ".run.lock"
_UNSUPPORTED_LOCK_ERRNOS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})

# The locks this process holds: lock path -> [file descriptor or None, depth].
# A process may claim a directory it holds again (the script, then the
# library function it calls); the lock is released when the outermost claim ends.
_held = {}


class OutputDirError(ValueError):
    """The output directory cannot hold a run: it is a file, or it cannot be
    created or written."""


class OutputDirInUse(OutputDirError):
    """Another live process holds the output directory."""


def lock_path(output_dir, task=None):
    """The lock file of `output_dir` for `task` (None: a single-process run,
    or the chief of a multi-worker one; else a name such as `worker-1`)."""
    return os.path.join(output_dir, LOCK_FILENAME + (f".{task}" if task else ""))


@contextlib.contextmanager
def claim_output_dir(output_dir, task=None, command=None):
    """Holds `output_dir` for this process while the block runs.

    Creates the directory if missing (and removes it again at the end if
    it is then empty), after checking it can be written.

    Args:
        output_dir: the run's directory.
        task: see `lock_path`.
        command: the command line recorded for the error another run gets
            (default: this process's arguments).

    Raises:
        OutputDirError: `output_dir` is an existing file, or cannot be
            created or written; nothing was written.
        OutputDirInUse: a live process holds it; nothing was written.
    """
    path = os.path.realpath(lock_path(output_dir, task))
    if path in _held:
        _held[path][1] += 1
        try:
            yield
        finally:
            _held[path][1] -= 1
        return
    created = _check_writable_directory(output_dir)
    try:
        descriptor = _acquire(path, output_dir, command)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(output_dir)
        raise
    _held[path] = [descriptor, 1]
    try:
        yield
    finally:
        del _held[path]
        if descriptor is not None:
            # Removed while still held, so no other process can lock the
            # file this one is about to release (see `_acquire`).
            with contextlib.suppress(OSError):
                os.remove(path)
            os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(output_dir)  # only if nothing was written there


def claim_output_dir_until_exit(output_dir, task=None, command=None):
    """`claim_output_dir` for the rest of this process: a command's claim,
    released when the interpreter exits (or at once by the kernel, if it is
    killed). Raises as `claim_output_dir` does."""
    claim = contextlib.ExitStack()
    claim.enter_context(claim_output_dir(output_dir, task=task, command=command))
    atexit.register(claim.close)


def _check_writable_directory(output_dir):
    """Creates `output_dir` if missing; returns whether it did."""
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise OutputDirError(
            f"The output directory {output_dir} is an existing file, not a directory: pass another "
            "--output_dir (a directory, created if missing)."
        )
    created = not os.path.isdir(output_dir)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise OutputDirError(
            f"The output directory {output_dir} cannot be created ({error.strerror}): pass an "
            "--output_dir where you can write."
        ) from error
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise OutputDirError(
            f"The output directory {output_dir} is not writable ({os.strerror(errno.EACCES)}): pass "
            "an --output_dir where you can write."
        )
    return created


def _acquire(path, output_dir, command):
    """Opens and locks `path`, writes the holder's record into it, and
    returns its descriptor (None where the filesystem has no locks)."""
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise _not_writable(output_dir, error) from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            raise OutputDirInUse(
                f"{output_dir} is in use by another run, {holder}. Wait for it to end or stop it, or "
                "pass another --output_dir (the lock of a run that died is released with it, so this "
                "one is alive)."
            ) from None
        except OSError as error:
            if error.errno not in _UNSUPPORTED_LOCK_ERRNOS:
                os.close(descriptor)
                raise
            os.close(descriptor)
            warnings.warn(
                f"The filesystem of {output_dir} does not support file locks ({error.strerror}): "
                "nothing stops a second run from writing into it while this one runs.",
                stacklevel=4,
            )
            return None
        # The holder before us may have removed the file between our open and
        # our lock: then we locked a file no one else will see. Lock the
        # file that is there instead.
        try:
            same_file = os.path.samestat(os.fstat(descriptor), os.stat(path))
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(descriptor)
    record = json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(),
        "command": command or " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, record.encode() + b"\n", 0)
    except OSError as error:
        os.close(descriptor)
        with contextlib.suppress(OSError):
            os.remove(path)
        raise _not_writable(output_dir, error) from error
    return descriptor


def _not_writable(output_dir, error):
    return OutputDirError(
        f"The output directory {output_dir} is not writable ({error.strerror}): pass an "
        "--output_dir where you can write."
    )


def _read_holder(descriptor):
    """The holder of a lock, in words, from its record."""
    try:
        record = json.loads(os.pread(descriptor, 1 << 16, 0).decode())
    except (OSError, ValueError):
        return "a process that is starting"
    return (f"process {record.get('pid')} on {record.get('host')}, since {record.get('started')}: "
            f"{record.get('command')}")
