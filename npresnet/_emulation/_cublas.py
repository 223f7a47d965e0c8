"""The emulated cuBLAS: ``gemmEx`` and ``gemmStridedBatchedEx`` on raw addresses, as CuPy's binding takes them.

A call names its matrices by address, leading dimension and batch stride, column-major, so
this is where a wrong translation from row-major NumPy shapes shows: each matrix is rebuilt
from its allocation (:func:`._memory.resolve_pointer`), and an address, leading dimension or
stride that reaches outside the allocation, a data type other than the allocation's, or an
unsupported type combination raises, where a GPU would read garbage or fault. ``beta = 0``
does not read ``C`` (as cuBLAS), so a product over unwritten memory stays correct.

The requested data and compute types are counted (:attr:`._counters.Counts.gemm_types`), which
is how the tests see that float32 asks for ``CUBLAS_COMPUTE_32F`` and TF32 only when chosen.
The arithmetic is NumPy's in the accumulation type: the emulation does not model TF32's
rounding of the inputs, so the TF32 error is measured on a GPU only. Float16 inputs are exact
in float32 and so are their products, so a float16 product accumulated in float32 is modelled
up to the order of the sums (a float16 output ``C`` is rounded once, as cuBLAS rounds it).

Constants have cuBLAS's values (``cupy_backends.cuda.libs.cublas``; checked against the
installed CuPy by the tests).
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy

from ._counters import record, record_gemm_type
from ._memory import resolve_pointer

if TYPE_CHECKING:
    from numpy.typing import DTypeLike, NDArray

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUBLAS_POINTER_MODE_HOST, CUBLAS_POINTER_MODE_DEVICE = 0, 1
CUBLAS_GEMM_DEFAULT = -1
CUBLAS_COMPUTE_32F = 68
CUBLAS_COMPUTE_64F = 70
CUBLAS_COMPUTE_32F_FAST_TF32 = 77

CUDA_R_32F, CUDA_R_64F, CUDA_R_16F = 0, 1, 2  # cupy.cuda.runtime's cudaDataType values
_DTYPES = {CUDA_R_32F: numpy.float32, CUDA_R_64F: numpy.float64, CUDA_R_16F: numpy.float16}
_TYPE_NAMES = {CUDA_R_32F: "CUDA_R_32F", CUDA_R_64F: "CUDA_R_64F", CUDA_R_16F: "CUDA_R_16F"}
_COMPUTE = {  # compute type: (name, accumulation dtype, the (A/B, C) data types cuBLAS allows with it)
    CUBLAS_COMPUTE_32F: (
        "CUBLAS_COMPUTE_32F",
        numpy.float32,
        {(CUDA_R_32F, CUDA_R_32F), (CUDA_R_16F, CUDA_R_16F), (CUDA_R_16F, CUDA_R_32F)},
    ),
    CUBLAS_COMPUTE_32F_FAST_TF32: ("CUBLAS_COMPUTE_32F_FAST_TF32", numpy.float32, {(CUDA_R_32F, CUDA_R_32F)}),
    CUBLAS_COMPUTE_64F: ("CUBLAS_COMPUTE_64F", numpy.float64, {(CUDA_R_64F, CUDA_R_64F)}),
}

_pointer_modes: dict[int, int] = {}
_HANDLE = 1


def get_cublas_handle() -> int:
    """Return the current device's cuBLAS handle (``cupy.cuda.device.get_cublas_handle``)."""
    return _HANDLE


def getPointerMode(handle: int) -> int:
    return _pointer_modes.get(handle, CUBLAS_POINTER_MODE_HOST)


def setPointerMode(handle: int, mode: int) -> None:
    if mode not in (CUBLAS_POINTER_MODE_HOST, CUBLAS_POINTER_MODE_DEVICE):
        raise ValueError(f"cublasSetPointerMode: mode {mode}")
    _pointer_modes[handle] = mode


def _host_scalar(ptr: int, dtype: DTypeLike) -> numpy.floating[Any]:
    """Read a scalar that cuBLAS takes from host memory at the call (pointer mode host)."""
    size = numpy.dtype(dtype).itemsize
    value: numpy.floating[Any] = numpy.frombuffer(ctypes.string_at(ptr, size), dtype=dtype)[0]
    return value


