"""Assertions that a float32 npresnet result lies within its derived error bound of the float64 truth.

The bounds are those of :mod:`_rounding` (probabilistic, from the operations' term counts and
magnitudes); the truth is torchvision's forward in float64 on the same float32 input and weights.
Each assertion also checks that its bound is small enough to mean something: a relative error of
``1e-2`` of the largest value compared would exceed every bound, so a wrong formula, a dropped term
or a misplaced window cannot hide under it. (The bounds of the models in the tests reach ``2.3e-3``
of the largest logit and ``4.7e-3`` of the largest layer4 value of a dilated ResNet-50: ``LAMBDA = 8``
times magnitudes ``m`` of whole sums; the errors float32 actually makes are some 10**3 smaller.)

Also the deterministic bound of a sum: ``n`` roundings of partial sums of total magnitude ``m``
commit at most ``gamma(n) * m`` in any order (Higham, "Accuracy and Stability of Numerical
Algorithms", 2nd ed., Lemma 3.1 and eq. 3.5).
"""

from __future__ import annotations

import numpy as np
import torch

from _rounding import U32, float32_stage_error_bounds, logit_bounds
from npresnet.testing import bounds

SENSITIVITY = 1e-2  # a relative error (of the largest value compared) every bound here must catch


def gamma(n: int, u: float = U32) -> float:
    """``n u / (1 - n u)`` (:func:`npresnet.testing.bounds.gamma`), refused where it is no bound (``n u >= 1``).

    The kit's ``gamma`` is infinite there; a test must not pass on an infinite bound.
    """
    if n * u >= 1:
        raise ValueError(f"gamma({n}) is undefined for unit roundoff {u}")
    return bounds.gamma(n, u)


def torch_model_of(name: str, model, **kwargs) -> torch.nn.Module:
    """A torchvision ``name`` in eval mode holding npresnet ``model``'s own state (weights and statistics).

    ``kwargs`` go to the torchvision builder (``replace_stride_with_dilation``, ...).
    """
    from _torchvision import torchvision_resnet

    reference = torchvision_resnet(name, randomise=False, **kwargs)
    reference.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return reference.eval()


def assert_logits_within_bounds(reference: torch.nn.Module, x, logits, what: str = "logits", **kwargs) -> None:
    """``logits``, a float32 forward of the model ``reference`` holds on ``x``, within the derived bound.

    ``reference`` must hold the very float32 weights the float32 forward used; ``kwargs`` go to
    :func:`_rounding.logit_bounds` (``mode``, ``random_classes``).
    """
    (rows, classes), exact, bounds = logit_bounds(reference, x, **kwargs)
    error = np.abs(np.asarray(logits)[rows, classes].astype(np.float64) - exact)
    worst = int(np.argmax(error / bounds))
    assert (error <= bounds).all(), f"{what}: float32 error {error[worst]:.2e} above its bound {bounds[worst]:.2e}"
    assert (bounds < SENSITIVITY * np.abs(exact).max()).all(), f"{what}: bound too loose to catch an error"


def assert_stage_within_bounds(reference: torch.nn.Module, x, stage: str, out, samples: int = 8, seed: int = 0) -> None:
    """Elements of ``out``, the float32 output of ``stage`` (``"layer1"`` … ``"layer4"``), within the bound.

    The element of largest magnitude and ``samples`` drawn with ``seed``: one backward pass each.
    """
    out = np.asarray(out)
    with torch.no_grad():  # the largest element of the exact output, found cheaply in float32
        captured = {}
        handle = getattr(reference, stage).register_forward_hook(lambda _m, _i, o: captured.update(out=o))
        reference(torch.from_numpy(np.ascontiguousarray(x)))
        handle.remove()
    flat = np.unique([int(captured["out"].abs().argmax()), *np.random.default_rng(seed).choice(out.size, samples)])
    picked = torch.from_numpy(flat)
    exact, bounds = float32_stage_error_bounds(reference, x, stage, lambda t: t.flatten()[picked])
    error = np.abs(out.ravel()[flat].astype(np.float64) - exact)
    worst = int(np.argmax(error / bounds))
    assert (error <= bounds).all(), f"{stage}: float32 error {error[worst]:.2e} above its bound {bounds[worst]:.2e}"
    assert (bounds < SENSITIVITY * np.abs(exact).max()).all(), f"{stage}: bound too loose to catch an error"
