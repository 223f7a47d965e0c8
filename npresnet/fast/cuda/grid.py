"""A CUDA thread grid evaluated with NumPy, for the kernels' twins.

A twin is the Python transcription of a CUDA kernel: the same statements, with each
scalar that a thread holds (``blockIdx.x``, ``idx``, ``oy``, ...) replaced by an int64
array holding that scalar for every thread at once. Running a twin therefore performs
the reads and writes that the kernel's threads would perform, and :class:`Buffer`
records them: every load and store is bounds-checked, and stores are counted per
element, so a test can assert that each output element is written exactly once.

Integer division: C truncates toward zero and NumPy's ``//`` floors; the two agree on
non-negative operands, and every ``/`` and ``%`` in the kernels acts on non-negative
indices (the possibly negative input coordinates are only compared, never divided).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

if TYPE_CHECKING:
    from collections.abc import Iterator

    from numpy.typing import ArrayLike, NDArray

__all__ = ["Launch", "Buffer", "launch_config"]


def launch_config(total: int, block: int = 256, max_blocks: int = 65536) -> tuple[int, int]:
    """``(grid, block)`` for a 1-D grid-stride kernel over ``total`` elements.

    At most ``max_blocks`` blocks; the grid-stride loop makes each thread handle
    ``ceil(total / (grid * block))`` elements when the grid is capped.
    """
    if total < 0 or block < 1 or max_blocks < 1:
        raise ValueError(
            f"launch_config: total={total}, block={block}, max_blocks={max_blocks} must be >= 0, >= 1, >= 1"
        )
    return max(1, min(-(-total // block), max_blocks)), block


class Launch:
    """The threads of a 1-D launch ``kernel<<<gridDim.x, blockDim.x>>>``, one array element per thread.

    Parameters
    ----------
    grid_dim, block_dim : int
        ``gridDim.x`` and ``blockDim.x``.
    """

    def __init__(self, grid_dim: int, block_dim: int):
        if grid_dim < 1 or block_dim < 1:
            raise ValueError(f"Launch: grid_dim={grid_dim} and block_dim={block_dim} must be >= 1")
        self.gridDim_x, self.blockDim_x = grid_dim, block_dim
        self.blockIdx_x = numpy.repeat(numpy.arange(grid_dim, dtype=numpy.int64), block_dim)  # (threads,)
        self.threadIdx_x = numpy.tile(numpy.arange(block_dim, dtype=numpy.int64), grid_dim)  # (threads,)

    def grid_stride(self, total: int) -> Iterator[NDArray[numpy.int64]]:
        """Iterate the grid-stride loop that every kernel here is written as.

        The loop, in C::

            for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
                 idx += (long long)blockDim.x * gridDim.x)

        Yields, for each trip, the array of ``idx`` of the threads still inside the loop.
        """
        idx = self.blockIdx_x * self.blockDim_x + self.threadIdx_x
        while True:
            idx = idx[idx < total]
            if idx.size == 0:
                return
            yield idx
            idx = idx + self.blockDim_x * self.gridDim_x


class Buffer:
    """A flat device buffer as a kernel sees it through a pointer: ``buf[index]`` loads, ``buf[index] = v`` stores.

    Parameters
    ----------
    array : numpy.ndarray, C-contiguous
        The memory; stores write into it.
    count_stores : bool
        Keep ``stores``, the number of stores per element (the tests' written-once check); the
        emulated device (:mod:`npresnet._emulation`), which only needs the values and the bounds
        checks, turns it off.
    """

    def __init__(self, array: NDArray[Any], count_stores: bool = True) -> None:
        if not array.flags.c_contiguous:
            raise ValueError("Buffer: the array must be C-contiguous, as device memory behind a pointer is")
        self.array = array
        self.flat = array.reshape(-1)  # a view: stores reach ``array``
        self.stores: NDArray[numpy.int64] | None = (  # stores per element
            numpy.zeros(self.flat.size, dtype=numpy.int64) if count_stores else None
        )

    def _check(self, indices: ArrayLike) -> NDArray[Any]:
        index = numpy.asarray(indices)
        if index.dtype.kind not in "iu":
            raise TypeError(f"Buffer: index of dtype {index.dtype}, expected an integer")
        bad = (index < 0) | (index >= self.flat.size)
        if bad.any():
            raise IndexError(f"Buffer: access at {index[bad][:5].tolist()} outside [0, {self.flat.size})")
        return index

    def __getitem__(self, index: ArrayLike) -> NDArray[Any]:
        """Read element ``index``, refused outside the buffer (as a device read would be out of bounds)."""
        loaded: NDArray[Any] = self.flat[self._check(index)]
        return loaded

    def __setitem__(self, index: ArrayLike, value: ArrayLike) -> None:
        """Write element ``index``, refused outside the buffer; each store counted in ``stores`` when it is set."""
        checked = self._check(index)
        if self.stores is not None:
            numpy.add.at(self.stores, checked, 1)  # several threads storing to one element count once each
        self.flat[checked] = value