def _matrix(
    name: str, ptr: int, data_type: int, rows: int, cols: int, ld: int, stride: int, batch: int
) -> NDArray[Any]:
    """Return the column-major ``(rows, cols)`` matrices at ``ptr`` as a row-major view ``(batch, cols, rows)``."""
    dtype = numpy.dtype(_DTYPES[data_type])
    root, offset = resolve_pointer(ptr)
    if root.dtype != dtype:
        raise TypeError(f"cuBLAS {name}: declared {_TYPE_NAMES[data_type]} but the allocation holds {root.dtype}")
    if offset % dtype.itemsize:
        raise ValueError(f"cuBLAS {name}: address not aligned to its {dtype} elements")
    if ld < max(1, rows):
        raise ValueError(f"cuBLAS {name}: leading dimension {ld} < {rows} rows (CUBLAS_STATUS_INVALID_VALUE)")
    start = offset // dtype.itemsize
    last = start + (rows - 1) + (cols - 1) * ld + (batch - 1) * stride
    if last >= root.size:
        raise IndexError(f"cuBLAS {name}: element {last} is outside its allocation of {root.size}")
    flat = root.reshape(-1)[start:]
    item = dtype.itemsize
    return numpy.lib.stride_tricks.as_strided(flat, (batch, cols, rows), (stride * item, ld * item, item))


def gemmStridedBatchedEx(
    handle: int, transa: int, transb: int, m: int, n: int, k: int, alpha: int,
    A: int, Atype: int, lda: int, strideA: int, B: int, Btype: int, ldb: int, strideB: int,
    beta: int, C: int, Ctype: int, ldc: int, strideC: int, batchCount: int, computeType: int, algo: int,
) -> None:  # fmt: skip
    """``C[i] = alpha A[i] B[i] + beta C[i]`` for each of ``batchCount`` column-major (m, k) @ (k, n) products."""
    if transa != CUBLAS_OP_N or transb != CUBLAS_OP_N:
        raise NotImplementedError("emulated cuBLAS: only CUBLAS_OP_N is emulated")
    if getPointerMode(handle) != CUBLAS_POINTER_MODE_HOST:
        raise NotImplementedError("emulated cuBLAS: alpha and beta are read from host memory only")
    if computeType not in _COMPUTE:
        raise NotImplementedError(f"emulated cuBLAS: compute type {computeType}")
    name, accumulate, allowed = _COMPUTE[computeType]
    if Atype != Btype or (Atype, Ctype) not in allowed:
        raise ValueError(
            f"cuBLAS: {name} with A {_TYPE_NAMES.get(Atype)}, B {_TYPE_NAMES.get(Btype)}, C {_TYPE_NAMES.get(Ctype)} "
            f"is not supported (CUBLAS_STATUS_NOT_SUPPORTED)"
        )
    if min(m, n, k, batchCount) < 0:
        raise ValueError(f"cuBLAS: negative size m={m}, n={n}, k={k}, batch={batchCount}")
    record("gemm")
    record_gemm_type(_TYPE_NAMES[Atype], _TYPE_NAMES[Ctype], name)
    if m == 0 or n == 0 or batchCount == 0:
        return
    a_t = _matrix("A", A, Atype, m, k, lda, strideA, batchCount)  # (batch, k, m): Aᵀ
    b_t = _matrix("B", B, Btype, k, n, ldb, strideB, batchCount)  # (batch, n, k): Bᵀ
    c_t = _matrix("C", C, Ctype, m, n, ldc, strideC, batchCount)  # (batch, n, m): Cᵀ
    alpha_value, beta_value = _host_scalar(alpha, accumulate), _host_scalar(beta, accumulate)  # alpha, beta: addresses
    for i in range(batchCount):  # one 2-D product each: NumPy's BLAS path (a 0 batch stride would leave it)
        product = alpha_value * (b_t[i].astype(accumulate) @ a_t[i].astype(accumulate))  # Cᵀ = Bᵀ Aᵀ
        if beta_value != 0:  # beta = 0: C is not read, as in cuBLAS
            product += beta_value * c_t[i].astype(accumulate)
        c_t[i] = product


def gemmEx(
    handle: int, transa: int, transb: int, m: int, n: int, k: int, alpha: int, A: int, Atype: int, lda: int,
    B: int, Btype: int, ldb: int, beta: int, C: int, Ctype: int, ldc: int, computeType: int, algo: int,
) -> None:  # fmt: skip
    """``C = alpha A B + beta C``, one column-major (m, k) @ (k, n) product."""
    gemmStridedBatchedEx(
        handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0,
        beta, C, Ctype, ldc, 0, 1, computeType, algo,
    )  # fmt: skip
