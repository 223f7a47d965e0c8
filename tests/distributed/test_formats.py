"""The embed outputs as the ecosystem reads them: xarray over the Zarr store, pandas and pyarrow over Parquet.

Oracles: the image list given to ``embed``, the features read back with plain ``zarr``, the
weights file's SHA-256 computed here with ``hashlib``, and ``npresnet.__version__``.
"""

import hashlib

import numpy
import pytest

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("torch")

import npresnet  # noqa: E402
from _helpers import distributed as shared  # noqa: E402

images, torch_model, client, good, run = shared.images, shared.torch_model, shared.client, shared.good, shared.run


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_xarray_opens_the_features_with_named_dimensions_and_the_paths_as_a_coordinate(
    tmp_path, torch_model, images, client
):
    xarray = pytest.importorskip("xarray")
    _, weights = torch_model
    paths = images[0][:10]  # the first is unreadable
    run(paths, weights, tmp_path, client, predictions=None)
    ds = xarray.open_zarr(tmp_path / "a.zarr", consolidated=False)
    assert ds["features"].dims == ("image", "feature") and ds.sizes["image"] == len(paths)
    assert ds["errors"].dims == ("image",)
    assert "paths" in ds.coords and ds.coords["paths"].values.tolist() == paths
    assert ds["features"].coords["paths"].values.tolist() == paths
    stored = zarr.open_group(tmp_path / "a.zarr", mode="r")
    numpy.testing.assert_array_equal(ds["features"].values, stored["features"][:])
    assert ds["errors"].values.tolist() == stored["errors"][:].tolist() and ds["errors"].values[0] != ""
    attrs = ds["features"].attrs
    assert (attrs["arch"], attrs["layer"]) == ("resnet18", "avgpool")
    assert attrs["weights_sha256"] == sha256(weights) and attrs["npresnet_version"] == npresnet.__version__
    assert ds.attrs["npresnet"]["weights_sha256"] == sha256(weights)


def test_parquet_parts_carry_the_run_in_key_value_metadata_for_pyarrow_and_pandas(tmp_path, torch_model, good, client):
    _, weights = torch_model
    run(good, weights, tmp_path, client, features=None)
    expected = {
        "model": "resnet18",
        "layer": "fc",
        "weights_sha256": sha256(weights),
        "npresnet_version": npresnet.__version__,
    }
    for part in sorted((tmp_path / "a.parquet").glob("part-*.parquet")):
        metadata = pq.read_schema(part).metadata
        assert {key: metadata[f"npresnet.{key}".encode()].decode() for key in expected} == expected
    assert pq.read_table(tmp_path / "a.parquet").schema.metadata[b"npresnet.model"] == b"resnet18"
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(tmp_path / "a.parquet")
    assert frame.attrs == expected and len(frame) == len(good)
