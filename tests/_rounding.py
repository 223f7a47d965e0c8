"""Float32 error bounds for a whole ResNet, derived from the arithmetic: the oracle for float32 tests.

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
    (m = 2 or 4, n = m + 2, as ``fuse``'s ``winograd`` option says) with transforms ``Aᵀ, G, Bᵀ``
    (``y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`` per tile, summed over the ``C`` channels): ``Bᵀ d B`` in two
    passes of ``n`` terms, the channel sum (``C``), ``Aᵀ · A`` in two passes of ``n``, the transformed
    weight's rounding, the bias's and the bias add give ``n = C + 4(m+2) + 3``,
    ``m = |Aᵀ|[Σ_c |U_c| ⊙ (|Bᵀ||d_c||B|)]|A| + |b'|`` (:mod:`npresnet.fast.winograd` derives it);
    which algorithm runs depends on the batch, so the larger of the two is used.
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

from npresnet.fast.winograd import is_winograd_eligible, winograd_matrices, winograd_tile

U32 = 2.0**-24  # float32 unit roundoff
LAMBDA = 8.0  # Hoeffding's multiple: the bound fails with probability <= 2 exp(-LAMBDA**2 / 2) under the model


class _Terms:
    """The forward's operation outputs ``z`` (in the autograd graph) and their ``n · m²`` (see the module docstring)."""

    def __init__(self, mode: str, winograd=True):
        if mode not in ("reference", "fused"):
            raise ValueError(f"mode must be 'reference' or 'fused', got {mode!r}")
        self.mode = mode
        self.tile = winograd_tile(winograd)  # the fused path's Winograd output tile size m, or None
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
    if terms.tile is not None and is_winograd_eligible(conv):  # the fused path's own rule; the larger n·m²
        n_w = a.shape[1] + 4 * (terms.tile + 2) + 3
        m_w = _abs_winograd(a.abs(), weight, conv.padding, terms.tile) + b
        m = torch.maximum(m * n**0.5, m_w * n_w**0.5)
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
    key = _fingerprint(model, x, mode, random_classes, seed, winograd_tile(winograd))
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


# ----------------------------------------------------------------- float16 storage, the device float16 mode
U16 = 2.0**-11  # float16 unit roundoff


def float16_storage_error_bounds(model: torch.nn.Module, x, outputs):
    """Exact values of scalar outputs of ``model(x)`` and the bound on their error in the fused path's
    ``precision="float16"`` mode (:mod:`npresnet.fast.device`): float16 storage, float32 arithmetic.

    The same probabilistic model as :func:`float32_error_bounds`, with two kinds of rounding:

    float16, ``U16 = 2**-11``, each one rounding of a stored value ``z`` (``n = 1``, ``m = |z|``):
        the input, cast to float16 once; every convolution's folded weight ``W'``, rounded to float32
        then to float16 (``|δ| <= U16 + U32``): its effect on ``f`` is ``(∂f/∂W') W' δ`` per weight, one
        variable shared by every pixel, so its term is ``(∂f/∂W' · W')²``; every convolution's output
        after its epilogue (after the residual add where there is one), written to float16 once;
    float32, ``U32``, as the fused path but without Winograd (none on the device):
        the GEMM over float16 columns and weights, whose products are exact in float32, and the bias
        (rounded from float64) and its add: ``n = K + 2``, ``m = conv(|a|, |W'|) + |b'|``; the residual
        add ``n = 2``; the average pool and the fc product as in :func:`float32_error_bounds`.

    Max pooling and ReLU are exact on float16 values. The bound is
    ``LAMBDA · sqrt(U32² Σ_float32 + U16² Σ_float16)`` with ``Σ = sum (∂f/∂z)² n m²``.

    Parameters
    ----------
    model : torchvision ResNet, in eval mode; used in float64 on a deep copy
    x : numpy.ndarray float32, shape (N, 3, H, W)
    outputs : callable
        ``outputs(logits)``: the float64 logits (N, classes) to a 1-D tensor of the scalars to bound.

    Returns
    -------
    values, bounds : numpy.ndarray float64, shape (n_outputs,)
    """
    model = copy.deepcopy(model).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.as_tensor(np.asarray(x)).double()
    t32, t16 = _Terms("fused"), _Terms("fused")
    with torch.enable_grad():
        x.requires_grad_(True)
        t16.add(x, 1, x.abs())  # the input's cast to float16
        logits = _float16_logits(t32, t16, model, x)
        with torch.no_grad():
            reference = model(x)
        drift = float((logits.detach() - reference).abs().max() / reference.abs().max())
        if drift > 1e-12:
            raise AssertionError(f"the op-by-op forward differs from torchvision's by {drift:.1e} relative")
        values = outputs(logits)
        sums = []
        z = t32.z + t16.z
        for i in range(values.numel()):
            grads = torch.autograd.grad(values[i], z, retain_graph=i + 1 < values.numel(), allow_unused=True)
            g32, g16 = grads[: len(t32.z)], grads[len(t32.z) :]
            s32 = sum(float((g**2 * v).sum()) for g, v in zip(g32, t32.variance) if g is not None)
            s16 = sum(float((g**2 * v).sum()) for g, v in zip(g16, t16.variance) if g is not None)
            sums.append(U32**2 * s32 + U16**2 * s16)
    return values.detach().numpy(), LAMBDA * np.sqrt(sums)


