"""
Inference over a folder of images with embed: on a laptop, and on a cluster
============================================================================

``npresnet embed`` runs a ResNet over every image below a folder as Dask tasks, and writes
the pooled features as a Zarr array (row ``i`` is image ``i``) and, optionally, the top-K
classes as a Parquet table. It resumes where it stopped and never computes a finished
chunk twice. This tutorial runs it end to end on a handful of generated images, with seeded
random weights (no download), then shows the cluster variant as text.
"""

# %%
# A folder of images and a weights file
# -------------------------------------
# Six small generated pictures and one file that is not an image; and ResNet-18 weights from
# npresnet's seeded initialisation, saved as ``.npz`` (``npresnet fetch resnet18`` gives the
# published ImageNet weights; a torchvision ``.pth`` works as it is).
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import npresnet

work = Path(tempfile.mkdtemp(prefix="npresnet-embed-"))
photos = work / "photos"
photos.mkdir()
rng = np.random.default_rng(0)
for i in range(6):
    Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)).save(photos / f"img{i}.png")
(photos / "notes.jpg").write_bytes(b"not an image")  # becomes an error row, not a crash

npresnet.save_weights(npresnet.resnet18(rng=0).state_dict(), work / "resnet18.npz")
print(sorted(p.name for p in photos.iterdir()))

# %%
# On a laptop
# -----------
# On the command line::
#
#     pip install -e ".[distributed]"
#     npresnet embed photos/ --arch resnet18 --weights resnet18.npz \
#         --out features.zarr --predictions predictions.parquet --batch-size 4
#
# With no ``--scheduler``, ``embed`` starts a local Dask cluster for the run: one
# single-threaded worker process per core, listening on 127.0.0.1 only. From Python,
# :func:`npresnet.distributed.embed` takes the same settings. To keep this page's build small
# it runs one worker as a thread of this process (``processes=False``; the command's
# ``--threads``); the rows are the same either way.
from npresnet.distributed import embed

result = embed(
    str(photos),
    "resnet18",
    work / "resnet18.npz",
    features=work / "features.zarr",
    predictions=work / "predictions.parquet",
    n_workers=1,
    processes=False,
    batch_size=4,
    top=3,
)
print(f"{result.num_images} images in {result.chunks} chunks: {result.computed} computed, {result.skipped} skipped")
print("unreadable:", [(Path(path).name, reason.split(": ", 1)[-1]) for path, reason in result.errors])

# %%
# The outputs
# -----------
# The features are one row per image, 512 values for ResNet-18 (2048 for ResNet-50); an
# unreadable image's row is NaN and its ``errors`` entry says why. The predictions are a
# Parquet table with the top classes (random weights here, so they mean nothing).
import pyarrow.parquet as pq
import zarr

store = zarr.open_group(str(work / "features.zarr"), mode="r")
X = store["features"][:]  # (N, 512) float32
paths = store["paths"][:]
print(X.shape, X.dtype)
for path, row in zip(paths, X):
    print(f"{Path(str(path)).name:<10} first features {np.round(row[:3], 3)}")
table = pq.read_table(work / "predictions.parquet")  # row, path, top_indices, top_probs, top_labels, error
for record in table.select(["row", "top_indices", "top_probs"]).slice(0, 3).to_pylist():
    print(record["row"], record["top_indices"], np.round(record["top_probs"], 4))

# %%
# Every row is what single-process ``npresnet predict`` gives for that image: the same
# preprocessing (resize the shorter side to 256, crop 224, ImageNet normalisation) and the same
# network. Checked against the model run directly on one image: the two agree to float32
# rounding, not bit for bit, because a batch of four images instead of one changes how the
# matrix products order their sums (the test suite holds such differences to a derived bound).
from npresnet.preprocess import load_and_preprocess

model = npresnet.resnet18(weights=str(work / "resnet18.npz"))
_, features = npresnet.capture_intermediates(model, load_and_preprocess(photos / "img0.png")[None], ["avgpool"])
direct = features["avgpool"].reshape(-1)
print("max |embed − direct| / max |direct| for img0:", float(np.max(np.abs(X[0] - direct)) / np.max(np.abs(direct))))

# %%
# Running the same call again computes nothing: every chunk is verified against its record
# (sizes and SHA-256 of its files) and skipped.
again = embed(
    str(photos),
    "resnet18",
    work / "resnet18.npz",
    features=work / "features.zarr",
    predictions=work / "predictions.parquet",
    n_workers=1,
    processes=False,
    batch_size=4,
    top=3,
)
print(f"second run: {again.computed} computed, {again.skipped} skipped")

# %%
# On a cluster
# ------------
# Not run here. Start a scheduler and workers on machines that share a file system (the
# workers read the image paths and write the outputs), then pass the scheduler's address::
#
#     dask scheduler                                   # on one machine: prints tcp://host:8786
#     dask worker tcp://host:8786 --nthreads 1         # on each machine, one per core
#     npresnet embed /shared/photos --arch resnet50 --weights "$(npresnet fetch resnet50)" \
#         --out /shared/features.zarr --predictions /shared/predictions.parquet \
#         --scheduler tcp://host:8786
#
# From Python, pass ``client=distributed.Client("tcp://host:8786")`` to
# :func:`~npresnet.distributed.embed`. With ``--backend cupy`` each worker runs on a GPU; start
# the cluster with ``dask cuda worker`` (dask-cuda). The weights are read and checked on your
# machine, sent to each worker once, and the model is built once per worker.
import shutil

shutil.rmtree(work)
