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
as 8-bit RGB) is refused with an :class:`ImageError`, as is a resize whose result would
exceed it (a 1×100000 strip resized to a shorter side of 256 would be 6.5 gigapixels);
``resize_size`` and ``crop_size`` are at most :data:`MAX_SIZE` (both limits live in
:mod:`npresnet.limits`). Pillow's own
``DecompressionBombWarning`` is not shown: the check here replaces it. npresnet never
changes Pillow's process-wide ``MAX_IMAGE_PIXELS``.
"""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING

import numpy

from .errors import ImageError
from .imagenet import IMAGENET_MEAN, IMAGENET_STD
from .limits import MAX_IMAGE_SIZE, MAX_PIXELS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from PIL.Image import Image

    from ._typing import PathLike

__all__ = ["ImageError", "MAX_PIXELS", "MAX_SIZE", "load_image", "preprocess", "load_and_preprocess"]

MAX_SIZE = MAX_IMAGE_SIZE  # largest resize_size and crop_size (the name this module has always exported)

# warnings.catch_warnings swaps the process-wide filter list (until Python 3.14). Two threads
# inside it at once can restore each other's lists and leave its "ignore" filter installed for
# good; this lock keeps the threads of load_image (a threaded Dask worker) out of each other's way.
_WARNING_FILTERS_LOCK = threading.Lock()


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('reading images needs Pillow: pip install "npresnet[tools]"') from None
    return Image


def load_image(path: PathLike, max_pixels: int = MAX_PIXELS) -> Image:
    """Open ``path`` and return a fully decoded 8-bit RGB ``PIL.Image``.

    Parameters
    ----------
    path : str or os.PathLike
    max_pixels : int
        Refuse an image whose header claims more pixels (width × height), before decoding it.

    Raises
    ------
    ImageError
        With a message naming the file and the problem.
    """
    Image = _pil()
    try:
        with open(path, "rb") as f:
            with _WARNING_FILTERS_LOCK, warnings.catch_warnings():  # Pillow warns from 89 Mpx; the check
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # below decides instead
                image = Image.open(f)  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{path}: image too large: {width}×{height} = {width * height:,} pixels, "
                    f"more than the limit of {max_pixels:,}"
                )
            return image.convert("RGB")  # decodes everything now, so truncation is caught here
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except Image.DecompressionBombError:  # Pillow refuses above twice its MAX_IMAGE_PIXELS, before the check above
        applied = min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)
        raise ImageError(f"{path}: image too large: more pixels than the limit of {applied:,}") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # truncated or corrupt data
        raise ImageError(f"{path}: cannot decode image ({err})") from None


def preprocess(
    image: Image,
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
        A size outside 1 to :data:`MAX_SIZE`, or an image not in mode RGB.
    ImageError
        The resized image would have more than :data:`MAX_PIXELS` pixels.
    """
    Image = _pil()
    if image.mode != "RGB":
        raise ValueError(f"preprocess expects an RGB image, got mode {image.mode!r}; use load_image or .convert('RGB')")
    for name, value in (("resize_size", resize_size), ("crop_size", crop_size)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIZE:
            raise ValueError(f"{name} must be an int from 1 to {MAX_SIZE}, got {value!r}")

    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize_size, int(resize_size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if new_w * new_h > MAX_PIXELS:  # checked before Pillow allocates the resized image
        raise ImageError(
            f"resizing {w}×{h} to a shorter side of {resize_size} gives {new_w}×{new_h} = "
            f"{new_w * new_h:,} pixels, more than the limit of {MAX_PIXELS:,}"
        )
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

    x = pixels.transpose(2, 0, 1).astype(numpy.float32) / numpy.float32(255)  # (3, crop, crop) in [0, 1]
    x -= numpy.asarray(mean, dtype=numpy.float32)[:, None, None]
    x /= numpy.asarray(std, dtype=numpy.float32)[:, None, None]
    return x


def load_and_preprocess(path: PathLike, resize_size: int = 256, crop_size: int = 224) -> numpy.ndarray:
    """:func:`load_image` then :func:`preprocess`: a float32 array of shape (3, crop_size, crop_size)."""
    image = load_image(path)
    try:
        return preprocess(image, resize_size, crop_size)
    except ImageError as err:
        raise ImageError(f"{path}: {err}") from None
