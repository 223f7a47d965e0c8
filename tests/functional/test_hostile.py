"""Hostile arguments: every numeric argument of every public layer function, driven through 0,
negatives, NaN, infinities and 2**62, gives a ValueError/TypeError or the answer torch gives.
Sizes an argument claims are refused before anything is allocated; the backward functions
refuse what their forwards refuse; a huge pooling kernel costs kh + kw slice passes, not kh*kw.

Oracles: ``torch.nn.functional`` and ``torch.autograd`` on the same float64 values; for the
limits, the stated constants and tracemalloc (which sees NumPy's allocations).
"""

import math
import re
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import npresnet.functional as nf
import npresnet.functional.pooling as pooling
from npresnet.workspace import workspace_chunk_count, workspace_chunks

HOSTILE = [0, -1, -(2**62), 2**62, math.nan, math.inf, -math.inf]

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 4, 7, 6))  # float64 input
W = rng.standard_normal((6, 2, 3, 3))  # weight for groups=2
G = rng.standard_normal((2, 6, 7, 6))  # grad of conv2d(X, W, padding=1, groups=2)
Z = rng.standard_normal((3, 5))  # logits
T = np.array([0, 4, 2])  # targets


def _t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _autograd(fn, arrays, grad_output):
    ts = [_t(a, grad=True) for a in arrays]
    fn(*ts).backward(_t(grad_output))
    return [t.grad.numpy() for t in ts]


def _pool_grad(kind, kw):
    out_shape = (nf.max_pool2d if kind == "max" else nf.avg_pool2d)(X, **kw).shape
    return np.ones(out_shape)


# name -> (ours(**kwargs), torch's(**kwargs), default kwargs, the numeric arguments to attack)
CALLS = {
    "conv2d": (
        lambda **k: nf.conv2d(X, W, **k),
        lambda **k: TF.conv2d(_t(X), _t(W), **{a: v for a, v in k.items() if a != "workspace_bytes"}).numpy(),
        dict(stride=1, padding=1, dilation=1, groups=2, workspace_bytes=2**20),
        ["stride", "padding", "dilation", "groups", "workspace_bytes"],
    ),
    "conv2d_backward": (
        lambda **k: nf.conv2d_backward(G, X, W, **k)[:2],
        lambda **k: _autograd(
            lambda x, w: TF.conv2d(x, w, **{a: v for a, v in k.items() if a != "workspace_bytes"}), (X, W), G
        ),
        dict(stride=1, padding=1, dilation=1, groups=2, workspace_bytes=2**20),
        ["stride", "padding", "dilation", "groups", "workspace_bytes"],
    ),
    "im2col": (
        lambda **k: nf.im2col(X, **k),
        lambda **k: TF.unfold(_t(X), **k).numpy(),
        dict(kernel_size=3, dilation=1, padding=1, stride=1),
        ["kernel_size", "dilation", "padding", "stride"],
    ),
    "col2im": (
        lambda **k: nf.col2im(nf.im2col(X, 3, padding=1), **k),
        lambda **k: TF.fold(_t(nf.im2col(X, 3, padding=1)), **k).numpy(),
        dict(output_size=(7, 6), kernel_size=3, dilation=1, padding=1, stride=1),
        ["output_size", "kernel_size", "dilation", "padding", "stride"],
    ),
    "max_pool2d": (
        lambda **k: nf.max_pool2d(X, **k, return_indices=True),
        lambda **k: [a.numpy() for a in TF.max_pool2d(_t(X), **k, return_indices=True)],
        dict(kernel_size=3, stride=2, padding=1, dilation=1),
        ["kernel_size", "stride", "padding", "dilation"],
    ),
    "avg_pool2d": (
        lambda **k: nf.avg_pool2d(X, **k),
        lambda **k: TF.avg_pool2d(_t(X), **k).numpy(),
        dict(kernel_size=3, stride=2, padding=1, divisor_override=None),
        ["kernel_size", "stride", "padding", "divisor_override"],
    ),
    "avg_pool2d_backward": (
        lambda **k: nf.avg_pool2d_backward(_pool_grad("avg", dict(kernel_size=3, stride=2)), X.shape, **k),
        lambda **k: _autograd(lambda x: TF.avg_pool2d(x, **k), (X,), _pool_grad("avg", dict(kernel_size=3, stride=2)))[
            0
        ],
        dict(kernel_size=3, stride=2, padding=0, divisor_override=None),
        ["kernel_size", "stride", "padding", "divisor_override"],
    ),
    "adaptive_avg_pool2d": (
        lambda **k: nf.adaptive_avg_pool2d(X, **k),
        lambda **k: TF.adaptive_avg_pool2d(_t(X), **k).numpy(),
        dict(output_size=(3, 2)),
        ["output_size"],
    ),
    "batch_norm": (
        lambda **k: nf.batch_norm(X, np.zeros(4), np.ones(4), training=True, **k),
        lambda **k: TF.batch_norm(_t(X), _t(np.zeros(4)), _t(np.ones(4)), training=True, **k).numpy(),
        dict(momentum=0.1, eps=1e-5),
        ["momentum", "eps"],
    ),
    "batch_norm_backward": (
        lambda **k: nf.batch_norm_backward(X, X, np.ones(4), **k)[0],
        lambda **k: _autograd(lambda x: TF.batch_norm(x, None, None, _t(np.ones(4)), training=True, **k), (X,), X)[0],
        dict(eps=1e-5),
        ["eps"],
    ),
    "cross_entropy": (
        lambda **k: nf.cross_entropy(Z, T, **k),
        lambda **k: TF.cross_entropy(_t(Z), torch.from_numpy(T), **k).numpy(),
        dict(label_smoothing=0.1),
        ["label_smoothing"],
    ),
    "cross_entropy_backward": (
        lambda **k: nf.cross_entropy_backward(k.pop("grad_output"), Z, T, **k),
        lambda **k: (
            _autograd(
                lambda z: TF.cross_entropy(z, torch.from_numpy(T), label_smoothing=k["label_smoothing"]), (Z,), 1.0
            )[0]
            * k["grad_output"]
        ),
        dict(grad_output=1.0, label_smoothing=0.1),
        ["grad_output", "label_smoothing"],
    ),
    "log_softmax": (
        lambda **k: nf.log_softmax(Z, **k),
        lambda **k: TF.log_softmax(_t(Z), **k).numpy(),
        dict(dim=1),
        ["dim"],
    ),
}
ATTACKS = [(name, arg) for name, (_, _, _, args) in CALLS.items() for arg in args]


