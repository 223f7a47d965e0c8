"""Dataset-scale inference on Dask: features (Zarr) and predictions (Parquet) for many images.

Needs ``pip install "npresnet[distributed]"`` (dask[distributed], zarr, pyarrow).

>>> from npresnet.distributed import embed                          # doctest: +SKIP
>>> embed("photos/", "resnet50", "resnet50.npz", features="feats.zarr", predictions="preds.parquet")  # doctest: +SKIP

Modules, one job each: ``paths`` (which images, in which order), ``model`` (weights
checked on the client, one model per worker), ``task`` (one chunk of images in, one chunk
of each output out), ``store`` (the outputs, their manifests and verified chunk records),
``fs`` (file access confined to an output), ``lock`` (one run per output),
``cluster`` (embedded local cluster, scheduler address or given client), ``api``.
"""

from ..predictions import softmax_topk  # re-exported: the formula each row uses
from .api import EmbedResult, embed
from .fs import UnsafeOutputError
from .lock import OutputLockedError
from .model import model_loads
from .paths import list_images
from .store import OutputMismatchError

__all__ = [
    "embed",
    "EmbedResult",
    "list_images",
    "model_loads",
    "OutputMismatchError",
    "UnsafeOutputError",
    "OutputLockedError",
    "softmax_topk",
]
