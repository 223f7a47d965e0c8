"""Winograd F(m×m, 3×3): a stride-1 3×3 convolution with (m+2)² products per m×m output tile instead of 9m².

Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks". In one dimension,
``m`` outputs of a 3-tap correlation ``y[k] = sum_t g[t] d[k+t]`` come from ``n = m + 2`` inputs as

    y = Aᵀ [(G g) ⊙ (Bᵀ d)],     Aᵀ: (m, n), G: (n, 3), Bᵀ: (n, n),

``n`` multiplications instead of ``3m``. The matrices come from the Cook–Toom construction
(evaluation at ``n - 1`` points and at ∞, then interpolation); :func:`winograd_matrices`
derives them. In two dimensions an n×n input tile ``d`` and the kernel ``g`` give the m×m output
tile ``Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A``.

Two tile sizes, chosen with ``fuse(model, winograd=...)`` (:func:`winograd_tiles`):

- F(2×2, 3×3), points 0, ±1: 16 products per 4 outputs (2.25× fewer than direct);
- F(4×4, 3×3), points 0, ±2, ±½: 36 products per 16 outputs (4× fewer).

``winograd=True`` (the default) and ``"F4"`` hold F(4×4), ``"F2"`` F(2×2). With ``"auto"`` a
layer holds both (the weight memory of both) and each call runs the cheaper by
:func:`winograd_cost` (a layer with few tiles per call, as 14×14 at batch 1, reads the 36/16×
larger F(4×4) weight for little saving). Either way a call with fewer than :data:`MIN_TILES`
tiles runs by im2col.

**Rounding error.** Each stage below is a sum whose float32 result is the exact sum with every
term perturbed by a factor ``1 + θ``, ``|θ| ≤ γ_k = k u / (1 - k u)`` for ``k`` roundings on the
term's path (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1; any summation order,
any BLAS kernel, with or without fused multiply-adds), ``u = 2⁻²⁴``. On the path of one product
``U ⋅ V`` of an output pixel: the two input-transform passes (``n`` terms each), the rounding of
``U`` to float32, the channel sum (``C`` terms), the two output-transform passes (``n`` each) and
the bias add. The matrices ``Aᵀ`` and ``Bᵀ`` are dyadic (exact in float32) for both point sets, so
they add no error of their own. Hence, componentwise for every output pixel (first order in ``u``
included exactly, since ``γ_j + γ_k + γ_j γ_k ≤ γ_{j+k}``)::

    |ŷ - y| ≤ γ_{4n+C+2} ⋅ ( |Aᵀ| [ Σ_c |U_c| ⊙ (|Bᵀ| |d_c| |B|) ] |A| + |b| ),  U_c = G g_c Gᵀ (float64)

where ``d_c`` is the n×n input tile of channel ``c`` and the bias ``b`` is rounded once (counted in
the ``γ``). Direct convolution (im2col) has ``γ_{9C+2} ⋅ (Σ |g||d| + |b|)`` instead: Winograd's
error is larger by the amplification ``|Aᵀ| [|G g Gᵀ| ⊙ |Bᵀ| |d| |B|] |A|`` over ``|g| ∗ |d|``.

**The points.** The amplification depends only on the points, not on how rows of the matrices are
scaled (a row scaling cancels in ``|Aᵀ_{ki}| |G_{it}| |Bᵀ_{ij}|``). The classic set for F(4×4)
is 0, ±1, ±2 (entries up to 5 in Bᵀ, 1/24 in G); Barabasz, Anderson, Soodhalter & Gregg, "Error
analysis and improving the accuracy of Winograd convolution for deep neural networks" (ACM TOMS
46(4), 2020, arXiv:1803.10986) bound the error through these matrices and show that the choice of
points changes it a great deal. Searched over every set of five
dyadic points from {0, ±¼, ±½, ±¾, ±1, ±3/2, ±2, ±3, ±4} with 0 included, the 1-D amplification
``max_k Σ_i |Aᵀ_{ki}| (Σ_t |G_{it}|) (Σ_j |Bᵀ_{ij}|)`` is smallest for 0, ±2, ±½: 7.3 against 16.0
for 0, ±1, ±2 and 0, ±1, ±½ (2-D: its square, 54 against 256; direct convolution: 9). Measured on a
64-channel layer with random weights, the float32 error against float64 falls 1.6–2.3× (root-mean-
square and maximum) from 0, ±1, ±2 to 0, ±2, ±½ (batch 4, 20×20, 64 → 64 channels).

Over a whole layer, with the tile positions ``(α, β)`` as the leading axes and ``T`` tiles:

1. tiles ``(n, n, T, C)``: n² strided copies from the NHWC input, zeros outside the image;
2. ``V = Bᵀ d B`` in two passes, each one matrix product with Bᵀ: ``(n, n) @ (n, n*T*C)`` over α,
   then ``n`` products ``(n, n) @ (n, T*C)`` over β (4n multiply-adds per element, not the n² of
   one ``kron(Bᵀ, Bᵀ)`` product);
3. ``M[ξ] = V[ξ] @ U[ξ]``, n² products ``(T, C) @ (C, O)``, with ``U = kron(G, G) @ w``
   computed once, in float64, when the model is fused;
4. ``Y = Aᵀ M A``, two passes as in 2;
5. the m² output positions of each tile scattered into the NHWC output (cropped at the border),
   the bias added in the same pass, then the residual add and ReLU.

Steps 2–4 are BLAS products, so they use every core; only the copies in 1 and 5 do not.
Tiles are processed in chunks (whole images, or bands of tile rows of one image) bounded by
the workspace, like :class:`npresnet.fast.conv.FusedConv`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy

from ..backend import get_array_module
from ..workspace import resolve_workspace_bytes, workspace_chunks
from .taps import kernel_taps

if TYPE_CHECKING:
    import types
    from collections.abc import Callable

    from numpy.typing import NDArray

    from .._typing import Array, Shape
    from ..nn import Conv2d
    from .conv import FusedConv

__all__ = [
    "WinogradConv",
    "winograd_matrices",
    "winograd_weight",
    "winograd_tile",
    "winograd_tiles",
    "winograd_cost",
    "is_winograd_eligible",
    "TILES",
    "DEFAULT_WINOGRAD",
]

R = 3  # kernel size r
TILES = {"F2": 2, "F4": 4}
"""The ``winograd`` choices of :func:`npresnet.fast.fuse` and their output tile sizes m."""
DEFAULT_WINOGRAD = "F4"
"""What ``winograd=True`` (the default) means; see :func:`winograd_tiles`. Not ``"auto"``: holding both
tile sizes' weights adds F(2×2)'s (+64 MiB for ResNet-18) to the model for a 4–7 % gain at batch 1 only."""
MIN_TILES = {2: 24, 4: 20}
"""Below this many tiles in a call (by tile size m), reading the (m+2)²/9 times larger transformed
weight costs more than the products save, so :class:`WinogradConv` hands the call to im2col.
Measured one layer at a time against im2col (``OPENBLAS_NUM_THREADS=1 python
benchmarks/winograd_estimate.py``, CPU time, AMD EPYC Zen 4, OpenBLAS SkylakeX kernels): F(2×2)
ties at 16 tiles of 7×7×512 and wins at 32; F(4×4) loses at 4–12 tiles of 7×7×512, ties at 16
(7×7×512 and 14×14×256), wins at 24 and 32."""
POINTS = {2: (0.0, 1.0, -1.0), 4: (0.0, 2.0, -2.0, 0.5, -0.5)}
"""Interpolation points (besides ∞) of F(m×m, 3×3) by output tile size m: dyadic, so that Aᵀ and Bᵀ
are exact in float32; for m = 4 the set of least amplification (module docstring)."""


WEIGHT_READ_MACS = 30
""":func:`winograd_cost`'s price of reading one transformed weight, in multiply-adds."""
TRANSFORM_MACS = 24
""":func:`winograd_cost`'s price of one element of the input or output tiles (gather, two transform passes,
scatter), in multiply-adds."""


