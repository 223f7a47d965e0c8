"""The window geometry (npresnet.fast.taps.tap_range / tap / kernel_taps) against the index formula.

Output ``o`` of kernel offset ``i`` reads input ``o*s - p + i*d``; the oracle is that formula
evaluated element by element, with no range arithmetic.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from npresnet.fast.taps import kernel_taps, tap, tap_range


@given(
    size=st.integers(0, 30),
    offset=st.integers(-40, 40),
    stride=st.integers(1, 7),
    o0=st.integers(0, 20),
    length=st.integers(0, 20),
)
def test_tap_range_is_exactly_the_outputs_that_read_inside(size, offset, stride, o0, length):
    o1 = o0 + length
    lo, hi = tap_range(o0, o1, size, offset, stride)
    assert o0 <= lo <= hi <= o1
    for o in range(o0, o1):
        inside = 0 <= o * stride + offset < size
        assert inside == (lo <= o < hi), (o, o * stride + offset)


@given(
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    out=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    y0=st.integers(0, 4),
)
def test_kernel_taps_copy_and_strips_match_the_index_formula(H, W, k, s, p, d, out, y0):
    """Copy each tap's ``src`` into ``dst`` and fill its strips with -1: the block must equal, element by
    element, the input at ``o*s - p + i*d`` or -1 where that is outside the input. So ``dst`` and the
    strips cover the block exactly once, and ``src`` is the right slice."""
    x = np.arange(H * W).reshape(H, W)
    rows, cols = (y0, y0 + out[0]), (0, out[1])
    seen = []
    for i, j, t in kernel_taps((H, W), rows, cols, k, s, p, d):
        seen.append((i, j))
        block = np.full(out, -2)  # -2: never written
        if t.dst is not None:
            block[t.dst] = x[t.src]
        for r, c in t.strips:
            assert (block[r, c] == -2).all()  # strips never overlap dst or each other
            block[r, c] = -1
        for oy in range(rows[0], rows[1]):
            for ox in range(cols[0], cols[1]):
                iy, ix = oy * s[0] - p[0] + i * d[0], ox * s[1] - p[1] + j * d[1]
                want = x[iy, ix] if 0 <= iy < H and 0 <= ix < W else -1
                assert block[oy - rows[0], ox] == want, (i, j, oy, ox)
    assert seen == [(i, j) for i in range(k[0]) for j in range(k[1])]


def test_a_tap_entirely_in_the_padding_is_one_strip():
    t = tap((4, 4), (0, 3), (0, 5), offset=(-10, 0), stride=(1, 1))
    assert t.dst is None and t.src is None
    assert t.strips == ((slice(0, 3), slice(0, 5)),)
