"""The fused path's profiling hook: per-layer and per-phase timings of one forward pass.

:meth:`npresnet.fast.FusedResNet.profile` runs a forward pass with a :class:`PhaseClock`
and returns one :class:`LayerTime` per step (stem, max pool, every convolution, head), so
benchmarks read where the time goes from the library itself instead of re-implementing it.
Timing adds one ``time.perf_counter()`` call per phase of each chunk; on CuPy each mark
synchronises the device first, so the phases are real but the whole pass is slower than
an untimed one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["PhaseClock", "LayerTime"]


class LayerTime(NamedTuple):
    """One step of a profiled forward pass.

    Attributes
    ----------
    name : str
        The torchvision module name of the step (``"layer2.0.conv1"``, ``"maxpool"``, ``"avgpool+fc"``).
    kind : str
        ``"im2col"``, ``"pointwise"`` (a 1×1 stride-1 convolution: one product, no columns),
        ``"winograd"``, ``"maxpool"`` or ``"head"``.
    in_shape, out_shape : tuple of int
        NHWC activation shapes (the stem's input is NCHW, the head's output (N, classes)).
    seconds : float
        Wall time of the step.
    phases : dict
        Seconds by phase for convolutions: ``"gather"`` (im2col columns or Winograd tiles),
        ``"transform"`` (Winograd only: the input and output transforms), ``"gemm"`` (the
        products), ``"epilogue"`` (bias, residual, ReLU, Winograd output scatter).
    macs : int
        Multiply-accumulates of the direct computation (for a Winograd step, of the direct
        convolution it replaces), 0 for pooling.
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    seconds: float
    phases: dict[str, float]
    macs: int


class PhaseClock:
    """Accumulates wall time by phase: ``clock(phase)`` charges the time since the previous mark to ``phase``.

    Parameters
    ----------
    sync : callable, optional
        Called before each reading of the clock (a device synchronisation on CuPy).
    """

    def __init__(self, sync: Callable[[], object] | None = None) -> None:
        self.sync: Callable[[], object] = sync or (lambda: None)
        self.phases: dict[str, float] = {}
        self.start()

    def start(self) -> None:
        """Forget the phases and restart the clock."""
        self.sync()
        self.phases = {}
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        """Charge the time since the last call to ``phase`` (after synchronising the device, if any)."""
        self.sync()
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now

    def elapsed(self) -> float:
        """Seconds charged since :meth:`start`."""
        return sum(self.phases.values(), 0.0)