def winograd_tiles(winograd: bool | str) -> tuple[int, ...]:
    """Return the output tile sizes m held for :func:`npresnet.fast.fuse`'s ``winograd`` option, largest first.

    ``True`` (:data:`DEFAULT_WINOGRAD`) and ``"F4"``: (4,); ``"F2"``: (2,); ``"auto"``: (4, 2), each
    call running the cheaper (:func:`winograd_cost`); ``False``: () (im2col only).
    Anything else is refused with a one-line ValueError naming the argument.
    """
    if winograd is True:
        return (TILES[DEFAULT_WINOGRAD],)
    if isinstance(winograd, str) and winograd == "auto":
        return (4, 2)
    if winograd is False:
        return ()
    if isinstance(winograd, str) and winograd in TILES:
        return (TILES[winograd],)
    raise ValueError(f"fuse: winograd={winograd!r}, expected True, False, 'F2', 'F4' or 'auto'")


def winograd_tile(winograd: bool | str) -> int | None:
    """Return the largest output tile size m of ``winograd`` (:func:`winograd_tiles`), or None for im2col."""
    tiles = winograd_tiles(winograd)
    return tiles[0] if tiles else None


def winograd_cost(m: int, tiles: int, C: int, O: int) -> float:
    """Estimated cost of one F(m×m, 3×3) call on ``tiles`` tiles, C → O channels, in multiply-adds.

    ``n² (T·C·O + WEIGHT_READ_MACS·C·O + TRANSFORM_MACS·T·(C + O))``, n = m + 2: the tile products,
    reading the transformed weight ``U`` once (memory-bound when T is small), and the per-element
    work around the products. F(4×4) does fewer products per output than F(2×2) (36 per 16 outputs
    against 16 per 4), but reads 36/16× the weight, so with few tiles per call (14×14 at batch 1:
    16 tiles, against F(2×2)'s 49) F(2×2) wins. The two prices were fitted to single-layer times
    (``OPENBLAS_NUM_THREADS=1 python benchmarks/winograd_estimate.py``, CPU time, AMD EPYC Zen 4,
    SkylakeX kernels: ResNet-18's four stride-1 3×3 layers at batches 1 and 8, 7×7×512 at batches
    2–6, 14×14×256 at batch 2). With ``WEIGHT_READ_MACS`` 30, any ``TRANSFORM_MACS`` from 0 to 56
    makes :meth:`WinogradConv.uses_winograd` (this comparison and :data:`MIN_TILES`) pick the
    fastest of F(2×2), F(4×4) and im2col in all thirteen cases; 24 sits inside that range.
    """
    n = m + R - 1
    return n * n * (tiles * C * O + WEIGHT_READ_MACS * C * O + TRANSFORM_MACS * tiles * (C + O))


