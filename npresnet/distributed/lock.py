"""One run per output: an exclusive lock file beside each output, held for the run's lifetime.

The lock is ``.NAME.lock`` in the output's directory, created with ``O_CREAT | O_EXCL`` (atomic,
also on NFS) and holding the holder's pid, host and start time as JSON. It is removed when the
run ends, however it ends short of SIGKILL. A lock left by a killed run is taken over when its
host is this host and its pid is no longer running; any other holder makes the run fail with
:class:`OutputLockedError`, naming the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = ["OutputLockedError", "output_lock", "lock_path"]

_MAX_LOCK_BYTES = 4096


class OutputLockedError(RuntimeError):
    """Another run holds the output."""


def lock_path(root: str) -> str:
    """Where the lock of output ``root`` (an absolute path) lives: beside it, hidden."""
    parent, name = os.path.split(root)
    return os.path.join(parent, f".{name}.lock")


def _holder() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _create(path: str) -> bool:
    """Create the lock file with this process as holder; False if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(_holder(), f)
    return True


def _read(path: str) -> dict[str, object] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            holder = json.loads(f.read(_MAX_LOCK_BYTES))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _is_dead_here(holder: Mapping[str, object] | None) -> bool:
    """Return True only when ``holder`` is a process of this host that no longer runs."""
    if holder is None or holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # running, under another user
        return False
    return False


def _describe(holder: Mapping[str, object] | None) -> str:
    if holder is None:
        return "an unreadable lock file"
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"


def _acquire(root: str) -> str:
    path = lock_path(root)
    if _create(path):
        return path
    holder = _read(path)
    if _is_dead_here(holder):
        # take the stale lock over under a second exclusive file, so two runs cannot both take it
        takeover = path + ".takeover"
        if _create(takeover):
            try:
                if _read(path) == holder:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                if _create(path):
                    return path
            finally:
                os.unlink(takeover)
        holder = _read(path)
    raise OutputLockedError(
        f"{root} is in use by another embed run ({_describe(holder)}); wait for it to finish, or, if no such "
        f"run exists, delete {path}"
    )


@contextlib.contextmanager
def output_lock(roots: Iterable[str]) -> Iterator[None]:
    """Hold the locks of every output in ``roots`` (absolute paths) for the ``with`` block.

    Raises
    ------
    OutputLockedError
        One of them is held by another run; no lock is kept.
    """
    held: list[str] = []
    try:
        for root in sorted(roots):
            held.append(_acquire(root))
        yield
    finally:
        for path in reversed(held):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
