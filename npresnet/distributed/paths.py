"""Image paths from a list, a directory or a glob pattern: the row order of every output.

Row ``i`` of the features array and of the predictions table is ``paths[i]``, so the order is
decided here, once, on the client: a list keeps its order, a directory and a glob are sorted.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from typing import TYPE_CHECKING

from ..limits import MAX_IMAGES, MAX_PATH_CHARS

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .._typing import PathLike

__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGES", "list_images", "paths_digest"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _walk(directory: str, limit: int) -> list[str]:
    """Every file under ``directory`` with an image suffix, in sorted order, at most ``limit``."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                found.append(os.path.join(root, name))
                if len(found) > limit:
                    raise ValueError(f"images: {directory} holds more than {limit:,} images (max_images)")
    return sorted(found)


def _glob(pattern: str, limit: int) -> list[str]:
    """Return the files matching ``pattern`` (``**``: any number of directories), sorted, at most ``limit``.

    ``glob.glob(pattern, recursive=True)``'s matches, except that ``**`` does not descend into a
    link to a directory: glob follows them, so a link loop (``d/loop -> d``) makes it enumerate
    ``d/loop/loop/...`` without end. As glob, ``*`` and ``**`` skip names that start with a dot.
    """
    parts = pattern.split(os.sep)
    fixed = 0
    while fixed < len(parts) - 1 and not _has_magic(parts[fixed]):
        fixed += 1
    root = os.sep.join(parts[:fixed]) if fixed else ""
    found: set[str] = set()

    def match(directory: str, components: list[str]) -> None:
        head, rest = components[0], components[1:]
        try:
            with os.scandir(directory or os.curdir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (NotADirectoryError, FileNotFoundError, PermissionError):
            return
        if head == "**":
            if rest:
                match(directory, rest)  # ** as no directory at all
            for entry in entries:  # ** as one more directory, never through a link
                if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    match(os.path.join(directory, entry.name), components)
            if not rest:  # a trailing ** matches the files too
                rest_files = [e for e in entries if not e.name.startswith(".") and not e.is_dir()]
                found.update(os.path.join(directory, e.name) for e in rest_files)
            return
        for entry in entries:
            if entry.name.startswith(".") and not head.startswith(".") or not fnmatch.fnmatchcase(entry.name, head):
                continue
            path = os.path.join(directory, entry.name)
            if rest:
                if entry.is_dir():  # a fixed component may pass a link: it cannot loop
                    match(path, rest)
            elif not entry.is_dir():
                found.add(path)
                if len(found) > limit:
                    raise ValueError(f"images: the pattern {pattern!r} matches more than {limit:,} files (max_images)")

    match(root, parts[fixed:])
    return sorted(found)


def list_images(images: PathLike | Sequence[PathLike], max_images: int = MAX_IMAGES) -> list[str]:
    """Expand ``images`` into the list of image paths, in output row order.

    Parameters
    ----------
    images : str, os.PathLike or sequence of them
        Each item is a directory (every file with an image suffix below it, sorted), a glob
        pattern (``"photos/**/*.jpg"``, recursive, sorted), or a file path (kept as given,
        even if it does not exist: an unreadable image becomes an error row, not a failed job).
    max_images : int
        The most paths accepted; more is a ValueError before any work starts.

    Returns
    -------
    list of str
        Paths in the order of ``images``; each directory's or pattern's matches sorted.

    Raises
    ------
    ValueError
        Nothing to process, too many paths, a pattern that matches nothing, or an over-long path.
    """
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    paths: list[str] = []
    for item in images:
        item = os.fspath(item)
        if not isinstance(item, str):
            raise TypeError(f"images: expected str paths, got {type(item).__name__}")
        if os.path.isdir(item):
            paths += _walk(item, max_images - len(paths))
        elif _has_magic(item) and not os.path.lexists(item):
            matches = _glob(item, max_images - len(paths))
            if not matches:
                raise ValueError(f"images: the pattern {item!r} matches no file")
            paths += matches
        else:
            paths.append(item)
        if len(paths) > max_images:
            raise ValueError(f"images: {len(paths):,} paths or more; at most {max_images:,} (max_images) per output")
    if not paths:
        raise ValueError("images: no image paths given (an empty list, or directories without images)")
    for p in paths:
        if len(p) > MAX_PATH_CHARS or "\0" in p:
            raise ValueError(f"images: invalid path {p[:80]!r}... (NUL byte or longer than {MAX_PATH_CHARS} chars)")
    return paths


def paths_digest(paths: Iterable[str]) -> str:
    """SHA-256 of the path list (NUL-separated UTF-8): two runs write to one output only if equal."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()
