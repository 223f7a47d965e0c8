"""A per-layer summary of a model: shapes, parameters, multiply-accumulates, receptive fields, memory.

Everything here is read off the real module tree by calling the model on a
:class:`~npresnet.nn.TensorSpec`: the model's own ``forward`` code runs, leaf layers
return the shape of their output without computing it, forward hooks see every
layer call, and the spec's ``tracer`` sees the residual ``+=`` and the flatten. No
weights are needed and no convolution runs.

This module is the one home of two formulas:

* :func:`conv2d_macs` / :func:`linear_macs`, the multiply-accumulate counts;
* :meth:`ReceptiveField.grow`, the receptive-field recurrence.

Conventions
-----------
MACs
    One multiply-accumulate per weight per output element of convolutions and fully
    connected layers, as torchvision's published "GFLOPS" (which are MACs: ResNet-18 at
    224×224 is 1.81 G). Batch norm, ReLU, pooling and the residual addition are not
    counted. FLOPs = 2 × MACs.
Receptive field
    Per axis: ``size`` (pixels of the input that one output element sees), ``jump``
    (input pixels between neighbouring output elements) and ``start`` (centre of
    element 0's field, in input pixel coordinates). A layer with kernel ``k``, stride
    ``s``, padding ``p``, dilation ``d`` maps ``size → size + (k-1)·d·jump``,
    ``jump → jump·s``, ``start → start + ((k-1)·d/2 - p)·jump``. The field is the
    theoretical one, on an unbounded input: near the border part of it lies in the
    padding. A residual addition's field is the union of the fields of its two
    operands; in a ResNet block both are centred alike, so this is the max of the two
    sizes, i.e. the main path's. Global average pooling sees its whole input.
Peak activation memory
    Bytes of activations alive at once during an inference pass, maximised over
    operations. A tensor is born when the operation producing it runs and freed after
    the last operation that reads it (the model's input included; the output lives to
    the end). During an operation its inputs and its output are alive together. An
    in-place ReLU and the in-place residual ``out += identity`` write into their input
    (no new tensor); the flatten is a view. Weights and the im2col workspace of an
    implementation are not counted.
Layer counts
    The paper's depth counts convolutions and fully connected layers on the main path
    (18 for ResNet-18); the 1×1 projection convolutions of the shortcuts (modules under
    a ``downsample``) are counted separately.
"""
from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass

from .nn import AdaptiveAvgPool2d, Conv2d, Linear, MaxPool2d, Module, Sequential, TensorSpec
from .shapes import pair

__all__ = [
    "ReceptiveField", "LayerRow", "Summary", "summarize", "build_model", "conv2d_macs", "linear_macs",
    "format_table", "format_markdown", "parse_input_size",
]


