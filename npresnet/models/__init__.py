"""Model families built from :mod:`npresnet.nn`, and architectures by name (``registry``)."""

from .registry import __all__ as _registry_all
from .registry import (  # noqa: F401
    build_model,
    check_arch,
    describe_fit,
    expected_shapes,
    fit_state_dict,
    identify_architecture,
    match_architectures,
)
from .resnet import *  # noqa: F401,F403
from .resnet import __all__ as _resnet_all

__all__ = [*_resnet_all, *_registry_all]
