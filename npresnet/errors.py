"""Exception types of npresnet: one family under :class:`NpresnetError`.

Each error also subclasses the builtin a caller would expect from it, so
``except ValueError`` keeps working for bad weights and images, and
``except npresnet.NpresnetError`` catches every failure npresnet reports itself::

    NpresnetError
    ├── WeightsError (also ValueError)    a weight file or state dict
    ├── ImageError   (also ValueError)    an image file
    └── FetchError   (also RuntimeError)  a download

Bad arguments to functions stay plain ``TypeError``/``ValueError``, as in NumPy.
"""

__all__ = ["NpresnetError", "WeightsError", "ImageError", "FetchError"]


class NpresnetError(Exception):
    """Base of every error npresnet raises about a file, an image or a download."""


class WeightsError(NpresnetError, ValueError):
    """A weight file or state dict is unreadable, malformed, unsafe or does not fit the model."""


class ImageError(NpresnetError, ValueError):
    """A file that cannot be read as an image (missing, unreadable, truncated, not an image, too large)."""


class FetchError(NpresnetError, RuntimeError):
    """A download failed (network, timeout, short transfer, hash mismatch, write error); nothing was cached."""