def winograd_matrices(
    m: int = 4,
) -> tuple[NDArray[numpy.float64], NDArray[numpy.float64], NDArray[numpy.float64]]:
    """Aᵀ (m, n), G (n, r), Bᵀ (n, n) of F(m, r) with r = 3 and n = m + 2, in float64 (m = 2 or 4).

    Cook–Toom: evaluate at :data:`POINTS` ``a_i`` and at ∞. Row ``i`` of G is ``[1, a, a²] / f_i`` with
    ``f_i = prod_{j≠i} (a_i - a_j)``; column ``i`` of Aᵀ is ``[1, a, a², a³]``; the ∞ point
    contributes the last row of G and last column of Aᵀ (the leading coefficients). Bᵀ is then
    the unique matrix with ``Aᵀ[(G g) ⊙ (Bᵀ d)] = correlate(d, g)`` for every ``d`` and ``g``,
    solved from that identity.
    """
    a = numpy.asarray(POINTS[m], dtype=numpy.float64)
    n = len(a) + 1
    AT = numpy.zeros((m, n))
    AT[:, :-1] = a[None, :] ** numpy.arange(m)[:, None]
    AT[-1, -1] = 1.0
    G = numpy.zeros((n, R))
    f = numpy.array([numpy.prod([ai - aj for j, aj in enumerate(a) if j != i]) for i, ai in enumerate(a)])
    G[:-1] = a[:, None] ** numpy.arange(R)[None, :] / f[:, None]
    G[-1, -1] = 1.0
    # sum_i AT[k, i] G[i, t] BT[i, j] = [j == k + t] for every output k, tap t, input j.
    coeff = numpy.einsum("ki,it->kti", AT, G).reshape(m * R, n)  # (m*r, n)
    target = numpy.zeros((m, R, n))
    for k in range(m):
        for t in range(R):
            target[k, t, k + t] = 1.0
    rhs = target.reshape(m * R, n)  # (m*r, n)
    BT, *_ = numpy.linalg.lstsq(coeff, rhs, rcond=None)  # (n, n), dyadic up to rounding
    BT = numpy.round(BT * 2**12) / 2**12 + 0.0  # exactly dyadic; + 0.0 turns -0.0 into 0.0
    if not numpy.allclose(coeff @ BT, rhs, atol=1e-12):
        raise ArithmeticError(f"no Winograd F({m}, 3) input transform for the points {POINTS[m]}")
    return AT, G, BT