def _as_list(result):
    return [np.asarray(r) for r in result] if isinstance(result, (list, tuple)) else [np.asarray(result)]


@given(attack=st.sampled_from(ATTACKS), value=st.sampled_from(HOSTILE), where=st.sampled_from(["both", "h", "w"]))
def test_hostile_numeric_arguments_raise_or_agree_with_torch(attack, value, where):
    """The documented family (ValueError, TypeError) or torch's answer: never another exception,
    a hang, a huge allocation or a different result. A pair argument gets the value in one or both places."""
    name, arg = attack
    ours, theirs, defaults, _ = CALLS[name]
    kwargs = dict(defaults)
    default = defaults[arg]
    if where != "both" and isinstance(default, int) and arg not in ("groups", "dim", "workspace_bytes"):
        kwargs[arg] = (value, default) if where == "h" else (default, value)
    else:
        kwargs[arg] = value
    tracemalloc.start()
    try:
        try:
            got = ours(**dict(kwargs))
        except (ValueError, TypeError):
            return
        finally:
            peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**26, f"{name}({arg}={kwargs[arg]!r}) allocated {peak} bytes"
    if arg == "stride" and value == 2**62:
        # torch cannot convert 2**62 to its int type; every stride longer than the padded input
        # (under 20 here) places the one window there is, so torch's answer at stride 1000 is the answer
        kwargs[arg] = tuple(1000 if v == value else v for v in kwargs[arg]) if where != "both" else 1000
    want = theirs(**dict(kwargs))
    for g, w in zip(_as_list(got), _as_list(want), strict=True):
        assert g.shape == w.shape, (name, arg, kwargs[arg])
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10, equal_nan=True, err_msg=f"{name} {arg}={value}")


