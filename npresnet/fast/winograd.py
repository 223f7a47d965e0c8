"""Winograd F(m×m, 3×3): a stride-1 3×3 convolution with (m+2)² products per m×m output tile instead of 9m².

Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks". In one dimension,
``m`` outputs of a 3-tap correlation ``y[k] = sum_t g[t] d[k+t]`` come from ``n = m + 2`` inputs as

    y = Aᵀ [(G g) ⊙ (Bᵀ d)],     Aᵀ: (m, n), G: (n, 3), Bᵀ: (n, n),

``n`` multiplications instead of ``3m``. The matrices come from the Cook–Toom construction
(evaluation at the points 0, ±1 (, ±2) and ∞, then interpolation); :func:`winograd_matrices`
derives them. In two dimensions an n×n input tile ``d`` and the kernel ``g`` give the m×m output
tile ``Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A``.

The fast path uses F(2×2, 3×3) (16 products per 4 outputs instead of 36, 2.25× fewer). F(4×4, 3×3)
(36 per 16, 4× fewer) is faster still but its transforms, with entries up to 5 and 1/24, lose
about two more bits in float32: ResNet-50's logits then sit 3.7× further from float64 than
torchvision's own float32 ones, beyond the 3× the equivalence tests allow (``benchmarks/RESULTS.md``).

Over a whole layer, with the P = n² tile positions ``ξ`` as the leading axis and ``T`` tiles:

1. tiles ``(P, T, C)``: P strided copies from the NHWC input, zeros outside the image;
2. ``V = kron(Bᵀ, Bᵀ) @ tiles``, one matrix product ``(P, P) @ (P, T*C)``;
3. ``M[ξ] = V[ξ] @ U[ξ]``, P products ``(T, C) @ (C, O)``, with ``U = kron(G, G) @ w``
   computed once, in float64, when the model is fused;
4. ``Y = kron(Aᵀ, Aᵀ) @ M``, one matrix product ``(m², P) @ (P, T*O)``;
5. the m² output positions of each tile scattered into the NHWC output (cropped at the border),
   then the bias, residual add and ReLU.

Steps 2–4 are BLAS products, so they use every core; only the copies in 1 and 5 do not.
Tiles are processed in chunks (whole images, or bands of tile rows of one image) bounded by
the workspace, like :class:`npresnet.fast.conv.FusedConv`.
"""

from __future__ import annotations

import math

import numpy

from ..backend import get_array_module
from ..workspace import resolve_workspace_bytes, workspace_chunks
from .taps import kernel_taps

__all__ = ["WinogradConv", "winograd_matrices", "winograd_weight", "is_winograd_eligible"]

R = 3  # kernel size r
MIN_TILES = 24
"""Below this many tiles in a call, reading the (m+2)²/9 times larger transformed weight costs more
than the products save, so :class:`WinogradConv` hands the call to im2col (measured with F(2×2):
16 tiles of 7×7×512 lose, 32 win; ``python benchmarks/winograd_estimate.py``)."""
POINTS = {2: (0.0, 1.0, -1.0), 4: (0.0, 1.0, -1.0, 2.0, -2.0)}
"""Interpolation points (besides ∞) of F(m×m, 3×3) by output tile size m; small integers keep the transforms exact."""


def winograd_matrices(m: int = 4):
    """Aᵀ (m, n), G (n, r), Bᵀ (n, n) of F(m, r) with r = 3 and n = m + 2, in float64 (m = 2 or 4).

    Cook–Toom: evaluate at ``points`` and at ∞. Row ``i`` of G is ``[1, a, a²] / f_i`` with
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
    target = target.reshape(m * R, n)
    BT, *_ = numpy.linalg.lstsq(coeff, target, rcond=None)  # (n, n), integers up to rounding
    BT = numpy.round(BT, 12) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not numpy.allclose(coeff @ BT, target, atol=1e-12):
        raise ArithmeticError(f"no Winograd F({m}, 3) input transform for the points {POINTS[m]}")
    return AT, G, BT


def winograd_weight(weight, m: int = 4):
    """Transformed kernels ``U[ξ] = (G g Gᵀ)[ξ]`` for every (input, output) channel pair, in float64.

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


