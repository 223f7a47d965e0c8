"""The engines a benchmark compares, each a callable ``x -> NumPy logits``: npresnet's reference
``model(x)`` and fused path, PyTorch eager with the same weights, and ONNX Runtime on its export."""

from __future__ import annotations

import os
import warnings

import numpy as np

import npresnet
from npresnet.fast import fuse

TOLERANCE = {"float32": 1e-3, "float64": 1e-9}
"""Largest ``max|a - b| / max|b|`` against PyTorch's logits an engine may show before it is refused."""

TF32_TOLERANCE = 5e-2
"""The same bound for an engine whose GEMMs round their inputs to TF32 (10 mantissa bits, so ~5e-4 per
product, compounded over the network's depth): it is a different precision, not a wrong answer."""

TF32_ENGINES = ("torch-tf32",)

FAST_VARIANTS = {"fast-F4": "F4", "fast-F2": "F2", "fast-auto": "auto", "fast-im2col": False}
"""The fused path with each ``winograd`` choice of :func:`npresnet.fast.fuse`, as engines of their own, so that
one run times them side by side (``bench.py --winograd F4 F2 im2col``); ``fast`` is the default choice."""


def build_model(arch: str, dtype: str, seed: int = 0):
    """An npresnet model with seeded weights and randomised batch-norm statistics and affine parameters."""
    model = npresnet.ARCHITECTURES[arch](rng=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for module in model.modules():
        if isinstance(module, npresnet.nn.BatchNorm2d):
            c = module.num_features
            module.weight[...] = rng.uniform(0.5, 1.5, c)
            module.bias[...] = rng.normal(0, 0.1, c)
            module.running_mean[...] = rng.normal(0, 0.1, c)
            module.running_var[...] = rng.uniform(0.5, 2.0, c)
    return model


def torch_model(arch: str, model, dtype: str):
    """The torchvision model with ``model``'s weights, in eval mode."""
    import torch
    import torchvision

    tv = getattr(torchvision.models, arch)(weights=None)
    tv.load_state_dict({k: torch.from_numpy(np.array(npresnet.to_numpy(v))) for k, v in model.state_dict().items()})
    return tv.to(getattr(torch, dtype)).eval()


def onnx_session(tv, x_shape, dtype: str, threads: int, directory: str):
    """Export ``tv`` to ONNX (dynamic batch) and open a CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort
    import torch

    path = os.path.join(directory, "model.onnx")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            tv,
            (torch.zeros(x_shape, dtype=getattr(torch, dtype)),),
            path,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}},
            dynamo=False,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # ORT's idle workers otherwise spin and keep a core busy between its calls: with them spinning,
    # the fast path timed 1.45× slower in this process (368 vs 254 ms, ResNet-18 batch 8).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def make_engines(arch, model, x_shape, dtype, threads, wanted, directory, backend="numpy"):
    """``{name: callable(x) -> NumPy logits}`` for the wanted engines that are available here."""
    engines, skipped = {}, {}
    xp_model = model.to(backend) if backend != "numpy" else model
    fused = fuse(xp_model) if "fast" in wanted else None
    sync = _synchroniser(backend)
    if "reference" in wanted:
        engines["reference"] = lambda x: sync(npresnet.to_numpy(xp_model(x)))
    if "fast" in wanted:
        engines["fast"] = lambda x: sync(npresnet.to_numpy(fused(x)))
    for name, winograd in FAST_VARIANTS.items():
        if name in wanted:
            variant = fuse(xp_model, winograd=winograd)
            engines[name] = lambda x, f=variant: sync(npresnet.to_numpy(f(x)))
    need_torch = bool({"torch", "torch-tf32", "onnxruntime"} & set(wanted))
    try:
        import torch

        torch.set_num_threads(threads)
        tv = torch_model(arch, model, dtype) if need_torch else None
    except ImportError as exc:
        tv = None
        skipped["torch"] = skipped["torch-tf32"] = skipped["onnxruntime"] = f"torch not importable ({exc})"
    if tv is not None and backend == "cupy":  # like for like: PyTorch on the same GPU, input already there
        engines.update(_torch_gpu_engines(tv, wanted))
    elif tv is not None and "torch" in wanted:

        def run_torch(x):
            with torch.inference_mode():
                return tv(torch.from_numpy(npresnet.to_numpy(x))).numpy()

        engines["torch"] = run_torch
    if "torch-tf32" in wanted and backend != "cupy":
        skipped["torch-tf32"] = "TF32 is a GPU precision mode; it is timed with --backend cupy"
    if tv is not None and "onnxruntime" in wanted and backend == "cupy":
        skipped["onnxruntime"] = "ONNX Runtime runs on the CPU here; it is compared with --backend numpy"
    elif tv is not None and "onnxruntime" in wanted:
        try:
            session = onnx_session(tv, x_shape, dtype, threads, directory)
            engines["onnxruntime"] = lambda x: session.run(None, {"x": npresnet.to_numpy(x)})[0]
        except ImportError as exc:
            skipped["onnxruntime"] = f"onnx/onnxruntime not importable ({exc})"
    return engines, skipped


def set_torch_tf32(enabled: bool) -> None:
    """Switch PyTorch's float32 GEMMs and cuDNN convolutions between IEEE float32 and TF32, explicitly:
    torch's defaults differ between matmul (IEEE) and cuDNN (TF32), so both are always set."""
    import torch

    precision = "tf32" if enabled else "ieee"
    torch.backends.cuda.matmul.fp32_precision = precision
    torch.backends.cudnn.conv.fp32_precision = precision


def _torch_gpu_engines(tv, wanted) -> dict:
    """``torch`` (float32, TF32 off: the oracle) and ``torch-tf32`` on the GPU.

    Each engine takes the host input, keeps one device copy of the last input it saw (so the
    timed call starts from data already on the GPU, as npresnet's CuPy engines do), and returns
    the logits on the host: ``.cpu()`` waits for the GPU, like the CuPy engines' synchronise.
    """
    import torch

    tv = tv.cuda()
    last = {}

    def on_device(x):
        if last.get("host") is not x:
            last["host"], last["device"] = x, torch.from_numpy(npresnet.to_numpy(x)).cuda()
        return last["device"]

    def engine(tf32):
        def run(x):
            set_torch_tf32(tf32)
            with torch.inference_mode():
                return tv(on_device(x)).cpu().numpy()

        return run

    return {name: engine(tf32) for name, tf32 in (("torch", False), ("torch-tf32", True)) if name in wanted}


def _synchroniser(backend):
    if backend == "cupy":
        import cupy

        def sync(value):
            cupy.cuda.Device().synchronize()
            return value

        return sync
    return lambda value: value


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.abs(expected).max(initial=0.0)
    diff = np.abs(actual - expected).max(initial=0.0)
    return diff / scale if scale else diff
