"""``npresnet.draw`` and ``npresnet draw``: the drawn windows against what the layers compute.

Oracles, none of which reads :mod:`npresnet.draw`:

* convolution windows: ``F.im2col`` on an input whose values are their own flat index + 1,
  so column ``l``, row ``i*kw + j`` names the input cell tap ``(i, j)`` of output ``l`` reads,
  and 0 (the zero padding) marks a padding tap;
* pooling windows: ``F.max_pool2d`` of one-hot images (output ``(oy, ox)`` of the image hot at
  ``(y, x)`` is 1 exactly when the window reads ``(y, x)``), and ``F.avg_pool2d`` of ones,
  whose value is (input taps) / divisor;
* the channel view: ``F.conv2d`` with all-ones weights on an input with one channel lit;
* transposed convolution: ``torch.nn.functional.conv_transpose2d`` of one-hot inputs with an
  all-ones weight (the nonzero outputs of the input hot at ``(iy, ix)`` are the cells it writes).

The SVG is parsed back (its data attributes) and the GIF frames are read pixel by pixel,
so the tests check the pictures, not only the geometry object behind them.
"""

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npresnet import draw
from npresnet import functional as F
from npresnet.cli import main
from npresnet.nn import Conv2d

SVG = "{http://www.w3.org/2000/svg}"


def svg_windows(text, role="output"):
    """{(oy, ox): {(i, j): ((y, x), where)}} read back from the SVG's panels (``role``: conv_transpose2d's "input")."""
    root = ET.fromstring(text)
    found = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "window":
            continue
        oy, ox = map(int, g.get(f"data-{role}").split(","))
        taps = {}
        for rect in g.iter(f"{SVG}rect"):
            classes = (rect.get("class") or "").split()
            if "tap" in classes:
                i, j = map(int, rect.get("data-tap").split(","))
                y, x = map(int, rect.get("data-cell").split(","))
                taps[(i, j)] = ((y, x), classes[1])
        found[(oy, ox)] = taps
    return found


@st.composite
def conv_configs(draw_):
    """Valid conv2d configurations drawn directly (no filtering): the input is at least the dilated window."""
    kh, kw = draw_(st.integers(1, 4)), draw_(st.integers(1, 4))
    dy, dx = draw_(st.integers(1, 3)), draw_(st.integers(1, 3))
    ph, pw = draw_(st.integers(0, 3)), draw_(st.integers(0, 3))
    sy, sx = draw_(st.integers(1, 3)), draw_(st.integers(1, 3))
    H = draw_(st.integers(max(1, dy * (kh - 1) + 1 - 2 * ph), 12))
    W = draw_(st.integers(max(1, dx * (kw - 1) + 1 - 2 * pw), 12))
    return (H, W), (kh, kw), (sy, sx), (ph, pw), (dy, dx)


@given(conv_configs())
def test_drawn_conv_windows_are_the_cells_im2col_reads(config):
    (H, W), kernel, stride, padding, dilation = config
    windows = draw.conv2d((H, W), kernel, stride, padding, dilation)
    x = (np.arange(H * W, dtype=np.float64) + 1).reshape(1, H, W)  # 0 is left for the padding
    cols = F.im2col(x, kernel, dilation, padding, stride)  # (kh*kw, L)
    out_h, out_w = windows.output_size
    assert cols.shape[1] == out_h * out_w
    drawn = svg_windows(draw.svg(windows))
    assert set(drawn) == {(oy, ox) for oy in range(out_h) for ox in range(out_w)}
    kh, kw = kernel
    for (oy, ox), taps in drawn.items():
        column = cols[:, oy * out_w + ox]
        assert set(taps) == {(i, j) for i in range(kh) for j in range(kw)}
        for (i, j), ((y, x), where) in taps.items():
            v = int(column[i * kw + j])
            if v == 0:
                assert where == "padding", (oy, ox, i, j)
                assert not (0 <= y < H and 0 <= x < W)
            else:
                assert where == "input" and (y, x) == divmod(v - 1, W), (oy, ox, i, j)
        # the object behind the picture says the same as the picture
        assert {(t.i, t.j): ((t.y, t.x), t.where) for t in windows.taps(oy, ox)} == taps