def _float16_conv_bn(t32: _Terms, t16: _Terms, conv, bn, a, identity=None):
    """A fused convolution in float16 mode, with its epilogue (bias, optional residual), recorded."""
    K = conv.weight[0].numel()
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    weight = (conv.weight * scale[:, None, None, None]).requires_grad_(True)  # W': a leaf, for ∂f/∂W'
    t16.add(weight, ((U16 + U32) / U16) ** 2, weight.abs())  # float64 -> float32 -> float16
    z = _conv(conv, a, weight, shift)
    t32.add(z, K + 2, _conv(conv, a.abs(), weight.abs(), None) + shift.abs()[None, :, None, None])
    if identity is not None:
        z = _residual(t32, z, identity)
    return t16.add(z * 1.0, 1, z.abs())  # written to float16 once (a node of its own for its gradient)


def _float16_logits(t32: _Terms, t16: _Terms, model, x):
    h = torch.relu(_float16_conv_bn(t32, t16, model.conv1, model.bn1, x))
    h = model.maxpool(h)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            pairs = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
            if hasattr(block, "conv3"):
                pairs.append((block.conv3, block.bn3))
            identity = h
            if block.downsample is not None:
                identity = _float16_conv_bn(t32, t16, block.downsample[0], block.downsample[1], h)
            y = h
            for conv, bn in pairs[:-1]:
                y = torch.relu(_float16_conv_bn(t32, t16, conv, bn, y))
            h = torch.relu(_float16_conv_bn(t32, t16, *pairs[-1], y, identity))
    HW = h.shape[2] * h.shape[3]
    pooled = t32.add(h.mean(dim=(2, 3)), HW + 1, h.abs().mean(dim=(2, 3)))
    C = pooled.shape[1]
    logits = F.linear(pooled, model.fc.weight, model.fc.bias)
    return t32.add(logits, C + 1, F.linear(pooled.abs(), model.fc.weight.abs(), model.fc.bias.abs()))


