"""Atomic writes and checksums.

A reader, or a run killed at any moment, sees either the previous file (or
directory) or the complete new one, never a half-written one.
"""

import hashlib
import os
import shutil


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
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".partial-{os.getpid()}.{name}")
    replaced = f"{temporary}.replaced"
    try:
        save(temporary)
        if os.path.isdir(temporary) and os.path.lexists(path):
            # A directory cannot be renamed over a non-empty one.
            os.rename(path, replaced)
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(replaced) and not os.path.lexists(path):
            os.rename(replaced, path)  # the new one never arrived: put the old one back
        raise
    finally:
        for leftover in (temporary, replaced):
            _remove(leftover)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def atomic_write_text(path, text):
    """Writes `text` to `path` atomically (see `atomic_save`)."""

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
