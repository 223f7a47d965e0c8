"""The module tree: parameters held as backend arrays, torchvision's ``state_dict`` keys.

A :class:`Module` keeps its arrays as plain attributes, named in ``_parameter_names``
and ``_buffer_names``; child modules are attributes too, in the order they were set.
So ``model.layer2[0].downsample[1].running_var`` is an array, and the dotted path is
its ``state_dict`` key, exactly as in torchvision.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy

from ..backend import backend_name, get_array_module, to_backend, to_numpy
from ..errors import WeightsError
from .spec import TensorSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import Any

    from .._typing import Array

__all__ = ["Module", "Sequential", "capture_intermediates", "check_state_dict", "state_dict_report"]


class Module:
    """Base of every layer and model.

    Subclasses set array attributes named in ``_parameter_names`` (learned) and
    ``_buffer_names`` (running statistics, counters), and implement ``forward``.
    Leaf layers also implement ``forward_spec`` for the shape-only pass.
    """

    _parameter_names: tuple = ()
    _buffer_names: tuple = ()

    def __init__(self) -> None:
        object.__setattr__(self, "_children", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", False)
        object.__setattr__(self, "_saved", [])  # what backward needs, pushed by training-mode forwards
        object.__setattr__(self, "grads", OrderedDict())  # parameter name -> accumulated gradient

    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self._children[name] = value
        elif name in self._children:
            del self._children[name]
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ calling
    def __call__(self, x: Array | TensorSpec) -> Any:
        out = self.forward_spec(x) if isinstance(x, TensorSpec) else self.forward(x)
        for hook in tuple(self._forward_hooks.values()):
            hook(self, x, out)
        return out

    def forward(self, x: Array) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def forward_spec(self, spec: TensorSpec) -> TensorSpec:
        """Shape-only forward: containers run their real ``forward``; leaf layers override."""
        return self.forward(spec)

    # ------------------------------------------------------------------ training
    def backward(self, grad_output: Array) -> Array:
        """Gradient of the loss with respect to this module's input, given the gradient at its output.

        Leaf layers compute it with the ``*_backward`` functions of :mod:`npresnet.functional`,
        adding their parameters' gradients into :attr:`grads`; containers call their children's
        ``backward`` in the reverse order of ``forward``. Each call consumes what the matching
        training-mode forward saved (last forward first), so the activations are released as it goes.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def _save(self, *arrays):
        """In training mode, keep what ``backward`` needs (a stack: a module called twice saves twice)."""
        if self.training:
            self._saved.append(arrays)

    def _pop_saved(self):
        if not self._saved:
            raise RuntimeError(
                f"{type(self).__name__}.backward called without a matching forward in training mode "
                f"(call model.train() before the forward pass, and backward once per forward)"
            )
        return self._saved.pop()

    def _accumulate(self, name: str, grad) -> None:
        """Add ``grad`` into ``self.grads[name]``: gradients accumulate until :meth:`zero_grad`, as in torch."""
        if name in self.grads:
            self.grads[name] += grad
        else:
            self.grads[name] = grad

    def named_grads(self) -> Iterator[tuple[str, Array]]:
        """Yield ``(state_dict key, gradient)`` for every parameter that has one (torch's ``p.grad``)."""
        for prefix, module in self.named_modules():
            for name in module._parameter_names:
                grad = module.grads.get(name)
                if grad is not None and getattr(module, name) is not None:
                    yield (f"{prefix}.{name}" if prefix else name), grad

    def named_parameter_slots(self) -> Iterator[tuple[str, Module, str]]:
        """Yield ``(state_dict key, module, attribute name)`` for every parameter: where an optimiser
        reads ``getattr(module, name)`` and ``module.grads.get(name)`` and writes the update back."""
        for prefix, module in self.named_modules():
            for name in module._parameter_names:
                if getattr(module, name) is not None:
                    yield (f"{prefix}.{name}" if prefix else name), module, name

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (torch's ``zero_grad(set_to_none=True)``)."""
        for module in self.modules():
            module.grads.clear()

    def release_saved(self) -> None:
        """Drop the activations saved by training-mode forwards that no backward consumed."""
        for module in self.modules():
            module._saved.clear()

    def register_forward_hook(self, hook: Callable[[Module, Any, Any], None]) -> _HookHandle:
        """Call ``hook(module, input, output)`` after every forward; returns a handle with ``remove()``."""
        key = next(_hook_ids)
        self._forward_hooks[key] = hook
        return _HookHandle(self._forward_hooks, key)

    # ------------------------------------------------------------------ tree
    def named_children(self) -> Iterator[tuple[str, Module]]:
        return iter(self._children.items())

    def children(self) -> Iterator[Module]:
        return iter(self._children.values())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted_name, module)`` for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def get_submodule(self, target: str) -> Module:
        module = self
        for part in filter(None, target.split(".")):
            if part not in module._children:
                raise AttributeError(f"{type(module).__name__} has no submodule {part!r} (looking up {target!r})")
            module = module._children[part]
        return module

    def _named_arrays(self, names_attr: str):
        for prefix, module in self.named_modules():
            for name in getattr(module, names_attr):
                array = getattr(module, name)
                if array is not None:
                    yield (f"{prefix}.{name}" if prefix else name), array

    def named_parameters(self) -> Iterator[tuple[str, Array]]:
        return self._named_arrays("_parameter_names")

    def named_buffers(self) -> Iterator[tuple[str, Array]]:
        return self._named_arrays("_buffer_names")

    def parameters(self) -> Iterator[Array]:
        return (a for _, a in self.named_parameters())

    def num_parameters(self) -> int:
        """Number of learned scalars (buffers excluded), as ``sum(p.numel() for p in model.parameters())``."""
        return sum(int(a.size) for a in self.parameters())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> OrderedDict[str, Array]:
        """Arrays by torchvision key, in torchvision's order (per module: parameters, buffers, children)."""
        out = OrderedDict()
        for prefix, module in self.named_modules():
            for name in module._parameter_names + module._buffer_names:
                array = getattr(module, name)
                if array is not None:
                    out[f"{prefix}.{name}" if prefix else name] = array
        return out

    def load_state_dict(
        self, state_dict: Mapping[str, Array], strict: bool = True, check_finite: bool = False
    ) -> tuple[list[str], list[str]]:
        """Copy arrays from ``state_dict`` into the model, checking every key and shape first.

        Floating arrays are cast to the model's dtype and moved to its backend; integer
        counters (``num_batches_tracked``) stay integers.

        Parameters
        ----------
        state_dict : mapping of str to array
        strict : bool
            Require exactly the model's keys. When False, missing and unexpected keys are
            reported in the return value instead; mis-shaped keys are always an error.
        check_finite : bool
            Also reject NaN or infinite values.

        Returns
        -------
        (list of str, list of str)
            The missing and the unexpected keys (empty when ``strict``).

        Raises
        ------
        WeightsError
            Listing, in one message, every missing, unexpected, mis-shaped, wrongly typed
            or non-finite entry.
        """
        own = self.state_dict()
        missing, unexpected, problems = check_state_dict(own, state_dict, check_finite=check_finite)
        lines = state_dict_report(missing, unexpected, problems) if strict else state_dict_report([], [], problems)
        count = len(problems) + (len(missing) + len(unexpected) if strict else 0)
        if lines:
            raise WeightsError(
                f"state_dict does not fit {type(self).__name__} ({count} problem(s)):\n  " + "\n  ".join(lines)
            )
        for key, target in own.items():
            if key not in state_dict:
                continue
            module_name, _, attr = key.rpartition(".")
            module = self.get_submodule(module_name)
            value = to_numpy(state_dict[key]).astype(target.dtype, copy=True)
            object.__setattr__(module, attr, to_backend(value, backend_name(target)))
        return missing, unexpected

    # ------------------------------------------------------------------ moving
    def to(self, backend: str | None = None, dtype: Any = None) -> Module:
        """Move every array to ``backend`` (``"numpy"``/``"cupy"``) and/or cast floating ones to ``dtype``.

        Returns self."""
        for _, module in self.named_modules():
            for name in module._parameter_names + module._buffer_names:
                array = getattr(module, name)
                if array is None:
                    continue
                if dtype is not None and array.dtype.kind == "f":
                    array = array.astype(dtype)
                if backend is not None:
                    array = to_backend(array, backend)
                object.__setattr__(module, name, array)
        return self

    @property
    def dtype(self) -> numpy.dtype | None:
        """dtype of the first floating parameter (None for a module without parameters)."""
        return next((a.dtype for a in self.parameters() if a.dtype.kind == "f"), None)

    @property
    def backend(self) -> str:
        """``"numpy"`` or ``"cupy"``: where the parameters live."""
        return next((backend_name(a) for a in self.parameters()), "numpy")

    def train(self, mode: bool = True) -> Module:
        """Set training mode (batch norm uses batch statistics and updates running ones) on every module."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
            if not mode:
                module._saved.clear()  # nothing saved for a backward that will not come
        return self

    def eval(self) -> Module:
        """Inference mode, the default for npresnet models; drops any saved activations."""
        return self.train(False)

    # ------------------------------------------------------------------ display
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._children.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n  " + "\n  ".join(lines) + "\n)" if lines else ")")


_hook_ids = itertools.count()


class _HookHandle:
    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


class Sequential(Module):
    """Modules applied in order; children are named ``"0"``, ``"1"``, … as in torch."""

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            setattr(self, str(index), module)

    def __getitem__(self, index: int) -> Module:
        return list(self._children.values())[index]

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._children.values())

    def forward(self, x: Array | TensorSpec) -> Any:
        for module in self._children.values():
            x = module(x)
        return x

    def backward(self, grad_output: Array) -> Array:
        for module in reversed(self._children.values()):
            grad_output = module.backward(grad_output)
        return grad_output


def capture_intermediates(
    model: Module, x: Array | TensorSpec, names: Iterable[str] | None = None
) -> tuple[Any, OrderedDict[str, Any]]:
    """Run ``model(x)`` and return its output with the output of every named module.

    The model is not edited: forward hooks are added for the call and removed after.

    Parameters
    ----------
    model : Module
    x : array or TensorSpec, shape (N, C, H, W)
    names : iterable of str, optional
        Dotted module names to keep (``"layer2.0.downsample.0"``); default: every module.
        A single string, an empty name or a name no module has is refused.

    Returns
    -------
    (output, OrderedDict[str, array])
        Intermediates in execution order, each a copy taken when the module returned (so a
        later in-place ReLU or residual add does not change it). A module called twice
        keeps its last output.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be an npresnet Module, got {type(model).__name__}")
    if isinstance(names, (str, bytes)):  # a str is iterable: "fc" would mean modules "f" and "c"
        raise TypeError(f"names must be an iterable of module names, not a single {type(names).__name__}: [{names!r}]")
    wanted = None if names is None else set(names)
    if wanted is not None:
        bad = sorted(repr(n) for n in wanted if not isinstance(n, str) or not n)
        if bad:
            raise ValueError(
                f"names must be non-empty dotted module names (the model itself is the output), got {', '.join(bad)}"
            )
    outputs = OrderedDict()
    handles = []
    for name, module in model.named_modules():
        if name and (wanted is None or name in wanted):

            def hook(_module, _input, output, name=name):
                outputs.pop(name, None)
                outputs[name] = output if isinstance(output, TensorSpec) else output.copy()

            handles.append(module.register_forward_hook(hook))
    if wanted is not None:
        unknown = wanted - {n for n, _ in model.named_modules()}
        if unknown:
            for h in handles:
                h.remove()
            raise ValueError(f"no modules named {sorted(unknown)} in {type(model).__name__}")
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, outputs


