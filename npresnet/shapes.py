"""Sliding-window size arithmetic: the one home of the output-size formula, and ``pair``.

Every layer, the summary tool and the tests call :func:`conv_output_size`;
nothing else recomputes ``floor((n + 2p - d(k-1) - 1)/s) + 1`` inline; the transposed
convolution's size (drawn by :mod:`npresnet.draw`) is :func:`conv_transpose_output_size`. Pure
integers, no arrays. (The fused path's padding-free window geometry, ``kernel_taps``,
lives with its only users in ``npresnet.fast.taps``.)
"""

from __future__ import annotations

from ._args import is_int

__all__ = ["conv_output_size", "conv_transpose_output_size", "pair"]


def pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """Return ``(h, w)`` from an int, a 1-sequence or a pair of ints.

    As torch's conv and pooling functions take them: a single value, ``2``, ``(2,)`` or ``[2]``,
    stands for both axes.

    Raises
    ------
    TypeError
        If ``value`` is neither an int nor one or two ints; the message names ``name``.
    """
    if is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) in (1, 2) and all(is_int(v) for v in value):
        return int(value[0]), int(value[-1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Return the number of window positions along one axis of a convolution or pooling.

    ``floor((size + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1``.
    With ``ceil_mode`` the division rounds up, but, as in PyTorch, a last window
    that would start beyond the input and its left padding is dropped. So in ceil
    mode a window may overhang the padded input (PyTorch's pooling allows it).

    Parameters
    ----------
    size, kernel_size, stride, padding, dilation : int
        Input length, window length, step, padding on each side, window dilation.
    ceil_mode : bool
        Round the division up instead of down (pooling only in PyTorch).

    Returns
    -------
    int
        The output length, at least 1.

    Raises
    ------
    ValueError
        If an argument is out of range, or no window fits: the output length would be
        below 1 (in floor mode: the dilated window ``dilation*(kernel_size-1)+1`` is longer
        than the padded input).
    """
    for name, value, low in (
        ("size", size, 0),
        ("kernel_size", kernel_size, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
    ):
        if not is_int(value):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    span = size + 2 * padding - dilation * (kernel_size - 1) - 1  # start of the last window that fits
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:  # last window would start in the right padding
            out -= 1
    else:
        out = span // stride + 1
    if out < 1:
        raise ValueError(
            f"window of size {dilation * (kernel_size - 1) + 1} (kernel_size={kernel_size}, "
            f"dilation={dilation}) is larger than the padded input of size "
            f"{size + 2 * padding} (size={size}, padding={padding})"
        )
    return out


def conv_transpose_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Return the output length along one axis of a transposed convolution, torch's definition.

    ``(size - 1)*stride - 2*padding + dilation*(kernel_size - 1) + output_padding + 1``: the last
    output cell the last input cell writes, less the cropped padding, plus ``output_padding``.
    Arguments are taken as given (the caller checks them); the result is below 1 when the
    padding crops everything, which torch refuses.
    """
    return (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1
