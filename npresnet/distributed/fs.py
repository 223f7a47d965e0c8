"""File access confined to an output directory: nothing below its root is reached through a link.

Every path that ``embed`` writes or trusts inside an output is opened here, one component at
a time from a descriptor of the output's root, with ``O_NOFOLLOW``: a symbolic link anywhere
below the root makes the operation fail instead of leading outside. Files are opened with
``O_NONBLOCK`` and checked to be regular, so a FIFO or a device in the output cannot block a
run or be read as data. :func:`scan` refuses an output holding any such entry before a run
starts; the per-open checks cover what appears during the run.

Needs ``dir_fd`` support in :mod:`os` (Linux, macOS, the BSDs).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .._typing import PathLike

__all__ = [
    "UnsafeOutputError",
    "output_root",
    "scan",
    "write_bytes",
    "read_bytes",
    "remove",
    "remove_temporaries",
    "remove_empty_directories",
]

_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW
_TEMPORARY_SUFFIX = ".tmp"


class UnsafeOutputError(ValueError):
    """An output, or something inside it, is a link or not a regular file or directory."""


def output_root(path: PathLike) -> str:
    """Return the absolute path of output ``path``, its parent resolved; ``path`` itself may not be a link.

    The parent may be reached through links (``/tmp`` → ``/private/tmp``): it is resolved here,
    once, on the client, so workers receive one fixed absolute path. The output itself must not
    be a link, or everything written "inside" it would land elsewhere.
    """
    path = os.fspath(path)
    parent, name = os.path.split(os.path.abspath(path))
    root = os.path.join(os.path.realpath(parent), name)
    if os.path.islink(root):
        raise UnsafeOutputError(
            f"{path} is a symbolic link (to {os.readlink(root)}); give the directory it points to instead"
        )
    return root


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def _refuse(root: str, relative: str, mode: int) -> NoReturn:
    raise UnsafeOutputError(
        f"{root}: {os.path.join(root, relative)} is {_kind(mode)}; an output may hold only regular files and "
        "directories, so nothing is written through it (remove it, or choose another output path)"
    )


def scan(root: str, max_entries: int) -> None:
    """Check that everything below ``root`` is a regular file or directory, without following links.

    Raises
    ------
    UnsafeOutputError
        ``root`` or an entry below it is a link, FIFO, socket or device, or there are more than
        ``max_entries`` entries (more than this output can have written).
    """
    mode = os.lstat(root).st_mode
    if not stat.S_ISDIR(mode):
        _refuse(os.path.dirname(root), os.path.basename(root), mode)
    pending, seen = [""], 0
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(root, relative)) as entries:
            for entry in entries:
                seen += 1
                if seen > max_entries:
                    raise UnsafeOutputError(
                        f"{root} holds more than {max_entries:,} entries, more than this output writes; refusing it"
                    )
                inner = os.path.join(relative, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(inner)
                elif not entry.is_file(follow_symlinks=False):
                    _refuse(root, inner, entry.stat(follow_symlinks=False).st_mode)


@contextlib.contextmanager
def _directory(root: str, parts: Sequence[str], create: bool) -> Iterator[int]:
    """Return a descriptor of ``root/parts...``, each component opened without following links (created if asked)."""
    fd = os.open(root, _DIRECTORY)
    try:
        for depth, name in enumerate(parts, 1):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
            try:
                inner = os.open(name, _DIRECTORY, dir_fd=fd)
            except OSError as err:
                if err.errno == errno.ELOOP:  # O_NOFOLLOW met a link
                    _refuse(root, "/".join(parts[:depth]), stat.S_IFLNK)
                raise
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _split(relative: str) -> tuple[list[str], str]:
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a plain relative path: {relative!r}")
    return parts[:-1], parts[-1]


def write_bytes(root: str, relative: str, data: bytes) -> None:
    """Write ``data`` to ``root/relative`` atomically, creating its directories; never through a link.

    The bytes go to a new temporary file (``O_EXCL | O_NOFOLLOW``) in the same directory, which
    is renamed over the final name (replacing a link there rather than following it). There is
    no ``fsync``: what a power cut loses fails the size and hash check of the chunk's record on
    resume, and that chunk is computed again.
    """
    parents, name = _split(relative)
    with _directory(root, parents, create=True) as directory:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        temporary = f".{name}.{secrets.token_hex(6)}{_TEMPORARY_SUFFIX}"
        fd = os.open(temporary, flags, 0o666, dir_fd=directory)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=directory)
            raise


def read_bytes(root: str, relative: str, limit: int) -> bytes | None:
    """Return the bytes of ``root/relative``, or None if it is absent or longer than ``limit`` bytes.

    Raises
    ------
    UnsafeOutputError
        It, or a directory on the way, is a link, or it is not a regular file (a FIFO does not block).
    """
    parents, name = _split(relative)
    try:
        with _directory(root, parents, create=False) as directory:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    _refuse(root, relative, stat.S_IFLNK)
                raise
            with os.fdopen(fd, "rb") as file:
                mode = os.fstat(file.fileno()).st_mode
                if not stat.S_ISREG(mode):
                    _refuse(root, relative, mode)
                data = file.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None if len(data) > limit else data


def remove(root: str, relative: str) -> None:
    """Delete the file ``root/relative`` if present; a link on the way is refused, a link there is removed itself."""
    parents, name = _split(relative)
    try:
        with _directory(root, parents, create=False) as directory:
            os.unlink(name, dir_fd=directory)
    except (FileNotFoundError, NotADirectoryError):
        pass


def remove_empty_directories(root: str, relative: str) -> None:
    """Delete ``root/relative`` and the directories below it if they hold no files (links are not followed)."""
    parents, name = _split(relative)
    top = os.path.join(root, *parents, name)
    try:
        if not stat.S_ISDIR(os.lstat(top).st_mode):
            return
    except FileNotFoundError:
        return
    for directory, _dirs, _files in os.walk(top, topdown=False):  # os.walk does not descend into links
        with contextlib.suppress(OSError):  # not empty, or gone
            os.rmdir(directory)


def remove_temporaries(root: str) -> int:
    """Delete the temporary files that killed writers left below ``root`` (no link is followed); how many."""
    removed = 0
    for directory, _dirs, files in os.walk(root):  # os.walk does not descend into links
        for name in files:
            if name.endswith(".partial") or (name.startswith(".") and name.endswith(_TEMPORARY_SUFFIX)):
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if stat.S_ISREG(os.lstat(path).st_mode):
                        os.unlink(path)
                        removed += 1
    return removed
