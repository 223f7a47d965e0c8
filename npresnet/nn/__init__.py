"""Layer objects and the module tree (``torch.nn``'s names, NumPy/CuPy arrays)."""

from .inputs import check_image_batch
from .layers import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, ReLU
from .module import Module, Sequential, capture_intermediates
from .spec import TensorSpec
from .state_dict import check_state_dict, state_dict_report

__all__ = [
    "Module",
    "Sequential",
    "Conv2d",
    "BatchNorm2d",
    "ReLU",
    "MaxPool2d",
    "AdaptiveAvgPool2d",
    "Linear",
    "TensorSpec",
    "capture_intermediates",
    "check_state_dict",
    "state_dict_report",
    "check_image_batch",
]
