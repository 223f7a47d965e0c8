"""A property-testing kit for convolution and pooling: check your own ``conv2d`` against the definition.

Hypothesis strategies draw whole *cases*, hyper-parameters in every form torch accepts and the
arrays, so hypothesis searches and shrinks the values as well as the shapes; the assertions run
your function on a case and compare it with a naive float64 oracle written from the definition,
within the proved rounding bound of the direct algorithm plus the ``atol``/``rtol`` you state.

strategies (``strategies``)
    :func:`conv2d_cases`, :func:`conv_transpose2d_cases`, :func:`pool2d_cases`,
    :func:`adaptive_pool2d_cases`, :func:`invalid_conv2d_cases`.
assertions (``assertions``)
    :func:`assert_conv2d_matches`, :func:`assert_conv_transpose2d_matches`,
    :func:`assert_pool2d_matches`, :func:`assert_adaptive_pool2d_matches`,
    :func:`assert_conv2d_backward_matches`, :func:`assert_conv2d_rejects`.
oracles (``oracles``)
    ``reference_*``: float64 loops, IEEE arithmetic on the definition (NaN and inf rules there).
bounds (``bounds``)
    How the default allowed error is derived.
the first kit (``configs``)
    :class:`ConvConfig`, :class:`PoolConfig`, :class:`AdaptivePoolConfig`, ``*_configs()`` and
    :func:`conv2d_error_bound`: shapes only, values from a seed; still accepted by the assertions.

Examples
--------
>>> from hypothesis import given, settings
>>> from npresnet.functional import conv2d
>>> from npresnet.testing import assert_conv2d_matches, conv2d_cases
>>> @settings(max_examples=20)
... @given(conv2d_cases(forms=("int", "pair", "string")))
... def test_my_conv2d(case):
...     assert_conv2d_matches(conv2d, case)
>>> test_my_conv2d()

Requires ``hypothesis`` (``pip install hypothesis``, or ``pip install "npresnet[test]"``).
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without hypothesis
    raise ImportError(
        'npresnet.testing needs hypothesis: pip install hypothesis (or pip install "npresnet[test]")'
    ) from exc

from .assertions import (
    assert_adaptive_pool2d_matches,
    assert_conv2d_backward_matches,
    assert_conv2d_matches,
    assert_conv2d_rejects,
    assert_conv_transpose2d_matches,
    assert_pool2d_matches,
)
from .cases import FORMS, Case
from .configs import (
    AdaptivePoolConfig,
    ConvConfig,
    PoolConfig,
    adaptive_pool_configs,
    conv2d_configs,
    conv2d_error_bound,
    pool2d_configs,
)
from .oracles import (
    reference_adaptive_avg_pool2d,
    reference_adaptive_max_pool2d,
    reference_avg_pool2d,
    reference_conv2d,
    reference_conv2d_backward,
    reference_conv_transpose2d,
    reference_max_pool2d,
)
from .strategies import (
    adaptive_pool2d_cases,
    conv2d_cases,
    conv_transpose2d_cases,
    invalid_conv2d_cases,
    pool2d_cases,
)

__all__ = [
    # strategies of cases
    "Case",
    "FORMS",
    "conv2d_cases",
    "conv_transpose2d_cases",
    "pool2d_cases",
    "adaptive_pool2d_cases",
    "invalid_conv2d_cases",
    # assertions
    "assert_conv2d_matches",
    "assert_conv_transpose2d_matches",
    "assert_pool2d_matches",
    "assert_adaptive_pool2d_matches",
    "assert_conv2d_backward_matches",
    "assert_conv2d_rejects",
    # oracles
    "reference_conv2d",
    "reference_conv2d_backward",
    "reference_conv_transpose2d",
    "reference_max_pool2d",
    "reference_avg_pool2d",
    "reference_adaptive_avg_pool2d",
    "reference_adaptive_max_pool2d",
    # the first kit's configurations
    "ConvConfig",
    "PoolConfig",
    "AdaptivePoolConfig",
    "conv2d_configs",
    "pool2d_configs",
    "adaptive_pool_configs",
    "conv2d_error_bound",
]
