"""Float32 error bounds for a whole ResNet, derived from the arithmetic: the oracle for float32 tests.

This package holds inference (here), float16 storage (``_float16``) and training gradients (``_training``).

A float32 forward pass differs from the exact one by the rounding errors of its operations. An
operation ``l`` whose output element ``z`` is a sum of ``n`` terms of total magnitude ``m`` (for a
dot product ``m = sum|w||a|``) commits at most ``n`` roundings, each a relative error of at most
``u = 2**-24`` (float32's unit roundoff) of a partial sum no larger than ``m``; this holds for any
summation order, BLAS kernel, thread count, batch, with or without fused multiply-adds. An error
``δ`` made at ``z`` reaches a scalar output ``f`` (a logit, a probability) through the rest of the
network, to first order, as ``(∂f/∂z) δ``; the gradients are taken in float64 by torch's autograd on
torchvision's own modules.

Worst case, these add up to ``sum |∂f/∂z| n u m`` over every element of every operation. Computed,
that bound sits about 10**6 above the errors float32 actually makes on a ResNet-18 (it exceeds 1 for a
probability): every rounding would have to be maximal and all of them of the same sign. So the bound
used is the probabilistic one of Higham and Mary ("A new approach to probabilistic rounding error
analysis", SIAM J. Sci. Comput. 41(5), 2019): model the roundings as independent, mean-zero random
variables bounded by ``u``; then the output error is a sum of independent bounded terms, and by
Hoeffding's inequality

    |f_float32 - f_exact| <= LAMBDA · u · sqrt( sum over operations and elements of (∂f/∂z)² · n · m² )

except with probability at most ``2 exp(-LAMBDA²/2)`` (``LAMBDA = 8``: 2.5e-14) under that model. It
depends on no measurement and on no implementation detail beyond the operations below. Left out:
products of two roundings (order ``u²``), and ReLUs within rounding distance of zero, whose other
side the gradient does not see.

The operations, their term counts ``n`` and magnitudes ``m`` (``|·|`` elementwise, ``a`` the input):

``reference`` (npresnet's modules: convolution, then batch norm)
    convolution, ``K = C/groups·kh·kw`` products: ``n = K + 1``, ``m = conv(|a|, |W|)``;
    batch norm in eval mode, ``y·scale + shift`` with ``scale = γ/sqrt(var + eps)`` and
    ``shift = β - mean·scale``, at most ten roundings deep: ``n = 10``, ``m = |y||s| + |mean||s| + |β|``.
``fused`` (:mod:`npresnet.fast`: batch norm folded into the convolution, weights rounded once)
    im2col then GEMM: ``n = K + 3`` (the GEMM, the weight's and the bias's rounding, the bias add),
    ``m = conv(|a|, |W'|) + |b'|``; a stride-1 3×3 convolution may instead run as Winograd F(m×m, 3×3)
    (m = 2 or 4, n = m + 2, as ``fuse``'s ``winograd`` option says; with ``True`` either, per call)
    with transforms ``Aᵀ, G, Bᵀ``
    (``y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`` per tile, summed over the ``C`` channels): ``Bᵀ d B`` in two
    passes of ``n`` terms, the channel sum (``C``), ``Aᵀ · A`` in two passes of ``n``, the transformed
    weight's rounding, the bias's and the bias add give ``n = C + 4(m+2) + 3``,
    ``m = |Aᵀ|[Σ_c |U_c| ⊙ (|Bᵀ||d_c||B|)]|A| + |b'|`` (:mod:`npresnet.fast.winograd` derives it);
    which algorithm runs depends on the batch, so the largest of those it may run is used.
both
    residual add: ``n = 2``, ``m = |identity| + |z|``;
    global average pool over ``HW`` pixels: ``n = HW + 1``, ``m = mean|a|``;
    fully connected, ``C`` inputs: ``n = C + 1``, ``m = |a||W|ᵀ + |b|``;
    ReLU and max pooling are exact; the softmax runs in float64 (``npresnet.predictions``).

The input itself is taken as exact: it is the same float32 array for every implementation.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from npresnet.fast.winograd import is_winograd_eligible, winograd_matrices, winograd_tiles

__all__ = [
    "U32",
    "LAMBDA",
    "float32_error_bounds",
    "logit_bounds",
    "float32_stage_error_bounds",
    "float16_storage_error_bounds",
    "float32_training_branches",
    "float32_gradient_error_bounds",
]

U32 = 2.0**-24  # float32 unit roundoff
LAMBDA = 8.0  # Hoeffding's multiple: the bound fails with probability <= 2 exp(-LAMBDA**2 / 2) under the model


class _Terms:
    """The forward's operation outputs ``z`` (in the autograd graph) and their ``n · m²`` (see the module docstring)."""

    def __init__(self, mode: str, winograd=True):
        if mode not in ("reference", "fused"):
            raise ValueError(f"mode must be 'reference' or 'fused', got {mode!r}")
        self.mode = mode
        self.tiles = winograd_tiles(winograd)  # the fused path's Winograd output tile sizes m it may run
        self.z: list[torch.Tensor] = []
        self.variance: list[torch.Tensor] = []

    def add(self, z, n, m):
        """Record ``z``, an operation's output whose elements are sums of ``n`` terms of magnitude ``m``."""
        self.z.append(z)
        self.variance.append(n * m.detach() ** 2)
        return z


