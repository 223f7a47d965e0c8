"""The windows of a convolution or pooling layer, as integers: what a picture of the layer draws.

Every output position ``(oy, ox)`` reads, for kernel offset ``(i, j)``, the input position
``(oy*sy - ph + i*dy, ox*sx - pw + j*dx)`` (the window geometry of :mod:`npresnet.shapes`);
the number of positions comes from :func:`npresnet.shapes.conv_output_size`. A tap is
*inside* the input, in the *padding* (within ``ph``/``pw`` of the border), or, in
``ceil_mode``, in the *overhang* beyond the padding, which PyTorch's pooling ignores.

A transposed convolution (``conv_transpose2d``) is the adjoint of the convolution that maps
its output back to its input, so its picture is that convolution's with the roles of input
and output swapped: the same index formula, read the other way. Each *input* position
``(iy, ix)`` scatters, for kernel offset ``(i, j)``, into the output cell
``(iy*sy - ph + i*dy, ix*sx - pw + j*dx)``; the positions are the input's cells, the drawn grid
is the output with its ``padding`` border, and a tap in that border (``"padding"``) is cropped:
torch computes it and drops it. The output has ``(n - 1)*s - 2*p + d*(k - 1) + output_padding + 1``
cells per axis (:func:`conv_transpose2d`); ``output_padding`` adds cells at the bottom/right
that only the padding's taps could have reached.

The arguments are checked by the layers' own shape-only functions
(:func:`npresnet.functional.conv2d_output_shape` and the pooling ones), so a configuration
the layer refuses is refused here with the layer's message; the drawing limits below are
checked after them, before anything is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import functional as F
from .._args import is_int
from ..functional._checks import _check_groups, _positive_pair
from ..limits import MAX_DRAW_CHANNELS, MAX_DRAW_SIZE
from ..nn import TensorSpec
from ..shapes import conv_transpose_output_size, pair

if TYPE_CHECKING:
    from .._typing import IntPair

__all__ = [
    "Windows",
    "Tap",
    "conv2d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "MAX_DRAW_SIZE",
    "MAX_DRAW_CHANNELS",
]


@dataclass(frozen=True)
class Tap:
    """One kernel offset ``(i, j)`` of one window and the input position ``(y, x)`` it reads.

    ``where`` is ``"input"``, ``"padding"`` or ``"overhang"`` (ceil mode, beyond the padding).
    For ``conv_transpose2d``, ``(y, x)`` is the output cell the tap writes and ``where`` is
    ``"output"`` (inside the output) or ``"padding"`` (cropped).
    """

    i: int
    j: int
    y: int
    x: int
    where: str


@dataclass(frozen=True)
class Windows:
    """The sliding windows of one layer configuration; see the module docstring.

    Attributes
    ----------
    op : str
        ``"conv2d"``, ``"conv_transpose2d"``, ``"max_pool2d"`` or ``"avg_pool2d"``.
    input_size, output_size : (int, int)
        ``(H, W)`` and ``(out_h, out_w)``.
    kernel_size, stride, padding, dilation : (int, int)
    ceil_mode : bool
    in_channels, out_channels, groups : int
        For pooling, ``out_channels == in_channels == groups``: each channel is pooled alone.
    count_include_pad : bool
        avg_pool2d only: padding counts in the divisor (the overhang never does).
    output_padding : (int, int)
        conv_transpose2d only: the cells added at the output's bottom and right.
    """

    op: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    in_channels: int = 1
    out_channels: int = 1
    groups: int = 1
    count_include_pad: bool = True
    output_padding: tuple[int, int] = (0, 0)

    @property
    def transposed(self) -> bool:
        """True for ``conv_transpose2d``: positions are input cells and taps land in the output."""
        return self.op == "conv_transpose2d"

    @property
    def position_size(self) -> tuple[int, int]:
        """``(rows, cols)`` of the positions, one window each: the output, or the input when :attr:`transposed`."""
        return self.input_size if self.transposed else self.output_size

    @property
    def grid_size(self) -> tuple[int, int]:
        """``(rows, cols)`` of the grid the taps land in: the input, or the output when :attr:`transposed`."""
        return self.output_size if self.transposed else self.input_size

    def taps(self, oy: int, ox: int) -> tuple[Tap, ...]:
        """Return the ``kh*kw`` taps of position ``(oy, ox)``, row-major in ``(i, j)``: a tuple of :class:`Tap`.

        The position is an output cell, whose window reads the input, or for ``conv_transpose2d``
        an input cell, which writes the output cells of its taps.
        """
        rows, cols = self.position_size
        if not (0 <= oy < rows and 0 <= ox < cols):
            name = "input" if self.transposed else "output"
            raise IndexError(f"{name} position ({oy}, {ox}) is outside the {rows}x{cols} {name}")
        (kh, kw), (sy, sx), (ph, pw), (dy, dx) = self.kernel_size, self.stride, self.padding, self.dilation
        taps: list[Tap] = []
        for i in range(kh):
            # the one index formula of every picture: position o, kernel offset i -> cell o*s - p + i*d
            # (conv/pool: the input cell output o reads; conv_transpose2d: the output cell input o writes)
            y = oy * sy - ph + i * dy
            for j in range(kw):
                x = ox * sx - pw + j * dx
                taps.append(Tap(i, j, y, x, self.cell_kind(y, x)))
        return tuple(taps)

    def cell_kind(self, y: int, x: int) -> str:
        """Return where grid cell ``(y, x)`` lies: ``"input"``, ``"padding"`` or ``"overhang"``.

        ``"overhang"`` is beyond the padding: ceil mode's last windows. For ``conv_transpose2d``
        the grid is the output: ``"output"`` or ``"padding"`` (the cropped border).
        """
        (H, W), (ph, pw) = self.grid_size, self.padding
        if 0 <= y < H and 0 <= x < W:
            return "output" if self.transposed else "input"
        if -ph <= y < H + ph and -pw <= x < W + pw:
            return "padding"
        return "overhang"

    def positions(self) -> list[tuple[int, int]]:
        """Positions ``(oy, ox)`` in row-major order (the order of the panels and the animation's frames)."""
        rows, cols = self.position_size
        return [(oy, ox) for oy in range(rows) for ox in range(cols)]

    def extent(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((y0, y1), (x0, x1))``: the drawn grid's rows and columns, half-open, padding and overhang included."""
        (H, W), (out_h, out_w) = self.grid_size, self.position_size
        (kh, kw), (sy, sx), (ph, pw), (dy, dx) = self.kernel_size, self.stride, self.padding, self.dilation
        last_y = (out_h - 1) * sy - ph + (kh - 1) * dy  # the last row a window reads (or writes)
        last_x = (out_w - 1) * sx - pw + (kw - 1) * dx
        return (-ph, max(H + ph, last_y + 1)), (-pw, max(W + pw, last_x + 1))

    def divisor(self, oy: int, ox: int) -> int | None:
        """avg_pool2d's divisor for output ``(oy, ox)``: taps inside, plus padding if ``count_include_pad``."""
        if self.op != "avg_pool2d":
            return None
        counted = ("input", "padding") if self.count_include_pad else ("input",)
        return sum(t.where in counted for t in self.taps(oy, ox))

    def input_channels_of(self, out_channel: int) -> range:
        """Return the input channels output channel ``out_channel`` reads: its group's ``C_in/groups`` channels."""
        if not 0 <= out_channel < self.out_channels:
            raise IndexError(f"out_channel must be from 0 to {self.out_channels - 1}, got {out_channel}")
        per_group_in = self.in_channels // self.groups
        group = out_channel // (self.out_channels // self.groups)
        return range(group * per_group_in, (group + 1) * per_group_in)

    def title(self) -> str:
        """``conv2d 5×5 → 3×3: kernel 3×3, stride 2×2, padding 1×1``, and the options that are not defaults."""
        text = f"{self.op} {_xy(self.input_size)} → {_xy(self.output_size)}: kernel {_xy(self.kernel_size)}"
        text += f", stride {_xy(self.stride)}, padding {_xy(self.padding)}"
        if self.dilation != (1, 1):
            text += f", dilation {_xy(self.dilation)}"
        if self.output_padding != (0, 0):
            text += f", output_padding {_xy(self.output_padding)}"
        channels = (self.in_channels, self.out_channels, self.groups)
        if self.op in ("conv2d", "conv_transpose2d") and channels != (1, 1, 1):
            text += f", {self.in_channels}→{self.out_channels} channels in {self.groups} group(s)"
        if self.ceil_mode:
            text += ", ceil_mode"
        if self.op == "avg_pool2d" and not self.count_include_pad:
            text += ", count_include_pad=False"
        return text


def _xy(pair_: tuple[int, int]) -> str:
    return f"{pair_[0]}×{pair_[1]}"


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def _input_size(input_size: IntPair) -> tuple[int, int]:
    try:
        H, W = pair(input_size, "input_size")
    except TypeError:
        raise TypeError(f"input_size must be an int or a pair of ints (H, W), got {input_size!r}") from None
    if H < 1 or W < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    return H, W


def _int_padding(padding: IntPair | str) -> IntPair:
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int or a pair of ints to be drawn, got {padding!r}")
    return padding


def _check_limits(windows: Windows) -> Windows:
    """Refuse a configuration too large to draw, once the layer has accepted it."""
    grid = "output" if windows.transposed else "input"
    for axis, (lo, hi) in zip(("height", "width"), windows.extent()):
        if hi - lo > MAX_DRAW_SIZE:
            raise ValueError(
                f"the drawn {grid} would be {hi - lo} cells along {axis} ({grid}, padding and overhang), "
                f"more than the {MAX_DRAW_SIZE} a picture shows; draw a smaller input_size or padding"
            )
    for axis, size in zip(("height", "width"), windows.position_size if windows.transposed else ()):
        if size > MAX_DRAW_SIZE:  # conv_transpose2d's input; a conv's output is never wider than its drawn input
            raise ValueError(f"input_size is {size} along {axis}, more than the {MAX_DRAW_SIZE} a picture shows")
    for name, value in (("in_channels", windows.in_channels), ("out_channels", windows.out_channels)):
        if value > MAX_DRAW_CHANNELS:
            raise ValueError(f"{name}={value} is more than the {MAX_DRAW_CHANNELS} channels a picture shows")
    return windows


def _channels(value: object, name: str) -> int:
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def conv2d(
    input_size: IntPair,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    in_channels: int | None = None,
    out_channels: int | None = None,
) -> Windows:
    """Return the windows of ``torch.nn.functional.conv2d`` on an ``input_size`` image.

    Parameters
    ----------
    input_size : int or (H, W)
    kernel_size, stride, padding, dilation : int or (int, int)
        As the layer takes them; ``padding`` must be numeric (``'same'`` is not drawn).
    groups : int
    in_channels, out_channels : int, optional
        Default ``groups`` each (one channel per group).

    Returns
    -------
    Windows

    Raises
    ------
    ValueError, TypeError
        What :func:`npresnet.functional.conv2d` raises for the configuration, or a drawing limit.
    """
    H, W = _input_size(input_size)
    kh, kw = pair(kernel_size, "kernel_size")
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size!r}")
    groups_ = groups if is_int(groups) and groups > 0 else 1
    C = _channels(groups_ if in_channels is None else in_channels, "in_channels")
    O = _channels(groups_ if out_channels is None else out_channels, "out_channels")
    weight = TensorSpec((O, max(C // groups_, 1), kh, kw))
    _, O, out_h, out_w = F.conv2d_output_shape(
        TensorSpec((1, C, H, W)), weight, None, stride, _int_padding(padding), dilation, groups
    )
    return _check_limits(
        Windows(
            "conv2d",
            (H, W),
            (out_h, out_w),
            (kh, kw),
            pair(stride, "stride"),
            pair(padding, "padding"),
            pair(dilation, "dilation"),
            in_channels=C,
            out_channels=O,
            groups=int(groups),
        )
    )


def conv_transpose2d(
    input_size: IntPair,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
    in_channels: int | None = None,
    out_channels: int | None = None,
) -> Windows:
    """Return the windows of ``torch.nn.functional.conv_transpose2d`` on an ``input_size`` image.

    The picture is :func:`conv2d`'s with input and output swapped: one window per *input*
    cell, whose taps are the output cells it writes (see the module docstring).

    Parameters
    ----------
    input_size : int or (H, W)
    kernel_size, stride, padding, output_padding, dilation : int or (int, int)
        In torch's order and meaning; ``output_padding`` must be smaller than ``stride`` or
        ``dilation`` on each axis, as torch requires.
    groups : int
    in_channels, out_channels : int, optional
        Default ``groups`` each (one channel per group).

    Returns
    -------
    Windows
        ``input_size`` and ``output_size`` are the layer's; the positions are the input's cells.

    Raises
    ------
    ValueError, TypeError
        For an argument torch refuses (one line naming it), an empty output, or a drawing limit.
    """
    H, W = _input_size(input_size)
    kernel = _positive_pair(kernel_size, "kernel_size")
    strides = _positive_pair(stride, "stride")
    pads = _positive_pair(_int_padding(padding), "padding", low=0)
    extra = _positive_pair(output_padding, "output_padding", low=0)
    dilations = _positive_pair(dilation, "dilation")
    for axis, op_, s, d in zip(("height", "width"), extra, strides, dilations):
        if op_ >= s and op_ >= d:
            raise ValueError(
                f"output_padding must be smaller than stride or dilation, got output_padding={output_padding!r}, "
                f"stride={stride!r}, dilation={dilation!r} (along {axis}: {op_} >= {s} and {op_} >= {d})"
            )
    n_groups = _check_groups(groups)
    C = _channels(n_groups if in_channels is None else in_channels, "in_channels")
    O = _channels(n_groups if out_channels is None else out_channels, "out_channels")
    if C % n_groups or O % n_groups:
        raise ValueError(
            f"groups={n_groups} must divide both in_channels ({C}) and out_channels ({O}) of conv_transpose2d"
        )
    out_h, out_w = (
        conv_transpose_output_size(n, k, s, p, op_, d)
        for n, k, s, p, op_, d in zip((H, W), kernel, strides, pads, extra, dilations)
    )
    if min(out_h, out_w) < 1:
        raise ValueError(
            f"padding={padding!r} leaves conv_transpose2d an empty output: {H}x{W} input gives "
            f"{out_h}x{out_w} = (n - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1"
        )
    return _check_limits(
        Windows(
            "conv_transpose2d",
            (H, W),
            (out_h, out_w),
            kernel,
            strides,
            pads,
            dilations,
            in_channels=C,
            out_channels=O,
            groups=n_groups,
            output_padding=extra,
        )
    )


def max_pool2d(
    input_size: IntPair,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> Windows:
    """Return the windows of ``torch.nn.functional.max_pool2d`` (``stride`` default: ``kernel_size``).

    See :func:`conv2d`.
    """
    H, W = _input_size(input_size)
    _bool(ceil_mode, "ceil_mode")
    _, _, out_h, out_w = F.max_pool2d_output_shape(
        TensorSpec((1, 1, H, W)), kernel_size, stride, padding, dilation, ceil_mode
    )
    kernel = pair(kernel_size, "kernel_size")
    return _check_limits(
        Windows(
            "max_pool2d",
            (H, W),
            (out_h, out_w),
            kernel,
            kernel if stride is None else pair(stride, "stride"),
            pair(padding, "padding"),
            pair(dilation, "dilation"),
            ceil_mode=ceil_mode,
        )
    )


def avg_pool2d(
    input_size: IntPair,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Windows:
    """Return the windows of ``torch.nn.functional.avg_pool2d``, with each window's divisor; see :func:`conv2d`."""
    H, W = _input_size(input_size)
    _bool(ceil_mode, "ceil_mode")
    _bool(count_include_pad, "count_include_pad")
    _, _, out_h, out_w = F.avg_pool2d_output_shape(TensorSpec((1, 1, H, W)), kernel_size, stride, padding, ceil_mode)
    kernel = pair(kernel_size, "kernel_size")
    return _check_limits(
        Windows(
            "avg_pool2d",
            (H, W),
            (out_h, out_w),
            kernel,
            kernel if stride is None else pair(stride, "stride"),
            pair(padding, "padding"),
            ceil_mode=ceil_mode,
            count_include_pad=count_include_pad,
        )
    )
