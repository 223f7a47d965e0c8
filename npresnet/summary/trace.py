"""The trace recorder: one shape-only pass of the real model, as a list of events.

The model is called on a :class:`~npresnet.nn.TensorSpec`: its own ``forward`` code
runs, leaf layers return the shape of their output without computing it, forward hooks
see every layer call (and every container's return), and the spec's ``tracer`` sees the
residual ``+=`` and the flatten. Each event records the buffers it reads and writes, so
:mod:`.memory` can follow tensor lifetimes, and the receptive field of its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..nn import Conv2d, Linear, Module, TensorSpec
from .formulas import ReceptiveField, conv2d_macs, layer_field, linear_macs

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Event", "Recorder", "trace"]


@dataclass
class Event:
    """One step of a traced pass: a leaf layer's call, a container's return, or a tracer op."""

    kind: str  # "layer" (a leaf module call), "end" (a container returned), or a tracer op
    name: str
    module: Module | None  # None for a tracer op
    inputs: tuple[int, ...]  # buffer ids read
    output: int | None  # buffer id written (may equal an input: in place)
    output_spec: TensorSpec
    rf: ReceptiveField  # field of the output, as it was right after this event
    macs: int = 0


class Recorder:
    """Follows one spec pass: events in execution order, a buffer per distinct tensor, fields per tensor."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.buffer_bytes: list[int] = []
        self._buffer: dict[int, int] = {}  # id(spec) -> buffer id
        self._field: dict[int, ReceptiveField] = {}
        self._alive_specs: list[TensorSpec] = []  # keep specs referenced so their ids stay unique

    def register(self, spec: TensorSpec, alias_of: TensorSpec | None = None, rf: ReceptiveField | None = None) -> int:
        """Give ``spec`` a buffer id (``alias_of``'s when it shares that buffer) and, if given, its field ``rf``."""
        if id(spec) not in self._buffer:
            self._alive_specs.append(spec)
            if alias_of is not None:
                self._buffer[id(spec)] = self._buffer[id(alias_of)]
            else:
                self._buffer[id(spec)] = len(self.buffer_bytes)
                self.buffer_bytes.append(spec.nbytes)
        if rf is not None:
            self._field[id(spec)] = rf
        return self._buffer[id(spec)]

    def buffer(self, spec: TensorSpec) -> int:
        """Return the buffer id of a registered ``spec``."""
        return self._buffer[id(spec)]

    def field_of(self, spec: TensorSpec) -> ReceptiveField:
        """Return the receptive field of a registered ``spec``."""
        return self._field[id(spec)]

    def tracer(self, op: str, inputs: tuple[Any, ...], output: TensorSpec) -> None:
        """Record an array operation a ``forward`` ran on specs (``TensorSpec``'s tracer callback)."""
        specs = [s for s in inputs if isinstance(s, TensorSpec)]
        if op == "reshape":
            rf = self.field_of(specs[0])
            out = self.register(output, alias_of=specs[0], rf=rf)
        else:  # "add" (new tensor) or "iadd" (writes into its first operand)
            rf = self.field_of(specs[0])
            for s in specs[1:]:
                rf = rf.union(self.field_of(s))
            out = self.register(output, alias_of=specs[0] if op == "iadd" else None, rf=rf)
            if op == "iadd":
                self._field[id(output)] = rf
        self.events.append(Event(op, "", None, tuple(self.buffer(s) for s in specs), out, output, rf))

    def hook(self, name: str) -> Callable[[Module, TensorSpec, TensorSpec], None]:
        """Return the forward hook that records module ``name``'s calls."""

        def record(module: Module, x: TensorSpec, out: TensorSpec) -> None:
            if module._children:  # a container returned: its rows fold at this point
                self.events.append(Event("end", name, module, (), None, out, self.field_of(out)))
                return
            rf = layer_field(module, self.field_of(x), x.shape)
            alias = x if out is x else None  # in-place ReLU returns its input
            buf = self.register(out, alias_of=alias, rf=rf)
            self._field[id(out)] = rf
            macs = 0
            if isinstance(module, Conv2d):
                macs = conv2d_macs(out.shape, module.in_channels, module.kernel_size, module.groups)
            elif isinstance(module, Linear):
                macs = linear_macs(out.shape, module.in_features)
            self.events.append(Event("layer", name, module, (self.buffer(x),), buf, out, rf, macs))

        return record


def trace(model: Module, shape: tuple[int, int, int, int], dtype: Any, arch: str) -> tuple[list[Event], list[int], int]:
    """Call ``model`` on a spec of ``shape`` (N, C, H, W) with hooks on every module.

    Returns
    -------
    (events, buffer_bytes, output_buffer)
        The events in execution order, the size in bytes of each buffer (buffer 0 is the
        input), and the buffer id of the model's output.

    Raises
    ------
    ValueError
        The input is too small for ``model``: names the last layer that ran and the
        smallest input size that works.
    """
    recorder = Recorder()
    x = TensorSpec(shape, dtype, recorder.tracer)
    recorder.register(x, rf=ReceptiveField())
    handles = [m.register_forward_hook(recorder.hook(name)) for name, m in model.named_modules()]
    failure: ValueError | None = None
    try:
        out = model(x)
    except ValueError as err:
        failure = err
    finally:
        for h in handles:
            h.remove()
    if failure is not None:
        last = next((e.name for e in reversed(recorder.events) if e.kind == "layer"), None)
        where = f"after {last}" if last else "in the first layer"
        smallest = _smallest_input(model, shape, dtype)
        hint = f"; the smallest input it accepts is {smallest[0]}x{smallest[1]}" if smallest else ""
        raise ValueError(f"input {shape[2]}x{shape[3]} is too small for {arch} ({where}: {failure}){hint}")
    return recorder.events, recorder.buffer_bytes, recorder.buffer(out)


def _smallest_input(model: Module, shape: tuple[int, ...], dtype: Any, limit: int = 512) -> tuple[int, int] | None:
    """Smallest (H, W) the model accepts, found by trying sizes (each try is a shape-only pass)."""

    def fits(h: int, w: int) -> bool:
        try:
            model(TensorSpec((1, shape[1], h, w), dtype))
            return True
        except ValueError:
            return False

    h = next((n for n in range(1, limit) if fits(n, limit)), None)
    w = next((n for n in range(1, limit) if fits(limit, n)), None)
    return (h, w) if h and w and fits(h, w) else None
