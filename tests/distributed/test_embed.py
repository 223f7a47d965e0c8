"""npresnet.distributed and ``npresnet embed`` on local Dask clusters (no network).

Oracles: single-process ``npresnet predict`` (its JSON output) for the predictions, and
torchvision's own ResNet-18 — preprocessing by torchvision's transforms, features taken
by a forward hook on ``avgpool`` — for the features. Faults: a worker process killed
mid-run, a command killed mid-run then resumed, unreadable images among good ones,
a different image list or different weights against an existing output.

Small on purpose (CI has 2 cores): ~200 images of at most 48×48 px, resized to 40 and
cropped to 32, ResNet-18 with 10 classes.
"""

import contextlib
import copy
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

pytest.importorskip("distributed")
dask = pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
pq = pytest.importorskip("pyarrow.parquet")
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torchvision import transforms  # noqa: E402
from torchvision.datasets.folder import pil_loader  # noqa: E402

from _helpers import distributed as shared  # noqa: E402
from _rounding import float32_error_bounds, float32_stage_error_bounds  # noqa: E402
from npresnet import cli  # noqa: E402
from npresnet.backend import available_backends, cupy_unavailable_reason  # noqa: E402
from npresnet.distributed import OutputMismatchError, embed, model_loads  # noqa: E402
from npresnet.distributed.cluster import connect  # noqa: E402
from npresnet.errors import WeightsError  # noqa: E402

RESIZE, CROP, TOP, CLASSES, SIZE_ARGS = shared.RESIZE, shared.CROP, shared.TOP, shared.CLASSES, shared.SIZE_ARGS
NOWHERE, leftovers = shared.NOWHERE, shared.leftovers
images, torch_model = shared.images, shared.torch_model  # module-scoped fixtures: this module builds its own