def check_state_dict(
    expected: Mapping[str, Array], state_dict: Mapping[str, Any], check_finite: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """Compare ``state_dict`` against a model's own ``expected`` arrays.

    Returns
    -------
    (missing, unexpected, problems) : three lists of str
        Keys absent from ``state_dict``, keys the model does not have, and one line per
        entry whose shape, dtype or values cannot be loaded.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    problems = []
    for key, target in expected.items():
        if key not in state_dict:
            continue
        value = state_dict[key]
        shape = tuple(getattr(value, "shape", ()))
        dtype = getattr(value, "dtype", None)
        if dtype is None:
            problems.append(f"{key}: expected an array, got {type(value).__name__}")
            continue
        if shape != tuple(target.shape):
            problems.append(f"{key}: shape {shape} in state_dict, model expects {tuple(target.shape)}")
            continue
        if not _can_cast(dtype, target.dtype):
            problems.append(f"{key}: dtype {dtype} cannot be loaded into {target.dtype}")
            continue
        if check_finite and dtype.kind == "f":
            # Check the values the model will hold: 1e39 in float64 is finite but becomes inf in float32.
            xp = get_array_module(value)
            with numpy.errstate(over="ignore"):
                cast = xp.asarray(value).astype(target.dtype, copy=False)
            if not bool(xp.isfinite(cast).all()):
                problems.append(f"{key}: contains NaN or infinite values (as {numpy.dtype(target.dtype)})")
    return missing, unexpected, problems


def state_dict_report(
    missing: list[str], unexpected: list[str], problems: list[str], limit: int | None = 8
) -> list[str]:
    """The lines an error lists for :func:`check_state_dict`'s findings: problems, then missing, then unexpected keys.

    A kind with more than ``limit`` entries shows its first ``limit`` and a count of the
    rest (ResNet-50 weights offered to ResNet-18 would otherwise list 200 keys);
    ``limit=None`` lists everything.
    """
    lines = []
    for kind, entries in (
        ("mis-shaped or unloadable", problems),
        ("missing", [f"missing key: {k}" for k in missing]),
        ("unexpected", [f"unexpected key: {k}" for k in unexpected]),
    ):
        if limit is not None and len(entries) > limit:
            entries = entries[:limit] + [f"... and {len(entries) - limit} more {kind} keys ({len(entries)} in all)"]
        lines += entries
    return lines


def _can_cast(source, target) -> bool:
    """Floating into floating (any precision), integers into integers; nothing else.

    Integer weights for a floating parameter mean the file is not what it claims to be.
    """
    source, target = numpy.dtype(source), numpy.dtype(target)
    if target.kind == "f":
        return source.kind == "f"
    if target.kind in "iu":
        return source.kind in "iu"
    return source == target
