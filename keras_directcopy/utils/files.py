"""Atomic writes and checksums.

A reader, or a run killed at any moment, sees either the previous file (or
directory) or the complete new one, never a half-written one. A write that
fails midway (a full disk, a quota or file-size limit, a location that became
read-only) leaves the previous one too, and raises `WriteFailed`.
"""

import errno
import hashlib
import os
import shutil

# The errors of a write that the writer cannot fix by retrying at once: no
# room (disk, quota, file-size limit), or no right to write there.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


class WriteFailed(OSError):
    """A write failed (see `WRITE_ERRNOS`); the file or directory it was
    replacing is as it was before. `errno` and `strerror` are the failure's,
    `filename` is the destination; the message is one line."""

    def __str__(self):
        return f"Writing {self.filename} failed ({self.strerror}); what was there is as it was before."


def _write_failed(error, path):
    """`error` as a `WriteFailed` for `path` if it is an error of
    `WRITE_ERRNOS`, else None. Its own message may span lines (h5py's
    does), so the reason is the system's text for its errno."""
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        return WriteFailed(error.errno, os.strerror(error.errno), os.fspath(path))
    return None


def atomic_save(path, save):
    """Calls `save(temporary_path)`, then moves the result to `path`.

    The temporary path sits in the same directory (so the move is an atomic
    rename) and ends with the file's name, hence its extension, which Keras
    checks (`.keras`, `.weights.h5`); its name starts with a dot, so listings
    that skip hidden entries (TFDS's version directories) ignore it. `save`
    may write a file or a directory there. A directory replaces an existing
    `path` by two renames: the old one is moved aside, the new one moved in,
    then the old one deleted, so a reader sees the old or the new complete
    directory (or, between the two renames, none). If `save` or the move
    fails, `path` is left as it was and the temporary is removed.

    Args:
        path: destination file or directory.
        save: callable writing a file or a directory at the path it is given.

    Raises:
        WriteFailed: the write or the move failed for want of room or of
            the right to write (`WRITE_ERRNOS`); other errors of `save`
            pass unchanged.
    """
    atomic_save_all([(path, save)])


def atomic_save_all(saves):
    """`atomic_save` of several files or directories as one: every one is
    written to its temporary first, and only once all are written are they
    moved into place (renames, which need no room). A write that fails
    leaves every destination as it was, so files read together (an
    encoder's weights and its architecture) stay of one version after a
    full disk.

    Args:
        saves: `(path, save)` pairs, as `atomic_save` takes them.

    Raises:
        WriteFailed: as `atomic_save`.
    """
    pending = []  # (path, temporary) of every save begun, for the cleanup
    current = None
    try:
        for path, save in saves:
            current = path
            directory, name = os.path.split(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            temporary = os.path.join(directory, f".partial-{os.getpid()}.{name}")
            pending.append((os.path.abspath(path), temporary))
            save(temporary)
        for path, temporary in pending:
            current = path
            _move_into_place(temporary, path)
    except BaseException as error:
        failed = _write_failed(error, current)
        if failed is None:
            raise
        raise failed from error
    finally:
        for _, temporary in pending:
            _remove(temporary)


def _move_into_place(temporary, path):
    replaced = f"{temporary}.replaced"
    try:
        if os.path.isdir(temporary) and os.path.lexists(path):
            # A directory cannot be renamed over a non-empty one.
            os.rename(path, replaced)
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(replaced) and not os.path.lexists(path):
            os.rename(replaced, path)  # the new one never arrived: put the old one back
        raise
    finally:
        _remove(replaced)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def atomic_write_text(path, text):
    """Writes `text` to `path` atomically (see `atomic_save`, whose errors it raises)."""

    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)

    atomic_save(path, write)


def sha256_file(path):
    """Hex sha256 of a file, read in 1 MiB chunks (weights and datasets are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_array(array):
    """Hex sha256 of a numpy array's content: `array.tobytes()`, its values in
    C order whatever its memory layout (as `build_cifar100.py` checks them)."""
    return hashlib.sha256(array.tobytes()).hexdigest()
