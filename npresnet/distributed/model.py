"""The model a job runs: weights checked once on the client, built once per worker.

The client reads the weight file, checks that it fits the architecture (with the same
messages as ``npresnet predict``) and hashes its bytes: all before any cluster is touched.
Workers receive the state dict once (scattered with ``broadcast=True``) and build the model
from it once, keyed by ``(arch, weights SHA-256, backend)``, in :class:`ModelCache`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from ..errors import WeightsError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy
    from distributed import Client, Scheduler, Worker

    from .._typing import Array, PathLike
    from ..models.resnet import ResNet

__all__ = ["ModelKey", "load_checked_weights", "file_sha256", "ModelCache", "PLUGIN_NAME", "model_loads"]

PLUGIN_NAME = "npresnet-model-cache"
_CACHED_MODELS = 2  # models kept per worker: the current job's and one other


@dataclass(frozen=True)
class ModelKey:
    """What identifies a built model on a worker."""

    arch: str
    num_classes: int
    weights_sha256: str
    backend: str = "numpy"


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_from_state(key: ModelKey, state_dict: Mapping[str, Array]) -> ResNet:
    """Return an eval-mode model of ``key.arch`` holding ``state_dict``, on ``key.backend``."""
    from ..models.registry import fit_state_dict

    model = fit_state_dict(key.arch, state_dict)
    if key.backend != "numpy":
        model.to(key.backend)
    return model


def load_checked_weights(arch: str, path: PathLike) -> tuple[ModelKey, dict[str, numpy.ndarray]]:
    """Read ``path``, check that it fits ``arch`` and return ``(ModelKey, state_dict)``.

    The classifier size comes from the file (``fc.weight`` rows), as in ``npresnet predict``.

    Raises
    ------
    ValueError
        An unknown architecture (close names suggested), before the file is read, as ``predict``.
    WeightsError
        ``cannot read weights: ...`` or ``PATH does not fit ARCH ...`` (the messages of ``predict``:
        both come from :func:`npresnet.models.registry.fit_state_dict`).
    """
    from ..models.registry import check_arch, fit_state_dict
    from ..weights import load_weights

    check_arch(arch)

    try:
        state_dict = load_weights(path)
        digest = file_sha256(path)
    except (WeightsError, OSError) as err:
        raise WeightsError(f"cannot read weights: {err}") from None
    fc = state_dict.get("fc.weight")
    num_classes = fc.shape[0] if fc is not None and fc.ndim == 2 and fc.size > 0 else 1000  # as fit_state_dict
    key = ModelKey(arch, int(num_classes), digest)
    fit_state_dict(arch, state_dict, str(path))  # every key and shape checked here, before any task exists
    return key, state_dict


def _worker_plugin_base() -> type:
    try:
        from distributed import WorkerPlugin
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('running on Dask needs dask[distributed]: pip install "npresnet[distributed]"') from None

    base: type = WorkerPlugin  # a class; Any to a type check run without distributed installed
    return base


if TYPE_CHECKING:
    from distributed import WorkerPlugin
else:
    WorkerPlugin = _worker_plugin_base()


# Where the type check runs without distributed installed (CI's lint environment), WorkerPlugin is Any, which
# strict mode refuses as a base class; with distributed installed the ignore is unused.
class ModelCache(WorkerPlugin):  # type: ignore[misc, unused-ignore]
    """A Dask worker plugin holding the models this worker has built.

    ``get(key, state_dict)`` returns ``(model, lock)``: the model built from ``state_dict``
    the first time ``key`` is asked for, the same object afterwards. ``loads`` counts the
    builds per key, so a test (or a curious user, via :func:`model_loads`) can check that
    a worker built each model once. The lock serialises forward passes on workers with
    several threads (npresnet models keep no per-call state, but capture hooks are added
    to the shared model).
    """

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self._models: OrderedDict[ModelKey, tuple[ResNet, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads: dict[ModelKey, int] = {}

    def __getstate__(self) -> dict[str, object]:  # sent to workers empty
        """Pickle as nothing: each worker builds its own model."""
        return {}

    def __setstate__(self, state: object) -> None:
        """Unpickle as a fresh, empty cache."""
        type(self).__init__(self)

    def get(self, key: ModelKey, state_dict: Mapping[str, Array]) -> tuple[ResNet, threading.Lock]:
        """Return the cached model for ``key`` and its lock, built from ``state_dict`` on first use."""
        with self._lock:
            if key not in self._models:
                self._models[key] = (build_from_state(key, state_dict), threading.Lock())
                self.loads[key] = self.loads.get(key, 0) + 1
                while len(self._models) > _CACHED_MODELS:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
            return self._models[key]


def ensure_plugin(client: Client) -> None:
    """Register :class:`ModelCache` on every worker (and future ones) unless it is already there.

    Registering again would replace the plugin and its models, so an existing one is kept.
    """

    def registered(dask_scheduler: Scheduler) -> bool:  # Dask passes the scheduler by this name
        return PLUGIN_NAME in dask_scheduler.worker_plugins

    # unannotated in distributed (and Any where distributed is not installed, so the ignore may be unused)
    if not client.run_on_scheduler(registered):  # type: ignore[no-untyped-call, unused-ignore]
        client.register_plugin(ModelCache(), name=PLUGIN_NAME)


def model_loads(client: Client) -> dict[str, dict[ModelKey, int]]:
    """``{worker address: {ModelKey: builds}}``: how many times each worker built each model."""

    def loads(dask_worker: Worker) -> dict[ModelKey, int]:  # Dask passes the worker by this name
        plugin = _plugin(dask_worker)
        return {} if plugin is None else dict(plugin.loads)

    found: dict[str, dict[ModelKey, int]] = client.run(loads)
    return found


def _plugin(worker: Worker) -> ModelCache | None:
    """Return the :class:`ModelCache` of ``worker``, or None before :func:`ensure_plugin` registered it."""
    return cast("ModelCache | None", worker.plugins.get(PLUGIN_NAME))  # only a ModelCache is registered so


def cached_model(key: ModelKey, state_dict: Mapping[str, Array]) -> tuple[ResNet, threading.Lock]:
    """``(model, lock)`` from this worker's cache (built now if needed); outside a worker, a fresh build."""
    try:
        from distributed import get_worker

        plugin = _plugin(get_worker())
    except ValueError:  # not running on a worker
        plugin = None
    if plugin is None:
        return build_from_state(key, state_dict), threading.Lock()
    return plugin.get(key, state_dict)