# --------------------------------------------------------------------------- sizes refused before allocating
def _refused_small(call, fragments):
    """``call`` raises ValueError naming each fragment, having allocated under 1 MiB."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert peak < 2**20, peak


SMALL = np.zeros((1, 1, 4, 4), dtype=np.float32)
TALL = np.zeros((1, 1, 2**19, 1), dtype=np.float32)  # 2**19 output rows for a 1x1 kernel
HUGE = 2**40


@pytest.mark.parametrize(
    "name, call, fragments",
    [
        ("conv2d padding", lambda: nf.conv2d(SMALL, np.zeros((1, 1, 3, 3), np.float32), padding=HUGE), ["padding="]),
        (
            "conv2d huge padding, huge stride",
            lambda: nf.conv2d(SMALL, np.zeros((1, 1, 3, 3), np.float32), padding=HUGE, stride=HUGE),
            ["padding=", "padded input"],
        ),
        (
            "conv2d_backward padding",
            lambda: nf.conv2d_backward(SMALL, SMALL, np.zeros((1, 1, 3, 3), np.float32), padding=HUGE),
            ["conv2d_backward", "padding="],
        ),
        ("im2col padding", lambda: nf.im2col(SMALL, 3, padding=HUGE), ["im2col", "padding="]),
        ("col2im output_size", lambda: nf.col2im(np.zeros((1, 1, 1), np.float32), HUGE, HUGE), ["output_size="]),
        ("max_pool2d kernel", lambda: nf.max_pool2d(SMALL, HUGE, padding=HUGE // 2), ["kernel_size=", "padding="]),
        ("avg_pool2d kernel", lambda: nf.avg_pool2d(SMALL, HUGE, padding=HUGE // 2), ["avg_pool2d", "kernel_size="]),
        ("adaptive output_size", lambda: nf.adaptive_avg_pool2d(SMALL, HUGE), ["output_size=", "MAX_ELEMENTS"]),
        (
            "max_pool2d_backward input_shape",
            lambda: nf.max_pool2d_backward(SMALL, np.zeros((1, 1, 4, 4), np.int64), (1, 1, HUGE, HUGE)),
            ["max_pool2d_backward", "input_shape="],
        ),
        (
            "avg_pool2d_backward input_shape",
            lambda: nf.avg_pool2d_backward(SMALL, (1, 1, HUGE, HUGE), 2),
            ["avg_pool2d_backward", "input_shape="],
        ),
        (
            "adaptive_avg_pool2d_backward input_shape",
            lambda: nf.adaptive_avg_pool2d_backward(SMALL, (HUGE, 1, 4, 4)),
            ["adaptive_avg_pool2d_backward", "input_shape="],
        ),
        (
            "conv2d workspace chunks",
            lambda: nf.conv2d(TALL, SMALL[:, :, :1, :1], workspace_bytes=1),
            ["workspace_bytes=1", "MAX_CHUNKS"],
        ),
        (
            "conv2d_backward workspace chunks",
            lambda: nf.conv2d_backward(TALL, TALL, SMALL[:, :, :1, :1], workspace_bytes=1),
            ["workspace_bytes=1", "MAX_CHUNKS"],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_claimed_sizes_are_refused_before_allocating(name, call, fragments):
    _refused_small(call, fragments)


def test_shape_only_functions_have_no_size_limit():
    """They allocate nothing: the summary tool sizes networks far beyond what one machine computes."""
    w = np.zeros((1, 1, 3, 3), np.float32)
    assert nf.conv2d_output_shape(SMALL, w, padding=(1, HUGE)) == (1, 1, 4, 2 * HUGE + 2)
    assert nf.adaptive_avg_pool2d_output_shape(SMALL, (1, HUGE)) == (1, 1, 1, HUGE)
    assert nf.max_pool2d_output_shape(np.zeros((1, 1, 1, 1)), (1, 2), stride=1, padding=(0, 1)) == (1, 1, 1, 2)


def test_limits_are_generous_for_real_networks():
    """MAX_ELEMENTS holds ResNet-50's largest whole im2col at batch 256 (the stem's) with room to spare,
    and MAX_CHUNKS a one-row chunking of its stem at that batch."""
    assert 256 * 3 * 7 * 7 * 112 * 112 * 4 <= nf.MAX_ELEMENTS
    assert 256 * 112 <= nf.MAX_CHUNKS


@given(
    N=st.integers(0, 50),
    out_h=st.integers(1, 60),
    row_bytes=st.integers(0, 10_000),
    budget=st.integers(1, 10**6),
)
def test_chunk_count_is_the_planners(N, out_h, row_bytes, budget):
    """The up-front count is exactly the number of chunks the planner then builds."""
    assert workspace_chunk_count(N, out_h, row_bytes, budget) == len(workspace_chunks(N, out_h, row_bytes, budget))


# --------------------------------------------------------------------------- backward functions check as forwards do
def test_conv2d_backward_gives_the_forwards_group_error():
    x, w = np.zeros((1, 4, 5, 5)), np.zeros((6, 1, 3, 3))
    with pytest.raises(ValueError) as forward:
        nf.conv2d(x, w, groups=3)
    with pytest.raises(ValueError) as backward:
        nf.conv2d_backward(np.zeros((1, 6, 3, 3)), x, w, groups=3)
    assert "groups=3 must divide" in str(forward.value)
    assert str(backward.value) == str(forward.value)


@pytest.mark.parametrize("groups", [0, -2, 1.0, True])
def test_conv2d_backward_refuses_bad_groups(groups):
    x, w = np.zeros((1, 4, 5, 5)), np.zeros((4, 4, 3, 3))
    with pytest.raises(ValueError, match=re.escape(f"groups must be a positive int, got {groups!r}")):
        nf.conv2d_backward(np.zeros((1, 4, 3, 3)), x, w, groups=groups)


def test_conv2d_backward_refuses_a_grad_output_of_the_wrong_shape():
    x, w = np.zeros((2, 4, 5, 5)), np.zeros((4, 4, 3, 3))
    with pytest.raises(ValueError, match=re.escape("forward output's shape (2, 4, 3, 3), got (2, 4, 3, 4)")):
        nf.conv2d_backward(np.zeros((2, 4, 3, 4)), x, w)


@given(budget=st.integers(1, 4096), stride=st.integers(1, 2), padding=st.integers(0, 2), groups=st.sampled_from([1, 2]))
def test_conv2d_backward_in_chunks_equals_autograd(budget, stride, padding, groups):
    """Any workspace, down to one output row of one image per chunk, gives torch's gradients."""
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((4, 4 // groups, 3, 2))
    kw = dict(stride=stride, padding=padding, groups=groups)
    g = rng.standard_normal(nf.conv2d(x, w, **kw).shape)
    gx, gw, gb = nf.conv2d_backward(g, x, w, **kw, workspace_bytes=budget)
    tx, tw = _autograd(lambda a, b: TF.conv2d(a, b, **kw), (x, w), g)
    np.testing.assert_allclose(gx, tx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw, tw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_conv2d_backward_columns_stay_under_the_budget():
    """The whole columns would take 16.6 MB; with a 1 MB budget the peak is the gradients plus about one chunk."""
    x = rng.standard_normal((2, 16, 120, 120)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    g = np.ones((2, 16, 120, 120), np.float32)
    tracemalloc.start()
    try:
        gx, _, _ = nf.conv2d_backward(g, x, w, padding=1, workspace_bytes=2**20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the padded input gradient and its cropped copy, plus one chunk (and small arrays)
    assert peak < 2 * 2 * 16 * 122 * 122 * 4 + 2**20 + 2**19, peak


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        (dict(weight=np.ones(3)), ["weight must have shape (4,)", "got (3,)"]),
        (dict(weight=np.ones(4, dtype=np.int64)), ["weight must have a real floating dtype"]),
        (dict(running_mean=np.zeros(2), running_var=np.ones(4), training=False), ["running_mean must have shape (4,)"]),
        (dict(training=False), ["batch_norm_backward: running_mean and running_var are required"]),
    ],
)
def test_batch_norm_backward_checks_as_batch_norm(kwargs, fragments):
    x = np.zeros((2, 4, 3))
    with pytest.raises((ValueError, TypeError)) as info:
        nf.batch_norm_backward(x, x, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("shape", [(2, 0, 3), (1, 4), (0, 4)])
def test_batch_norm_backward_refuses_what_training_batch_norm_refuses(shape):
    """No channel or one value per channel: the forward refuses it in training, and so does the backward
    (before, an empty channel axis was a ZeroDivisionError)."""
    x = np.zeros(shape)
    with pytest.raises(ValueError, match="more than 1 value per channel") as forward:
        nf.batch_norm(x, None, None, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel") as backward:
        nf.batch_norm_backward(x, x)
    assert str(backward.value).replace("batch_norm_backward", "batch_norm") == str(forward.value)


@pytest.mark.parametrize("fin, fout, lead", [(0, 3, (2,)), (4, 0, (2,)), (0, 0, (2, 3)), (3, 2, (0,))])
def test_linear_backward_with_empty_features_returns_torchs_empty_gradients(fin, fout, lead):
    x, w = rng.standard_normal((*lead, fin)), rng.standard_normal((fout, fin))
    g = rng.standard_normal((*lead, fout))
    gx, gw, gb = nf.linear_backward(g, x, w)
    tx, tw, tb = _autograd(lambda a, b, c: TF.linear(a, b, c), (x, w, np.zeros(fout)), g)
    for ours, theirs in ((gx, tx), (gw, tw), (gb, tb)):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- pooling work is kh + kw passes
def _count_slices(monkeypatch):
    calls = []
    original = pooling._window

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pooling, "_window", counting)
    return calls


@pytest.mark.parametrize(
    "call, passes",
    [
        (lambda x: nf.max_pool2d(x, (40, 30), stride=1), 40 + 30),
        (lambda x: nf.avg_pool2d(x, (40, 30), stride=1, padding=(20, 15)), 40 + 30),
        (lambda x: nf.max_pool2d(x, (40, 30), stride=1, return_indices=True), 2 * 40 + 30),  # values and offsets
        (lambda x: nf.avg_pool2d_backward(np.ones((1, 2, 21, 31)), x.shape, (40, 30), stride=1), 40 + 30),
    ],
)
def test_a_huge_pooling_kernel_costs_kh_plus_kw_slice_passes(monkeypatch, call, passes):
    """A 40×30 kernel is 1,200 offsets; the separable passes take one slice per kernel row and column
    (the max with indices also walks its column offsets' slice). A 2000×2000 kernel is then 4,000
    passes instead of four million."""
    calls = _count_slices(monkeypatch)
    call(rng.standard_normal((1, 2, 60, 60)))
    assert len(calls) == passes


def test_max_pool_indices_keep_torchs_tie_and_nan_order():
    """Ties: the first maximum in row-major scan order; NaN: the last NaN. A window [[0, 5], [5, 0]] picks (0, 1)
    (a columns-first pass would pick (1, 0)); [[nan, 1], [nan, 0]] picks (1, 0)."""
    x = np.array([[[[0.0, 5.0], [5.0, 0.0]]], [[[np.nan, 1.0], [np.nan, 0.0]]]])
    _, ours = nf.max_pool2d(x, 2, return_indices=True)
    _, theirs = TF.max_pool2d(_t(x), 2, return_indices=True)
    assert ours.ravel().tolist() == theirs.numpy().ravel().tolist() == [1, 2]


@given(
    values=st.lists(st.sampled_from([0.0, 1.0, -math.inf, math.nan]), min_size=36, max_size=36),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    ceil_mode=st.booleans(),
)
def test_max_pool_indices_match_torch_on_ties_nan_and_minus_infinity(values, kernel, stride, dilation, ceil_mode):
    x = np.array(values).reshape(1, 1, 6, 6)
    padding = (kernel[0] // 2, kernel[1] // 2)
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    out, ours = nf.max_pool2d(x, **kw, return_indices=True)
    want, theirs = TF.max_pool2d(_t(x), **kw, return_indices=True)
    np.testing.assert_array_equal(out, want.numpy())
    np.testing.assert_array_equal(ours, theirs.numpy())
