"""Float32 logit error of the fused path with each ``winograd`` choice, beside the bound derived for it.

For each architecture (torchvision's, seeded, batch norms randomised, as the tests build them) and
each choice of :func:`npresnet.fast.fuse`'s ``winograd`` ("F4", "F2", False = im2col) it prints,
relative to the largest |logit| of the float64 forward:

- ``err``: the largest |float32 fused logit - float64 torchvision logit| over all logits;
- ``sampled`` and ``bound``: over the logits that ``tests/_rounding/`` samples (the largest, the
  smallest and four random ones per image), the largest error and the largest derived bound
  (the probabilistic rounding-error bound of that module, for the fused arithmetic of that choice),

and torchvision's own float32 error for scale. Deterministic up to BLAS rounding; not a timing.

Run: ``python benchmarks/winograd_error.py --size 64 --batch 2`` (all ten architectures) or
``--size 224 --batch 1 --arch resnet18 resnet50``. Needs torch and torchvision.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tests")):  # the derived bounds live with the tests
    if path not in sys.path:
        sys.path.insert(0, path)

import torch  # noqa: E402

import npresnet  # noqa: E402
from _rounding import logit_bounds  # noqa: E402
from _torchvision import ARCHITECTURE_NAMES, numpy_state_dict, torchvision_resnet  # noqa: E402
from npresnet.fast import fuse  # noqa: E402

CHOICES = {"F4": "F4", "F2": "F2", "im2col": False}


def errors(name: str, size: int, batch: int) -> str:
    """One line: torchvision float32's error, then each choice's measured error and bound, relative to max|logit|."""
    tv = torchvision_resnet(name, seed=0, dtype=torch.float32)
    model = npresnet.ARCHITECTURES[name](dtype="float32")
    model.load_state_dict(numpy_state_dict(tv))
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        exact = copy.deepcopy(tv).double().eval()(torch.from_numpy(x).double()).numpy()
        tv32 = tv.eval()(torch.from_numpy(x)).numpy()
    scale = np.abs(exact).max()
    cells = [f"torchvision float32 {np.abs(tv32 - exact).max() / scale:.1e}"]
    for label, winograd in CHOICES.items():
        out = fuse(model, winograd=winograd)(x).astype(np.float64)
        (rows, classes), sampled_exact, bounds = logit_bounds(tv, x, mode="fused", winograd=winograd)
        sampled = np.abs(out[rows, classes] - sampled_exact)
        held = "" if (sampled <= bounds).all() else " EXCEEDS ITS BOUND"
        cells.append(
            f"{label}: err {np.abs(out - exact).max() / scale:.1e} "
            f"(sampled {sampled.max() / scale:.1e}, bound {bounds.max() / scale:.1e}){held}"
        )
    return f"{name} {batch}x3x{size}x{size}: " + " | ".join(cells)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=list(ARCHITECTURE_NAMES), choices=ARCHITECTURE_NAMES)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    args = p.parse_args(argv)
    for name in args.arch:
        print(errors(name, args.size, args.batch), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
