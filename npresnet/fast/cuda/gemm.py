"""A convolution's matrix product as one cuBLAS call, with the compute type named, never left to a default.

``cupy.matmul`` chooses its cuBLAS compute type from process-wide settings (the ``CUPY_TF32``
environment variable, ``cupy._core.set_compute_type``); the fused path instead names it on
every call through ``cublasGemmEx`` / ``cublasGemmStridedBatchedEx``, so float32 is float32
(no silent TF32) and the TF32 and float16 modes are explicit choices of
:func:`npresnet.fast.fuse`'s ``precision``. (Read from CuPy 14's ``_routines_linalg.pyx``,
``tensordot_core_v11``: a float16 ``cupy.matmul`` does ask for ``CUBLAS_COMPUTE_32F``, or
``_32F_PEDANTIC`` after ``set_compute_type(float16, COMPUTE_TYPE_PEDANTIC)``, but writes its
float16 output, rounding each product before any epilogue; ``CUPY_TF32`` touches float32 only.)

Float16 storage: ``a`` and ``b`` are ``CUDA_R_16F``, the output ``CUDA_R_32F``, with
``CUBLAS_COMPUTE_32F``: products and sums in float32 (tensor cores take float16 inputs and
accumulate in float32), and the float32 result is left for the epilogue to round once.

Row-major to column-major: cuBLAS sees a row-major ``(rows, cols)`` matrix with row stride
``ld`` as the column-major ``(cols, rows)`` matrix with leading dimension ``ld``, its transpose.
So ``out = a @ b`` (row-major) is asked of cuBLAS as ``outᵀ = bᵀ aᵀ``: ``m, n, k = Og, M, Kg``,
``b`` first. A grouped convolution's ``G`` products write side by side into the NHWC output,
group ``g`` into the columns ``g*Og:(g+1)*Og``: a strided batch with ``ldc = O`` and
``strideC = Og``, so the output needs no transpose afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

if TYPE_CHECKING:
    import types

    from numpy.typing import DTypeLike

    from ..._typing import Array

__all__ = ["PRECISIONS", "compute_type", "grouped_gemm"]

PRECISIONS = ("float32", "tf32", "float16")
"""The fused path's precision modes: float32 storage and arithmetic; float32 storage with TF32
tensor-core products (inputs rounded to 10 mantissa bits, float32 accumulation); float16
storage with float32 accumulation. A float64 model always computes in float64."""

_DATA_TYPES = {
    numpy.dtype(numpy.float16): "CUDA_R_16F",
    numpy.dtype(numpy.float32): "CUDA_R_32F",
    numpy.dtype(numpy.float64): "CUDA_R_64F",
}
_INT_MAX = 2**31 - 1


def compute_type(dtype: DTypeLike, precision: str = "float32") -> str:
    """Return the cuBLAS compute type for products of ``dtype`` arrays in ``precision`` mode.

    float64: ``CUBLAS_COMPUTE_64F``. float32 and float16 storage: ``CUBLAS_COMPUTE_32F`` (float32
    accumulation), or ``CUBLAS_COMPUTE_32F_FAST_TF32`` for float32 in ``"tf32"`` mode.
    """
    kind = numpy.dtype(dtype)
    if kind == numpy.float64:
        return "CUBLAS_COMPUTE_64F"
    if kind == numpy.float32 and precision == "tf32":
        return "CUBLAS_COMPUTE_32F_FAST_TF32"
    if kind in (numpy.float32, numpy.float16):
        return "CUBLAS_COMPUTE_32F"
    raise TypeError(f"compute_type: no cuBLAS product for dtype {kind}")


def _address(x: Array) -> int:
    """Return the device address of ``x``'s first element: CuPy's ``x.data.ptr``."""
    address: int = x.data.ptr  # type: ignore[attr-defined]  # a CuPy array, checked as NumPy's (.data a memoryview)
    return address


def grouped_gemm(xp: types.ModuleType, a: Array, b: Array, out: Array, compute: str) -> None:
    """``out[:, g*Og:(g+1)*Og] = a[g] @ b[g]`` for every group ``g``, in one cuBLAS call.

    Parameters
    ----------
    xp : module
        CuPy (or the emulated CuPy of :mod:`npresnet._emulation`).
    a : array, shape (G, M, Kg), C-contiguous
        The columns (or, for a pointwise convolution, the activation as ``(1, M, C)``).
    b : array, shape (G, Kg, Og), C-contiguous
        The weight, from :func:`npresnet.fast.fold.gemm_weight`.
    out : array, shape (M, G*Og), C-contiguous
        Overwritten (``beta = 0``: not read). The dtype of ``a`` and ``b``, or float32 when they are float16.
    compute : str
        The cuBLAS compute type's name (:func:`compute_type`).
    """
    G, M, Kg = a.shape
    Og = b.shape[2]
    O = out.shape[1]
    if b.shape != (G, Kg, Og) or out.shape != (M, G * Og):
        raise ValueError(f"grouped_gemm: shapes a {a.shape}, b {b.shape}, out {out.shape} do not match")
    widened = a.dtype == numpy.float16 and out.dtype == numpy.float32  # float16 products, float32 result
    if a.dtype != b.dtype or not (out.dtype == a.dtype or widened):
        raise TypeError(f"grouped_gemm: a {a.dtype}, b {b.dtype}, out {out.dtype}: one dtype, or float16 to float32")
    if not all(x.flags.c_contiguous for x in (a, b, out)):
        raise TypeError("grouped_gemm: a, b and out must be C-contiguous")
    if any(v > _INT_MAX for v in (M, Kg, O, G)) or M * Kg > 2**63 - 1:
        raise ValueError(f"grouped_gemm: sizes {(G, M, Kg, Og)} exceed cuBLAS's 32-bit dimensions")
    if out.size == 0:
        return
    cublas, runtime = xp.cuda.cublas, xp.cuda.runtime
    dtype, out_type = (getattr(runtime, _DATA_TYPES[x.dtype]) for x in (a, out))
    scalar = numpy.float64 if compute == "CUBLAS_COMPUTE_64F" else numpy.float32
    alpha, beta = numpy.ones((), scalar), numpy.zeros((), scalar)  # host memory, read by cuBLAS at the call
    args_b = (_address(b), dtype, Og)  # pointer, type, leading dimension
    args_a = (_address(a), dtype, Kg)
    handle = xp.cuda.device.get_cublas_handle()
    mode = cublas.getPointerMode(handle)
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    try:
        op, algo, kind = cublas.CUBLAS_OP_N, cublas.CUBLAS_GEMM_DEFAULT, getattr(cublas, compute)
        if G == 1:
            cublas.gemmEx(
                handle, op, op, Og, M, Kg, alpha.ctypes.data, *args_b, *args_a,
                beta.ctypes.data, _address(out), out_type, O, kind, algo,
            )  # fmt: skip
        else:
            cublas.gemmStridedBatchedEx(
                handle, op, op, Og, M, Kg, alpha.ctypes.data, *args_b, Kg * Og, *args_a, M * Kg,
                beta.ctypes.data, _address(out), out_type, O, Og, G, kind, algo,
            )  # fmt: skip
    finally:
        cublas.setPointerMode(handle, mode)
