"""Files segan writes: output folders checked before any work, and atomic writes.

Every command that writes into a folder (``--out`` of train, predict, experiment, data export,
assignments, book) checks it first with :func:`check_writable_dir`, so a path that cannot be a
folder fails in a second with one sentence naming the argument, not with a traceback after the
work. Every file whose readers must never see half of it (checkpoints, masks, overlays,
results.json, figures, exported data) goes through :func:`write_atomic`: written to a hidden
temporary name in the same folder and renamed over the target (``os.replace``).

The temporary file is created as :func:`open` creates files (mode ``0o666`` less the user's
umask: ``0o644`` under the usual umask ``022``), not as :func:`tempfile.mkstemp` does
(``0o600``, readable by its owner only), so the other users of a shared course machine can
read masks and checkpoints exactly when they could read any other file of the user's.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# Flags of the temporary file: a new file (never an existing one, never through a symlink).
_CREATE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_BINARY", 0))


def _check_can_create(path: Path, folder: Path, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` and ``path`` unless a file can be created in ``folder``
    (which may not exist yet: its nearest existing ancestor must be a writable folder)."""
    existing = folder
    while not existing.exists() and existing.parent != existing:  # exists() is False for afile/sub too
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{name} {path} cannot be created: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ValueError(f"{name} {path} cannot be written ({error.strerror or error})") from error


def check_writable_dir(path: str | Path, name: str = "checkpoint_dir") -> Path:
    """``Path(path)`` if files can be written there, else a one-sentence ``ValueError`` naming ``name`` and ``path``.

    Creates nothing: ``path`` may not exist yet, as long as its nearest existing ancestor is
    a folder in which a file can be created (a probe file, removed at once, which tells no
    permission and a read-only file system apart as the kernel sees them, root included).
    Called before a run starts, so a bad output folder fails in a second, not after training.
    Messages: ``--out a/b cannot be created: a is a file, not a folder`` (also for ``--out a``
    itself) and ``--out a/b cannot be written (Permission denied)``.
    """
    path = Path(path)
    _check_can_create(path, path, name)
    return path


def check_writable_file(path: str | Path, name: str) -> Path:
    """``Path(path)`` if a file can be written there, else a one-sentence ``ValueError`` naming
    ``name``: ``--out runs is a folder, not a file``, or as :func:`check_writable_dir` for its folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} {path} is a folder, not a file")
    _check_can_create(path, path.parent, name)
    return path


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new hidden file ``.<name>.<random>.tmp`` next to ``path``, opened for writing, and its path.

    ``os.open(..., 0o666)``: the kernel takes away the umask (and applies a folder's default
    ACL), as for any file ``open(path, "w")`` creates.
    """
    for _ in range(tempfile.TMP_MAX):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temporary, _CREATE_FLAGS, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name next to {path}")


def write_atomic(path: str | Path, content: bytes | Callable[[BinaryIO], object], *, durable: bool = False) -> Path:
    """Write ``content`` (bytes, or a function that writes to a binary file) to ``path`` atomically.

    The folder of ``path`` is created if needed (only now, when there is something to write).
    A reader, or a crash at any moment, sees the old file or the complete new one, never a
    partial one; the new file's mode is ``0o666`` less the umask (module docstring).
    ``durable``: also ``fsync`` the file and, after the rename, its folder, so the new file
    survives a power cut (checkpoints). Returns ``Path(path)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(content, (bytes, bytearray, memoryview)):
                handle.write(content)
            else:
                content(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable and hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
