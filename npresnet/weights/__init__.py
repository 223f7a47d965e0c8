"""Weight files: read torchvision ``.pth`` checkpoints, ``.npz`` and ``.safetensors`` without PyTorch.

* :func:`load_weights` ``(path) -> dict[str, numpy.ndarray]``
* :func:`save_weights` ``(state_dict, path)`` writes ``.npz`` or ``.safetensors`` atomically.

Modules: ``pth`` (the ``.pth`` layout explained: zip, storages, tensors), ``_unpickler``
(the restricted pickle machine: opcodes, allowlist, bounds),
``npz``, ``safetensors_io``, ``_checks`` (size and dtype checks shared by
all readers) and ``api`` (format detection and the two functions above).
"""

from ..errors import WeightsError
from .api import detect_format, load_weights, save_weights

__all__ = ["load_weights", "save_weights", "detect_format", "WeightsError"]