# ---------------------------------------------------------------------------------------------------
# Training: the gradients of one forward and backward pass (npresnet's modules, batch statistics)
#
# The same bound, for the gradients :meth:`npresnet.models.ResNet.backward` returns after a
# training-mode forward. The computation is replayed op by op in float64 as npresnet's functional
# code does it (forward, then the backward written out, not autograd's), every rounded result is
# recorded with its ``n`` and ``m``, and autograd differentiates a scalar of the gradients (a
# projection ``<v, grad>``) with respect to every one of them, in the forward and in the backward:
#
#   forward  convolution ``n = K``, ``m = conv(|a|, |W|)``;  batch norm with the batch's statistics:
#            mean ``n = M + 1`` (``M = N·H·W``), ``x - mean`` and its square ``n = 1`` each, variance
#            ``n = M + 1``, ``invstd = 1/sqrt(var + eps)`` ``n = 3``, ``scale = invstd·γ`` ``n = 1``,
#            ``shift = β - mean·scale`` ``n = 2``, ``x·scale + shift`` ``n = 2``; average pool
#            ``n = HW + H + W`` (two products with rounded ``1/H``, ``1/W`` bins); residual and
#            fully connected as for inference.
#   backward convolution input ``W'ᵀ g`` then col2im: ``n = O/groups + kh·kw``,
#            ``m = conv_transpose(|g|, |W|)``; weight ``g · colsᵀ``: ``n = N·out_h·out_w``,
#            ``m = conv_weight_grad(|a|, |g|)``; batch norm (``x̂``: ``n = 2``; ``Σg``: ``n = M``;
#            ``Σ g·x̂``: ``n = M + 1``; ``(M·g - Σg - x̂·Σgx̂)·scale/M``: ``n = 6``,
#            ``m = (M|g| + |Σg| + |x̂ Σgx̂|)|scale|/M``); the residual's two gradients ``n = 2``;
#            max pool's scatter (float64 bincount, then one cast) ``n = 2``; average pool ``n = 4``;
#            fully connected ``g W`` ``n = out``, ``gᵀ x`` and ``Σ g`` ``n = N``.
#
# Branches are not roundings: a ReLU whose input lies within rounding distance of zero, or a max-pool
# window whose two largest values lie within rounding distance, may go the other way in float32, and
# then the gradient there changes by a whole term, not by a rounding. So the replay takes the
# branches from the float32 run (its ReLU masks and max-pool indices): the exact values compared
# against are those of the same piece of the piecewise-smooth network, and every branch that differs
# from the exact one is returned with its margin and the bound on that margin's float32 error (a
# branch may flip only where the margin is within that bound).


def _record_branches(model):
    """Hooks on an npresnet model that record its ReLU masks (``output > 0``) in call order.

    Returns ``(masks, handles)``: ``masks`` fills during a forward; ``handle.remove()`` for each of ``handles``.
    """
    from npresnet.nn import ReLU

    masks = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: masks.append(np.asarray(out) > 0))
        for m in model.modules()
        if isinstance(m, ReLU)
    ]
    return masks, handles


def float32_training_branches(model, x):
    """Run npresnet ``model`` forward in training mode on ``x``; return its output and its branches.

    Returns
    -------
    out : numpy.ndarray, the logits
    branches : (relu_masks, pool_indices)
        The ReLU masks (bool arrays, in call order) and the stem max pool's indices, as
        :func:`float32_gradient_error_bounds` takes them.
    """
    masks, handles = _record_branches(model)
    try:
        model.train()
        out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    (indices, _shape) = model.maxpool._saved[-1]
    return out, (masks, np.asarray(indices))