@pytest.fixture(scope="module")
def oracle(torch_model, images):
    """Per path: ``predict``'s JSON entry (or None when it skipped the file) and torchvision's avgpool features."""
    model, weights = torch_model
    paths, bad = images
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(
            [
                "predict",
                *paths,
                "--arch",
                "resnet18",
                "--weights",
                str(weights),
                "--top",
                str(TOP),
                "--resize-size",
                str(RESIZE),
                "--crop-size",
                str(CROP),
                "--format",
                "json",
            ]
        )
    assert status == 1 and all(p in err.getvalue() for p in bad)
    predicted = {entry["path"]: entry for entry in json.loads(out.getvalue())}
    assert len(predicted) == len(paths) - len(bad)

    preset = transforms.Compose(
        [
            transforms.Resize(RESIZE),
            transforms.CenterCrop(CROP),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    good = [p for p in paths if p not in bad]
    rng = numpy.random.default_rng(0)
    exact = {}
    for path in good:  # float64 values and the float32 rounding bounds of what the outputs hold
        x = preset(pil_loader(path))[None].numpy()  # (1, 3, CROP, CROP) float32, the input npresnet sees too
        with torch.no_grad():
            logits = copy.deepcopy(model).double()(torch.from_numpy(x).double())[0]
        probs = torch.softmax(logits, dim=0).numpy()
        classes = sorted({t["index"] for t in predicted[path]["top"]} | set(numpy.argsort(-probs)[: TOP + 1].tolist()))
        p, p_bound = float32_error_bounds(model, x, lambda z, c=classes: torch.softmax(z, dim=1)[0, c])
        index = [int(rng.integers(512)), int(rng.integers(512))]
        f, f_bound = float32_error_bounds(model, x, lambda h, i=index: h[0, i], features=True)
        exact[path] = {
            "features": (index, f, f_bound),
            "probs": {c: (v, b) for c, v, b in zip(classes, p, p_bound)},
        }
    return predicted, exact


def check_outputs(paths, bad, oracle, features_path=None, predictions_path=None):
    """Every row of the outputs against the oracle: order, errors, features, top-K and probabilities."""
    predicted, exact = oracle
    if features_path is not None:
        group = zarr.open_group(features_path, mode="r")
        assert group["paths"][:].tolist() == paths  # row i = path i
        feats, errors = group["features"][:], group["errors"][:].tolist()
        assert feats.shape == (len(paths), 512) and feats.dtype == numpy.float32
        assert group["done"][:].all()
        for i, path in enumerate(paths):
            if path in bad:
                assert path in errors[i] and numpy.isnan(feats[i]).all()
            else:
                assert errors[i] == ""
                # sampled features within the float32 bound derived from the arithmetic (tests/_rounding/)
                index, value, bound = exact[path]["features"]
                assert (numpy.abs(feats[i, index] - value) <= bound).all(), path
                assert numpy.isfinite(feats[i]).all()
    if predictions_path is not None:
        rows = pq.read_table(predictions_path).to_pylist()
        assert [r["row"] for r in rows] == list(range(len(paths)))
        assert [r["path"] for r in rows] == paths
        for r in rows:
            if r["path"] in bad:
                assert r["path"] in r["error"] and r["top_indices"] is None and r["top_probs"] is None
                continue
            expected = [t["index"] for t in predicted[r["path"]]["top"]]
            probs = exact[r["path"]]["probs"]  # class -> (float64 probability, float32 bound)
            assert r["error"] is None
            assert r["top_labels"] == [f"class {c}" for c in r["top_indices"]]
            for c, q in zip(r["top_indices"], r["top_probs"]):  # each probability within its bound
                assert c in probs and abs(q - probs[c][0]) <= probs[c][1], (r["path"], c)
            # the same classes as predict (another batch, so other rounding): a swap only within the bounds
            for ours, theirs in zip(r["top_indices"], expected):
                if ours != theirs:
                    (p1, b1), (p2, b2) = probs[ours], probs[theirs]
                    assert abs(p1 - p2) <= b1 + b2, (r["path"], ours, theirs)


def running_children(psutil):
    """Child processes still running, less Python's own multiprocessing resource tracker (one per process)."""
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "multiprocessing.resource_tracker" not in " ".join(p.cmdline())
    ]


def test_threaded_cluster_matches_single_process_predict_and_loads_weights_once(tmp_path, torch_model, images, oracle):
    _, weights = torch_model
    paths, bad = images
    feats, preds = tmp_path / "f.zarr", tmp_path / "p.parquet"
    seen = []
    with connect(n_workers=2, processes=False) as client:
        result = embed(
            paths,
            "resnet18",
            weights,
            features=feats,
            predictions=preds,
            client=client,
            batch_size=16,
            top=TOP,
            progress=lambda done, total: seen.append((done, total)),
            **SIZE_ARGS,
        )
        loads = model_loads(client)
    chunks = -(-len(paths) // 16)  # 13
    assert (result.chunks, result.computed, result.skipped) == (chunks, chunks, 0)
    assert seen == [(i, chunks) for i in range(chunks + 1)]
    assert [p for p, _ in result.errors] == [p for p in paths if p in bad]
    check_outputs(paths, bad, oracle, feats, preds)
    # 13 tasks over 2 workers: each worker built the model exactly once, from one broadcast copy
    assert len(loads) == 2 and all(list(per_worker.values()) == [1] for per_worker in loads.values()), loads

    again = embed(
        paths,
        "resnet18",
        weights,
        features=feats,
        predictions=preds,
        scheduler=NOWHERE,
        batch_size=16,
        top=TOP,
        **SIZE_ARGS,
    )  # all chunks done: no cluster is even contacted
    assert (again.computed, again.skipped) == (0, chunks)


def test_process_cluster_survives_a_killed_worker(tmp_path, torch_model, images, oracle):
    psutil = pytest.importorskip("psutil")
    _, weights = torch_model
    paths, bad = images
    feats, preds = tmp_path / "f.zarr", tmp_path / "p.parquet"
    killed = []
    with connect(n_workers=2, processes=True) as client:
        pids = client.run(os.getpid)
        listening = {
            c.laddr.ip
            for p in [psutil.Process(), *running_children(psutil)]
            for c in p.net_connections()
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {"127.0.0.1"}  # scheduler, nannies, workers: loopback only
        blas = str(max(1, len(os.sched_getaffinity(0)) // 2))
        settings = client.run(lambda: [os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")])
        assert all(v == [blas, None] for v in settings.values()), settings  # cores shared, no trim threshold

        def monitoring(dask_worker=None):  # what the worker process itself runs with, not this process's config
            return "profile" in dask_worker.periodic_callbacks, dask.config.get("distributed.admin.tick.interval")

        assert set(client.run(monitoring).values()) == {(False, "500ms")}  # no profiler, a slow health tick

        def kill_one(done, total):
            if done == 4 and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                victim = busy[0]
                killed.append((victim, len(client.processing()[victim])))
                os.kill(pids[victim], signal.SIGKILL)

        result = embed(
            paths,
            "resnet18",
            weights,
            features=feats,
            predictions=preds,
            client=client,
            batch_size=8,
            top=TOP,
            progress=kill_one,
            **SIZE_ARGS,
        )
        assert killed and killed[0][1] >= 1  # the killed worker was running or holding a task
        assert not psutil.pid_exists(pids[killed[0][0]]) or psutil.Process(pids[killed[0][0]]).status() == "zombie"
    assert result.computed == result.chunks == -(-len(paths) // 8)
    check_outputs(paths, bad, oracle, feats, preds)
    assert leftovers(feats, preds) == []
    assert running_children(psutil) == []  # cluster closed, nothing left running


def test_killed_command_resumes_and_equals_an_uninterrupted_run(tmp_path, torch_model, images, oracle):
    _, weights = torch_model
    paths, bad = images[0][:90], images[1]  # 45 chunks of 2, three of them with unreadable images
    chunks = -(-len(paths) // 2)
    # the three runs are the same command in the same environment, so their rows can be compared bit for bit
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def command(features, predictions):
        return [
            sys.executable,
            "-m",
            "npresnet",
            "embed",
            *paths,
            "--out",
            str(features),
            "--predictions",
            str(predictions),
            "--arch",
            "resnet18",
            "--weights",
            str(weights),
            "--batch-size",
            "2",
            "--top",
            str(TOP),
            "--resize-size",
            str(RESIZE),
            "--crop-size",
            str(CROP),
            "--threads",
            "--workers",
            "1",
        ]

    feats, preds = tmp_path / "f.zarr", tmp_path / "p.parquet"
    done_dir = feats / "done" / "c"
    proc = subprocess.Popen(command(feats, preds), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (done_dir.is_dir() and len([f for f in os.listdir(done_dir) if not f.startswith(".")]) >= 5):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # no cleanup of any kind: as a power cut for the job
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    done_before = int(zarr.open_array(feats / "done", mode="r")[:].sum())
    assert 5 <= done_before < chunks

    resumed = subprocess.run(command(feats, preds), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr  # 1: the unreadable images
    summary = resumed.stderr.split("; computed ", 1)[1].split(" were already done")[0]  # "40, 5"
    computed, skipped = (int(n) for n in summary.split(", "))
    assert skipped >= done_before and computed + skipped == chunks and computed < chunks
    whole_f, whole_p = tmp_path / "whole.zarr", tmp_path / "whole.parquet"
    subprocess.run(command(whole_f, whole_p), env=env, capture_output=True, timeout=300, check=False)

    check_outputs(paths, bad, oracle, feats, preds)
    a, b = zarr.open_group(feats, mode="r"), zarr.open_group(whole_f, mode="r")
    numpy.testing.assert_array_equal(a["features"][:], b["features"][:])  # bit for bit (NaN rows included)
    assert a["errors"][:].tolist() == b["errors"][:].tolist()
    assert pq.read_table(preds).equals(pq.read_table(whole_p))
    assert leftovers(feats, preds) == []


def test_different_images_weights_or_foreign_output_are_refused(tmp_path, torch_model, images):
    model, weights = torch_model
    paths, spare = images[0][:12], images[0][12]
    feats, preds = tmp_path / "f.zarr", tmp_path / "p.parquet"
    with connect(n_workers=1, processes=False) as client:
        embed(paths, "resnet18", weights, features=feats, predictions=preds, client=client, batch_size=4, **SIZE_ARGS)
    before = {p: os.stat(p).st_mtime_ns for out in (feats, preds) for p in map(str, out.rglob("*"))}
    for out in ({"features": feats}, {"predictions": preds}):
        with pytest.raises(OutputMismatchError, match="different image list"):
            embed(paths[:11] + [spare], "resnet18", weights, **out, scheduler=NOWHERE, batch_size=4, **SIZE_ARGS)
    other = tmp_path / "other.pth"
    with torch.no_grad():
        model.fc.bias.add_(1)
    torch.save(model.state_dict(), other)
    with torch.no_grad():
        model.fc.bias.sub_(1)
    with pytest.raises(OutputMismatchError, match="weights_sha256"):
        embed(paths, "resnet18", other, features=feats, scheduler=NOWHERE, batch_size=4, **SIZE_ARGS)
    with pytest.raises(OutputMismatchError, match="chunk_rows: existing 4, this run 8"):
        embed(paths, "resnet18", weights, predictions=preds, scheduler=NOWHERE, batch_size=8, **SIZE_ARGS)
    assert before == {p: os.stat(p).st_mtime_ns for out in (feats, preds) for p in map(str, out.rglob("*"))}

    foreign = tmp_path / "mine.zarr"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputMismatchError, match="not an npresnet embed output"):
        embed(paths, "resnet18", weights, features=foreign, scheduler=NOWHERE, **SIZE_ARGS)
    assert os.listdir(foreign) == ["notes.txt"]


def _cli_error(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(argv)
    return status, err.getvalue().split("error: ", 1)[-1]


def test_bad_weights_fail_before_any_task_with_predicts_messages(tmp_path, torch_model, images):
    paths = images[0][1:3]
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    _, resnet18_weights = torch_model
    for weights, arch in (
        (garbage, "resnet18"),
        (tmp_path / "absent.npz", "resnet18"),
        (resnet18_weights, "resnet34"),
        (resnet18_weights, "resnet19"),
    ):
        out = tmp_path / "never.zarr"
        status, message = _cli_error(
            ["embed", *paths, "--arch", arch, "--weights", str(weights), "--out", str(out), "--scheduler", NOWHERE]
        )
        _, expected = _cli_error(["predict", *paths, "--arch", arch, "--weights", str(weights)])
        words = ("unknown architecture",) if arch == "resnet19" else ("cannot read weights", "does not fit")
        assert status == 1 and message == expected and any(w in message for w in words)
        assert not out.exists()
        # the architecture is checked before the file is read (ValueError); the file's problems are WeightsError
        with pytest.raises(ValueError if arch == "resnet19" else WeightsError, match="|".join(words)):
            embed(paths, arch, weights, features=out, scheduler=NOWHERE)


def test_more_classes_than_the_weights_have_are_refused_as_predict_refuses_them(tmp_path, torch_model, images):
    """--top beyond the classes: predict refuses it, and so does embed, before any output exists."""
    paths = images[0][1:3]
    _, weights = torch_model  # 10 classes
    out = tmp_path / "never.parquet"
    status, message = _cli_error(["predict", *paths, "--arch", "resnet18", "--weights", str(weights), "--top", "11"])
    assert status == 1 and "more classes" in message
    with pytest.raises(ValueError, match="more classes than the 10"):
        embed(paths, "resnet18", weights, predictions=out, top=11, scheduler=NOWHERE)
    assert not out.exists()


def test_the_api_holds_the_clis_limits_before_any_output_or_cluster(tmp_path, torch_model, images):
    """Workers beyond one per core, and a task's pass over the 2 GiB working-memory limit, are refused by
    ``embed`` as by ``npresnet embed`` (README, Limits): before a cluster starts or an output exists."""
    paths = images[0][1:4]
    _, weights = torch_model
    out = tmp_path / "never.zarr"
    cores = len(os.sched_getaffinity(0))
    for n_workers in (0, cores + 1, True):
        with pytest.raises(ValueError, match=f"n_workers must be between 1 and {cores}"):
            embed(paths, "resnet18", weights, features=out, n_workers=n_workers)
    # three images in a task of at most 1000: 2.2 GiB at 2048x2048 (predict's test: 16 images need 12 GiB)
    with pytest.raises(ValueError, match=r"on 3 image\(s\) of 2048×2048 .* use batch_size 2 or less"):
        embed(paths, "resnet18", weights, features=out, batch_size=1000, crop_size=2048, scheduler=NOWHERE)
    with pytest.raises(ValueError, match="of 4096×4096 needs 3.0 GiB .* use a smaller crop_size"):
        embed(paths[:1], "resnet18", weights, features=out, crop_size=4096, scheduler=NOWHERE)
    assert not out.exists()


def test_cli_embed_on_its_own_local_process_cluster(tmp_path, torch_model, images, oracle):
    psutil = pytest.importorskip("psutil")
    _, weights = torch_model
    paths, bad = images
    some = paths[:20]  # the first is unreadable
    feats, preds = tmp_path / "f.zarr", tmp_path / "p.parquet"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "npresnet",
            "embed",
            *some,
            "--arch",
            "resnet18",
            "--weights",
            str(weights),
            "--out",
            str(feats),
            "--predictions",
            str(preds),
            "--workers",
            "2",
            "--batch-size",
            "8",
            "--top",
            str(TOP),
            "--resize-size",
            str(RESIZE),
            "--crop-size",
            str(CROP),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "1 of 20 image(s) could not be read" in proc.stderr
    assert all(f"skipped {p}" in proc.stderr for p in some if p in bad)
    assert "computed 3, 0 were already done" in proc.stderr
    check_outputs(some, bad, oracle, feats, preds)
    assert running_children(psutil) == []


def test_cli_embed_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["embed", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--predictions", "--scheduler", "--workers", "--batch-size", "--top", "--layer", "resume"):
        assert flag in text
    status, message = _cli_error(["embed", "a.jpg", "--arch", "resnet18", "--weights", "w.npz"])
    assert status == 1 and "nothing to write" in message
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["embed", "a.jpg", "--arch", "resnet18", "--weights", "w.npz", "--out", "f.zarr", "--workers", "0"])
    assert exit_info.value.code == 2


@pytest.mark.skipif(
    "cupy" not in available_backends(), reason=f"CuPy backend not tested here: {cupy_unavailable_reason()}"
)
def test_cupy_backend_matches_numpy(tmp_path, torch_model, images, oracle):
    _, weights = torch_model
    paths, bad = images
    with connect(n_workers=1, processes=False) as client:
        embed(
            paths,
            "resnet18",
            weights,
            features=tmp_path / "f.zarr",
            predictions=tmp_path / "p.parquet",
            client=client,
            batch_size=16,
            top=TOP,
            backend="cupy",
            **SIZE_ARGS,
        )
    check_outputs(paths, bad, oracle, tmp_path / "f.zarr", tmp_path / "p.parquet")


def test_features_of_a_named_layer_without_predictions(tmp_path, torch_model, images):
    model, weights = torch_model
    paths = [p for p in images[0][:14] if p not in images[1]]
    feats = tmp_path / "layer3.zarr"
    with connect(n_workers=1, processes=False) as client:
        embed(paths, "resnet18", weights, features=feats, layer="layer3", client=client, batch_size=5, **SIZE_ARGS)
    preset = transforms.Compose(
        [
            transforms.Resize(RESIZE),
            transforms.CenterCrop(CROP),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    stored = zarr.open_group(feats, mode="r")
    assert stored["features"].shape == (len(paths), 256 * 2 * 2)  # layer3 at a 32×32 input: 256@2×2
    assert stored.attrs["npresnet"]["layer"] == "layer3"
    # sampled features (the largest and 15 more) of the first and the last image within the float32 bound
    # derived from the arithmetic (tests/_rounding/; one backward pass per feature)
    rng = numpy.random.default_rng(0)
    for i in (0, len(paths) - 1):
        x = preset(pil_loader(paths[i]))[None].numpy()  # (1, 3, CROP, CROP) float32, the input npresnet sees too
        row = stored["features"][i]
        index = sorted({int(numpy.abs(row).argmax()), *rng.choice(row.size, 15, replace=False).tolist()})
        exact, bounds = float32_stage_error_bounds(model, x, "layer3", lambda h, j=index: h.flatten()[j])
        assert (numpy.abs(row[index] - exact) <= bounds).all(), paths[i]
    with pytest.raises(ValueError, match="no modules named"):
        embed(paths, "resnet18", weights, features=tmp_path / "x.zarr", layer="layer9", scheduler=NOWHERE)


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess:
    """``python benchmarks/<script> <args>`` from the repository root; fails the test on a non-zero exit."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_throughput_benchmark_smoke_runs_every_configuration():
    """benchmarks/dask_throughput.py keeps working (its timings are not asserted)."""
    proc = run_benchmark("dask_throughput.py", "--smoke", "--workers", "1", "2")
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith(("| predict", "| dask"))]
    names = [r[0].strip() for r in rows]
    assert names == ["predict (one process)", "predict, 1 BLAS thread", "dask, 1 worker", "dask, 2 workers"]
    assert all(float(r[2].split()[0]) > 0 for r in rows)  # "median (min–max)" images/s
    assert "\nPer image: reading, decoding and preprocessing " in proc.stdout
    assert "\nCeiling: 2 single-threaded processes do at most 2× the 1-thread predict" in proc.stdout


def test_idle_cpu_benchmark_smoke_prints_both_clusters():
    """benchmarks/dask_idle_cpu.py keeps working (its shares are not asserted: CI's machine is shared)."""
    proc = run_benchmark("dask_idle_cpu.py", "--seconds", "0.5", "--rounds", "1")
    rows = [
        line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.startswith(("| Dask", "| embedded"))
    ]
    assert rows == ["Dask defaults", "embedded (embed's cluster)"]
