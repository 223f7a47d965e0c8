"""npresnet.backend: backend discovery, moving arrays, and picking the array module."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npresnet import backend as B


def test_available_backends_lists_numpy_first():
    names = B.available_backends()
    assert names[0] == "numpy"
    assert set(names) <= {"numpy", "cupy"} and len(set(names)) == len(names)
    # cupy is listed exactly when it is usable, and the reason is empty exactly then
    assert ("cupy" in names) == (B.cupy_unavailable_reason() == "")


def test_cupy_absent_is_explained():
    if "cupy" in B.available_backends():
        pytest.skip("CuPy is usable on this machine; the absent-CuPy path cannot be exercised")
    reason = B.cupy_unavailable_reason()
    assert "CuPy" in reason
    with pytest.raises(ValueError, match=r"backend 'cupy' is not available: CuPy"):
        B.get_backend("cupy")


def test_get_backend(backend):
    assert B.get_backend(backend.name) is backend.xp
    assert B.get_backend("numpy") is np


@pytest.mark.parametrize("bad", ["torch", "NumPy", "", None])
def test_get_backend_rejects_unknown_names(bad):
    with pytest.raises(ValueError, match=r"backend must be one of \('numpy', 'cupy'\), got"):
        B.get_backend(bad)


@given(
    hnp.arrays(
        hnp.floating_dtypes() | hnp.integer_dtypes() | st.just(np.dtype(bool)),
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0),
    )
)
def test_round_trip_is_exact(backend, x):
    on = B.to_backend(x, backend.name)
    assert B.backend_name(on) == backend.name
    back = B.to_numpy(on)
    assert isinstance(back, np.ndarray)
    # A device array has no byte-order flag: CuPy round trips give native order (to_backend's
    # documented contract); NumPy hands the array back untouched.
    expected_dtype = x.dtype if backend.name == "numpy" else x.dtype.newbyteorder("=")
    assert back.dtype == expected_dtype and back.shape == x.shape
    assert np.array_equal(back, x, equal_nan=x.dtype.kind == "f")


def test_to_numpy_does_not_copy_numpy_arrays():
    x = np.arange(3.0)
    assert B.to_numpy(x) is x
    assert B.to_backend(x, "numpy") is x


def test_to_numpy_accepts_array_likes():
    out = B.to_numpy([[1, 2], [3, 4]])
    assert isinstance(out, np.ndarray) and out.shape == (2, 2)


def test_to_backend_rejects_unknown():
    with pytest.raises(ValueError, match="backend must be one of"):
        B.to_backend(np.zeros(2), "jax")


def test_get_array_module_ignores_none_and_scalars(backend):
    x = backend.put(np.zeros(2))
    assert B.get_array_module() is np
    assert B.get_array_module(None, 1, 2.5, "s") is np
    assert B.get_array_module(np.zeros(2), None, 3) is np
    assert B.get_array_module(None, 1.0, x) is backend.xp
    assert B.get_array_module(x, None) is backend.xp
    assert B.backend_name(x) == backend.name
    assert B.backend_name(None) == "numpy" and B.backend_name(3) == "numpy"


def test_backend_module_does_not_import_cupy_for_numpy_work():
    """Asking about NumPy arrays never imports CuPy (checked by type module, not isinstance)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy; from npresnet.backend import get_array_module, backend_name, to_numpy;"
        "a = numpy.zeros(2); get_array_module(a); backend_name(a); to_numpy(a);"
        "assert 'cupy' not in sys.modules, 'cupy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
