"""Write files atomically: the final name holds either the old file or the complete new one.

A crash, a full disk or an exception half-way through writing must never leave a
truncated file under the name the user asked for, nor destroy the file that was
there before. The classic recipe, used here:

1. create a temporary file *in the destination's directory* (so that the final
   rename never crosses file systems), with a name no one else uses;
2. write everything, ``flush`` and ``os.fsync`` so the bytes are on disk;
3. ``os.replace(temporary, final)``: an atomic rename on POSIX and Windows;
4. ``fsync`` the directory (POSIX) so the rename itself survives a power cut.

On any exception the temporary file is removed and the destination is untouched.

A destination that exists and is not a regular file (a FIFO, a device, a socket), or a link to
one (``/dev/stdout``), is refused: renaming over it would delete it (as root, ``/dev/null``
itself). A symbolic link to a regular file is replaced by the new file, its target left
untouched, as the rename does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write"]


def _create_temporary(directory: Path, name: str) -> tuple[Path, int]:
    """Create a new, empty file next to ``name`` and return its path and descriptor.

    ``O_EXCL`` makes creation fail rather than reuse an existing file; mode 0o666 lets
    the process umask decide the permissions, exactly as for a plain ``open(path, "wb")``.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temporary = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return temporary, os.open(temporary, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory}")


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX only; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_SPECIAL_FILES = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def _refuse_special_file(path: Path) -> None:
    """Raise FileExistsError if ``path``, or the file a link there points to, is a FIFO, device or socket.

    A link to one (``/dev/stdout``) is refused too: replacing the link would break it as surely.
    """
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            mode = os.stat(path).st_mode
    except FileNotFoundError:  # nothing there, or a dangling link: replaced as a file
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = _SPECIAL_FILES.get(stat.S_IFMT(mode), "a socket or other special file")
    raise FileExistsError(errno.EEXIST, f"it is {kind}, not a regular file, and is not replaced", str(path))


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing so that it appears complete or not at all.

    Parameters
    ----------
    path : str or os.PathLike
        The destination. Its directory must exist. An existing file is replaced
        only once the new content has been written and synced; a FIFO, device or
        socket there is refused (FileExistsError) and left as it is.

    Yields
    ------
    BinaryIO
        A seekable binary file object on a temporary file in the same directory.

    Examples
    --------
    >>> with atomic_write("weights.npz") as f:      # doctest: +SKIP
    ...     f.write(payload)
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    _refuse_special_file(path)
    temporary, fd = _create_temporary(directory, path.name)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)