def winograd_weight(weight: Array, m: int = 4) -> NDArray[numpy.float64]:
    """Transform the kernels: ``U[ξ] = (G g Gᵀ)[ξ]`` for every (input, output) channel pair, in float64.

    Parameters
    ----------
    weight : numpy.ndarray, shape (O, C, 3, 3)

    Returns
    -------
    numpy.ndarray, float64, shape ((m+2)², C, O)
    """
    _, G, _ = winograd_matrices(m)
    U = numpy.einsum("ai,bj,ocij->abco", G, G, weight.astype(numpy.float64))  # (m+2, m+2, C, O)
    return numpy.ascontiguousarray(U.reshape(-1, *U.shape[2:]))


def is_winograd_eligible(conv: Conv2d) -> bool:
    """Whether a Winograd F(m×m, 3×3) applies: 3×3 kernel, stride 1, dilation 1, groups 1."""
    return (
        tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and not isinstance(conv.padding, str)
    )


class WinogradConv:
    """A stride-1 3×3 convolution with folded bias by Winograd F(m×m, 3×3), on NHWC activations.

    Parameters
    ----------
    U : array, shape ((m+2)², C, O)
        From :func:`winograd_weight`, cast to the model's dtype and backend; its length
        fixes the output tile size ``m`` (16: F(2×2,3×3), 36: F(4×4,3×3)).
    bias : array, shape (O,)
    padding : (int, int)
    fallback : FusedConv or WinogradConv, optional
        The same convolution by im2col, run instead on calls with fewer than :data:`MIN_TILES` tiles;
        or by a smaller tile (itself with an im2col fallback), run instead where it is cheaper by
        :func:`winograd_cost` (:meth:`uses_winograd`).
    """

    def __init__(
        self, U: Array, bias: Array, padding: tuple[int, int], fallback: FusedConv | WinogradConv | None = None
    ) -> None:
        self.U, self.bias, self.fallback = U, bias, fallback
        self.padding: tuple[int, int] = (padding[0], padding[1])
        m = self.m = math.isqrt(U.shape[0]) - (R - 1)
        if m not in POINTS or (m + R - 1) ** 2 != U.shape[0]:
            raise ValueError(f"U must have 16 or 36 tile positions (F(2x2) or F(4x4)), got shape {U.shape}")
        self.kernel_size, self.stride, self.dilation, self.groups = (3, 3), (1, 1), (1, 1), 1
        _, self.in_channels, self.out_channels = U.shape
        AT, _, BT = winograd_matrices(m)
        xp = get_array_module(U)
        self.BT = xp.asarray(BT, dtype=U.dtype)  # (n, n), exact: dyadic entries
        self.AT = xp.asarray(AT, dtype=U.dtype)  # (m, n)

    def output_shape(self, shape: Shape) -> tuple[int, int, int, int]:
        """NHWC output shape for an NHWC input ``shape`` (ValueError if the window does not fit)."""
        N, H, W, _ = shape
        ph, pw = self.padding
        out_h, out_w = H + 2 * ph - 2, W + 2 * pw - 2
        if out_h < 1 or out_w < 1:
            raise ValueError(f"a 3x3 kernel with padding {self.padding} does not fit an input of size {(H, W)}")
        return N, out_h, out_w, self.out_channels

    def tile_count(self, out_shape: Shape) -> int:
        """Tiles of a call with NHWC output ``out_shape``: ``N ⌈out_h/m⌉ ⌈out_w/m⌉``."""
        N, out_h, out_w, _ = out_shape
        return N * -(-out_h // self.m) * -(-out_w // self.m)

    def uses_winograd(self, out_shape: Shape) -> bool:
        """Whether a call with NHWC output ``out_shape`` runs this tile size (else it goes to the fallback).

        It does with no fallback; not below :data:`MIN_TILES` tiles; and with a smaller tile as the
        fallback, only if that one would not run or costs more (:func:`winograd_cost`).
        """
        if self.fallback is None:
            return True
        tiles = self.tile_count(out_shape)
        if tiles < MIN_TILES[self.m]:
            return False
        smaller = self.fallback
        if not isinstance(smaller, WinogradConv) or not smaller.uses_winograd(out_shape):
            return True
        C, O = self.in_channels, self.out_channels
        return winograd_cost(self.m, tiles, C, O) <= winograd_cost(smaller.m, smaller.tile_count(out_shape), C, O)

    def plan(
        self, x_shape: Shape, out_shape: Shape, itemsize: int, workspace_bytes: int
    ) -> tuple[int, int, list[tuple[int, int, int, int]]]:
        """Tiles per row ``tw``, scratch elements per tile, and the chunks ``(n0, n1, t0, t1)`` of a call.

        A chunk is images ``n0:n1`` and tile rows ``t0:t1`` (whole images, or a band of one image),
        sized so that its two scratch buffers fit in ``workspace_bytes`` (slot 0: tiles, then V,
        then Aᵀ M; slot 1: Bᵀ d, then M, then Y).
        """
        C, (N, out_h, out_w, O) = x_shape[3], out_shape
        th, tw = -(-out_h // self.m), -(-out_w // self.m)  # tiles per column and row
        per_tile = max(C, O) * (self.m + R - 1) ** 2
        return tw, per_tile, workspace_chunks(N, th, tw * 2 * per_tile * itemsize, workspace_bytes)

    def __call__(
        self,
        x: Array,
        out: Array,
        residual: bool = False,
        relu: bool = False,
        workspace: Callable[[int, int], Array] | None = None,
        workspace_bytes: int | None = None,
        clock: Callable[[str], object] | None = None,
    ) -> Array:
        """``out = [relu](conv(x) + bias [+ out])``, in place; same contract as :meth:`FusedConv.__call__`.

        With ``clock``, the phases are ``"gather"`` (the tile copies), ``"transform"`` (input and
        output transforms), ``"gemm"`` (the tile-position products) and ``"epilogue"`` (scatter of
        the output tiles with the bias, residual, ReLU).
        """
        if self.fallback is not None and not self.uses_winograd(out.shape):
            return self.fallback(x, out, residual, relu, workspace, workspace_bytes, clock)
        xp = get_array_module(x, out)
        budget = resolve_workspace_bytes(workspace_bytes, xp)
        C, (_, out_h, _, O) = x.shape[3], out.shape
        m = self.m
        n = m + R - 1
        tw, per_tile, parts = self.plan(x.shape, out.shape, x.dtype.itemsize, budget)
        if workspace is None:
            workspace = lambda size, slot=0: xp.empty(size, dtype=x.dtype)  # noqa: E731
        for n0, n1, t0, t1 in parts:
            T = (n1 - n0) * (t1 - t0) * tw  # tiles in this chunk
            tiles = workspace(T * per_tile, 0)[: n * n * T * C].reshape(n, n, n1 - n0, t1 - t0, tw, C)
            self._gather(x[n0:n1], tiles, t0, t1)
            if clock is not None:
                clock("gather")
            Y = self._transformed_products(xp, tiles.reshape(n, n * T * C), T, C, O, workspace, per_tile, clock)
            Y = Y.reshape(m, m, n1 - n0, t1 - t0, tw, O)
            self._scatter(xp, Y, out[n0:n1, t0 * m : min(t1 * m, out_h)], residual, relu)
            if clock is not None:
                clock("epilogue")
        return out

    def _transformed_products(
        self,
        xp: types.ModuleType,
        tiles: Array,
        T: int,
        C: int,
        O: int,
        workspace: Callable[[int, int], Array],
        per_tile: int,
        clock: Callable[[str], object] | None = None,
    ) -> Array:
        """``Y = Aᵀ [Σ_c U ⊙ (Bᵀ d B)] A`` for the ``T`` tiles ``(n, n*T*C)`` of a chunk; returns Y ``(m, m, T*O)``.

        Each transform is two products with the n×n (or m×n) matrix: over the first tile axis,
        then (broadcast over it) over the second; every result goes to the other workspace slot.
        """
        m, n = self.m, self.m + R - 1
        half = workspace(T * per_tile, 1)[: n * n * T * C].reshape(n, n * T * C)
        xp.matmul(self.BT, tiles, out=half)  # Bᵀ d over α
        V = workspace(T * per_tile, 0)[: n * n * T * C].reshape(n, n, T * C)
        xp.matmul(self.BT, half.reshape(n, n, T * C), out=V)  # … then over β: V = Bᵀ d B
        if clock is not None:
            clock("transform")
        M = workspace(T * per_tile, 1)[: n * n * T * O].reshape(n * n, T, O)
        xp.matmul(V.reshape(n * n, T, C), self.U, out=M)  # (n², T, O): n² products (T, C) @ (C, O)
        if clock is not None:
            clock("gemm")
        half = workspace(T * per_tile, 0)[: m * n * T * O].reshape(m, n * T * O)
        xp.matmul(self.AT, M.reshape(n, n * T * O), out=half)  # Aᵀ M over α
        Y = workspace(T * per_tile, 1)[: m * m * T * O].reshape(m, m, T * O)
        xp.matmul(self.AT, half.reshape(m, n, T * O), out=Y)  # … then over β: Y = Aᵀ M A
        if clock is not None:
            clock("transform")
        return Y

    def _scatter(self, xp: types.ModuleType, Y: Array, o: Array, residual: bool, relu: bool) -> None:
        """Scatter ``o = [relu](Y + bias [+ o])``.

        Pixel (a, b) of every tile of ``Y`` ``(m, m, N, rows, tw, O)`` goes to ``o[:, a::m, b::m]``;
        the last tiles may stick out of ``o`` and are cropped.
        """
        m = self.m
        for a in range(m):
            for b in range(m):
                dst = o[:, a::m, b::m]
                src = Y[a, b, :, : dst.shape[1], : dst.shape[2]]
                if residual:
                    dst += src
                else:
                    xp.add(src, self.bias, out=dst)  # the bias in the same pass as the copy
        if residual:
            o += self.bias
        if relu:
            xp.maximum(o, 0, out=o)

    def _gather(self, x: Array, tiles: Array, t0: int, t1: int) -> None:
        """Fill ``tiles`` (n, n, N, t1-t0, tw, C) with the n×n input tiles of tile rows ``t0:t1``.

        ``tiles[a, b, k, ty, tx, c] = x[k, (t0+ty)*m - ph + a, tx*m - pw + b, c]``, or 0 outside
        the image (the padding, and the last tiles where they stick out): one strided copy per (a, b).
        """
        _, H, W, _ = x.shape
        m, n_in, tw = self.m, tiles.shape[0], tiles.shape[4]
        # tile (ty, tx) position (a, b) reads input (ty*m - ph + a, tx*m - pw + b): a window of size n_in, stride m
        for a, b, t in kernel_taps((H, W), (t0, t1), (0, tw), (n_in, n_in), (m, m), self.padding):
            dst = tiles[a, b]  # (n, rows, tw, C)
            if t.dst is not None and t.src is not None:
                dst[:, t.dst[0], t.dst[1]] = x[:, t.src[0], t.src[1]]
            for r, c in t.strips:  # the padding, and the last tiles where they stick out
                dst[:, r, c] = 0