class _Replay:
    """npresnet's training forward and backward in float64 torch, op by op, recording rounding points."""

    def __init__(self, model, masks, indices):
        self.terms = _Terms("reference")
        self.masks = iter(masks)
        self.indices = indices
        self.names = {id(m): name for name, m in model.named_modules()}
        self.grads: dict[str, torch.Tensor] = {}
        self.branch_margins: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (what, margin, differs)
        self.forward_count = 0

    def add(self, z, n, m):
        return self.terms.add(z, n, m)

    # forward
    def conv(self, conv, a):
        return self.add(
            _conv(conv, a, conv.weight, None), conv.weight[0].numel(), _conv(conv, a.abs(), conv.weight.abs(), None)
        )

    def bn(self, bn, x):
        M, axes = x.numel() // x.shape[1], (0, 2, 3)
        mean = self.add(x.mean(axes), M + 1, x.abs().mean(axes))
        d = self.add(x - _c(mean), 1, (x - _c(mean)).abs())
        sq = self.add(d * d, 1, d * d)
        var = self.add(sq.mean(axes), M + 1, sq.mean(axes))
        invstd = self.add(1 / torch.sqrt(var + bn.eps), 3, 1 / torch.sqrt(var + bn.eps))
        scale = self.add(invstd * bn.weight, 1, (invstd * bn.weight).abs())
        shift = self.add(bn.bias - mean * scale, 2, (mean * scale).abs() + bn.bias.abs())
        out = self.add(x * _c(scale) + _c(shift), 2, (x * _c(scale)).abs() + _c(shift).abs())
        return out, (x, mean, invstd, scale)

    def relu(self, x):
        mask = torch.from_numpy(next(self.masks)).to(x.dtype)
        self.branch_margins.append(("relu", x.abs(), (x > 0).to(x.dtype) != mask))
        return x * mask, mask

    def maxpool(self, pool, h):
        idx = torch.from_numpy(self.indices).long().flatten(2)  # (N, C, out_h·out_w), row·W + col in its plane
        out = h.flatten(2).gather(2, idx)
        k, s, p = pool.kernel_size, pool.stride, pool.padding
        windows = F.unfold(F.pad(h, (p, p, p, p), value=-torch.inf).flatten(0, 1)[:, None], k, stride=s)
        best = windows.max(dim=1).values.view(out.shape)  # the exact winner's value
        self.branch_margins.append(("max pool", best - out, best > out))
        return out.view(*h.shape[:2], *self.indices.shape[2:]), idx

    # backward
    def conv_backward(self, conv, a, g):
        W, args = conv.weight, (conv.stride, conv.padding, conv.dilation, conv.groups)
        O, _, kh, kw = W.shape
        gw = torch.nn.grad.conv2d_weight(a, W.shape, g, *args)
        self._grad(conv, "weight", gw, g.numel() // O, torch.nn.grad.conv2d_weight(a.abs(), W.shape, g.abs(), *args))
        gi = torch.nn.grad.conv2d_input(a.shape, W, g, *args)
        m = torch.nn.grad.conv2d_input(a.shape, W.abs(), g.abs(), *args)
        return self.add(gi, O // conv.groups + kh * kw, m)

    def bn_backward(self, bn, saved, g):
        x, mean, invstd, scale = saved
        M, axes = x.numel() // x.shape[1], (0, 2, 3)
        xhat = (x - _c(mean)) * _c(invstd)
        xhat = self.add(xhat, 2, xhat.abs())
        gb = self._grad(bn, "bias", g.sum(axes), M, g.abs().sum(axes))
        gw = self._grad(bn, "weight", (g * xhat).sum(axes), M + 1, (g * xhat).abs().sum(axes))
        gi = (M * g - _c(gb) - xhat * _c(gw)) * _c(scale / M)
        m = (M * g.abs() + _c(gb).abs() + (xhat * _c(gw)).abs()) * _c(scale.abs() / M)
        return self.add(gi, 6, m)

    def _grad(self, module, name, value, n, m):
        z = self.add(value, n, m)
        self.grads[f"{self.names[id(module)]}.{name}"] = z
        return z


def _c(v):
    """A (C,) vector broadcast over (N, C, H, W)."""
    return v[None, :, None, None]


def _train_step(r: _Replay, model, x, g):
    """Forward then backward of ``<model(x), g>``, as npresnet computes them; returns the input's gradient."""
    h = r.conv(model.conv1, x)
    h, stem_bn = r.bn(model.bn1, h)
    h, stem_mask = r.relu(h)
    pre_pool = h
    h, idx = r.maxpool(model.maxpool, h)
    tape = []
    for block in (b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage):
        pairs = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        if hasattr(block, "conv3"):  # Bottleneck
            pairs.append((block.conv3, block.bn3))
        saved, identity, a = [], h, h
        for i, (conv, bn) in enumerate(pairs):
            z, s = r.bn(bn, r.conv(conv, a))
            saved.append((conv, bn, a, s))
            if i + 1 < len(pairs):
                a, mask = r.relu(z)
                saved[-1] += (mask,)
        down = None
        if block.downsample is not None:
            conv, bn = block.downsample[0], block.downsample[1]
            identity, s = r.bn(bn, r.conv(conv, h))
            down = (conv, bn, h, s)
        h, mask = r.relu(r.add(z + identity, 2, z.abs() + identity.abs()))
        tape.append((saved, down, mask))
    H, W = h.shape[2:]
    pooled = r.add(h.mean((2, 3)), H * W + H + W, h.abs().mean((2, 3)))
    fc = model.fc
    logits = r.add(
        F.linear(pooled, fc.weight, fc.bias),
        pooled.shape[1] + 1,
        F.linear(pooled.abs(), fc.weight.abs(), fc.bias.abs()),
    )
    r.forward_count = len(r.terms.z)
    r.logits = logits
    # backward, as ResNet.backward and the blocks' backward
    N = g.shape[0]
    r._grad(fc, "weight", g.T @ pooled, N, g.abs().T @ pooled.abs())
    r._grad(fc, "bias", g.sum(0), N, g.abs().sum(0))
    gp = r.add(g @ fc.weight, fc.weight.shape[0], g.abs() @ fc.weight.abs())
    grad = r.add(
        (gp / (H * W))[:, :, None, None].expand(h.shape), 4, (gp.abs() / (H * W))[:, :, None, None].expand(h.shape)
    )
    for saved, down, mask in reversed(tape):
        grad = grad * mask
        grad_identity = grad
        for i, item in reversed(list(enumerate(saved))):
            conv, bn, a, s = item[:4]
            if i + 1 < len(saved):
                grad = grad * item[4]
            grad = r.conv_backward(conv, a, r.bn_backward(bn, s, grad))
        if down is not None:
            conv, bn, a, s = down
            grad_identity = r.conv_backward(conv, a, r.bn_backward(bn, s, grad_identity))
        grad = r.add(grad + grad_identity, 2, grad.abs() + grad_identity.abs())
    flat = torch.zeros_like(pre_pool).flatten(2)
    grad = r.add(
        flat.scatter_add(2, idx, grad.flatten(2)).view(pre_pool.shape),
        2,
        flat.scatter_add(2, idx, grad.abs().flatten(2)).view(pre_pool.shape),
    )
    grad = r.bn_backward(model.bn1, stem_bn, grad * stem_mask)
    return r.conv_backward(model.conv1, x, grad)


def float32_gradient_error_bounds(model: torch.nn.Module, x, grad_output, branches, directions):
    """Exact gradients of one training step and bounds on the float32 error of projections of them.

    Parameters
    ----------
    model : torchvision ResNet whose float32 weights npresnet holds; used in float64 on a deep copy
    x : numpy.ndarray float32, shape (N, 3, H, W); grad_output : numpy.ndarray float32, shape (N, classes)
        Taken as exact: the float32 run receives these very values.
    branches : (relu_masks, pool_indices), from :func:`float32_training_branches`
    directions : dict
        ``key -> v``, an array of the gradient's shape, for each gradient to bound: a state_dict
        parameter name, or ``"input"``.

    Returns
    -------
    exact : dict, key -> numpy.ndarray float64, every gradient (and ``"input"``) on the float32 run's branches
    bounds : dict, key -> float
        ``|<v, grad_float32> - <v, exact>| <= bounds[key]`` (the module docstring's bound, first order).
    flips : list of (what, margin, bound)
        Every branch the float32 run took differently from the exact computation, with the exact
        margin (``|relu input|``, or the window's best value minus the one taken) and the bound on
        that margin's float32 error.
    """
    model = copy.deepcopy(model).double()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.as_tensor(np.asarray(x)).double().requires_grad_(True)  # roots the graph
    g = torch.as_tensor(np.asarray(grad_output)).double().requires_grad_(True)  # so does every gradient
    r = _Replay(model, *branches)
    with torch.enable_grad():
        grad_x = _train_step(r, model, x, g)
        r.grads["input"] = grad_x
        outputs = {key: (r.grads[key] * torch.as_tensor(np.asarray(v)).double()).sum() for key, v in directions.items()}
        margins = [
            (what, margin.flatten()[i])
            for what, margin, differs in r.branch_margins
            for i in differs.flatten().nonzero()[:, 0]
        ]
        bounds = {key: _bound(f, r.terms) for key, f in outputs.items()}
        flips = [(what, float(m.detach()), _bound(m, r.terms, r.forward_count)) for what, m in margins]
    exact = {key: z.detach().numpy() for key, z in r.grads.items()}
    return exact, bounds, flips


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
