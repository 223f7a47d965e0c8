"""Opening an image file without trusting it: what :func:`npresnet.preprocess.load_image` checks before Pillow decodes.

* Only a regular file is read. It is opened with ``O_NONBLOCK`` (a FIFO without a writer
  returns at once instead of blocking) and checked with ``fstat`` on the open descriptor,
  so a FIFO, socket or device is refused before a byte is read.
* A file larger than :data:`MAX_IMAGE_FILE_BYTES` is refused.
* Decoding work is bounded by more than the header's pixel count where a format needs it:

  - a JPEG may hold at most :data:`MAX_JPEG_SCANS` scans. A progressive decoder passes over
    the whole image once per scan, so a small file with thousands of tiny scans costs
    thousands of full passes;
  - an ICO or ICNS file is a directory of images whose header claims only the directory's
    sizes (at most 256×256 for ICO); the embedded PNG, BMP or JPEG 2000 images carry their
    own sizes, which Pillow decodes without comparing. Every embedded image's own size is
    checked against the pixel limit.

Pure bookkeeping over the file's bytes (read through ``mmap``, never copied whole); no pixel is decoded here.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import re
import stat
import struct
from typing import TYPE_CHECKING, Any

from .errors import ImageError
from .limits import MAX_IMAGE_FILE_BYTES, MAX_JPEG_SCANS

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MAX_IMAGE_FILE_BYTES", "MAX_JPEG_SCANS", "open_image_file", "check_embedded_sizes", "count_jpeg_scans"]


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JP2_MAGICS = (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")  # a JP2 box file, a bare codestream
# A marker: 0xFF then a byte that is not 0x00 (a stuffed 0xFF in entropy-coded data), not
# 0xD0-0xD7 (restart markers inside a scan) and not 0xFF (fill bytes before a marker).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOS, _EOI, _TEM = 0xDA, 0xD9, 0x01


@contextlib.contextmanager
def open_image_file(path: str | bytes) -> Iterator[tuple[io.BufferedReader, int]]:
    """Open ``path`` for reading if it is a regular file of at most :data:`MAX_IMAGE_FILE_BYTES`.

    Yields ``(file, size)``. OSErrors of opening (missing, a directory, no permission) propagate;
    a FIFO, socket or device and a file over the cap raise :class:`ImageError`.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)  # the descriptor, not the path, which could be swapped meanwhile
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(21, "Is a directory", path)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(
                f"{os.fsdecode(path)}: not a regular file (a FIFO, socket or device); images are read from files"
            )
        if info.st_size > MAX_IMAGE_FILE_BYTES:
            raise ImageError(
                f"{os.fsdecode(path)}: file too large: {info.st_size:,} bytes, "
                f"more than the limit of {MAX_IMAGE_FILE_BYTES:,}"
            )
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file, info.st_size


def count_jpeg_scans(data: bytes | mmap.mmap, stop_after: int) -> int:
    """Start-of-scan markers in the JPEG ``data`` before its end of image; counting stops past ``stop_after``.

    Segments with a length (tables, APPn metadata, which may embed a thumbnail JPEG of its
    own) are skipped whole; entropy-coded data is skipped to the next real marker.
    """
    scans, pos, size = 0, 2, len(data)  # after SOI
    while scans <= stop_after:
        match = _JPEG_MARKER.search(data, pos)
        if match is None or match.end() + 2 > size:
            break
        marker = data[match.start() + 1]
        if marker == _EOI:
            break
        if marker == _TEM:  # a marker without a length
            pos = match.end()
            continue
        (length,) = struct.unpack_from(">H", data, match.end())
        if length < 2:  # corrupt; Pillow reports it
            break
        scans += marker == _SOS
        pos = match.end() + length  # past the segment; for a scan, into its entropy-coded data
    return scans


def _dib_size(data: bytes | mmap.mmap, offset: int) -> tuple[int, int] | None:
    """Width and height in a BMP info header at ``offset`` (an ICO frame stores the XOR and AND bitmaps: 2× height)."""
    if offset + 12 > len(data):
        return None
    (header,) = struct.unpack_from("<I", data, offset)
    if header == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack_from("<HH", data, offset + 4)
        return int(w), int(h)
    width, height = struct.unpack_from("<ii", data, offset + 4)
    return abs(width), abs(height)


def _is_embedded_file(data: bytes | mmap.mmap, start: int) -> bool:
    """Whether a PNG or JPEG 2000 file starts at ``data[start]`` (ICO and ICNS embed both)."""
    head = bytes(data[start : start + 12])
    return head.startswith(_PNG_MAGIC) or head.startswith(_JP2_MAGICS)


def _embedded_size(pil: Any, data: bytes | mmap.mmap, start: int, end: int) -> tuple[int, int]:
    """Return the size the PNG or JPEG 2000 image at ``data[start:end]`` declares; (0, 0) if unreadable."""
    try:
        with pil.open(io.BytesIO(data[start:end])) as frame:  # reads the header only
            w, h = frame.size
            return int(w), int(h)
    except pil.DecompressionBombError:  # over twice Pillow's limit: too large whatever the limit here
        raise
    except Exception:  # noqa: BLE001 - unreadable here is unreadable for Pillow's loader too, which reports it
        return 0, 0


def _ico_sizes(pil: Any, data: bytes | mmap.mmap) -> Iterator[tuple[int, int]]:
    (count,) = struct.unpack_from("<H", data, 4)
    for index in range(count):
        entry = 6 + 16 * index
        if entry + 16 > len(data):
            return
        length, offset = struct.unpack_from("<II", data, entry + 8)
        if _is_embedded_file(data, offset):
            yield _embedded_size(pil, data, offset, offset + length)
        else:
            yield _dib_size(data, offset) or (0, 0)


def _icns_sizes(pil: Any, data: bytes | mmap.mmap) -> Iterator[tuple[int, int]]:
    pos, end = 8, min(len(data), struct.unpack_from(">I", data, 4)[0])
    while pos + 8 <= end:
        (length,) = struct.unpack_from(">I", data, pos + 4)
        if length < 8:
            return
        if _is_embedded_file(data, pos + 8):  # the other entries are raw bitmaps of fixed sizes up to 128×128
            yield _embedded_size(pil, data, pos + 8, pos + length)
        pos += length


def check_embedded_sizes(pil: Any, file: io.BufferedReader, size: int, max_pixels: int, name: str) -> None:
    """Refuse a JPEG with too many scans, or an ICO/ICNS embedding an image above ``max_pixels``.

    Called before ``PIL.Image.open``, which already decodes an ICO file's frame; the format is
    told by the magic bytes Pillow itself tests. ``file`` and ``size``: the open image file.
    """
    if size < 8:
        return
    with mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ) as data:
        head = bytes(data[:4])
        if head[:3] == b"\xff\xd8\xff":  # JPEG (and MPO, whose first image Pillow reads)
            if count_jpeg_scans(data, MAX_JPEG_SCANS) > MAX_JPEG_SCANS:
                raise ImageError(
                    f"{name}: a JPEG with more than {MAX_JPEG_SCANS} scans (the limit); decoding "
                    "passes over the whole image once per scan"
                )
            return
        if head == b"\0\0\1\0":
            sizes = _ico_sizes(pil, data)
        elif head == b"icns":
            sizes = _icns_sizes(pil, data)
        else:
            return
        for width, height in sizes:
            if width * height > max_pixels:
                raise ImageError(
                    f"{name}: image too large: embeds a {width}×{height} = {width * height:,} pixel image, "
                    f"more than the limit of {max_pixels:,}"
                )
