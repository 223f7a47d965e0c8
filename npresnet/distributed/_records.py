"""What both embed outputs share: the manifest check, the chunk records and how a new store is built.

A chunk's *record* names every file its task wrote with its size and SHA-256, and the digest
of the manifest it was written under (:func:`manifest_digest`); :func:`_verifies` is the one
test of "done" that :class:`~npresnet.distributed.store.FeatureStore` and
:class:`~npresnet.distributed.predictions.PredictionStore` apply (the layouts are described
in :mod:`npresnet.distributed.store`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict

from . import fs

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "OutputMismatchError",
    "FORMAT",
    "manifest_digest",
    "Manifest",
    "FeatureManifest",
    "PredictionManifest",
    "Counts",
    "Record",
]

FORMAT = "npresnet-embed/3"
_MANIFEST = "_npresnet.json"
_RECORDS = "_records"
_MAX_METADATA_BYTES = 1 << 20  # a zarr.json, a manifest or a record larger than this is not ours


class OutputMismatchError(ValueError):
    """An existing output was made by a different run (other images, weights or settings), or is not ours."""


class Manifest(TypedDict):
    """The settings of a run that both outputs record: two runs write to one output only if equal."""

    format: str
    npresnet_version: str
    arch: str
    num_classes: int
    weights_sha256: str
    num_images: int
    paths_sha256: str
    chunk_rows: int
    resize_size: int
    crop_size: int
    mean: list[float]
    std: list[float]
    backend: str


class FeatureManifest(Manifest):
    """The manifest of a Zarr features store: the shared settings and the features' layer and layout."""

    layer: str
    feature_dim: int
    dtype: str
    storage_rows: int


class PredictionManifest(Manifest):
    """The manifest of a Parquet predictions output: the shared settings and the classes per image."""

    top: int


class Counts(TypedDict):
    """A chunk's error rows, kept in its record: all of them, and those whose reason was transient."""

    errors: int
    retryable: int


#: A chunk record: ``{"key": manifest digest, "files": {relative path: [size, sha256]}, **Counts}``.
#: Read back from an output it is JSON as ``json.loads`` decodes it, trusted only once it verifies.
Record: TypeAlias = dict[str, Any]


def manifest_digest(manifest: Mapping[str, object]) -> str:
    """SHA-256 of the manifest's canonical JSON: the run key every chunk record carries."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode("utf-8")).hexdigest()


def _file_record(data: bytes) -> list[int | str]:
    return [len(data), hashlib.sha256(data).hexdigest()]


def _differences(found: Mapping[str, object], wanted: Mapping[str, object]) -> list[str]:
    return [
        f"{k}: existing {found.get(k)!r}, this run {wanted.get(k)!r}" for k in wanted if found.get(k) != wanted.get(k)
    ]


def _check_manifest(path: str, found: object, wanted: Mapping[str, object]) -> None:
    if not isinstance(found, dict) or not str(found.get("format", "")).startswith("npresnet-embed/"):
        raise OutputMismatchError(
            f"{path} exists and is not an npresnet embed output; refusing to write into it (choose another output path)"
        )
    diffs = _differences(found, wanted)
    if diffs:
        what = (
            "a different image list"
            if any(d.startswith(("paths_sha256", "num_images")) for d in diffs)
            else "different settings"
        )
        raise OutputMismatchError(
            f"{path} was written for {what}; refusing to mix results. Use another output "
            "path, or delete it to start over. Differences: " + "; ".join(diffs)
        )


def _max_entries(n_chunks: int) -> int:
    """More entries than any output of ``n_chunks`` chunks holds (≤ 8 files and directories per chunk)."""
    return 16 * n_chunks + 10_000


def _json(data: bytes | None) -> Any:  # any JSON value, as json.loads decodes it: checked by its users
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


@contextlib.contextmanager
def _build_in_place(path: str) -> Iterator[str]:
    """Yield a temporary directory next to ``path``; on success rename it to ``path`` (which must not exist)."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{path}: the directory {parent} does not exist")
    temporary = os.path.join(parent, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    os.mkdir(temporary)
    try:
        yield temporary
        os.rename(temporary, path)  # atomic; fails if something appeared at path meanwhile
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _verified_files(
    root: str, record: object, digest: str, seen: dict[tuple[object, ...], bool] | None = None
) -> dict[str, bytes] | None:
    """Read and verify the files ``record`` names: ``{relative path: bytes}``, or None if any fails.

    None unless the record was written under ``digest`` and each file has its recorded size and
    SHA-256. With ``seen``, a file already verified
    there is not read again (and its bytes are not returned: only whether all verify matters then).
    """
    if not isinstance(record, dict) or record.get("key") != digest or not isinstance(record.get("files"), dict):
        return None
    found: dict[str, bytes] = {}
    for relative, expected in record["files"].items():
        if not (isinstance(expected, list) and len(expected) == 2 and isinstance(expected[0], int)):
            return None
        known = (relative, *expected) if isinstance(expected[1], str) else None
        if seen is not None and known is not None and known in seen:
            if not seen[known]:
                return None
            continue
        try:
            data = fs.read_bytes(root, relative, expected[0])
        except ValueError:  # not a plain relative path: an edited record
            return None
        ok = data is not None and _file_record(data) == expected
        if seen is not None and known is not None:
            seen[known] = ok
        if data is None or not ok:
            return None
        found[relative] = data
    return found


def _verifies(root: str, record: object, digest: str, seen: dict[tuple[object, ...], bool] | None = None) -> bool:
    """Return True if ``record`` was written under ``digest`` and each file it names has its size and SHA-256."""
    return _verified_files(root, record, digest, seen) is not None
