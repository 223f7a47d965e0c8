"""Peak activation memory of an inference pass, from the trace's buffer lifetimes.

Bytes of activations alive at once, maximised over operations. A tensor is born when
the operation producing it runs and freed after the last operation that reads it (the
model's input included; the output lives to the end). During an operation its inputs
and its output are alive together. An in-place ReLU and the in-place residual
``out += identity`` write into their input (no new tensor); the flatten is a view.
Weights and the im2col workspace of an implementation are not counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .trace import Event

__all__ = ["peak_memory"]


def peak_memory(events: Sequence[Event], buffer_bytes: Sequence[int], output_buffer: int) -> tuple[int, str]:
    """Largest total size of buffers alive during one operation, and the operation's name.

    Parameters
    ----------
    events : list of :class:`~npresnet.summary.trace.Event`, in execution order
    buffer_bytes : list of int
        Size of each buffer; buffer 0 is the model's input.
    output_buffer : int
        The model's output, alive to the end.
    """
    ops = [e for e in events if e.kind != "end"]
    last_use: dict[int, int] = {}
    for i, e in enumerate(ops):
        for b in e.inputs:
            last_use[b] = i
    alive = {0: buffer_bytes[0]}  # the model's input
    peak, peak_at = buffer_bytes[0], "input"
    for i, e in enumerate(ops):
        if e.output is not None:
            alive[e.output] = buffer_bytes[e.output]
        total = sum(alive.values())
        if total > peak:
            peak, peak_at = total, e.name or e.kind
        for b in e.inputs:
            if last_use.get(b) == i and b != output_buffer and b != e.output:
                alive.pop(b, None)
    return peak, peak_at
