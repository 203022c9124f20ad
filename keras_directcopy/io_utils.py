"""Atomic file writes: a reader, or a run killed at any moment, sees either
the previous file or the complete new one, never a half-written file."""

import hashlib
import os


def atomic_save(path, save):
    """Calls `save(temporary_path)`, then moves the result to `path`.

    The temporary file sits in the same directory (so `os.replace` is an
    atomic rename) and keeps the file's name, hence its extension, which Keras
    checks (`.keras`, `.weights.h5`). If `save` fails, `path` is untouched and
    the temporary file is removed.

    Args:
        path: destination file.
        save: callable writing a file at the path it is given.
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".partial-{os.getpid()}.{name}")
    try:
        save(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def atomic_write_text(path, text):
    """Writes `text` to `path` atomically (see `atomic_save`)."""

    def write(temporary):
        with open(temporary, "w") as file:
            file.write(text)

    atomic_save(path, write)


def sha256_file(path):
    """Hex sha256 of a file, read in 1 MiB chunks (weights and datasets are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
