"""Stochastic gradient descent and learning-rate schedules, with ``torch.optim``'s exact arithmetic.

The optimiser reads each parameter's gradient from its module's ``grads`` (filled by
``model.backward``) and updates the parameter array in place, so the model, its
``state_dict()`` and the optimiser always see the same arrays.

>>> import numpy as np, npresnet
>>> from npresnet.optim import SGD
>>> model = npresnet.nn.Linear(2, 1, rng=0, dtype=np.float64).train()
>>> opt = SGD(model, lr=0.1, momentum=0.9)
>>> out = model(np.ones((4, 2)))
>>> _ = model.backward(np.ones((4, 1)))   # d(sum of outputs)/d(out) = 1
>>> opt.step(); opt.zero_grad()
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._args import check_int, check_real
from .nn import Module

if TYPE_CHECKING:
    from ._typing import Array

__all__ = ["SGD", "StepLR", "CosineAnnealingLR"]


class SGD:
    """``torch.optim.SGD``: momentum, dampening, weight decay (L2) and Nesterov momentum.

    For each parameter ``p`` with gradient ``g``, one :meth:`step` does, as torch::

        g = g + weight_decay * p
        buf = g                                      (first step)
        buf = momentum * buf + (1 - dampening) * g   (later steps)
        g = g + momentum * buf  if nesterov  else  buf     (when momentum != 0)
        p = p - lr * g

    Parameters
    ----------
    params : Module
        The model whose parameters are trained. Unlike torch, whose tensors carry ``.grad``,
        npresnet's parameters are plain arrays, so the optimiser is given the module that holds
        them and their gradients (``module.grads``); parameters without a gradient are skipped.
    lr : float
    momentum, dampening, weight_decay : float
        ``lr``, ``momentum`` and ``weight_decay`` finite and >= 0, as torch requires;
        ``dampening`` any finite number.
    nesterov : bool
        Requires ``momentum > 0`` and ``dampening == 0``, as torch.

    Raises
    ------
    TypeError
        ``params`` is not a Module, a number is not a real number, ``nesterov`` not a bool.
    ValueError
        A number is NaN, infinite or out of its range; Nesterov without momentum or with dampening.
    """

    def __init__(
        self,
        params: Module,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if not isinstance(params, Module):
            raise TypeError(
                f"params must be an npresnet Module (it holds the parameters and their grads), "
                f"got {type(params).__name__}"
            )
        lr, momentum = check_real("lr", lr, 0.0), check_real("momentum", momentum, 0.0)
        dampening, weight_decay = check_real("dampening", dampening), check_real("weight_decay", weight_decay, 0.0)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__} {nesterov!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.module = params
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.state: dict[str, dict[str, Array]] = {}  # state_dict key -> {"momentum_buffer": array}

    def zero_grad(self) -> None:
        """Forget the gradients (``model.zero_grad()``)."""
        self.module.zero_grad()

    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        for key, module, name in self.module.named_parameter_slots():
            grad = module.grads.get(name)
            if grad is None:
                continue
            p = getattr(module, name)
            d_p = grad
            if self.weight_decay != 0:
                d_p = d_p + self.weight_decay * p
            if self.momentum != 0:
                state = self.state.setdefault(key, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d_p.copy()
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * d_p
                d_p = d_p + self.momentum * buf if self.nesterov else buf
            p -= self.lr * d_p


class _Schedule:
    """Base of the schedules: ``step()`` once per epoch sets ``optimizer.lr`` from the epoch count."""

    def __init__(self, optimizer: SGD) -> None:
        if not isinstance(optimizer, SGD):
            raise TypeError(f"optimizer must be an npresnet.optim.SGD, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def lr_at(self, epoch: int) -> float:
        """Return the learning rate of ``epoch`` (from 0), in closed form."""
        raise NotImplementedError

    def step(self) -> None:
        lr = self.lr_at(self.last_epoch + 1)
        if not math.isfinite(lr):  # StepLR with gamma > 1 grows without bound
            raise ValueError(f"{type(self).__name__}: the learning rate at epoch {self.last_epoch + 1} overflows")
        self.last_epoch += 1
        self.optimizer.lr = lr

    def get_last_lr(self) -> list[float]:
        return [self.optimizer.lr]


class StepLR(_Schedule):
    """``lr = base_lr * gamma ** (epoch // step_size)``, as ``torch.optim.lr_scheduler.StepLR``.

    ``step_size`` is an int >= 1 and ``gamma`` a finite number >= 0 (a negative one would
    give negative learning rates, which :class:`SGD` refuses).
    """

    def __init__(self, optimizer: SGD, step_size: int, gamma: float = 0.1) -> None:
        step_size, gamma = check_int("step_size", step_size, 1), check_real("gamma", gamma, 0.0)
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def lr_at(self, epoch: int) -> float:
        """Return the learning rate of ``epoch`` (from 0), in closed form."""
        try:
            return self.base_lr * self.gamma ** (epoch // self.step_size)
        except OverflowError:  # float ** int raises instead of returning inf
            return math.inf


class CosineAnnealingLR(_Schedule):
    """Cosine annealing: from ``base_lr`` down to ``eta_min`` along half a cosine over ``T_max`` epochs.

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2`` (torch's closed form).

    ``T_max`` is an int >= 1 and ``eta_min`` a finite number >= 0.
    """

    def __init__(self, optimizer: SGD, T_max: int, eta_min: float = 0.0) -> None:
        T_max, eta_min = check_int("T_max", T_max, 1), check_real("eta_min", eta_min, 0.0)
        super().__init__(optimizer)
        self.T_max, self.eta_min = T_max, eta_min

    def lr_at(self, epoch: int) -> float:
        """Return the learning rate of ``epoch`` (from 0), in closed form."""
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