# ---------------------------------------------------------------------------- formulas
def conv2d_macs(output_shape, in_channels: int, kernel_size, groups: int = 1) -> int:
    """Multiply-accumulates of a convolution: each output element sums ``C_in/groups · kh · kw`` products.

    Parameters
    ----------
    output_shape : tuple of int, (N, C_out, H_out, W_out)
    in_channels, groups : int
    kernel_size : (kh, kw)
    """
    kh, kw = kernel_size
    return math.prod(output_shape) * (in_channels // groups) * kh * kw


def linear_macs(output_shape, in_features: int) -> int:
    """Multiply-accumulates of ``x @ W.T``: each output element sums ``in_features`` products."""
    return math.prod(output_shape) * in_features


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output element, per axis ``(h, w)``; see the module docstring."""

    size: tuple = (1, 1)
    jump: tuple = (1, 1)
    start: tuple = (0.0, 0.0)

    def grow(self, kernel_size, stride, padding, dilation=(1, 1)) -> "ReceptiveField":
        """The field after a sliding-window layer (convolution or pooling) — the recurrence."""
        size, jump, start = [], [], []
        for r, j, c, k, s, p, d in zip(self.size, self.jump, self.start, kernel_size, stride, padding, dilation):
            size.append(r + (k - 1) * d * j)
            jump.append(j * s)
            start.append(c + ((k - 1) * d / 2 - p) * j)
        return ReceptiveField(tuple(size), tuple(jump), tuple(start))

    def union(self, other: "ReceptiveField") -> "ReceptiveField":
        """The field of ``a + b`` (elementwise): the union of both operands' fields."""
        size, start = [], []
        for r1, c1, r2, c2 in zip(self.size, self.start, other.size, other.start):
            lo = min(c1 - (r1 - 1) / 2, c2 - (r2 - 1) / 2)
            hi = max(c1 + (r1 - 1) / 2, c2 + (r2 - 1) / 2)
            size.append(int(round(hi - lo)) + 1)
            start.append((lo + hi) / 2)
        jump = tuple(max(a, b) for a, b in zip(self.jump, other.jump))  # equal for same-shape operands
        return ReceptiveField(tuple(size), jump, tuple(start))

    def span(self, index: int, axis: int) -> tuple[int, int]:
        """First and last input pixel (inclusive, unclipped) seen by output element ``index`` along ``axis``."""
        centre = self.start[axis] + index * self.jump[axis]
        half = (self.size[axis] - 1) / 2
        return int(round(centre - half)), int(round(centre + half))


def _layer_field(module: Module, rf: ReceptiveField, in_shape) -> ReceptiveField:
    """Receptive field after ``module``, given the field ``rf`` of its input of shape ``in_shape``."""
    if isinstance(module, Conv2d):
        padding = (0, 0) if module.padding == "valid" else module.padding
        if padding == "same":  # stride 1: pads (d·(k-1))/2 on each side, centred
            padding = tuple((d * (k - 1)) / 2 for k, d in zip(module.kernel_size, module.dilation))
        return rf.grow(module.kernel_size, module.stride, padding, module.dilation)
    if isinstance(module, MaxPool2d):
        return rf.grow(module.kernel_size, module.stride, module.padding, module.dilation)
    if isinstance(module, AdaptiveAvgPool2d):
        # Output o of n bins: widest bin ceil(n/o), bins start n//o apart (exact when o divides n,
        # always for global pooling, o = 1, whose single bin is the whole input).
        out = module.output_size if isinstance(module.output_size, (tuple, list)) else (module.output_size,) * 2
        n = in_shape[2:]
        out = [o if o is not None else size for o, size in zip(out, n)]
        kernel = [-(-size // o) for size, o in zip(n, out)]
        stride = [max(size // o, 1) for size, o in zip(n, out)]
        return rf.grow(kernel, stride, (0, 0))
    return rf  # batch norm, ReLU, Linear: elementwise or all-to-all, the field does not change


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True)
class LayerRow:
    """One row of the summary: a layer call, or a block/stage folded by ``depth``.

    ``output_shape`` omits the batch axis: ``(C, H, W)``, or ``(features,)`` after the flatten.
    ``macs`` are for the whole batch.
    """

    name: str
    type: str
    output_shape: tuple
    params: int
    macs: int
    receptive_field: ReceptiveField
    folded: bool = False


@dataclass(frozen=True)
class Summary:
    """What :func:`summarize` found. Counts are exact integers; ``total_macs`` is for the whole batch."""

    arch: str
    input_size: tuple          # (H, W)
    batch: int
    dtype: str
    layers: tuple              # of LayerRow
    total_params: int
    total_macs: int
    peak_activation_bytes: int
    peak_at: str               # the operation during which the peak occurs
    depth: int                 # the paper's count: main-path convolutions + fully connected layers
    num_convs: int
    num_projections: int       # 1×1 shortcut convolutions (under a ``downsample``)
    num_linear: int
    display_depth: int | None = None
    maxpool_padding: int | None = None

    @property
    def total_flops(self) -> int:
        """FLOPs = 2 × MACs (a multiply and an add)."""
        return 2 * self.total_macs

    @property
    def weighted_layers(self) -> int:
        """Every convolution and fully connected layer, shortcut projections included."""
        return self.num_convs + self.num_linear

    def to_dict(self) -> dict:
        """The JSON object of ``npresnet summary --format json``."""
        return {
            "arch": self.arch,
            "input_size": list(self.input_size),
            "layers": [
                {
                    "name": row.name,
                    "type": row.type,
                    "output_shape": list(row.output_shape),
                    "params": row.params,
                    "macs": row.macs,
                    "receptive_field": {"size": list(row.receptive_field.size),
                                        "jump": list(row.receptive_field.jump)},
                }
                for row in self.layers
            ],
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "depth": self.depth,
            # Beyond the required keys:
            "batch": self.batch,
            "total_flops": self.total_flops,
            "peak_activation_bytes": self.peak_activation_bytes,
            "weighted_layers": self.weighted_layers,
            "projection_convs": self.num_projections,
        }


# ---------------------------------------------------------------------------- building
def parse_input_size(value) -> tuple[int, int]:
    """``224``, ``"224"``, ``"300x200"`` (H×W), ``(300, 200)`` → ``(H, W)``; ValueError otherwise."""
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"input size must be H or HxW with positive integers (e.g. 224 or 300x200), got {value!r}")
        value = tuple(int(p) for p in parts) if len(parts) == 2 else int(parts[0])
    try:
        h, w = pair(value, "input_size")
    except TypeError:
        raise ValueError(f"input size must be an int or (H, W), got {value!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"input size must be positive, got {h}x{w}")
    return h, w


def build_model(arch: str, **kwargs) -> Module:
    """Build ``npresnet.ARCHITECTURES[arch](**kwargs)``, uninitialised unless ``init=True`` is passed.

    Callers need the architecture (its shapes, or arrays about to be loaded), not random
    weights, so nothing is drawn. An unknown name gets a ValueError suggesting close ones.
    """
    from .models import ARCHITECTURES

    if arch not in ARCHITECTURES:
        close = difflib.get_close_matches(str(arch).lower(), ARCHITECTURES, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown architecture {arch!r}{hint} (known: {', '.join(ARCHITECTURES)})")
    kwargs.setdefault("init", False)
    return ARCHITECTURES[arch](**kwargs)


@dataclass
class _Event:
    kind: str                  # "layer" (a leaf module call), "end" (a container returned), or a tracer op
    name: str
    module: Module | None
    inputs: tuple              # buffer ids read
    output: int | None         # buffer id written (may equal an input: in place)
    output_spec: TensorSpec | None
    rf: ReceptiveField | None  # field of the output, as it was right after this event
    macs: int = 0


class _Recorder:
    """Follows one spec pass: events in execution order, a buffer per distinct tensor, fields per tensor."""

    def __init__(self):
        self.events: list[_Event] = []
        self.buffer_bytes: list[int] = []
        self._buffer: dict[int, int] = {}   # id(spec) -> buffer id
        self._field: dict[int, ReceptiveField] = {}
        self._alive_specs = []               # keep specs referenced so their ids stay unique

    def register(self, spec: TensorSpec, alias_of: TensorSpec | None = None, rf=None) -> int:
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

    def buffer(self, spec) -> int:
        return self._buffer[id(spec)]

    def field_of(self, spec) -> ReceptiveField:
        return self._field[id(spec)]

    def tracer(self, op, inputs, output):
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
        self.events.append(_Event(op, "", None, tuple(self.buffer(s) for s in specs), out, output, rf))

    def hook(self, name):
        def record(module, x, out):
            if module._children:  # a container returned: its rows fold at this point
                self.events.append(_Event("end", name, module, (), None, out, self.field_of(out)))
                return
            rf = _layer_field(module, self.field_of(x), x.shape)
            alias = x if out is x else None  # in-place ReLU returns its input
            buf = self.register(out, alias_of=alias, rf=rf)
            self._field[id(out)] = rf
            macs = 0
            if isinstance(module, Conv2d):
                macs = conv2d_macs(out.shape, module.in_channels, module.kernel_size, module.groups)
            elif isinstance(module, Linear):
                macs = linear_macs(out.shape, module.in_features)
            self.events.append(_Event("layer", name, module, (self.buffer(x),), buf, out, rf, macs))
        return record


def _layer_type(module: Module) -> str:
    """``Conv2d 3×3 s2 p1``, ``MaxPool2d 3×3 s2 p1``, ``Linear 512→1000``, or the class name."""
    kind = type(module).__name__
    if isinstance(module, (Conv2d, MaxPool2d)):
        (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
        text = f"{kind} {kh}×{kw}"
        if (sh, sw) != (1, 1):
            text += f" s{sh}" if sh == sw else f" s{sh},{sw}"
        pad = module.padding
        if isinstance(pad, str):
            text += f" {pad}"
        elif pad != (0, 0):
            text += f" p{pad[0]}" if pad[0] == pad[1] else f" p{pad[0]},{pad[1]}"
        if (dh, dw) != (1, 1):
            text += f" d{dh}" if dh == dw else f" d{dh},{dw}"
        if getattr(module, "groups", 1) != 1:
            text += f" g{module.groups}"
        return text
    if isinstance(module, Linear):
        return f"{kind} {module.in_features}→{module.out_features}"
    if isinstance(module, AdaptiveAvgPool2d):
        size = module.output_size if isinstance(module.output_size, (tuple, list)) else (module.output_size,) * 2
        return f"{kind} {size[0]}×{size[1]}"
    if isinstance(module, Sequential) and len(module):
        types = [type(m).__name__ for m in module]
        if len(set(types)) == 1:
            return f"Sequential {len(types)}×{types[0]}"
        return "Sequential " + "+".join(_layer_type(m).replace(" ", "") if not m._children else type(m).__name__
                                        for m in module)
    return kind


def summarize(model_or_arch, input_size=224, *, batch: int = 1, depth: int | None = None,
              maxpool_padding: int = 1, dtype="float32", in_channels: int = 3) -> Summary:
    """Summarise a model layer by layer from one shape-only pass.

    Parameters
    ----------
    model_or_arch : Module or str
        A model (e.g. ``npresnet.resnet50()``) or a name from ``npresnet.ARCHITECTURES``.
    input_size : int, (H, W) or str ``"HxW"``
    batch : int
        N; MACs and activation memory are for the whole batch.
    depth : int, optional
        Fold rows: 1 shows the stem layers and the four stages, 2 the blocks, 3 the layers
        inside blocks (a shortcut ``downsample`` folded), None or ≥ 4 every layer.
    maxpool_padding : int
        Stem variant when building by name: 1 (torchvision) or 0.
    dtype : str
        Activation dtype, for the memory figure (a given model's own dtype wins).
    in_channels : int
        C of the (N, C, H, W) input.

    Returns
    -------
    Summary

    Raises
    ------
    ValueError
        Unknown architecture (with close names), a bad size, batch or depth, or an input
        too small for the network (naming the layer and the smallest size that works).
    """
    input_size = parse_input_size(input_size)
    if not isinstance(batch, numbers.Integral) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if depth is not None and (not isinstance(depth, numbers.Integral) or depth < 1):
        raise ValueError(f"depth must be a positive int or None, got {depth!r}")
    if isinstance(model_or_arch, Module):
        model, arch = model_or_arch, type(model_or_arch).__name__
        dtype = model.dtype or dtype
        maxpool_padding = None
    else:
        arch = str(model_or_arch)
        model = build_model(arch, maxpool_padding=maxpool_padding, dtype=dtype)
    events, buffer_bytes, output_buffer = _trace(model, (batch, in_channels, *input_size), dtype, arch)
    rows = _rows(model, events, depth)
    peak, peak_at = _peak_memory(events, buffer_bytes, output_buffer)

    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, Conv2d)]
    projections = sum(1 for n, _ in convs if "downsample" in n.split("."))
    linears = sum(1 for m in model.modules() if isinstance(m, Linear))
    return Summary(
        arch=arch, input_size=input_size, batch=int(batch), dtype=str(TensorSpec((1,), dtype).dtype),
        layers=tuple(rows), total_params=model.num_parameters(),
        total_macs=sum(e.macs for e in events), peak_activation_bytes=peak, peak_at=peak_at,
        depth=len(convs) - projections + linears, num_convs=len(convs), num_projections=projections,
        num_linear=linears, display_depth=depth, maxpool_padding=maxpool_padding,
    )


def _trace(model: Module, shape, dtype, arch):
    """Call ``model`` on a spec of ``shape`` with hooks on every module; return events and buffers."""
    recorder = _Recorder()
    x = TensorSpec(shape, dtype, recorder.tracer)
    recorder.register(x, rf=ReceptiveField())
    handles = [m.register_forward_hook(recorder.hook(name)) for name, m in model.named_modules()]
    failure = None
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


def _smallest_input(model, shape, dtype, limit=512):
    """Smallest (H, W) the model accepts, found by trying sizes (each try is a shape-only pass)."""
    def fits(h, w):
        try:
            model(TensorSpec((1, shape[1], h, w), dtype))
            return True
        except ValueError:
            return False
    h = next((n for n in range(1, limit) if fits(n, limit)), None)
    w = next((n for n in range(1, limit) if fits(limit, n)), None)
    return (h, w) if h and w and fits(h, w) else None


def _rows(model: Module, events, depth):
    """Layer rows in execution order, folding modules deeper than ``depth`` into their ancestor."""
    ends = {e.name: e for e in events if e.kind == "end"}
    modules = dict(model.named_modules())
    rows, seen_params = [], set()
    current = None  # (folded name, accumulated macs) of the row being folded
    for event in events:
        if event.kind != "layer":
            continue
        parts = event.name.split(".")
        if depth is None or len(parts) <= depth:
            current = None
            first = id(event.module) not in seen_params
            seen_params.add(id(event.module))
            rows.append(LayerRow(event.name, _layer_type(event.module), tuple(event.output_spec.shape[1:]),
                                 event.module.num_parameters() if first else 0, event.macs, event.rf))
            continue
        name = ".".join(parts[:depth])
        if current is not None and current[0] == name:
            current[1] += event.macs
            rows[-1] = _fold_row(name, modules[name], ends[name], current[1])
        else:
            current = [name, event.macs]
            rows.append(_fold_row(name, modules[name], ends[name], event.macs))
    return rows


def _fold_row(name, module, end, macs):
    return LayerRow(name, _layer_type(module), tuple(end.output_spec.shape[1:]), module.num_parameters(), macs,
                    end.rf, folded=True)


def _peak_memory(events, buffer_bytes, output_buffer):
    """Largest total size of buffers alive during one operation; see the module docstring."""
    ops = [e for e in events if e.kind != "end"]
    last_use = {}
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


# ---------------------------------------------------------------------------- text
def _si(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _shape_text(shape) -> str:
    if len(shape) == 3:
        return f"{shape[0]}@{shape[1]}×{shape[2]}"
    return "×".join(str(s) for s in shape)


def _field_text(rf: ReceptiveField) -> str:
    size = str(rf.size[0]) if rf.size[0] == rf.size[1] else f"{rf.size[0]}×{rf.size[1]}"
    jump = str(rf.jump[0]) if rf.jump[0] == rf.jump[1] else f"{rf.jump[0]}×{rf.jump[1]}"
    return f"{size} / {jump}"


_HEADERS = ("Layer", "Type", "Output C@H×W", "Params", "MACs", "RF size / jump")


def _cells(summary: Summary):
    for row in summary.layers:
        yield (row.name, row.type, _shape_text(row.output_shape), f"{row.params:,}" if row.params else "–",
               _si(row.macs) if row.macs else "–", _field_text(row.receptive_field))


def _totals(summary: Summary) -> list[str]:
    h, w = summary.input_size
    return [
        f"Total params: {summary.total_params:,}",
        f"Total MACs: {_si(summary.total_macs)} ({summary.total_macs:,}; convolutions and fc;"
        f" FLOPs = 2 × MACs = {_si(summary.total_flops)})",
        f"Peak activation memory: {_bytes(summary.peak_activation_bytes)}"
        f" ({summary.peak_activation_bytes:,} bytes, {summary.dtype}, during {summary.peak_at})",
        f"Depth: {summary.depth} layers as the paper counts (convolutions and fc on the main path);"
        f" {summary.weighted_layers} weighted layers = {summary.num_convs} convolutions"
        f" ({summary.num_projections} are 1×1 shortcut projections) + {summary.num_linear} fc",
    ]


def _title(summary: Summary) -> str:
    h, w = summary.input_size
    stem = "" if summary.maxpool_padding in (None, 1) else f", stem max pool padding {summary.maxpool_padding}"
    return f"{summary.arch}: input {summary.batch}×3×{h}×{w}{stem}; MACs for the whole batch"


def format_table(summary: Summary) -> str:
    """A plain-text table with a title and the totals."""
    cells = list(_cells(summary))
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(_HEADERS)]
    right = {3, 4}

    def line(values):
        return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))

    rule = "─" * len(line(_HEADERS))
    out = [_title(summary), rule, line(_HEADERS), rule, *(line(c) for c in cells), rule, *_totals(summary)]
    return "\n".join(s.rstrip() for s in out)


def format_markdown(summary: Summary) -> str:
    """A GitHub-flavoured Markdown table followed by the totals as a list."""
    out = [f"**{_title(summary)}**", "", "| " + " | ".join(_HEADERS) + " |",
           "|" + "|".join("---:" if i in (3, 4) else "---" for i in range(len(_HEADERS))) + "|"]
    out += ["| " + " | ".join(f"`{c[0]}`" if j == 0 else c[j] for j in range(len(c))) + " |" for c in _cells(summary)]
    out += [""] + [f"- {t}" for t in _totals(summary)]
    return "\n".join(out)
