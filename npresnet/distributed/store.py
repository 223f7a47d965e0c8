"""The two outputs, their manifests and per-chunk records: Zarr features, Parquet predictions.

Both are split into *chunks* of ``chunk_rows`` consecutive images: chunk ``i`` holds rows
``i·chunk_rows …`` and is written by exactly one task. A chunk is *done* when its *record*
is present and verifies: the record names every file the task wrote with its size and
SHA-256, and the digest of the manifest it was written under. A re-run trusts only done
chunks: any other chunk (absent, half-written, altered, truncated, from another run, or with
an image that failed for a transient reason) is computed again.

``features.zarr/`` (Zarr v3 group; its attributes hold the manifest)
    ``features``  (N, D) float32, chunks (storage_rows, D); NaN rows for unreadable images
    ``errors``    (N,) str, chunks (storage_rows,): ``""`` or the reason the image could not be read
    ``paths``     (N,) str, the absolute image paths, written when the store is created
    ``records``   (n_chunks,) str, chunks of 1: chunk ``i``'s record (JSON)
    ``done``      (n_chunks,) bool, chunks of 1: set after the chunk's record
    ``_staging/`` (not a Zarr node) each task's rows until their storage chunk is written

Zarr chunks are sized for storage, not for the task: a *storage chunk* holds ``storage_rows``
rows, a whole number of task chunks, about :data:`STORAGE_CHUNK_BYTES` (see :func:`storage_rows`).
A task writes its rows to ``_staging/`` (the same Zarr encoding with chunks of ``chunk_rows``),
then its record and ``done`` flag. Once every task chunk of a storage chunk is done, one task
(:meth:`FeatureStore.write_storage_chunk`) reads their rows back, verified against their
records, writes the storage chunk in one atomic rename, points their records at it, and
deletes their staged files. Each chunk's record always names files that exist and verify:
its staged files until the storage chunk is written, then the storage chunk.
``preds.parquet/`` (a directory that ``pyarrow.parquet.read_table`` reads as one table)
    ``_npresnet.json``              the manifest
    ``part-00000000.parquet``       chunk 0, …: one file per chunk (the manifest in its key-value metadata)
    ``_records/00000000.json``      chunk 0's record, written after its part

Every file a task writes is encoded in memory (Zarr chunks by Zarr itself, into a
``MemoryStore``) and written by :func:`.fs.write_bytes`: atomically, and never through a link.
A new store is built under a temporary name and renamed into place, so a half-created store
never appears. An existing output is reused only if its manifest equals this run's (same image
list, weights, architecture, layer, preprocessing, chunking, backend, dtype and npresnet
version); otherwise it is refused, never mixed.

This module holds the Zarr store; :mod:`.predictions` the Parquet one, and :mod:`._records`
what both share (manifest check, chunk records, building a new store in place). Their public
names are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING, Any

import numpy

from . import fs
from ._records import (
    _MAX_METADATA_BYTES,
    FORMAT,
    OutputMismatchError,
    _build_in_place,
    _check_manifest,
    _file_record,
    _json,
    _max_entries,
    _verified_files,
    _verifies,
    manifest_digest,
)
from .predictions import PredictionStore

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

    from zarr.core.buffer import Buffer

    from .._typing import Array, PathLike
    from ._records import Counts, FeatureManifest, Record

__all__ = [
    "OutputMismatchError",
    "FeatureStore",
    "PredictionStore",
    "FORMAT",
    "manifest_digest",
    "storage_rows",
    "STORAGE_CHUNK_BYTES",
]

STORAGE_CHUNK_BYTES = 8 << 20  # the uncompressed size a Zarr chunk of features aims at
_STAGING = "_staging"
_PATH_CHUNK = 65536  # rows per chunk of the paths array
_ARRAYS = ("features", "errors", "records", "done")  # the arrays tasks write, with their zarr.json


def storage_rows(chunk_rows: int, feature_dim: int, num_images: int) -> int:
    """Rows per Zarr chunk of features: the most whole task chunks within :data:`STORAGE_CHUNK_BYTES`.

    That is ``k·chunk_rows`` rows with ``k = max(1, STORAGE_CHUNK_BYTES // (chunk_rows·D·4))``, so a
    chunk is over half the target when one task's rows are at most half of it, and is one task's
    rows when those exceed it. Never more task chunks than the output has.
    """
    task_bytes = chunk_rows * feature_dim * 4  # float32
    n_chunks = -(-num_images // chunk_rows)
    return chunk_rows * max(1, min(STORAGE_CHUNK_BYTES // task_bytes, n_chunks))


def _zarr() -> Any:  # the zarr module (its types are absent where the type check runs without it)
    try:
        import zarr
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('writing features needs zarr: pip install "npresnet[distributed]"') from None
    return zarr


def _memory_array(
    metadata: bytes, chunks: Mapping[str, bytes] | None = None, write: bool = False
) -> tuple[Any, dict[str, Buffer]]:
    """Return a Zarr array in memory with on-disk ``metadata`` (zarr.json bytes) and chunk files ``{key: bytes}``.

    The array is a ``zarr.Array``; the dict is its store's contents, ``{key: zarr buffer}``.
    """
    zarr = _zarr()
    from zarr.core.buffer import cpu
    from zarr.storage import MemoryStore

    contents: dict[str, Buffer] = {"zarr.json": cpu.Buffer.from_bytes(metadata)}
    contents.update({key: cpu.Buffer.from_bytes(data) for key, data in (chunks or {}).items()})
    array = zarr.open_array(MemoryStore(contents), mode="r+" if write else "r")
    return array.with_config({"write_empty_chunks": True}), contents


def _encode(metadata: bytes, selection: int | slice, values: Array | bool | str) -> dict[str, bytes]:
    """Return the chunk files ``{key: bytes}`` Zarr writes for ``array[selection] = values`` (all-fill ones too)."""
    array, contents = _memory_array(metadata, write=True)
    array[selection] = values
    return {key: buffer.to_bytes() for key, buffer in contents.items() if key != "zarr.json"}


def _decode_each(metadata: bytes, chunks: dict[int, bytes]) -> dict[int, object]:
    """``{i: element i}`` of a 1-D array with chunks of 1, from its chunk files; undecodable ones left out."""
    decoded: dict[int, object] = {}
    for i, data in chunks.items():
        with contextlib.suppress(Exception):  # damaged bytes: whatever the codec raises, the chunk is not trusted
            decoded[i] = _memory_array(metadata, {f"c/{i}": data})[0][i]
    return decoded


class FeatureStore:
    """A Zarr v3 store of features, ``row i = paths[i]`` (layout in the module docstring).

    ``path`` is resolved by :func:`.fs.output_root` (absolute, parent resolved, not a link);
    ``metadata`` holds the ``zarr.json`` bytes of the arrays tasks write, read on the client.
    """

    def __init__(self, path: PathLike, manifest: FeatureManifest) -> None:
        self.name = os.fspath(path)  # as given, for messages
        self.path = fs.output_root(path)
        self.manifest = manifest
        self.digest = manifest_digest(manifest)
        self.metadata: dict[str, bytes] = {}

    @property
    def n_chunks(self) -> int:
        """Number of task chunks: ``ceil(num_images / chunk_rows)``."""
        return -(-self.manifest["num_images"] // self.manifest["chunk_rows"])

    def exists(self) -> bool:
        """Whether anything (even a link) is at the output path."""
        return os.path.lexists(self.path)

    def check(self) -> None:
        """Check that the existing store is safe (no links, FIFOs, devices) and was made by this run's settings."""
        fs.scan(self.path, _max_entries(self.n_chunks))
        group = _json(fs.read_bytes(self.path, "zarr.json", _MAX_METADATA_BYTES))
        attributes = group.get("attributes") if isinstance(group, dict) else None
        _check_manifest(self.path, attributes.get("npresnet") if isinstance(attributes, dict) else None, self.manifest)
        self._read_metadata()

    def _read_metadata(self) -> None:
        for name in _ARRAYS:
            data = fs.read_bytes(self.path, f"{name}/zarr.json", _MAX_METADATA_BYTES)
            if data is None:
                raise OutputMismatchError(
                    f"{self.path}: the array {name!r} is missing; delete the output to start over"
                )
            self.metadata[name] = data
        self.metadata.update(self._staging_metadata())

    def _staging_metadata(self) -> dict[str, bytes]:
        """``zarr.json`` bytes of the staged arrays: as ``features`` and ``errors``, in chunks of ``chunk_rows``.

        Built in memory from the manifest (the same bytes on every machine), never written.
        """
        zarr = _zarr()
        from zarr.storage import MemoryStore

        n, rows, dim = self.manifest["num_images"], self.manifest["chunk_rows"], self.manifest["feature_dim"]
        found: dict[str, bytes] = {}
        for name, shape, dtype, fill in (("features", (n, dim), "float32", numpy.nan), ("errors", (n,), str, "")):
            contents: dict[str, Buffer] = {}
            zarr.create_array(
                MemoryStore(contents), shape=shape, chunks=(rows, *shape[1:]), dtype=dtype, fill_value=fill
            )
            found[f"{_STAGING}/{name}"] = contents["zarr.json"].to_bytes()
        return found

    @property
    def chunks_per_storage(self) -> int:
        """Task chunks per storage chunk."""
        return self.manifest["storage_rows"] // self.manifest["chunk_rows"]

    def create(self, paths: Sequence[str]) -> None:
        """Create the store: paths written, nothing done."""
        zarr = _zarr()
        n, rows, dim = self.manifest["num_images"], self.manifest["storage_rows"], self.manifest["feature_dim"]
        with _build_in_place(self.path) as temporary:
            group = zarr.open_group(temporary, mode="w-")
            group.create_array(
                "features",
                shape=(n, dim),
                chunks=(rows, dim),
                dtype="float32",
                fill_value=numpy.nan,
                dimension_names=("image", "feature"),
                attributes=self._described(
                    f"output of {self.manifest['layer']!r} of {self.manifest['arch']}, flattened; NaN where unreadable"
                ),
            )
            group.create_array(
                "errors",
                shape=(n,),
                chunks=(rows,),
                dtype=str,
                dimension_names=("image",),
                attributes=self._described('"" or why the image could not be read'),
            )
            stored = group.create_array(
                "paths", shape=(n,), chunks=(min(n, _PATH_CHUNK),), dtype=str, dimension_names=("image",)
            )
            for start in range(0, n, _PATH_CHUNK):
                stored[start : start + _PATH_CHUNK] = numpy.asarray(paths[start : start + _PATH_CHUNK], dtype=str)
            group.create_array("records", shape=(self.n_chunks,), chunks=(1,), dtype=str, dimension_names=("chunk",))
            group.create_array(
                "done", shape=(self.n_chunks,), chunks=(1,), dtype=bool, fill_value=False, dimension_names=("chunk",)
            )
            group.attrs["npresnet"] = self.manifest  # last: a store with a manifest is complete
        self._read_metadata()

    def _described(self, description: str) -> dict[str, str]:
        """Attributes of a per-image array; ``coordinates`` (a CF convention) makes xarray attach ``paths``."""
        manifest = self.manifest
        return {
            "description": description,
            "coordinates": "paths",
            "arch": manifest["arch"],
            "layer": manifest["layer"],
            "weights_sha256": manifest["weights_sha256"],
            "npresnet_version": manifest["npresnet_version"],
        }

    def _chunk_files(self, name: str) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for i in range(self.n_chunks):
            data = fs.read_bytes(self.path, f"{name}/c/{i}", _MAX_METADATA_BYTES)
            if data is not None:
                found[i] = data
        return found

    def records(self) -> tuple[dict[int, Record], int]:
        """``({chunk: record}, unverified)``: the done chunks whose files verify, and how many others claim done.

        A chunk claims done if its ``done`` flag is present (written last, it is the commit: a record
        without it is a write a killed run left unfinished, not a claim); it is done if, besides, its
        record was written under this manifest and every file it names has the recorded size and SHA-256.
        """
        done = _decode_each(self.metadata["done"], self._chunk_files("done"))
        records = self._records(range(self.n_chunks))
        verified: dict[int, Record] = {}
        seen: dict[tuple[object, ...], bool] = {}  # a storage chunk that several records name is read once
        for i, record in records.items():
            if done.get(i) and _verifies(self.path, record, self.digest, seen):
                verified[i] = record
        claimed = {i for i, flag in done.items() if flag}
        return verified, len(claimed - set(verified))

    def _records(self, indices: Iterable[int]) -> dict[int, Any]:
        """``{i: chunk i's record}`` for those ``indices`` that have one (None where it is not JSON).

        Each as ``json.loads`` decodes it: a ``Record`` unless the file was edited, so trusted once it verifies.
        """
        files: dict[int, bytes] = {}
        for i in indices:
            data = fs.read_bytes(self.path, f"records/c/{i}", _MAX_METADATA_BYTES)
            if data is not None:
                files[i] = data
        decoded = _decode_each(self.metadata["records"], files)
        return {i: _json(str(value).encode("utf-8")) for i, value in decoded.items()}

    def unfinished(self, done: Collection[int]) -> list[int]:
        """Return the storage chunks to write: those with a chunk not in ``done`` or whose record names staged files."""
        k = self.chunks_per_storage
        pending: set[int] = set()
        records = self._records(done)
        for i in range(self.n_chunks):
            record = records.get(i)
            if i not in done or record is None or any(f.startswith(_STAGING + "/") for f in record["files"]):
                pending.add(i // k)
        return sorted(pending)

    def write_chunk(self, index: int, start: int, features: Array, errors: Sequence[str], counts: Counts) -> None:
        """Stage rows ``start … start+len(errors)``, then write the chunk's record, then its ``done`` flag.

        ``features`` is (n, D) float32, ``errors`` n strings ('' for a readable image); ``counts``
        (``errors``, ``retryable``) goes into the record.
        """
        stop = start + len(errors)
        files: dict[str, list[int | str]] = {}
        for name, values in (("features", features), ("errors", numpy.asarray(errors, dtype=str))):
            staged = f"{_STAGING}/{name}"
            for key, data in _encode(self.metadata[staged], slice(start, stop), values).items():
                fs.write_bytes(self.path, f"{staged}/{key}", data)
                files[f"{staged}/{key}"] = _file_record(data)
        self._write_record(index, {"key": self.digest, "files": files, **counts})
        for key, data in _encode(self.metadata["done"], index, True).items():
            fs.write_bytes(self.path, f"done/{key}", data)

    def _write_record(self, index: int, record: Record) -> None:
        for key, data in _encode(self.metadata["records"], index, json.dumps(record, sort_keys=True)).items():
            fs.write_bytes(self.path, f"records/{key}", data)

    def write_storage_chunk(self, index: int) -> None:
        """Write storage chunk ``index`` from its task chunks' files, point their records at it, drop staged files.

        Every task chunk of it must be done (its record verifies); its rows are read from wherever
        its record points (staged files, or the storage chunk an earlier run wrote).

        Raises
        ------
        RuntimeError
            A task chunk's files no longer verify (changed during the run); a re-run computes it again.
        """
        rows, k, dim = self.manifest["chunk_rows"], self.chunks_per_storage, self.manifest["feature_dim"]
        first, last = index * k, min((index + 1) * k, self.n_chunks)
        start, stop = index * self.manifest["storage_rows"], min(last * rows, self.manifest["num_images"])
        records = self._records(range(first, last))
        features = numpy.empty((stop - start, dim), dtype=numpy.float32)  # (storage rows, D)
        errors = numpy.empty(stop - start, dtype=object)
        for i in range(first, last):
            files = _verified_files(self.path, records.get(i), self.digest)
            if files is None:  # a task of an earlier, killed client may have just moved the rows: read again
                records[i] = self._records([i]).get(i)
                files = _verified_files(self.path, records[i], self.digest)
            if files is None:
                raise RuntimeError(
                    f"{self.path}: chunk {i} changed before storage chunk {index} was written; run again to redo it"
                )
            lo, hi = i * rows, min((i + 1) * rows, stop)
            for name, out in (("features", features), ("errors", errors)):
                out[lo - start : hi - start] = self._read_rows(name, files, lo, hi)
        written: dict[str, list[int | str]] = {}
        for name, values in (("features", features), ("errors", errors.astype(str))):
            for key, data in _encode(self.metadata[name], slice(start, stop), values).items():
                fs.write_bytes(self.path, f"{name}/{key}", data)
                written[f"{name}/{key}"] = _file_record(data)
        for i in range(first, last):
            self._write_record(i, {**records[i], "files": written})
        for i in range(first, last):
            for relative in records[i]["files"]:
                if relative.startswith(_STAGING + "/"):
                    fs.remove(self.path, relative)

    def _read_rows(self, name: str, files: dict[str, bytes], lo: int, hi: int) -> Array:
        """Rows ``lo … hi`` of array ``name`` from a record's files (staged or in a storage chunk).

        Returns
        -------
        array
            Shape (hi - lo, D), float32, for ``features``; shape (hi - lo,), str, for ``errors``.
        """
        for prefix in (f"{_STAGING}/{name}/", f"{name}/"):
            chunks = {relative[len(prefix) :]: data for relative, data in files.items() if relative.startswith(prefix)}
            if chunks:
                rows: Array = _memory_array(self.metadata[prefix[:-1]], chunks)[0][lo:hi]
                return rows
        raise RuntimeError(f"{self.path}: the record of rows {lo}–{hi - 1} names no {name} files")

    def remove_leftovers(self) -> int:
        """Delete temporary files left by writers that were killed mid-write, and emptied staging directories."""
        removed = fs.remove_temporaries(self.path)
        fs.remove_empty_directories(self.path, _STAGING)
        return removed
