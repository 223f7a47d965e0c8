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

from ..backend import backend_name, to_backend
from .spec import TensorSpec
from .state_dict import check_state_dict, collect_state_dict, load_state_dict, state_dict_report

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

    _parameter_names: tuple[str, ...] = ()
    _buffer_names: tuple[str, ...] = ()
    # set in __init__ with object.__setattr__ (they are not children, whatever they hold)
    _children: OrderedDict[str, Module]
    _forward_hooks: OrderedDict[int, Callable[[Module, Any, Any], None]]
    training: bool
    _saved: list[tuple[Any, ...]]
    grads: OrderedDict[str, Array]
    """This module's own parameters' gradients by name: what ``backward`` accumulated since :meth:`zero_grad`."""

    def __init__(self) -> None:
        object.__setattr__(self, "_children", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", False)
        object.__setattr__(self, "_saved", [])  # what backward needs, pushed by training-mode forwards
        object.__setattr__(self, "grads", OrderedDict())  # parameter name -> accumulated gradient

    def __setattr__(self, name: str, value: Any) -> None:
        """Set an attribute; a :class:`Module` value becomes (or stops being) a child, in order."""
        if isinstance(value, Module):
            self._children[name] = value
        elif name in self._children:
            del self._children[name]
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ calling
    def __call__(self, x: Array | TensorSpec) -> Any:
        """Run ``forward`` (``forward_spec`` for a :class:`TensorSpec`), then the forward hooks."""
        out = self.forward_spec(x) if isinstance(x, TensorSpec) else self.forward(x)
        for hook in tuple(self._forward_hooks.values()):
            hook(self, x, out)
        return out

    def forward(self, x: Any) -> Any:
        """Compute the module's output from ``x``; every module defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def forward_spec(self, spec: TensorSpec) -> TensorSpec:
        """Shape-only forward: containers run their real ``forward``; leaf layers override."""
        out: TensorSpec = self.forward(spec)
        return out

    # ------------------------------------------------------------------ training
    def backward(self, grad_output: Array) -> Array:
        """Gradient of the loss with respect to this module's input, given the gradient at its output.

        Leaf layers compute it with the ``*_backward`` functions of :mod:`npresnet.functional`,
        adding their parameters' gradients into :attr:`grads`; containers call their children's
        ``backward`` in the reverse order of ``forward``. Each call consumes what the matching
        training-mode forward saved (last forward first), so the activations are released as it goes.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def _save(self, *arrays: Any) -> None:
        """In training mode, keep what ``backward`` needs (a stack: a module called twice saves twice)."""
        if self.training:
            self._saved.append(arrays)

    def _pop_saved(self) -> tuple[Any, ...]:
        if not self._saved:
            raise RuntimeError(
                f"{type(self).__name__}.backward called without a matching forward in training mode "
                f"(call model.train() before the forward pass, and backward once per forward)"
            )
        return self._saved.pop()

    def _accumulate(self, name: str, grad: Array) -> None:
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
        """Yield ``(state_dict key, module, attribute name)`` for every parameter.

        That is where an optimiser reads ``getattr(module, name)`` and ``module.grads.get(name)``
        and writes the update back.
        """
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
        """Yield ``(name, child)`` for the direct children, in the order they were set."""
        return iter(self._children.items())

    def children(self) -> Iterator[Module]:
        """Yield the direct children, in the order they were set."""
        return iter(self._children.values())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted_name, module)`` for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """Yield this module and every descendant, depth first."""
        return (m for _, m in self.named_modules())

    def get_submodule(self, target: str) -> Module:
        """Return the descendant at dotted path ``target`` (``""`` is the module itself)."""
        module = self
        for part in filter(None, target.split(".")):
            if part not in module._children:
                raise AttributeError(f"{type(module).__name__} has no submodule {part!r} (looking up {target!r})")
            module = module._children[part]
        return module

    def _named_arrays(self, names_attr: str) -> Iterator[tuple[str, Array]]:
        for prefix, module in self.named_modules():
            for name in getattr(module, names_attr):
                array = getattr(module, name)
                if array is not None:
                    yield (f"{prefix}.{name}" if prefix else name), array

    def named_parameters(self) -> Iterator[tuple[str, Array]]:
        """Yield ``(state_dict key, array)`` for every learned parameter."""
        return self._named_arrays("_parameter_names")

    def named_buffers(self) -> Iterator[tuple[str, Array]]:
        """Yield ``(state_dict key, array)`` for every buffer (running statistics, counters)."""
        return self._named_arrays("_buffer_names")

    def parameters(self) -> Iterator[Array]:
        """Yield every learned parameter, in ``state_dict`` order."""
        return (a for _, a in self.named_parameters())

    def num_parameters(self) -> int:
        """Return the number of learned scalars (buffers excluded): ``sum(p.numel() for p in model.parameters())``."""
        return sum(int(a.size) for a in self.parameters())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> OrderedDict[str, Array]:
        """Arrays by torchvision key, in torchvision's order (per module: parameters, buffers, children)."""
        return collect_state_dict(self)

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
        return load_state_dict(self, state_dict, strict=strict, check_finite=check_finite)

    # ------------------------------------------------------------------ moving
    def to(self, backend: str | None = None, dtype: Any = None) -> Module:
        """Move every array to ``backend`` (``"numpy"``/``"cupy"``) and/or cast floating ones to ``dtype``.

        Returns self.
        """
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
        """The dtype of the first floating parameter (None for a module without parameters)."""
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
        """Return the layer's settings, shown inside its ``repr``; empty for containers."""
        return ""

    def __repr__(self) -> str:
        """Return the module tree, one child per line, as torch prints it."""
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._children.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n  " + "\n  ".join(lines) + "\n)" if lines else ")")


_hook_ids = itertools.count()


class _HookHandle:
    def __init__(self, hooks: dict[int, Any], key: int):
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
        """Return the child at position ``index``."""
        return list(self._children.values())[index]

    def __len__(self) -> int:
        """Return the number of children."""
        return len(self._children)

    def __iter__(self) -> Iterator[Module]:
        """Return the children, in order."""
        return iter(self._children.values())

    def forward(self, x: Array | TensorSpec) -> Any:
        """Apply the children in order."""
        for module in self._children.values():
            x = module(x)
        return x

    def backward(self, grad_output: Array) -> Array:
        """Call the children's ``backward`` in reverse order."""
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
    outputs: OrderedDict[str, Any] = OrderedDict()
    handles = []
    for name, module in model.named_modules():
        if name and (wanted is None or name in wanted):

            def hook(_module: Module, _input: Any, output: Any, name: str = name) -> None:
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
