"""The Parquet output of ``npresnet embed --predictions``: one part per chunk, its record beside it.

Layout (see also :mod:`npresnet.distributed.store`)::

    preds.parquet/                  a directory that pyarrow.parquet.read_table reads as one table
        _npresnet.json              the manifest
        part-00000000.parquet       chunk 0, ...: one file per chunk (the manifest in its key-value metadata)
        _records/00000000.json      chunk 0's record, written after its part
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from .._atomic import atomic_write
from . import fs
from ._records import (
    _MANIFEST,
    _MAX_METADATA_BYTES,
    _RECORDS,
    _build_in_place,
    _check_manifest,
    _file_record,
    _json,
    _max_entries,
    _verifies,
    manifest_digest,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pyarrow import Table  # no type information: Any to the checker

    from .._typing import PathLike
    from ._records import Counts, Manifest, PredictionManifest, Record

__all__ = ["PredictionStore", "parquet_metadata", "predictions_table"]


def _pyarrow() -> Any:  # the pyarrow module, which has no type information
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('writing predictions needs pyarrow: pip install "npresnet[distributed]"') from None
    return pyarrow


class PredictionStore:
    """A directory of Parquet parts, one per chunk, with the manifest and the chunk records beside them."""

    def __init__(self, path: PathLike, manifest: PredictionManifest) -> None:
        self.name = os.fspath(path)  # as given, for messages
        self.path = fs.output_root(path)
        self.manifest = manifest
        self.digest = manifest_digest(manifest)

    @property
    def n_chunks(self) -> int:
        """Number of chunks: ``ceil(num_images / chunk_rows)``."""
        return -(-self.manifest["num_images"] // self.manifest["chunk_rows"])

    @staticmethod
    def part_name(index: int) -> str:
        """Return the file name of chunk ``index``'s Parquet part."""
        return f"part-{index:08d}.parquet"

    def exists(self) -> bool:
        """Whether anything (even a link) is at the output path."""
        return os.path.lexists(self.path)

    def check(self) -> None:
        """Refuse an existing output that is not ours or was made by a different run."""
        fs.scan(self.path, _max_entries(self.n_chunks))
        found = _json(fs.read_bytes(self.path, _MANIFEST, _MAX_METADATA_BYTES))
        _check_manifest(self.path, found, self.manifest)

    def create(self, paths: Sequence[str] | None = None) -> None:
        """Create the empty output (its manifest) atomically; ``paths`` is unused (the Zarr store keeps them)."""
        with _build_in_place(self.path) as temporary, atomic_write(os.path.join(temporary, _MANIFEST)) as f:
            f.write(json.dumps(self.manifest, indent=1).encode("utf-8"))

    def records(self) -> tuple[dict[int, Record], int]:
        """``({chunk: record}, unverified)``, as :meth:`FeatureStore.records`; a part claims done by its record."""
        verified: dict[int, Record] = {}
        unverified = 0
        for i in range(self.n_chunks):
            data = fs.read_bytes(self.path, f"{_RECORDS}/{i:08d}.json", _MAX_METADATA_BYTES)
            if data is None:
                continue
            record = _json(data)
            if _verifies(self.path, record, self.digest):
                verified[i] = record
            else:
                unverified += 1
        return verified, unverified

    def write_chunk(self, index: int, table: Table, counts: Counts) -> None:
        """Write one chunk's table (a ``pyarrow.Table``) as its part, then the chunk's record."""
        pa = _pyarrow()
        table = table.replace_schema_metadata(parquet_metadata(self.manifest))
        sink = pa.BufferOutputStream()
        pa.parquet.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        fs.write_bytes(self.path, self.part_name(index), data)
        record = {"key": self.digest, "files": {self.part_name(index): _file_record(data)}, **counts}
        fs.write_bytes(self.path, f"{_RECORDS}/{index:08d}.json", json.dumps(record, sort_keys=True).encode("utf-8"))

    def remove_leftovers(self) -> int:
        """Delete temporary files left by killed writers; return how many."""
        return fs.remove_temporaries(self.path)


def parquet_metadata(manifest: Manifest) -> dict[str, str]:
    """Return the key-value metadata of every Parquet part: the manifest, its main entries, and pandas' ``attrs``.

    ``pyarrow.parquet.read_schema(part).metadata`` holds ``npresnet`` (the manifest as JSON) and
    ``npresnet.<key>`` for the model, layer, weights hash and version; ``pandas.read_parquet``
    restores the same entries as ``DataFrame.attrs`` (from ``PANDAS_ATTRS``). No creation time:
    a part is the same bytes whenever its task runs, which the chunk records and a bit-identical
    resume depend on.
    """
    attrs = {
        "model": manifest["arch"],
        "layer": "fc",  # the predictions are the softmax of the classifier's logits
        "weights_sha256": manifest["weights_sha256"],
        "npresnet_version": manifest["npresnet_version"],
    }
    return {
        "npresnet": json.dumps(manifest, sort_keys=True),
        **{f"npresnet.{key}": value for key, value in attrs.items()},
        "PANDAS_ATTRS": json.dumps(attrs, sort_keys=True),
    }


def predictions_table(
    rows: Sequence[int],
    paths: Sequence[str],
    top_indices: Sequence[list[int] | None],
    top_probs: Sequence[list[float] | None],
    labels: Sequence[list[str] | None],
    errors: Sequence[str | None],
) -> Table:
    """Return a ``pyarrow.Table`` of one chunk: row, path, top_indices, top_probs, top_labels, error.

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
