"""Winograd F(2×2, 3×3) and F(4×4, 3×3) in float32 against a float64 direct convolution, within the
rounding-error bound derived from the transform matrices (npresnet.fast.winograd's docstring).

Oracles: a float64 direct convolution (a loop over the nine taps); the bound, computed here from
``winograd_matrices`` alone, tile by tile:

    |ŷ - y| ≤ γ_k ⋅ ( |Aᵀ| [ Σ_c |U_c| ⊙ (|Bᵀ| |d_c| |B|) ] |A| + |b| ),   k = 4n + C + 2,  γ_k = k u / (1 - k u)

for float32 (``u = 2⁻²⁴``), with n = m + 2: two passes of each transform (n terms each), the
rounding of ``U`` to float32, the channel sum (C terms), the bias add. The float64 steps (the
weight transform, the oracle itself) add at most a few hundred roundings of ``2⁻⁵³`` of the
magnitude with every cancellation undone; ``F64_SLACK`` covers them with a wide margin and is
``2⁻²¹`` of float32's ``u``, so it cannot hide a float32 error.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npresnet.fast.winograd import WinogradConv, winograd_matrices, winograd_weight

U32 = 2.0**-24
F64_SLACK = 2.0**-45


def _direct(x, weight, bias, pad):
    """Float64 direct convolution, NHWC in and out: ``sum over taps (i, j) of x[y+i-p, x+j-p] @ w[:, :, i, j]ᵀ``."""
    N, H, W, C = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out_h, out_w = H + 2 * pad - 2, W + 2 * pad - 2
    y = np.zeros((N, out_h, out_w, weight.shape[0])) + bias
    for i in range(3):
        for j in range(3):
            y += padded[:, i : i + out_h, j : j + out_w] @ weight[:, :, i, j].T
    return y


def _bound(x, weight, bias, pad, m):
    """The bound above for every output pixel ``(N, out_h, out_w, O)``, tile by tile from the matrices."""
    AT, G, BT = winograd_matrices(m)
    n = m + 2
    N, H, W, C = x.shape
    out_h, out_w = H + 2 * pad - 2, W + 2 * pad - 2
    th, tw = -(-out_h // m), -(-out_w // m)
    padded = np.zeros((N, m * th + 2, m * tw + 2, C))  # zeros: the padding and where the last tiles stick out
    padded[:, pad : pad + H, pad : pad + W] = x
    U = np.einsum("ai,bj,ocij->abco", G, G, weight)  # (n, n, C, O), float64
    U_abs = np.abs(U)
    U_no_cancel = np.einsum("ai,bj,ocij->abco", np.abs(G), np.abs(G), np.abs(weight))
    k = 4 * n + C + 2
    gamma = k * U32 / (1 - k * U32)
    mag = np.zeros((N, m * th, m * tw, weight.shape[0]))
    slack = np.zeros_like(mag)
    for ty in range(th):
        for tx in range(tw):
            d = np.abs(padded[:, m * ty : m * ty + n, m * tx : m * tx + n])  # (N, n, n, C)
            Vabs = np.einsum("ai,nijc,bj->nabc", np.abs(BT), d, np.abs(BT))  # |Bᵀ||d||B|
            for Uc, acc in ((U_abs, mag), (U_no_cancel, slack)):
                M = np.einsum("nabc,abco->nabo", Vabs, Uc)
                Y = np.einsum("ka,nabo,lb->nklo", np.abs(AT), M, np.abs(AT))
                acc[:, m * ty : m * ty + m, m * tx : m * tx + m] = Y
    mag, slack = mag[:, :out_h, :out_w], slack[:, :out_h, :out_w]
    return gamma * (mag + np.abs(bias)) + F64_SLACK * (slack + mag + np.abs(bias))


def _winograd32(x, weight, bias, pad, m, plant=None):
    """The float32 WinogradConv output; ``plant(conv)`` may corrupt its matrices first."""
    conv = WinogradConv(winograd_weight(weight, m).astype(np.float32), bias.astype(np.float32), (pad, pad))
    if plant is not None:
        plant(conv)
    out = np.empty(conv.output_shape(x.shape), np.float32)
    conv(x.astype(np.float32), out, workspace_bytes=1 << 30)
    return out


def _layer(rng, N, H, W, C, O):
    x = rng.standard_normal((N, H, W, C)).astype(np.float32).astype(np.float64)  # float32 values, exact
    weight = rng.standard_normal((O, C, 3, 3)) * np.sqrt(2 / (9 * C))
    bias = rng.standard_normal(O) * 0.1
    return x, weight, bias


@settings(max_examples=25, deadline=None)
@given(
    m=st.sampled_from([2, 4]),
    N=st.integers(1, 2),
    H=st.integers(1, 14),
    W=st.integers(1, 14),
    pad=st.integers(0, 1),
    C=st.integers(1, 24),
    O=st.integers(1, 5),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_float32_winograd_is_within_the_bound_derived_from_the_matrices(m, N, H, W, pad, C, O, scale, seed):
    """Any size (odd ones, and sizes that are not a multiple of the tile: cropped edge tiles),
    padding 0 or 1, channels, batch and magnitude: every output pixel within its bound."""
    if H + 2 * pad < 3 or W + 2 * pad < 3:
        H, W = H + 2, W + 2  # the kernel must fit
    x, weight, bias = _layer(np.random.default_rng(seed), N, H, W, C, O)
    x = (x * scale).astype(np.float32).astype(np.float64)
    exact = _direct(x, weight, bias, pad)
    error = np.abs(_winograd32(x, weight, bias, pad, m) - exact)
    bound = _bound(x, weight, bias, pad, m)
    worst = np.unravel_index(np.argmax(error / bound), error.shape)
    assert (error <= bound).all(), f"error {error[worst]:.3e} > bound {bound[worst]:.3e} at {worst}"


def _entries(m):
    """Every (matrix name, row, column) of Aᵀ, G and Bᵀ."""
    return [(name, i, j) for name, T in zip("AGB", winograd_matrices(m)) for i, j in np.ndindex(T.shape)]


@pytest.mark.parametrize("m", [2, 4])
def test_a_wrong_matrix_entry_breaks_the_bound(m):
    """The bound is sharp enough to see any single entry of Aᵀ, G or Bᵀ off by 2⁻¹² of the largest
    entry of its matrix (its own zeros included), on one fixed layer with edge tiles."""
    x, weight, bias = _layer(np.random.default_rng(m), 2, 11, 10, 6, 3)
    exact, bound = _direct(x, weight, bias, 1), _bound(x, weight, bias, 1, m)
    assert (np.abs(_winograd32(x, weight, bias, 1, m) - exact) <= bound).all()  # correct matrices pass
    AT, G, BT = winograd_matrices(m)
    missed = []
    for name, i, j in _entries(m):
        T = {"A": AT, "G": G, "B": BT}[name].copy()
        T[i, j] += 2.0**-12 * np.abs(T).max()
        if name == "G":  # the weight transform is computed at fuse time: plant it there
            U = np.einsum("ai,bj,ocij->abco", T, T, weight).reshape((m + 2) ** 2, *weight.shape[1::-1])
            out = _winograd32(x, weight, bias, 1, m, plant=lambda c, U=U: setattr(c, "U", U.astype(np.float32)))
        else:
            attr = {"A": "AT", "B": "BT"}[name]
            out = _winograd32(x, weight, bias, 1, m, plant=lambda c, a=attr, T=T: setattr(c, a, T.astype(np.float32)))
        if (np.abs(out - exact) <= bound).all():
            missed.append((name, i, j))
    assert not missed, f"a wrong entry went unnoticed: {missed}"


def test_a_64_channel_layer_within_the_bound_and_f4_bound_above_f2():
    """At a realistic channel count (the property above stops at 24): every output within its bound,
    and F(4×4)'s bound larger than F(2×2)'s, as its larger transform entries say it must be."""
    x, weight, bias = _layer(np.random.default_rng(7), 1, 12, 12, 64, 8)
    exact = _direct(x, weight, bias, 1)
    bounds = {}
    for m in (2, 4):
        bounds[m] = _bound(x, weight, bias, 1, m)
        assert (np.abs(_winograd32(x, weight, bias, 1, m) - exact) <= bounds[m]).all()
    assert bounds[4].max() > bounds[2].max()