def _conv(conv, a, weight, bias):
    return F.conv2d(a, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _abs_winograd(a_abs, weight, padding, m):
    """``|Aᵀ|[Σ_c |U_c| ⊙ (|Bᵀ||d_c||B|)]|A|`` for every output pixel: F(m×m,3×3) with absolute values.

    a_abs : (N, C, H, W) float64, non-negative;  weight : (O, C, 3, 3) float64;  returns (N, O, out_h, out_w).
    """
    AT, G, BT = (torch.from_numpy(t) for t in winograd_matrices(m))
    n, P = m + 2, (m + 2) ** 2
    N, C, H, W = a_abs.shape
    ph, pw = padding
    out_h, out_w = H + 2 * ph - 2, W + 2 * pw - 2
    th, tw = -(-out_h // m), -(-out_w // m)  # tiles per column and per row
    # tile (ty, tx) reads input rows m·ty - ph … m·ty - ph + n - 1: pad so that the last tiles fit too
    padded = F.pad(a_abs, (pw, m * tw + 2 - W - pw, ph, m * th + 2 - H - ph))
    tiles = F.unfold(padded, n, stride=m).view(N, C, P, th * tw)  # (N, C, P tile positions, T)
    BB, AA = torch.kron(BT, BT).abs(), torch.kron(AT, AT).abs()  # (P, P), (m², P)
    U = torch.einsum("ik,jl,ockl->ijco", G, G, weight).reshape(P, C, -1).abs()  # (P, C, O)
    V = torch.einsum("pq,ncqt->npct", BB, tiles)  # (N, P, C, T)
    M = torch.einsum("npct,pco->npot", V, U)  # (N, P, O, T)
    Y = torch.einsum("rp,npot->nrot", AA, M)  # (N, m², O, T): output pixel r = (a, b) of each tile
    Y = Y.reshape(N, m, m, -1, th, tw).permute(0, 3, 4, 1, 5, 2).reshape(N, -1, m * th, m * tw)
    return Y[:, :, :out_h, :out_w]


def _conv_bn(terms: _Terms, conv, bn, a):
    """Convolution then batch norm (eval) on float64 ``a``, recording each rounding point."""
    K = conv.weight[0].numel()  # C/groups · kh · kw terms per output
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (O,)
    shift = bn.bias - bn.running_mean * scale
    if terms.mode == "reference":
        y = _conv(conv, a, conv.weight, None)
        terms.add(y, K + 1, _conv(conv, a.abs(), conv.weight.abs(), None))
        s, m, b = (t[None, :, None, None] for t in (scale, bn.running_mean, bn.bias))
        z = y * s + (b - m * s)
        return terms.add(z, 10, y.abs() * s.abs() + m.abs() * s.abs() + b.abs())
    weight = conv.weight * scale[:, None, None, None]  # the folded weight W' and bias b'
    z = _conv(conv, a, weight, shift)
    b = shift.abs()[None, :, None, None]
    n, m = K + 3, _conv(conv, a.abs(), weight.abs(), None) + b
    if terms.tiles and is_winograd_eligible(conv):  # the fused path's own rule; the largest n·m² of those it may run
        m = m * n**0.5
        for tile in terms.tiles:
            n_w = a.shape[1] + 4 * (tile + 2) + 3
            m_w = _abs_winograd(a.abs(), weight, conv.padding, tile) + b
            m = torch.maximum(m, m_w * n_w**0.5)
        n = 1
    return terms.add(z, n, m)


def _residual(terms: _Terms, z, identity):
    s = z + identity
    return terms.add(s, 2, identity.abs() + z.abs())


def _block(terms: _Terms, block, x):
    pairs = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
    if hasattr(block, "conv3"):  # Bottleneck
        pairs.append((block.conv3, block.bn3))
    identity = x
    if block.downsample is not None:
        identity = _conv_bn(terms, block.downsample[0], block.downsample[1], x)
    h = x
    for conv, bn in pairs[:-1]:
        h = torch.relu(_conv_bn(terms, conv, bn, h))
    return torch.relu(_residual(terms, _conv_bn(terms, *pairs[-1], h), identity))


def _logits(terms: _Terms, model, x):
    """torchvision's ResNet forward, op by op, recording every rounding point in ``terms``."""
    h = torch.relu(_conv_bn(terms, model.conv1, model.bn1, x))
    h = model.maxpool(h)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            h = _block(terms, block, h)
    HW = h.shape[2] * h.shape[3]
    pooled = terms.add(h.mean(dim=(2, 3)), HW + 1, h.abs().mean(dim=(2, 3)))  # (N, C)
    terms.features = pooled
    C = pooled.shape[1]
    logits = F.linear(pooled, model.fc.weight, model.fc.bias)
    return terms.add(logits, C + 1, F.linear(pooled.abs(), model.fc.weight.abs(), model.fc.bias.abs()))


def float32_error_bounds(
    model: torch.nn.Module, x, outputs, *, mode: str = "reference", features: bool = False, winograd=True
):
    """Exact values of scalar outputs of ``model(x)`` and the bound on the error of a float32 evaluation.

    Parameters
    ----------
    model : torchvision ResNet (any of the ten), in eval mode; used in float64 on a deep copy
    x : numpy.ndarray or torch.Tensor, shape (N, 3, H, W)
        The float32 input every implementation receives (promoted exactly to float64 here).
    outputs : callable
        ``outputs(logits)`` maps the float64 logits (N, classes) to a 1-D tensor of the scalars to
        bound (selected logits, softmax probabilities, ...).
    features : bool
        Pass ``outputs`` the average pool's output (N, C), the features before ``fc``, instead.
    mode : {"reference", "fused"}
        Which arithmetic is bounded: npresnet's modules, or its fused path (see the module docstring).
    winograd : {True, "F4", "F2", False}
        For ``mode="fused"``: ``fuse``'s option of that name, the Winograd variant the path may run.

    Returns
    -------
    values, bounds : numpy.ndarray float64, shape (n_outputs,)
        The outputs of torchvision's float64 forward, and the bound on each one's float32 error.
    """
    model = copy.deepcopy(model).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.as_tensor(np.asarray(x)).double()
    terms = _Terms(mode, winograd)
    with torch.enable_grad():
        x.requires_grad_(True)  # roots the graph; the input itself is exact
        logits = _logits(terms, model, x)
        with torch.no_grad():  # the op-by-op forward above must be torchvision's own
            reference = model(x)
        drift = float((logits.detach() - reference).abs().max() / reference.abs().max())
        if drift > 1e-12:
            raise AssertionError(f"the op-by-op forward differs from torchvision's by {drift:.1e} relative")
        values = outputs(terms.features if features else logits)
        sums = []
        for i in range(values.numel()):
            grads = torch.autograd.grad(values[i], terms.z, retain_graph=i + 1 < values.numel(), allow_unused=True)
            sums.append(sum(float((g**2 * v).sum()) for g, v in zip(grads, terms.variance) if g is not None))
    return values.detach().numpy(), LAMBDA * U32 * np.sqrt(sums)


def logit_bounds(
    model: torch.nn.Module, x, *, mode: str = "reference", random_classes: int = 4, seed: int = 0, winograd=True
):
    """:func:`float32_error_bounds` for a sample of the logits of every image of ``x``.

    Per image: the logit of largest magnitude (it sets the scale), the smallest, and
    ``random_classes`` more drawn with ``seed``. Every logit comes out of the same code path, so a
    sample checks that path; the bound for all 1000 would cost 1000 backward passes per image.

    Returns
    -------
    (rows, classes) : tuple of numpy.ndarray int, shape (n,)
        Where the sampled logits sit in the (N, classes) output.
    exact, bounds : numpy.ndarray float64, shape (n,)
    """
    x = np.asarray(x)
    key = _fingerprint(model, x, mode, random_classes, seed, winograd_tiles(winograd))
    if key not in _LOGIT_BOUNDS:  # the same model and input on another backend reuse the bounds
        _LOGIT_BOUNDS[key] = _logit_bounds(model, x, mode, random_classes, seed, winograd)
    return _LOGIT_BOUNDS[key]


_LOGIT_BOUNDS: dict = {}


def _fingerprint(model, x, *settings) -> tuple:
    digest = hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return (digest.hexdigest(), x.shape, str(x.dtype), *settings)


def _logit_bounds(model, x, mode, random_classes, seed, winograd=True):
    with torch.no_grad():
        logits = copy.deepcopy(model).double().eval()(torch.as_tensor(x).double()).numpy()  # (N, classes)
    rng = np.random.default_rng(seed)
    rows, classes = [], []
    for i, row in enumerate(logits):
        picked = {int(np.abs(row).argmax()), int(row.argmin()), *rng.choice(row.size, random_classes, replace=False)}
        rows += [i] * len(picked)
        classes += sorted(int(c) for c in picked)
    rows, classes = np.asarray(rows), np.asarray(classes)
    exact, bounds = float32_error_bounds(model, x, lambda z: z[rows, classes], mode=mode, winograd=winograd)
    return (rows, classes), exact, bounds


def _bound(f, terms: _Terms, count=None):
    """``LAMBDA · u · sqrt(Σ (∂f/∂z)² n m²)`` over the first ``count`` recorded points (all: None)."""
    z, variance = terms.z[:count], terms.variance[:count]
    grads = torch.autograd.grad(f, z, retain_graph=True, allow_unused=True)
    return LAMBDA * U32 * float(np.sqrt(sum(float((d**2 * v).sum()) for d, v in zip(grads, variance) if d is not None)))


# ---------------------------------------------------------------------------------------------------
# Inference: the output of an intermediate stage (features of a named layer)


def float32_stage_error_bounds(model: torch.nn.Module, x, stage: str, select, *, mode: str = "reference"):
    """:func:`float32_error_bounds` for elements of the output of ``stage`` (``"layer1"`` … ``"layer4"``).

    The stage ends in a ReLU, and ``|relu(a) - relu(b)| <= |a - b|``: the bound is that of the ReLU's
    input, so it holds also where that input lies within rounding distance of zero.

    Parameters
    ----------
    model : torchvision ResNet, in eval mode; used in float64 on a deep copy
    x : numpy.ndarray, shape (N, 3, H, W), the float32 input
    stage : str
        The stage whose output (N, C, h, w) is bounded.
    select : callable
        Picks elements: maps an (N, C, h, w) tensor to a 1-D tensor of some of its elements
        (indexing, ``torch.flatten``), so that it commutes with the ReLU.
    mode : {"reference", "fused"}

    Returns
    -------
    values, bounds : numpy.ndarray float64, shape (n_outputs,)
    """
    stages = ("layer1", "layer2", "layer3", "layer4")
    if stage not in stages:
        raise ValueError(f"stage must be one of {stages}, got {stage!r}")
    model = copy.deepcopy(model).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.as_tensor(np.asarray(x)).double()
    captured = {}
    handle = getattr(model, stage).register_forward_hook(lambda _m, _i, out: captured.update(out=out))
    with torch.no_grad():
        model(x)
    handle.remove()
    terms = _Terms(mode)
    with torch.enable_grad():
        x.requires_grad_(True)
        h = model.maxpool(torch.relu(_conv_bn(terms, model.conv1, model.bn1, x)))
        blocks = [block for name in stages[: stages.index(stage) + 1] for block in getattr(model, name)]
        for block in blocks[:-1]:
            h = _block(terms, block, h)
        last = _LastPoint(terms)
        _block(last, blocks[-1], h)
        pre = last.z  # the last block's residual sum: its ReLU's input
        drift = float((torch.relu(pre.detach()) - captured["out"]).abs().max() / captured["out"].abs().max())
        if drift > 1e-12:
            raise AssertionError(f"the op-by-op forward differs from torchvision's by {drift:.1e} relative")
        values = select(pre)
        bounds = [_bound(values[i], terms) for i in range(values.numel())]
    return torch.relu(values.detach()).numpy(), np.asarray(bounds)


class _LastPoint:
    """Records into ``terms`` and keeps the last point recorded, ``z`` (a block's residual sum, before its ReLU)."""

    def __init__(self, terms: _Terms):
        self.terms, self.mode, self.z = terms, terms.mode, None

    def add(self, z, n, m):
        self.z = self.terms.add(z, n, m)
        return self.z


# the float16 and training bounds build on the above (imported last: they import from this package)
from ._float16 import float16_storage_error_bounds  # noqa: E402
from ._training import float32_gradient_error_bounds, float32_training_branches  # noqa: E402