@st.composite
def pool_configs(draw_):
    kh, kw = draw_(st.integers(1, 4)), draw_(st.integers(1, 4))
    ph, pw = draw_(st.integers(0, kh // 2)), draw_(st.integers(0, kw // 2))
    sy, sx = draw_(st.integers(1, 4)), draw_(st.integers(1, 4))
    dy, dx = draw_(st.integers(1, 2)), draw_(st.integers(1, 2))
    H = draw_(st.integers(max(1, dy * (kh - 1) + 1 - 2 * ph), 9))
    W = draw_(st.integers(max(1, dx * (kw - 1) + 1 - 2 * pw), 9))
    return (H, W), (kh, kw), (sy, sx), (ph, pw), (dy, dx), draw_(st.booleans())


def one_hots(H, W):
    """(H*W, 1, H, W): image ``y*W + x`` is 1 at (y, x), 0 elsewhere."""
    return np.eye(H * W).reshape(H * W, 1, H, W)


@given(pool_configs())
def test_drawn_max_pool_windows_are_the_cells_max_pool_reads(config):
    (H, W), kernel, stride, padding, dilation, ceil_mode = config
    windows = draw.max_pool2d((H, W), kernel, stride, padding, dilation, ceil_mode)
    pooled = F.max_pool2d(one_hots(H, W), kernel, stride, padding, dilation, ceil_mode)  # (H*W, 1, out_h, out_w)
    assert pooled.shape[2:] == windows.output_size
    for (oy, ox), taps in svg_windows(draw.svg(windows)).items():
        inside = {cell for cell, where in taps.values() if where == "input"}
        expected = {divmod(n, W) for n in np.flatnonzero(pooled[:, 0, oy, ox] == 1)}
        assert inside == expected, (oy, ox)
        for (y, x), where in taps.values():  # every other tap lies outside the input
            assert (where == "input") == (0 <= y < H and 0 <= x < W)


@given(pool_configs(), st.booleans())
def test_drawn_avg_pool_windows_and_divisors_are_avg_pools(config, count_include_pad):
    (H, W), kernel, stride, padding, _, ceil_mode = config
    windows = draw.avg_pool2d((H, W), kernel, stride, padding, ceil_mode, count_include_pad)
    pooled = F.avg_pool2d(one_hots(H, W), kernel, stride, padding, ceil_mode, count_include_pad)
    ones = F.avg_pool2d(np.ones((1, H, W)), kernel, stride, padding, ceil_mode, count_include_pad)[0]
    text = draw.svg(windows)
    for (oy, ox), taps in svg_windows(text).items():
        inside = {cell for cell, where in taps.values() if where == "input"}
        assert inside == {divmod(n, W) for n in np.flatnonzero(pooled[:, 0, oy, ox] > 0)}
        divisor = windows.divisor(oy, ox)
        assert f"({oy}, {ox}) ÷ {divisor}<" in text
        # mean of ones over the window = input taps / divisor, exactly representable ratios of small ints
        assert ones[oy, ox] == pytest.approx(len(inside) / divisor, rel=1e-15)


@st.composite
def transpose_configs(draw_):
    """conv_transpose2d configurations as the brief draws them; some have an empty output, which torch refuses."""
    kh, kw = draw_(st.integers(1, 4)), draw_(st.integers(1, 4))
    sy, sx = draw_(st.integers(1, 3)), draw_(st.integers(1, 3))
    ph, pw = draw_(st.integers(0, kh - 1)), draw_(st.integers(0, kw - 1))
    dy, dx = draw_(st.integers(1, 2)), draw_(st.integers(1, 2))
    oph, opw = draw_(st.integers(0, max(sy, dy) - 1)), draw_(st.integers(0, max(sx, dx) - 1))
    H, W = draw_(st.integers(1, 4)), draw_(st.integers(1, 4))
    return (H, W), (kh, kw), (sy, sx), (ph, pw), (oph, opw), (dy, dx)


def torch_transpose_writes(H, W, kernel, stride, padding, output_padding, dilation):
    """(H*W, out_h, out_w) booleans: image ``y*W + x`` is hot at (y, x); True where torch writes it."""
    torch = pytest.importorskip("torch")
    x = torch.eye(H * W, dtype=torch.float64).reshape(H * W, 1, H, W)
    weight = torch.ones((1, 1, *kernel), dtype=torch.float64)  # (C_in, C_out/groups, kh, kw)
    out = torch.nn.functional.conv_transpose2d(x, weight, None, stride, padding, output_padding, 1, dilation)
    return (out[:, 0] != 0).numpy()


@settings(max_examples=60, deadline=None)
@given(transpose_configs())
def test_drawn_conv_transpose_writes_are_the_cells_torch_writes(config):
    (H, W), kernel, stride, padding, output_padding, dilation = config
    pytest.importorskip("torch")
    try:
        written = torch_transpose_writes(H, W, kernel, stride, padding, output_padding, dilation)
    except RuntimeError as err:  # an empty output: torch refuses it, and so does the picture
        assert "Output size is too small" in str(err)
        with pytest.raises(ValueError, match=r"^padding=.* leaves conv_transpose2d an empty output"):
            draw.conv_transpose2d((H, W), kernel, stride, padding, output_padding, 1, dilation)
        return
    windows = draw.conv_transpose2d((H, W), kernel, stride, padding, output_padding, 1, dilation)
    assert windows.input_size == (H, W) and windows.output_size == written.shape[1:]
    out_h, out_w = windows.output_size
    drawn = svg_windows(draw.svg(windows), role="input")
    assert set(drawn) == {(iy, ix) for iy in range(H) for ix in range(W)}
    kh, kw = kernel
    for (iy, ix), taps in drawn.items():
        assert set(taps) == {(i, j) for i in range(kh) for j in range(kw)}
        inside = {cell for cell, where in taps.values() if where == "output"}
        assert inside == {tuple(c) for c in np.argwhere(written[iy * W + ix])}, (iy, ix)
        for (y, x), where in taps.values():  # the rest is cropped: in the padding border, outside the output
            assert (where == "output") == (0 <= y < out_h and 0 <= x < out_w)
            if where != "output":
                assert where == "padding"
                assert -padding[0] <= y < out_h + padding[0] and -padding[1] <= x < out_w + padding[1]
        assert {(t.i, t.j): ((t.y, t.x), t.where) for t in windows.taps(iy, ix)} == taps


def test_conv_transpose_channel_view_and_frames():
    pytest.importorskip("PIL")
    from npresnet.draw.frames import PALETTE, cell_box, output_box

    windows = draw.conv_transpose2d((2, 3), 3, 2, 1, 1, groups=2, in_channels=4, out_channels=6)
    assert windows.output_size == (4, 6)
    root = ET.fromstring(draw.svg(windows))
    drawn = {
        tuple(map(int, r.get("data-channels").split(","))) for r in root.iter(f"{SVG}rect") if r.get("class") == "feeds"
    }
    assert drawn == {(o, c) for o in range(6) for c in range(4) if o // 3 == c // 2}
    images = draw.frames(windows)
    assert len(images) == 6  # one per input cell
    for im, (iy, ix) in zip(images, windows.positions()):
        for t in windows.taps(iy, ix):
            left, top, right, bottom = cell_box(windows, t.y, t.x)
            key = "tap-input" if t.where == "output" else "tap-padding"
            assert im.getpixel(((left + right) // 2, (top + bottom) // 2)) == PALETTE[key]
        left, top, right, bottom = output_box(windows, iy, ix)
        assert im.getpixel(((left + right) // 2, (top + bottom) // 2)) == PALETTE["current"]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(output_padding=2, stride=2), "output_padding must be smaller than stride or dilation"),
        (dict(output_padding=(0, 1)), "output_padding must be smaller than stride or dilation"),
        (dict(input_size=1, kernel_size=2, padding=1), "leaves conv_transpose2d an empty output"),
        (dict(stride=0), "stride must be >= 1"),
        (dict(padding=-1), "padding must be >= 0"),
        (dict(output_padding=-1), "output_padding must be >= 0"),
        (dict(groups=2, in_channels=3, out_channels=2), "groups=2 must divide both"),
    ],
)
def test_conv_transpose_errors_name_the_argument(kwargs, message):
    kw = dict(input_size=3, kernel_size=3) | kwargs
    with pytest.raises(ValueError, match=message) as err:
        draw.conv_transpose2d(kw.pop("input_size"), kw.pop("kernel_size"), **kw)
    assert "\n" not in str(err.value)


def test_cli_draw_conv_transpose(tmp_path, capsys):
    args = ["draw", "conv_transpose2d", "--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1"]
    assert main([*args, "--output-padding", "1"]) == 0
    assert capsys.readouterr().out == draw.svg(draw.conv_transpose2d(3, 3, 2, 1, 1))
    assert main([*args, "--output-padding", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("npresnet draw: error: output_padding must be smaller than stride or dilation")
    assert err.count("\n") == 1
    assert main(["draw", "conv_transpose2d", "--input", "1", "--kernel", "2", "--padding", "1"]) == 1
    assert "empty output" in capsys.readouterr().err
    assert main(["draw", "max_pool2d", "--input", "5", "--kernel", "2", "--output-padding", "1"]) == 1
    assert "--output-padding applies to conv_transpose2d, not max_pool2d" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main([*args, "--output-padding", "x"])
    assert usage.value.code == 2


def test_ceil_mode_draws_the_overhang_and_drops_a_window_starting_in_the_padding():
    # 6 wide, kernel 3, stride 2, padding 1: (6 + 2 - 3) / 2 = 2.5, so floor gives 3 windows and ceil 4; the 4th
    # starts at 3*2 - 1 = 5, inside the input, so it is kept, and its last tap, 7, lies beyond the padding (ends at 6).
    windows = draw.max_pool2d(6, 3, 2, 1, ceil_mode=True)
    assert windows.output_size == (4, 4) == F.max_pool2d(np.zeros((1, 6, 6)), 3, 2, 1, ceil_mode=True).shape[1:]
    last = [t for t in windows.taps(3, 3) if t.i == 2 and t.j == 2][0]
    assert (last.y, last.x, last.where) == (7, 7, "overhang")
    # 4 wide, kernel 2, stride 3, padding 1: ceil((4 + 2 - 2) / 3) + 1 = 3 windows, but the 3rd would start at
    # 2*3 - 1 = 5, in the right padding (the input ends at 3): dropped, as torch drops it
    assert draw.max_pool2d(4, 2, 3, 1, ceil_mode=True).output_size == (2, 2)
    assert F.max_pool2d(np.zeros((1, 4, 4)), 2, 3, 1, ceil_mode=True).shape[1:] == (2, 2)
    assert 'class="tap overhang"' in draw.svg(windows)


@pytest.mark.parametrize("in_channels,out_channels,groups", [(1, 1, 1), (4, 6, 2), (8, 4, 4), (6, 6, 6), (5, 3, 1)])
def test_channel_view_is_which_channels_conv2d_sums(in_channels, out_channels, groups):
    windows = draw.conv2d(3, 1, groups=groups, in_channels=in_channels, out_channels=out_channels)
    root = ET.fromstring(draw.svg(windows))
    drawn = {
        tuple(map(int, r.get("data-channels").split(","))) for r in root.iter(f"{SVG}rect") if r.get("class") == "feeds"
    }
    weight = np.ones((out_channels, in_channels // groups, 1, 1))
    x = np.eye(in_channels).reshape(in_channels, in_channels, 1, 1)  # image c lights channel c
    out = F.conv2d(x, weight, groups=groups)[:, :, 0, 0]  # (image c, output channel o)
    assert drawn == {(o, c) for c, o in zip(*np.nonzero(out))}


def test_frames_show_each_window_pixel_by_pixel():
    pytest.importorskip("PIL")
    from npresnet.draw.frames import PALETTE, cell_box, output_box

    windows = draw.max_pool2d((5, 4), 3, 2, 1, dilation=(1, 2), ceil_mode=True)
    images = draw.frames(windows)
    assert len(images) == windows.output_size[0] * windows.output_size[1]
    assert len({im.size for im in images}) == 1 and all(im.mode == "P" for im in images)
    (r0, r1), (c0, c1) = windows.extent()
    for im, (oy, ox) in zip(images, windows.positions()):
        taps = {(t.y, t.x): t.where for t in windows.taps(oy, ox)}
        for y in range(r0, r1):
            for x in range(c0, c1):
                left, top, right, bottom = cell_box(windows, y, x)
                centre = im.getpixel(((left + right) // 2, (top + bottom) // 2))
                if (y, x) in taps:
                    assert centre == PALETTE[f"tap-{taps[(y, x)]}"], (oy, ox, y, x)
                else:
                    assert centre in (PALETTE["input"], PALETTE["padding"], PALETTE["overhang"])
        left, top, right, bottom = output_box(windows, oy, ox)
        assert im.getpixel(((left + right) // 2, (top + bottom) // 2)) == PALETTE["current"]


@pytest.mark.parametrize("suffix", [".svg", ".gif", ".png"])
def test_saved_pictures_are_deterministic_and_readable(tmp_path, suffix):
    if suffix != ".svg":
        PIL = pytest.importorskip("PIL.Image")
    windows = draw.conv2d(5, 3, 2, 1)
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    draw.save(windows, a)
    draw.save(windows, b)
    assert a.read_bytes() == b.read_bytes()
    if suffix == ".svg":
        assert a.read_text(encoding="utf-8") == draw.svg(windows)
    else:
        with PIL.open(a) as im:
            assert im.n_frames == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([a.name, b.name])  # no temporary left behind


BAD_CONV = [
    dict(input_size=3, kernel_size=5),  # window larger than the input
    dict(input_size=5, kernel_size=3, stride=0),
    dict(input_size=5, kernel_size=3, padding=-1),
    dict(input_size=5, kernel_size=3, dilation=0),
    dict(input_size=5, kernel_size=3, groups=3, in_channels=4, out_channels=3),
    dict(input_size=5, kernel_size=3, groups=2, in_channels=4, out_channels=3),
    dict(input_size=5, kernel_size=3, stride=2.5),
]


@pytest.mark.parametrize("kwargs", BAD_CONV)
def test_conv_errors_are_the_layers_own(kwargs):
    kw = dict(kwargs)
    H, kernel = kw.pop("input_size"), kw.pop("kernel_size")
    C, O, groups = kw.pop("in_channels", 1), kw.pop("out_channels", 1), kw.get("groups", 1)
    with pytest.raises((ValueError, TypeError)) as ours:
        draw.conv2d(H, kernel, in_channels=C, out_channels=O, **kw)
    weight = np.zeros((O, max(C // groups, 1), kernel, kernel))
    with pytest.raises((ValueError, TypeError)) as layer:
        F.conv2d(np.zeros((1, C, H, H)), weight, **kw)
    assert type(ours.value) is type(layer.value) and str(ours.value) == str(layer.value)


def test_a_kernel_size_that_is_not_a_pair_is_refused_as_conv2d_refuses_it():
    with pytest.raises(TypeError) as ours:
        draw.conv2d(5, (3, 3, 3))
    with pytest.raises(TypeError) as layer:
        Conv2d(1, 1, (3, 3, 3))
    assert str(ours.value) == str(layer.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, padding=2),  # more than half the kernel
        dict(kernel_size=7),  # larger than the input
        dict(kernel_size=3, stride=0),
        dict(kernel_size=3, dilation=0),
    ],
)
def test_pool_errors_are_the_layers_own(kwargs):
    with pytest.raises(ValueError) as ours:
        draw.max_pool2d(5, **kwargs)
    with pytest.raises(ValueError) as layer:
        F.max_pool2d(np.zeros((1, 1, 5, 5)), **kwargs)
    assert str(ours.value) == str(layer.value)


def test_drawing_limits_are_checked():
    with pytest.raises(ValueError, match=f"more than the {draw.MAX_DRAW_SIZE} a picture shows"):
        draw.conv2d(draw.MAX_DRAW_SIZE - 1, 3, padding=1)
    draw.conv2d(draw.MAX_DRAW_SIZE - 2, 3, padding=1)  # exactly at the limit
    with pytest.raises(ValueError, match="out_channels=65 is more than the 64"):
        draw.conv2d(3, 1, in_channels=1, out_channels=draw.MAX_DRAW_CHANNELS + 1)
    with pytest.raises(ValueError, match="padding must be an int or a pair of ints to be drawn"):
        draw.conv2d(5, 3, padding="same")


def test_cli_draw_writes_the_picture_and_reports_layer_errors(tmp_path, capsys):
    out = tmp_path / "conv.svg"
    args = ["draw", "conv2d", "--input", "5x5", "--kernel", "3", "--stride", "2", "--padding", "1"]
    assert main([*args, "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == draw.svg(draw.conv2d(5, 3, 2, 1))
    assert main(args) == 0
    assert capsys.readouterr().out == draw.svg(draw.conv2d(5, 3, 2, 1))

    assert main(["draw", "conv2d", "--input", "3", "--kernel", "5"]) == 1
    err = capsys.readouterr().err
    with pytest.raises(ValueError) as layer:
        F.conv2d(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 5, 5)))
    assert err == f"npresnet draw: error: {layer.value}\n"

    assert main(["draw", "avg_pool2d", "--input", "5", "--kernel", "3", "--dilation", "2"]) == 1
    assert "--dilation applies to conv2d, conv_transpose2d and max_pool2d, not avg_pool2d" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "conv.jpg")]) == 1
    assert "must end in .svg, .gif or .png" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["draw", "conv2d", "--input", "5x", "--kernel", "3"])
    assert usage.value.code == 2


def test_cli_draw_help_explains_the_picture(capsys):
    with pytest.raises(SystemExit):
        main(["draw", "--help"])
    text = capsys.readouterr().out
    phrases = ("padded border", "channel view", ".gif", "ceil_mode", "conv2d", "max_pool2d", "avg_pool2d")
    phrases += ("conv_transpose2d", "--output-padding", "roles of input and output swapped")
    for phrase in phrases:
        assert phrase in text


def test_the_committed_pictures_are_the_scripts_output(tmp_path):
    """docs/images/ holds what docs/make_pictures.py draws (the deterministic ones, byte for byte)."""
    pytest.importorskip("PIL")
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("make_pictures", root / "docs" / "make_pictures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    written = script.make_geometry(tmp_path)
    assert {p.name for p in written} == set(script.GEOMETRY)
    for path in written:
        assert path.read_bytes() == (root / "docs" / "images" / path.name).read_bytes(), path.name
    assert (root / "docs" / "images" / script.RECEPTIVE_FIELD).is_file()
