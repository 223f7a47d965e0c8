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
    # the emulation is listed only when asked for, last
    assert B.available_backends(emulated=True) == names + ["cupy-emulated"]


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
    with pytest.raises(ValueError, match=r"backend must be one of \('numpy', 'cupy', 'cupy-emulated'\), got"):
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


def _run_with_planted_cupy(tmp_path, cupy_source: str, code: str):
    """Run ``code`` in a fresh interpreter where ``import cupy`` finds a planted module ``cupy_source``."""
    import os
    import subprocess
    import sys

    (tmp_path / "cupy").mkdir(parents=True)
    (tmp_path / "cupy" / "__init__.py").write_text(cupy_source)
    root = os.path.dirname(os.path.dirname(os.path.abspath(B.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), root])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_backend_module_does_not_import_cupy_for_numpy_work(tmp_path):
    """Asking about NumPy arrays never imports CuPy (checked by type module, not isinstance).

    A planted ``cupy`` that fails on import stands in for CuPy, so the check means the same
    whether or not CuPy is installed; the control run shows that an import would be caught."""
    planted = "raise RuntimeError('planted cupy was imported')\n"
    numpy_work = (
        "import numpy; from npresnet.backend import get_array_module, backend_name, to_numpy, to_backend;"
        "a = numpy.zeros(2); get_array_module(a, None, 1.0); backend_name(a); to_numpy(a); to_backend(a, 'numpy')"
    )
    proc = _run_with_planted_cupy(tmp_path, planted, numpy_work)
    assert proc.returncode == 0, proc.stderr
    asks_for_cupy = "import npresnet.backend as B; B.get_backend('cupy')"
    control = _run_with_planted_cupy(tmp_path / "control", planted, asks_for_cupy)
    assert control.returncode == 1
    assert "backend 'cupy' is not available: CuPy is not installed (RuntimeError: planted cupy was imported)" in (
        control.stderr
    )


@pytest.mark.parametrize(
    "is_available, reason",
    [
        ("lambda: False", "cupy.is_available() is False"),
        ("lambda: (_ for _ in ()).throw(OSError('libcuda.so: cannot open'))", "OSError: libcuda.so: cannot open"),
    ],
)
def test_cupy_that_imports_without_a_device_is_not_listed(tmp_path, is_available, reason):
    """cupy-cuda13x imports on a machine with no driver; then CuPy is not offered, and nothing crashes."""
    code = (
        "import numpy, npresnet.backend as B;"
        "assert B.available_backends() == ['numpy'], B.available_backends();"
        "assert B.available_backends(emulated=True) == ['numpy', 'cupy-emulated'];"
        "print(B.cupy_unavailable_reason());"
        "B.get_backend('cupy')"
    )
    proc = _run_with_planted_cupy(tmp_path, f"is_available = {is_available}\n", code)
    assert reason in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 1 and "ValueError: backend 'cupy' is not available" in proc.stderr


def test_emulated_backend_is_recognised_and_moves_through_the_host():
    """The emulation is a backend like the others: named, detected from its arrays, reached by to_backend."""
    from npresnet import _emulation

    x = np.arange(6.0).reshape(2, 3)
    dev = B.to_backend(x, "cupy-emulated")
    assert isinstance(dev, _emulation.ndarray) and B.backend_name(dev) == "cupy-emulated"
    assert B.get_backend("cupy-emulated") is _emulation.cupy is B.get_array_module(None, dev)
    assert B.to_backend(dev, "cupy-emulated") is dev
    with _emulation.count() as c:
        back = B.to_numpy(dev)
    assert c["d2h"] == 1 and c.syncs == 1
    assert np.array_equal(back, x) and back is not x
    x[0, 0] = 99.0  # the device copy never aliases the host array
    assert B.to_numpy(dev)[0, 0] == 0.0
