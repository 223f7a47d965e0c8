"""The two outputs and their resume manifest: a Zarr store of features, a Parquet dataset of predictions.

Both are split into *chunks* of ``chunk_rows`` consecutive images: chunk ``i`` holds rows
``i·chunk_rows …`` and is written by exactly one task. Every write is atomic, so a chunk is
either complete or absent, and a re-run computes only the chunks that are absent:

``features.zarr/`` (Zarr v3 group; its attributes hold the manifest)
    ``features``  (N, D) float32, chunks (chunk_rows, D); NaN rows for unreadable images
    ``errors``    (N,) str, ``""`` or the reason the image could not be read
    ``paths``     (N,) str, written when the store is created
    ``done``      (n_chunks,) bool, chunks of 1: set after a chunk's other arrays are written
``preds.parquet/`` (a directory that ``pyarrow.parquet.read_table`` reads as one table)
    ``_npresnet.json``          the manifest
    ``part-00000000.parquet``  chunk 0, …: one file per chunk, present = done

Zarr's local store writes each chunk file to a temporary name and renames it into place;
Parquet parts go through :func:`npresnet._atomic.atomic_write`. A new store is built under
a temporary name and renamed into place, so a half-created store never appears either.

An existing output is reused only if its manifest equals this run's (same image list,
weights, architecture, preprocessing, chunking); otherwise it is refused, never mixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil

import numpy

from .._atomic import atomic_write

__all__ = ["OutputMismatchError", "FeatureStore", "PredictionStore", "FORMAT"]

FORMAT = "npresnet-embed/1"
_PATH_CHUNK = 65536  # rows per chunk of the paths array
_MANIFEST = "_npresnet.json"


class OutputMismatchError(ValueError):
    """An existing output was made by a different run (other images, weights or settings), or is not ours."""


def _differences(found: dict, wanted: dict) -> list[str]:
    return [
        f"{k}: existing {found.get(k)!r}, this run {wanted.get(k)!r}" for k in wanted if found.get(k) != wanted.get(k)
    ]


def _check_manifest(path, found, wanted):
    if not isinstance(found, dict) or found.get("format") != FORMAT:
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


@contextlib.contextmanager
def _build_in_place(path):
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


def _zarr():
    try:
        import zarr
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('writing features needs zarr: pip install "npresnet[distributed]"') from None
    return zarr


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('writing predictions needs pyarrow: pip install "npresnet[distributed]"') from None
    return pyarrow


class FeatureStore:
    """A Zarr v3 store of features, ``row i = paths[i]`` (layout in the module docstring)."""

    def __init__(self, path, manifest: dict):
        self.path = os.fspath(path)
        self.manifest = manifest

    @property
    def n_chunks(self) -> int:
        return -(-self.manifest["num_images"] // self.manifest["chunk_rows"])

    def create_or_check(self, paths) -> None:
        """Create the store (paths written, nothing done), or check that the existing one is this run's."""
        zarr = _zarr()
        if os.path.lexists(self.path):
            try:
                found = dict(zarr.open_group(self.path, mode="r").attrs).get("npresnet")
            except Exception:  # not a zarr group at all
                found = None
            _check_manifest(self.path, found, self.manifest)
            return
        n, rows, dim = self.manifest["num_images"], self.manifest["chunk_rows"], self.manifest["feature_dim"]
        with _build_in_place(self.path) as temporary:
            group = zarr.open_group(temporary, mode="w-")
            group.create_array("features", shape=(n, dim), chunks=(rows, dim), dtype="float32", fill_value=numpy.nan)
            group.create_array("errors", shape=(n,), chunks=(rows,), dtype=str)
            stored = group.create_array("paths", shape=(n,), chunks=(min(n, _PATH_CHUNK),), dtype=str)
            for start in range(0, n, _PATH_CHUNK):
                stored[start : start + _PATH_CHUNK] = numpy.asarray(paths[start : start + _PATH_CHUNK], dtype=str)
            group.create_array("done", shape=(self.n_chunks,), chunks=(1,), dtype=bool, fill_value=False)
            group.attrs["npresnet"] = self.manifest  # last: a store with a manifest is complete

    def done_chunks(self) -> set[int]:
        done = _zarr().open_array(os.path.join(self.path, "done"), mode="r")[:]
        return set(numpy.flatnonzero(done).tolist())

    def write_chunk(self, index: int, start: int, features, errors) -> None:
        """Write rows ``start … start+len(errors)``, then mark chunk ``index`` done.

        ``features`` is (n, D) float32, ``errors`` n strings ('' for a readable image)."""
        zarr = _zarr()
        stop = start + len(errors)
        zarr.open_array(os.path.join(self.path, "features"), mode="r+")[start:stop] = features
        zarr.open_array(os.path.join(self.path, "errors"), mode="r+")[start:stop] = numpy.asarray(errors, dtype=str)
        zarr.open_array(os.path.join(self.path, "done"), mode="r+")[index] = True

    def remove_leftovers(self) -> int:
        """Delete temporary files left by writers that were killed mid-write; returns how many."""
        removed = 0
        for root, _dirs, files in os.walk(self.path):
            for name in files:
                if name.endswith(".partial"):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(root, name))
                        removed += 1
        return removed


class PredictionStore:
    """A directory of Parquet parts, one per chunk, with the manifest beside them."""

    def __init__(self, path, manifest: dict):
        self.path = os.fspath(path)
        self.manifest = manifest

    def part(self, index: int) -> str:
        return os.path.join(self.path, f"part-{index:08d}.parquet")

    def create_or_check(self, paths=None) -> None:
        if os.path.lexists(self.path):
            try:
                with open(os.path.join(self.path, _MANIFEST), encoding="utf-8") as f:
                    found = json.load(f)
            except (OSError, ValueError):
                found = None
            _check_manifest(self.path, found, self.manifest)
            return
        with _build_in_place(self.path) as temporary, atomic_write(os.path.join(temporary, _MANIFEST)) as f:
            f.write(json.dumps(self.manifest, indent=1).encode("utf-8"))

    def done_chunks(self) -> set[int]:
        done = set()
        for name in os.listdir(self.path):
            if name.startswith("part-") and name.endswith(".parquet"):
                with contextlib.suppress(ValueError):
                    done.add(int(name[5:-8]))
        return done

    def write_chunk(self, index: int, table) -> None:
        """Write one chunk's table (a ``pyarrow.Table``) atomically as its part file."""
        pq = _pyarrow().parquet
        with atomic_write(self.part(index)) as f:
            pq.write_table(table, f)

    def remove_leftovers(self) -> int:
        removed = 0
        for name in os.listdir(self.path):
            if name.startswith(".part-") and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.path, name))
                    removed += 1
        return removed


def predictions_table(rows, paths, top_indices, top_probs, labels, errors):
    """A ``pyarrow.Table`` of one chunk: row, path, top_indices, top_probs, top_labels, error.

    ``top_*`` are lists of K entries (null for an unreadable image); ``error`` is null for a good one.
    """
    pa = _pyarrow()
    schema = pa.schema(
        [
            ("row", pa.int64()),
            ("path", pa.string()),
            ("top_indices", pa.list_(pa.int32())),
            ("top_probs", pa.list_(pa.float64())),
            ("top_labels", pa.list_(pa.string())),
            ("error", pa.string()),
        ]
    )
    return pa.table([rows, paths, top_indices, top_probs, labels, errors], schema=schema)
