"""npresnet: ResNet from first principles in NumPy/CuPy."""
from . import functional
from .backend import available_backends, get_array_module, to_backend, to_numpy
from .errors import WeightsError
from .shapes import conv_output_size

__version__ = "0.1.0"

__all__ = [
    "functional",
    "available_backends",
    "get_array_module",
    "to_backend",
    "to_numpy",
    "conv_output_size",
    "WeightsError",
]