def is_winograd_eligible(conv) -> bool:
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
    fallback : FusedConv, optional
        The same convolution by im2col, run instead on calls with fewer than :data:`MIN_TILES` tiles.
    """

    def __init__(self, U, bias, padding, fallback=None):
        self.U, self.bias, self.padding, self.fallback = U, bias, tuple(padding), fallback
        m = self.m = math.isqrt(U.shape[0]) - (R - 1)
        self.kernel_size, self.stride, self.dilation, self.groups = (3, 3), (1, 1), (1, 1), 1
        _, self.in_channels, self.out_channels = U.shape
        AT, _, BT = winograd_matrices(m)
        xp = get_array_module(U)
        if m not in POINTS or (m + R - 1) ** 2 != U.shape[0]:
            raise ValueError(f"U must have 16 or 36 tile positions (F(2x2) or F(4x4)), got shape {U.shape}")
        self.BB = xp.asarray(numpy.kron(BT, BT), dtype=U.dtype)  # (P, P): Bᵀ d B on flattened n×n tiles
        self.AA = xp.asarray(numpy.kron(AT, AT), dtype=U.dtype)  # (m², P): Aᵀ M A

    def output_shape(self, shape) -> tuple[int, int, int, int]:
        """NHWC output shape for an NHWC input ``shape`` (ValueError if the window does not fit)."""
        N, H, W, _ = shape
        ph, pw = self.padding
        out_h, out_w = H + 2 * ph - 2, W + 2 * pw - 2
        if out_h < 1 or out_w < 1:
            raise ValueError(f"a 3x3 kernel with padding {self.padding} does not fit an input of size {(H, W)}")
        return N, out_h, out_w, self.out_channels

    def uses_winograd(self, out_shape) -> bool:
        """Whether a call with NHWC output ``out_shape`` runs Winograd (else it goes to the fallback)."""
        N, out_h, out_w, _ = out_shape
        tiles = N * -(-out_h // self.m) * -(-out_w // self.m)
        return self.fallback is None or tiles >= MIN_TILES

    def plan(self, x_shape, out_shape, itemsize: int, workspace_bytes: int):
        """Tiles per row ``tw``, scratch elements per tile, and the chunks ``(n0, n1, t0, t1)`` of a call.

        A chunk is images ``n0:n1`` and tile rows ``t0:t1`` (whole images, or a band of one image),
        sized so that its two scratch buffers (tiles then M in slot 0, V then Y in slot 1) fit in ``workspace_bytes``.
        """
        C, (N, out_h, out_w, O) = x_shape[3], out_shape
        th, tw = -(-out_h // self.m), -(-out_w // self.m)  # tiles per column and row
        per_tile = max(C, O) * (self.m + R - 1) ** 2
        return tw, per_tile, workspace_chunks(N, th, tw * 2 * per_tile * itemsize, workspace_bytes)

    def __call__(self, x, out, residual=False, relu=False, workspace=None, workspace_bytes=None, clock=None):
        """``out = [relu](conv(x) + bias [+ out])``, in place; same contract as :meth:`FusedConv.__call__`.

        With ``clock``, the phases are ``"gather"`` (the tile copies), ``"gemm"`` (input transform,
        tile-position products, output transform) and ``"epilogue"`` (scatter of the output tiles,
        bias, residual, ReLU).
        """
        if not self.uses_winograd(out.shape):
            return self.fallback(x, out, residual, relu, workspace, workspace_bytes, clock)
        xp = get_array_module(x, out)
        budget = resolve_workspace_bytes(workspace_bytes, xp)
        C, (_, out_h, _, O) = x.shape[3], out.shape
        m = self.m
        n_in = m + R - 1
        P = n_in * n_in
        tw, per_tile, parts = self.plan(x.shape, out.shape, x.dtype.itemsize, budget)
        if workspace is None:
            workspace = lambda size, slot=0: xp.empty(size, dtype=x.dtype)  # noqa: E731
        for n0, n1, t0, t1 in parts:
            T = (n1 - n0) * (t1 - t0) * tw  # tiles in this chunk
            tiles = workspace(T * per_tile, 0)[: P * T * C].reshape(n_in, n_in, n1 - n0, t1 - t0, tw, C)
            self._gather(x[n0:n1], tiles, t0, t1)
            if clock is not None:
                clock("gather")
            V = workspace(T * per_tile, 1)[: P * T * C].reshape(P, T * C)
            xp.matmul(self.BB, tiles.reshape(P, T * C), out=V)  # (P, T*C)
            M = workspace(T * per_tile, 0)[: P * T * O].reshape(P, T, O)
            xp.matmul(V.reshape(P, T, C), self.U, out=M)  # (P, T, O): P products (T, C) @ (C, O)
            Y = workspace(T * per_tile, 1)[: m * m * T * O].reshape(m * m, T * O)
            xp.matmul(self.AA, M.reshape(P, T * O), out=Y)  # (m², T*O)
            Y = Y.reshape(m, m, n1 - n0, t1 - t0, tw, O)
            if clock is not None:
                clock("gemm")
            y0, y1 = t0 * m, min(t1 * m, out_h)
            o = out[n0:n1, y0:y1]  # (n1-n0, y1-y0, out_w, O), contiguous
            for a in range(m):  # output pixel (a, b) of every tile; the last tiles may stick out
                for b in range(m):
                    dst = o[:, a::m, b::m]
                    src = Y[a, b, :, : dst.shape[1], : dst.shape[2]]
                    if residual:
                        dst += src
                    else:
                        dst[...] = src
            o += self.bias
            if relu:
                xp.maximum(o, 0, out=o)
            if clock is not None:
                clock("epilogue")
        return out

    def _gather(self, x, tiles, t0: int, t1: int):
        """Fill ``tiles`` (n, n, N, t1-t0, tw, C) with the n×n input tiles of tile rows ``t0:t1``.

        ``tiles[a, b, k, ty, tx, c] = x[k, (t0+ty)*m - ph + a, tx*m - pw + b, c]``, or 0 outside
        the image (the padding, and the last tiles where they stick out): one strided copy per (a, b).
        """
        _, H, W, _ = x.shape
        m, n_in, tw = self.m, tiles.shape[0], tiles.shape[4]
        # tile (ty, tx) position (a, b) reads input (ty*m - ph + a, tx*m - pw + b): a window of size n_in, stride m
        for a, b, t in kernel_taps((H, W), (t0, t1), (0, tw), (n_in, n_in), (m, m), self.padding):
            dst = tiles[a, b]  # (n, rows, tw, C)
            if t.dst is not None:
                dst[:, t.dst[0], t.dst[1]] = x[:, t.src[0], t.src[1]]
            for r, c in t.strips:  # the padding, and the last tiles where they stick out
                dst[:, r, c] = 0
