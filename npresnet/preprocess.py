"""Images to network input, exactly as torchvision's ImageNet inference preset.

``torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()`` on a PIL image:

1. resize so the shorter side is 256, the longer ``int(256 · long / short)``, with Pillow's
   bilinear filter (which always antialiases when shrinking); skipped when the image
   already has that size;
2. center crop 224×224 (top/left offsets ``round((size - 224) / 2)``; an image smaller
   than the crop is zero-padded first);
3. ``uint8 → float32`` divided by 255, then ``(x - mean) / std`` per channel in float32.

Steps 1–2 call the very Pillow functions torchvision calls, and step 3 does the same
float32 operations in the same order, so the arrays are equal (tests compare them).

Images are read as torchvision's ``default_loader`` reads them,
``Image.open(f).convert("RGB")``: greyscale, palette, RGBA (alpha dropped), CMYK and
16-bit images all become 8-bit RGB by Pillow's rules.

Sizes are bounded before any pixel is decoded or resized: an image with more than
:data:`MAX_PIXELS` pixels (89,478,485, Pillow's default decompression-bomb limit, 256 MiB
as 8-bit RGB) is refused with an :class:`~npresnet.errors.ImageError`, as is a resize whose result would
exceed it (a 1×100000 strip resized to a shorter side of 256 would be 6.5 gigapixels);
``resize_size`` and ``crop_size`` are at most :data:`MAX_SIZE` (both limits live in
:mod:`npresnet.limits`). Pillow's own
``DecompressionBombWarning`` is not shown: the check here replaces it. npresnet never
changes Pillow's process-wide ``MAX_IMAGE_PIXELS``.

Only regular files up to :data:`~npresnet.limits.MAX_IMAGE_FILE_BYTES` are read (a FIFO or
device is refused at once, never waited on), a JPEG may hold at most
:data:`~npresnet.limits.MAX_JPEG_SCANS` scans, and the images an ICO or ICNS file embeds
are held to the pixel limit by their own sizes: see ``npresnet._imagefile``.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy

from ._args import check_int, is_real
from ._imagefile import check_embedded_sizes, open_image_file
from .errors import ImageError
from .imagenet import IMAGENET_MEAN, IMAGENET_STD
from .limits import MAX_IMAGE_SIZE, MAX_PIXELS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from PIL.Image import Image as PILImage

    from ._typing import PathLike

__all__ = ["ImageError", "MAX_PIXELS", "MAX_SIZE", "load_image", "preprocess", "load_and_preprocess"]

MAX_SIZE = MAX_IMAGE_SIZE  # largest resize_size and crop_size (the name this module has always exported)

# warnings.catch_warnings swaps the process-wide filter list (until Python 3.14). Two threads
# inside it at once can restore each other's lists and leave its "ignore" filter installed for
# good; this lock keeps the threads of load_image (a threaded Dask worker) out of each other's way.
_WARNING_FILTERS_LOCK = threading.Lock()


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('reading images needs Pillow: pip install "npresnet[tools]"') from None
    return Image


def _check_path(path: object) -> str | bytes:
    """``path`` as str or bytes; TypeError for anything else (an int would be taken as a file descriptor)."""
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.fspath(path)
        if isinstance(path, (str, bytes)):
            return path
    raise TypeError(f"path must be a str or os.PathLike naming an image file, got {type(path).__name__} {path!r}")


def load_image(path: PathLike, max_pixels: int = MAX_PIXELS, *, resize_size: int | None = None) -> PILImage:
    """Open ``path`` and return a fully decoded 8-bit RGB ``PIL.Image``.

    Parameters
    ----------
    path : str or os.PathLike
        A regular file (not a FIFO or device) of at most ``MAX_IMAGE_FILE_BYTES``.
    max_pixels : int
        Refuse an image whose header claims more pixels (width × height), before decoding it.
    resize_size : int, optional
        The shorter side :func:`preprocess` will resize to: an image whose resized size would be
        refused there is refused here, from its header, before it is decoded (a 1×89,000,000 strip
        is within the pixel limit, but decoding it took 2 GB only for the resize to be refused).

    Raises
    ------
    ImageError
        With a message naming the file and the problem.
    TypeError
        ``path`` is not a path, or ``max_pixels`` not an int.
    ValueError
        ``max_pixels`` is below 1.
    """
    file_path = _check_path(path)
    max_pixels = check_int("max_pixels", max_pixels, 1)
    if resize_size is not None:
        resize_size = check_int("resize_size", resize_size, 1, MAX_SIZE)
    Image = _pil()
    try:
        with open_image_file(file_path) as (f, size):
            with _WARNING_FILTERS_LOCK, warnings.catch_warnings():  # Pillow warns from 89 Mpx; the checks
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # below decide instead
                check_embedded_sizes(Image, f, size, max_pixels, os.fsdecode(file_path))  # before Pillow decodes any
                image = Image.open(f)  # reads the header only (but an ICO's frame: checked above)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{os.fsdecode(file_path)}: image too large: {width}×{height} = {width * height:,} pixels, "
                    f"more than the limit of {max_pixels:,}"
                )
            if resize_size is not None and width * height > 0:
                try:
                    _resized_size(width, height, resize_size)
                except ImageError as err:
                    raise ImageError(f"{os.fsdecode(file_path)}: {err}") from None
            rgb: PILImage = image.convert("RGB")  # decodes everything now, so truncation is caught here
            return rgb
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{os.fsdecode(file_path)}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{os.fsdecode(file_path)}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{os.fsdecode(file_path)}: permission denied") from None
    except Image.DecompressionBombError:  # Pillow refuses above twice its MAX_IMAGE_PIXELS, before the check above
        applied = min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)
        raise ImageError(
            f"{os.fsdecode(file_path)}: image too large: more pixels than the limit of {applied:,}"
        ) from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{os.fsdecode(file_path)}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # truncated or corrupt data
        raise ImageError(f"{os.fsdecode(file_path)}: cannot decode image ({err})") from None


def _resized_size(w: int, h: int, resize_size: int) -> tuple[int, int]:
    """``(width, height)`` of a ``w``×``h`` image resized to a shorter side of ``resize_size`` (torchvision's rule).

    Raises ImageError when that has more than :data:`MAX_PIXELS` pixels.
    """
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize_size, int(resize_size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if new_w * new_h > MAX_PIXELS:
        raise ImageError(
            f"resizing {w}×{h} to a shorter side of {resize_size} gives {new_w}×{new_h} = "
            f"{new_w * new_h:,} pixels, more than the limit of {MAX_PIXELS:,}"
        )
    return new_w, new_h


def _float_or_inf(value: numbers.Real) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond 1.8e308
        return math.inf


def _check_image_and_statistics(image: object, mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Refuse what :func:`preprocess` cannot normalise; return ``mean`` and ``std`` as 3 floats each."""
    Image = _pil()
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image has no pixels: {image.width}×{image.height}")
    values: list[tuple[float, ...]] = []
    for name, value in (("mean", mean), ("std", std)):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
            raise ValueError(f"{name} must be 3 numbers, one per RGB channel, got {value!r}")
        if not all(is_real(v) for v in value):
            raise TypeError(f"{name} must be 3 real numbers, got {value!r}")
        with numpy.errstate(over="ignore"):
            as_float32 = numpy.asarray([_float_or_inf(v) for v in value], numpy.float32)
        if not numpy.isfinite(as_float32).all():  # the arithmetic is float32
            raise ValueError(f"{name} must be 3 numbers finite in float32, got {value!r}")
        values.append(tuple(value))
    if (numpy.asarray(values[1], numpy.float32) == 0).any():
        raise ValueError(f"std must be 3 non-zero numbers (zero even when rounded to float32), got {std!r}")
    return values[0], values[1]


def preprocess(
    image: PILImage,
    resize_size: int = 256,
    crop_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> numpy.ndarray:
    """Resize, center crop and normalise an RGB ``PIL.Image`` as torchvision's classification preset.

    Parameters
    ----------
    image : PIL.Image.Image, mode RGB
    resize_size : int
        Length of the shorter side after resizing.
    crop_size : int
        Side of the square center crop.
    mean, std : 3 floats
        Per-channel normalisation.

    Returns
    -------
    numpy.ndarray, float32, shape (3, crop_size, crop_size)

    Raises
    ------
    ValueError
        A size outside 1 to :data:`MAX_SIZE`, an image not in mode RGB or without pixels, or
        ``mean``/``std`` not 3 finite numbers (``std`` non-zero).
    TypeError
        ``image`` is not a ``PIL.Image``.
    ImageError
        The resized image would have more than :data:`MAX_PIXELS` pixels.
    """
    Image = _pil()
    mean, std = _check_image_and_statistics(image, mean, std)
    if image.mode != "RGB":
        raise ValueError(f"preprocess expects an RGB image, got mode {image.mode!r}; use load_image or .convert('RGB')")
    for name, value in (("resize_size", resize_size), ("crop_size", crop_size)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIZE:
            raise ValueError(f"{name} must be an int from 1 to {MAX_SIZE}, got {value!r}")

    w, h = image.size
    new_w, new_h = _resized_size(w, h, resize_size)  # checked before Pillow allocates the resized image
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.BILINEAR)

    pixels = numpy.asarray(image, dtype=numpy.uint8)  # (H, W, 3)
    if crop_size > new_h or crop_size > new_w:  # zero-pad up to the crop, centred
        pad_h, pad_w = max(crop_size - new_h, 0), max(crop_size - new_w, 0)
        pixels = numpy.pad(pixels, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    height, width = pixels.shape[:2]
    top = int(round((height - crop_size) / 2.0))
    left = int(round((width - crop_size) / 2.0))
    pixels = pixels[top : top + crop_size, left : left + crop_size]  # (crop, crop, 3)

    x: numpy.ndarray = pixels.transpose(2, 0, 1).astype(numpy.float32) / numpy.float32(255)  # (3, crop, crop) in [0, 1]
    x -= numpy.asarray(mean, dtype=numpy.float32)[:, None, None]
    x /= numpy.asarray(std, dtype=numpy.float32)[:, None, None]
    return x


def load_and_preprocess(path: PathLike, resize_size: int = 256, crop_size: int = 224) -> numpy.ndarray:
    """:func:`load_image` then :func:`preprocess`: a float32 array of shape (3, crop_size, crop_size)."""
    valid = isinstance(resize_size, int) and not isinstance(resize_size, bool) and 1 <= resize_size <= MAX_SIZE
    image = load_image(path, resize_size=resize_size if valid else None)  # else preprocess refuses it
    try:
        return preprocess(image, resize_size, crop_size)
    except ImageError as err:
        raise ImageError(f"{path}: {err}") from None
