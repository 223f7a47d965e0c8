"""Bad input gets a clear error naming the argument and the shapes: never a wrong answer,
a hang, or a NumPy traceback from deep inside. Every case asserts the error type and that
the message names the problem (each listed fragment must appear)."""

import re

import numpy as np
import pytest

import npresnet.functional as nf


def A(*shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


X = A(2, 4, 6, 6)  # a valid input
W = A(8, 4, 3, 3)  # a valid weight for it

CASES = [
    # ---- wrong rank
    (
        "conv2d input 2-D",
        lambda: nf.conv2d(A(6, 6), W),
        ValueError,
        ["input must be 4-D (N, C, H, W) or 3-D (C, H, W)", "2-D", "(6, 6)"],
    ),
    ("conv2d input 5-D", lambda: nf.conv2d(A(1, 2, 4, 6, 6), W), ValueError, ["input must be 4-D", "(1, 2, 4, 6, 6)"]),
    ("conv2d weight 3-D", lambda: nf.conv2d(X, A(8, 4, 3)), ValueError, ["weight must be 4-D", "(8, 4, 3)"]),
    ("im2col input 2-D", lambda: nf.im2col(A(6, 6), 3), ValueError, ["input must be 4-D", "(6, 6)"]),
    ("max_pool2d input 1-D", lambda: nf.max_pool2d(A(6), 2), ValueError, ["input must be 4-D", "(6,)"]),
    (
        "avg_pool2d input 5-D",
        lambda: nf.avg_pool2d(A(1, 1, 1, 4, 4), 2),
        ValueError,
        ["input must be 4-D", "(1, 1, 1, 4, 4)"],
    ),
    ("adaptive input 2-D", lambda: nf.adaptive_avg_pool2d(A(4, 4), 2), ValueError, ["input must be 4-D", "(4, 4)"]),
    ("batch_norm input 1-D", lambda: nf.batch_norm(A(4), A(4), A(4)), ValueError, ["at least 2-D", "(4,)"]),
    ("linear weight 1-D", lambda: nf.linear(A(2, 4), A(4)), ValueError, ["weight must be 2-D", "(4,)"]),
    # ---- channels and groups
    (
        "conv2d channels",
        lambda: nf.conv2d(A(2, 3, 6, 6), W),
        ValueError,
        ["input has 3 channels", "(2, 3, 6, 6)", "weight of shape (8, 4, 3, 3)", "expects 4"],
    ),
    (
        "conv2d grouped channels",
        lambda: nf.conv2d(X, A(8, 4, 3, 3), groups=2),
        ValueError,
        ["input has 4 channels", "groups=2", "expects 8"],
    ),
    (
        "groups do not divide input channels",
        lambda: nf.conv2d(A(1, 3, 6, 6), A(4, 1, 3, 3), groups=2),
        ValueError,
        ["groups=2 must divide", "input channels (3", "(1, 3, 6, 6)"],
    ),
    (
        "groups do not divide output channels",
        lambda: nf.conv2d(A(1, 4, 6, 6), A(3, 2, 3, 3), groups=2),
        ValueError,
        ["groups=2 must divide", "output channels (3", "(3, 2, 3, 3)"],
    ),
    ("groups 0", lambda: nf.conv2d(X, W, groups=0), ValueError, ["groups must be a positive int", "0"]),
    ("groups float", lambda: nf.conv2d(X, W, groups=1.0), ValueError, ["groups must be a positive int", "1.0"]),
    # ---- window larger than the padded input
    (
        "conv2d window too large",
        lambda: nf.conv2d(A(1, 4, 2, 6), W),
        ValueError,
        ["conv2d", "(1, 4, 2, 6)", "too small along height", "window of size 3", "padded input of size 2"],
    ),
    (
        "conv2d dilated window too large",
        lambda: nf.conv2d(X, W, padding=1, dilation=(1, 4)),
        ValueError,
        ["(2, 4, 6, 6)", "along width", "window of size 9", "dilation=4", "padded input of size 8"],
    ),
    (
        "conv2d 'valid' window too large",
        lambda: nf.conv2d(A(1, 4, 6, 2), W, padding="valid"),
        ValueError,
        ["along width", "window of size 3", "padded input of size 2"],
    ),
    (
        "im2col window too large",
        lambda: nf.im2col(A(1, 1, 3, 3), 4),
        ValueError,
        ["im2col", "(1, 1, 3, 3)", "window of size 4"],
    ),
    (
        "max_pool2d window too large",
        lambda: nf.max_pool2d(A(1, 1, 2, 5), 3),
        ValueError,
        ["max_pool2d", "(1, 1, 2, 5)", "along height", "window of size 3", "padded input of size 2"],
    ),
    (
        "avg_pool2d window too large",
        lambda: nf.avg_pool2d(A(1, 1, 5, 1), (1, 2)),
        ValueError,
        ["avg_pool2d", "(1, 1, 5, 1)", "along width", "window of size 2"],
    ),
    # ---- padding
    ("conv2d negative padding", lambda: nf.conv2d(X, W, padding=-1), ValueError, ["padding must be >= 0", "-1"]),
    (
        "conv2d negative padding pair",
        lambda: nf.conv2d(X, W, padding=(1, -2)),
        ValueError,
        ["padding must be >= 0", "(1, -2)"],
    ),
    ("im2col negative padding", lambda: nf.im2col(X, 3, padding=-1), ValueError, ["padding must be >= 0"]),
    ("max_pool2d negative padding", lambda: nf.max_pool2d(X, 3, padding=-1), ValueError, ["padding must be >= 0"]),
    (
        "max_pool2d padding over half the kernel",
        lambda: nf.max_pool2d(X, 3, padding=2),
        ValueError,
        ["max_pool2d", "padding=(2, 2)", "at most half of kernel_size=(3, 3)"],
    ),
    (
        "avg_pool2d padding over half the kernel",
        lambda: nf.avg_pool2d(X, (4, 2), padding=(2, 2)),
        ValueError,
        ["avg_pool2d", "padding=(2, 2)", "kernel_size=(4, 2)"],
    ),
    (
        "bad padding string",
        lambda: nf.conv2d(X, W, padding="full"),
        ValueError,
        ["padding must be an int, a pair of ints, 'valid' or 'same'", "'full'"],
    ),
    (
        "'same' with stride 2",
        lambda: nf.conv2d(X, W, stride=2, padding="same"),
        ValueError,
        ["padding='same'", "strided", "stride=(2, 2)"],
    ),
    (
        "padding float",
        lambda: nf.conv2d(X, W, padding=1.5),
        TypeError,
        ["padding must be an int or a pair of ints", "1.5"],
    ),
    # ---- stride, kernel, dilation
    ("conv2d stride 0", lambda: nf.conv2d(X, W, stride=0), ValueError, ["stride must be >= 1", "0"]),
    ("conv2d stride (1, 0)", lambda: nf.conv2d(X, W, stride=(1, 0)), ValueError, ["stride must be >= 1", "(1, 0)"]),
    ("im2col stride 0", lambda: nf.im2col(X, 3, stride=0), ValueError, ["stride must be >= 1"]),
    ("max_pool2d stride 0", lambda: nf.max_pool2d(X, 2, stride=0), ValueError, ["stride must be >= 1"]),
    ("avg_pool2d stride 0", lambda: nf.avg_pool2d(X, 2, stride=0), ValueError, ["stride must be >= 1"]),
    ("conv2d dilation 0", lambda: nf.conv2d(X, W, dilation=0), ValueError, ["dilation must be >= 1"]),
    ("max_pool2d kernel 0", lambda: nf.max_pool2d(X, 0), ValueError, ["kernel_size must be >= 1"]),
    (
        "kernel_size triple",
        lambda: nf.max_pool2d(X, (2, 2, 2)),
        TypeError,
        ["kernel_size must be an int or a pair of ints", "(2, 2, 2)"],
    ),
    (
        "divisor_override 0",
        lambda: nf.avg_pool2d(X, 2, divisor_override=0),
        ValueError,
        ["divisor_override must be a non-zero int", "0"],
    ),
    ("adaptive output_size 0", lambda: nf.adaptive_avg_pool2d(X, (0, 2)), ValueError, ["output_size must be >= 1"]),
    # ---- dtypes
    (
        "conv2d int input",
        lambda: nf.conv2d(A(2, 4, 6, 6, dtype=np.int64), W),
        TypeError,
        ["input must have a real floating dtype", "int64", "(2, 4, 6, 6)"],
    ),
    (
        "conv2d uint8 image",
        lambda: nf.conv2d(A(2, 4, 6, 6, dtype=np.uint8), W),
        TypeError,
        ["input must have a real floating dtype", "uint8", "astype('float32') / 255"],
    ),
    ("conv2d bool input", lambda: nf.conv2d(A(2, 4, 6, 6, dtype=bool), W), TypeError, ["floating dtype", "bool"]),
    (
        "conv2d complex input",
        lambda: nf.conv2d(A(2, 4, 6, 6, dtype=np.complex64), W),
        TypeError,
        ["input must have a real floating dtype", "complex64"],
    ),
    (
        "conv2d int weight",
        lambda: nf.conv2d(X, A(8, 4, 3, 3, dtype=np.int32)),
        TypeError,
        ["weight must have a real floating dtype", "int32", "(8, 4, 3, 3)"],
    ),
    (
        "conv2d weight dtype mismatch",
        lambda: nf.conv2d(X, A(8, 4, 3, 3, dtype=np.float64)),
        TypeError,
        ["weight dtype float64 does not match input dtype float32", "(8, 4, 3, 3)", "(2, 4, 6, 6)"],
    ),
    (
        "conv2d bias dtype mismatch",
        lambda: nf.conv2d(X, W, A(8, dtype=np.float64)),
        TypeError,
        ["bias dtype float64 does not match input dtype float32"],
    ),
    ("conv2d list input", lambda: nf.conv2d([[1.0]], W), TypeError, ["input must be a NumPy or CuPy array", "list"]),
    ("max_pool2d int input", lambda: nf.max_pool2d(A(1, 1, 4, 4, dtype=np.int16), 2), TypeError, ["int16"]),
    (
        "avg_pool2d complex input",
        lambda: nf.avg_pool2d(A(1, 1, 4, 4, dtype=np.complex128), 2),
        TypeError,
        ["complex128"],
    ),
    ("adaptive int input", lambda: nf.adaptive_avg_pool2d(A(1, 1, 4, 4, dtype=np.int8), 2), TypeError, ["int8"]),
    ("im2col int input", lambda: nf.im2col(A(1, 1, 4, 4, dtype=np.int64), 2), TypeError, ["int64"]),
    (
        "batch_norm int input",
        lambda: nf.batch_norm(A(2, 4, dtype=np.int64), A(4), A(4)),
        TypeError,
        ["input must have a real floating dtype", "int64"],
    ),
    (
        "batch_norm int running_var",
        lambda: nf.batch_norm(A(2, 4), A(4), A(4, dtype=np.int64)),
        TypeError,
        ["running_var must have a real floating dtype"],
    ),
    ("linear int input", lambda: nf.linear(A(2, 4, dtype=np.int32), A(3, 4)), TypeError, ["input", "int32"]),
    (
        "linear weight dtype mismatch",
        lambda: nf.linear(A(2, 4), A(3, 4, dtype=np.float16)),
        TypeError,
        ["weight dtype float16 does not match input dtype float32"],
    ),
    ("relu int", lambda: nf.relu(A(3, dtype=np.int64)), TypeError, ["input must have a real floating dtype", "int64"]),
    ("relu complex", lambda: nf.relu(A(3, dtype=np.complex64)), TypeError, ["complex64"]),
    # ---- bias and statistics shapes
    (
        "conv2d bias shape",
        lambda: nf.conv2d(X, W, A(4)),
        ValueError,
        ["bias must have shape (8,)", "(8, 4, 3, 3)", "got (4,)"],
    ),
    ("conv2d bias 2-D", lambda: nf.conv2d(X, W, A(8, 1)), ValueError, ["bias must have shape (8,)", "(8, 1)"]),
    ("linear bias shape", lambda: nf.linear(A(2, 4), A(3, 4), A(4)), ValueError, ["bias must have shape (3,)", "(4,)"]),
    (
        "linear features",
        lambda: nf.linear(A(2, 5), A(3, 4)),
        ValueError,
        ["4 features", "(3, 4)", "input shape (2, 5)"],
    ),
    (
        "batch_norm running_mean shape",
        lambda: nf.batch_norm(A(2, 4, 3), A(3), A(4)),
        ValueError,
        ["running_mean must have shape (4,)", "(2, 4, 3)", "got (3,)"],
    ),
    (
        "batch_norm weight shape",
        lambda: nf.batch_norm(A(2, 4), A(4), A(4), A(4, 1)),
        ValueError,
        ["weight must have shape (4,)", "(4, 1)"],
    ),
    (
        "batch_norm inference without statistics",
        lambda: nf.batch_norm(A(2, 4), None, None),
        ValueError,
        ["running_mean and running_var are required when training=False"],
    ),
    (
        "batch_norm one value per channel",
        lambda: nf.batch_norm(A(1, 4), A(4), A(4), training=True),
        ValueError,
        ["more than 1 value per channel", "(1, 4)"],
    ),
]


@pytest.mark.parametrize("call, exc, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_names_problem(call, exc, fragments):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_errors_raised_on_every_backend(backend):
    """The same checks on the backend's arrays (a CuPy array must not slip past a NumPy-only check)."""
    x, w = backend.put(X), backend.put(W)
    with pytest.raises(ValueError, match=re.escape("input has 3 channels")):
        nf.conv2d(backend.put(A(2, 3, 6, 6)), w)
    with pytest.raises(TypeError, match="int64"):
        nf.conv2d(backend.put(A(2, 4, 6, 6, dtype=np.int64)), w)
    with pytest.raises(ValueError, match="at most half of kernel_size"):
        nf.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="window of size 7"):
        nf.conv2d(x, backend.put(A(1, 4, 7, 7)))
