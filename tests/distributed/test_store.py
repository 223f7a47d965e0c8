"""The embed output store's guarantees: confinement, refusal before creation, locking, verified resume, retries.

Each test builds a small output (12 images, chunks of 4, ResNet-18 with 10 classes at 32×32) and
then damages, links, locks or re-runs it. The oracle for a resumed output is an uninterrupted
run of the same call, compared bit for bit.
"""

import contextlib
import errno
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy
import pytest

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("torch")

from _helpers import distributed as shared  # noqa: E402
from npresnet import cli, preprocess  # noqa: E402
from npresnet.backend import available_backends  # noqa: E402
from npresnet.distributed.cluster import connect  # noqa: E402
from npresnet.distributed.fs import UnsafeOutputError  # noqa: E402
from npresnet.distributed.lock import OutputLockedError, lock_path  # noqa: E402

ROWS, NOWHERE, SIZE_ARGS, run = shared.ROWS, shared.NOWHERE, shared.SIZE_ARGS, shared.run
# the fixtures: 201 images (module-scoped), ResNet-18 weights (module-scoped), a client, 12 good images
images, torch_model, client, good = shared.images, shared.torch_model, shared.client, shared.good


def snapshot(directory):
    """``{relative path: bytes}`` of every file below ``directory`` (links not followed)."""
    found = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, directory)] = b"<link>" if os.path.islink(path) else open(path, "rb").read()
    return found


def assert_same_outputs(tmp, a, b):
    fa, fb = zarr.open_group(tmp / f"{a}.zarr", mode="r"), zarr.open_group(tmp / f"{b}.zarr", mode="r")
    numpy.testing.assert_array_equal(fa["features"][:], fb["features"][:])
    assert fa["errors"][:].tolist() == fb["errors"][:].tolist() and fa["done"][:].all()
    assert pq.read_table(tmp / f"{a}.parquet").equals(pq.read_table(tmp / f"{b}.parquet"))


# ------------------------------------------------------------------------------------------- confinement
def test_a_linked_directory_inside_the_output_is_refused_and_nothing_is_written_through_it(
    tmp_path, torch_model, good, client
):
    _, weights = torch_model
    run(good, weights, tmp_path, client)
    outside = tmp_path / "outside"
    shutil.move(tmp_path / "a.zarr" / "features" / "c", outside)  # the chunk directory now lives elsewhere
    shutil.rmtree(outside / "0")  # and its one storage chunk is missing: a resume would write it
    os.symlink(outside, tmp_path / "a.zarr" / "features" / "c")
    (tmp_path / "a.zarr" / "done" / "c" / "1").unlink()
    before = snapshot(outside)
    with pytest.raises(UnsafeOutputError, match=r"features/c is a symbolic link"):
        run(good, weights, tmp_path, client)
    assert snapshot(outside) == before  # nothing written outside the output
    assert not os.path.lexists(lock_path(str(tmp_path / "a.zarr")))


def test_a_fifo_or_device_in_the_output_is_refused_without_blocking(tmp_path, torch_model, good, client):
    _, weights = torch_model
    run(good, weights, tmp_path, client)
    manifest = tmp_path / "a.parquet" / "_npresnet.json"
    manifest.unlink()
    os.mkfifo(manifest)  # opening it for reading would block until a writer came
    outcome = []

    def resume():
        try:
            run(good, weights, tmp_path, client, features=None)
        except Exception as err:
            outcome.append(err)

    worker = threading.Thread(target=resume, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "embed blocked on a FIFO in its output"
    assert len(outcome) == 1 and isinstance(outcome[0], UnsafeOutputError) and "a FIFO" in str(outcome[0])


def test_the_output_itself_may_not_be_a_link_but_its_parent_may(tmp_path, torch_model, good, client):
    _, weights = torch_model
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "linked")
    result = run(good[:4], weights, tmp_path / "linked", client, predictions=None)  # the parent is a link: fine
    assert result.computed == 1 and (real / "a.zarr" / "done").is_dir()
    os.symlink(real / "a.zarr", tmp_path / "alias.zarr")
    with pytest.raises(UnsafeOutputError, match="alias.zarr is a symbolic link"):
        run(good[:4], weights, tmp_path, client, features="alias.zarr", predictions=None)


# ----------------------------------------------------------------------------- refused before creation
def test_one_path_for_both_outputs_is_refused_before_anything_is_created(tmp_path, torch_model, good):
    _, weights = torch_model
    for features, predictions in (("out", "out"), ("out", "out/p.parquet"), ("f.zarr/../out", "out/inner")):
        with pytest.raises(ValueError, match="two separate paths"):
            run(good, weights, tmp_path, None, features=features, predictions=predictions, scheduler=NOWHERE)
    assert os.listdir(tmp_path) == []


def test_an_unreachable_scheduler_leaves_no_output(tmp_path, torch_model, good):
    import dask

    _, weights = torch_model
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(OSError, match="cannot reach"):
        run(good, weights, tmp_path, None, scheduler=NOWHERE)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif("cupy" in available_backends(), reason="CuPy is installed here: nothing to refuse")
def test_cupy_without_cupy_leaves_no_output(tmp_path, torch_model, good):
    _, weights = torch_model
    with pytest.raises(ValueError, match="'cupy' is not available"):
        run(good, weights, tmp_path, None, backend="cupy")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------- lock
def test_a_held_output_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(
    tmp_path, torch_model, good, client
):
    _, weights = torch_model
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    lock = lock_path(str(tmp_path / "a.zarr"))
    try:
        with open(lock, "w") as f:
            f.write(f'{{"pid": {holder.pid}, "host": "{socket.gethostname()}", "since": "now"}}')
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid} on {socket.gethostname()}"):
            run(good, weights, tmp_path, client)
        assert sorted(os.listdir(tmp_path)) == [os.path.basename(lock)]  # nothing created, the lock kept
    finally:
        holder.kill()
        holder.wait()
    result = run(good, weights, tmp_path, client)  # the holder is dead: its lock is taken over
    assert result.computed == 3
    assert sorted(os.listdir(tmp_path)) == ["a.parquet", "a.zarr"]  # and released at the end


def test_two_concurrent_runs_on_one_output(tmp_path, torch_model, images):
    """A second run while the first holds the output is refused; the first finishes intact."""
    _, weights = torch_model
    paths = [p for p in images[0] if p not in images[1]]  # ~100 chunks: the first run is still going
    argv = ["embed", *paths, "--arch", "resnet18", "--weights", str(weights), "--out", str(tmp_path / "a.zarr")]
    argv += ["--batch-size", "2", "--resize-size", "40", "--crop-size", "32", "--threads", "--workers", "1"]
    first = subprocess.Popen([sys.executable, "-m", "npresnet", *argv], stderr=subprocess.PIPE, text=True)
    lock = lock_path(str(tmp_path / "a.zarr"))
    try:
        while not os.path.exists(lock):
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.01)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = cli.main(argv)
        assert status == 1 and f"in use by another embed run (pid {first.pid} on" in err.getvalue()
        assert first.wait(300) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
        first.stderr.close()
    assert zarr.open_group(tmp_path / "a.zarr", mode="r")["done"][:].all() and not os.path.exists(lock)


# ----------------------------------------------------------------------------------- paths and errors
def test_relative_paths_reach_workers_that_run_in_another_directory(tmp_path, torch_model, good, monkeypatch):
    _, weights = torch_model
    folder = os.path.dirname(good[0])
    monkeypatch.chdir(folder)
    relative = [os.path.basename(p) for p in good[:6]]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with connect(n_workers=1, processes=True) as processes:
        processes.run(os.chdir, str(elsewhere))
        assert set(processes.run(os.getcwd).values()) == {str(elsewhere)}
        result = run(relative, weights, tmp_path, processes)
    assert result.error_rows == 0 and result.errors == []
    stored = zarr.open_group(tmp_path / "a.zarr", mode="r")
    assert stored["paths"][:].tolist() == good[:6] and not numpy.isnan(stored["features"][:]).any()


def test_the_exit_status_counts_the_error_rows_of_a_resumed_output(tmp_path, torch_model, images):
    _, weights = torch_model
    bad = images[1]
    argv = ["embed", *bad, "--arch", "resnet18", "--weights", str(weights), "--out", str(tmp_path / "a.zarr")]
    argv += ["--batch-size", "2", "--resize-size", "40", "--crop-size", "32", "--threads", "--workers", "1"]
    for attempt in range(2):  # every image unreadable; the second run resumes a complete output
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = cli.main(argv)
        assert status == 1, (attempt, err.getvalue())
        assert f"{len(bad)} of {len(bad)} image(s) could not be read" in err.getvalue()
    assert "computed 0, 3 were already done" in err.getvalue()


def test_a_transient_read_error_is_retried_then_stored_as_retryable_and_retried_by_the_next_run(
    tmp_path, torch_model, good, client, monkeypatch
):
    _, weights = torch_model
    flaky, failures, calls = good[5], [1], []
    real = preprocess.load_and_preprocess

    def load(path, *args):
        if path == flaky:
            calls.append(path)
            if failures[0] > 0:
                failures[0] -= 1
                try:
                    raise OSError(errno.EIO, "Input/output error")
                except OSError:  # as load_image reports it: an ImageError raised while handling the OSError
                    raise preprocess.ImageError(f"{path}: cannot decode image") from None
        return real(path, *args)

    monkeypatch.setattr(preprocess, "load_and_preprocess", load)
    monkeypatch.setattr("npresnet.distributed.task.RETRY_DELAYS", (0.0,))  # one retry, no wait
    result = run(good, weights, tmp_path, client)
    assert len(calls) == 2 and result.error_rows == 0  # failed once, then read on the retry

    failures[0] = 1 << 30  # from now on every attempt fails: the retry too
    whole = run(good, weights, tmp_path, client, features="g.zarr", predictions="g.parquet")
    assert (whole.error_rows, whole.retryable_rows) == (1, 1)
    assert "transient" in str(zarr.open_group(tmp_path / "g.zarr", mode="r")["errors"][5])
    again = run(good, weights, tmp_path, client, features="g.zarr", predictions="g.parquet")
    assert (again.computed, again.retryable_rows) == (1, 1)  # the chunk with the retryable row is computed again
    monkeypatch.setattr(preprocess, "load_and_preprocess", real)
    healed = run(good, weights, tmp_path, client, features="g.zarr", predictions="g.parquet")
    assert (healed.computed, healed.error_rows) == (1, 0)
    assert_same_outputs(tmp_path, "a", "g")


# ------------------------------------------------------------------------------------- verified resume
def _truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _alter(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    ["truncated zarr chunk", "altered zarr chunk", "truncated parquet part", "edited record", "foreign part"],
)
def test_resume_recomputes_damaged_chunks_and_says_how_many(tmp_path, torch_model, good, client, damage):
    model, weights = torch_model
    run(good, weights, tmp_path, client, features="whole.zarr", predictions="whole.parquet")
    run(good, weights, tmp_path, client)
    f, p = tmp_path / "a.zarr", tmp_path / "a.parquet"
    if damage == "truncated zarr chunk":
        _truncate(f / "features" / "c" / "0" / "0")
    elif damage == "altered zarr chunk":
        _alter(f / "errors" / "c" / "0")
    elif damage == "truncated parquet part":
        _truncate(p / "part-00000001.parquet")
    elif damage == "edited record":  # the record claims other file contents
        record = p / "_records" / "00000001.json"
        record.write_text(record.read_text().replace('"errors": 0', '"errors": 1'))
        _alter(p / "part-00000001.parquet")
    else:  # a part written by a run with other weights, record included
        import torch

        other = tmp_path / "other.pth"
        with torch.no_grad():
            model.fc.bias.add_(1)
            torch.save(model.state_dict(), other)
            model.fc.bias.sub_(1)
        run(good, other, tmp_path, client, features=None, predictions="o.parquet")
        for name in ("part-00000001.parquet", "_records/00000001.json"):
            shutil.copyfile(tmp_path / "o.parquet" / name, p / name)
    result = run(good, weights, tmp_path, client)
    # the 3 chunks share one Zarr storage chunk: damage to it makes all three untrusted
    expected = (3, 0, 3) if "zarr" in damage else (1, 2, 1)
    assert (result.computed, result.skipped, result.recomputed) == expected
    assert_same_outputs(tmp_path, "a", "whole")


def test_a_record_without_its_done_flag_is_an_unfinished_write_not_damage(tmp_path, torch_model, good, client):
    """The ``done`` flag is written last: a killed run can leave a chunk's record without it."""
    _, weights = torch_model
    run(good, weights, tmp_path, client, features="whole.zarr", predictions="whole.parquet")
    run(good, weights, tmp_path, client)
    (tmp_path / "a.zarr" / "done" / "c" / "1").unlink()
    assert (tmp_path / "a.zarr" / "records" / "c" / "1").is_file()
    result = run(good, weights, tmp_path, client)
    assert (result.computed, result.skipped, result.recomputed) == (1, 2, 0)
    assert_same_outputs(tmp_path, "a", "whole")


def test_an_edited_manifest_does_not_make_old_chunks_trusted(tmp_path, torch_model, good, client):
    """A manifest edited to match another run's settings: the chunks' records still name the old one."""
    _, weights = torch_model
    run(good, weights, tmp_path, client, features=None, top=2)
    run(good, weights, tmp_path, client, features="whole.zarr", predictions="whole.parquet")
    manifest = tmp_path / "a.parquet" / "_npresnet.json"
    manifest.write_text(manifest.read_text().replace('"top": 2', '"top": 3'))
    result = run(good, weights, tmp_path, client, features=None)
    assert (result.computed, result.recomputed) == (3, 3)
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "whole.parquet"))


def test_the_resume_key_names_backend_dtype_and_version(tmp_path, torch_model, good, client):
    _, weights = torch_model
    run(good, weights, tmp_path, client)
    attributes = zarr.open_group(tmp_path / "a.zarr", mode="r").attrs["npresnet"]
    for key in ("backend", "dtype", "npresnet_version", "layer", "weights_sha256", "resize_size", "mean", "std"):
        assert key in attributes, key
    assert pq.read_schema(tmp_path / "a.parquet" / "part-00000000.parquet").metadata[b"npresnet"]


# --------------------------------------------------------------------------------- storage chunks
def test_zarr_chunks_are_sized_for_storage_not_for_the_task():
    from npresnet.distributed.store import STORAGE_CHUNK_BYTES, storage_rows

    mib = 1 << 20
    assert STORAGE_CHUNK_BYTES == 8 * mib
    for dim in (512, 2048):  # avgpool of resnet18/34 and of the others
        for batch in (1, 2, 3, 16, 32, 100, 256, 512):
            rows = storage_rows(batch, dim, 10_000_000)
            assert rows % batch == 0 and 4 * mib < rows * dim * 4 <= 8 * mib, (dim, batch, rows)
    assert storage_rows(4096, 2048, 10_000_000) == 4096  # one task's rows (32 MiB) already exceed the target
    assert storage_rows(4, 512, 12) == 12  # never more rows than the output's chunks hold


def test_a_storage_chunk_gathers_several_tasks_and_a_run_killed_before_writing_it_resumes(
    tmp_path, torch_model, good, client, monkeypatch
):
    from npresnet.distributed import store

    _, weights = torch_model
    run(good, weights, tmp_path, client, predictions=None, features="whole.zarr", batch_size=2)
    whole = zarr.open_group(tmp_path / "whole.zarr", mode="r")
    assert whole["features"].chunks == (12, 512)  # 6 tasks of 2 rows, one storage chunk

    monkeypatch.setattr(store, "STORAGE_CHUNK_BYTES", 3 * 2 * 512 * 4)  # 3 tasks' rows per storage chunk
    real = store.FeatureStore.write_storage_chunk

    def killed(self, index):
        raise OSError(errno.EIO, "killed before the storage chunk was written")

    monkeypatch.setattr(store.FeatureStore, "write_storage_chunk", killed)
    with pytest.raises(RuntimeError, match="writing storage chunk"):
        run(good, weights, tmp_path, client, predictions=None, batch_size=2)
    staged = tmp_path / "a.zarr" / "_staging"
    assert staged.is_dir() and not (tmp_path / "a.zarr" / "features" / "c").exists()

    monkeypatch.setattr(store.FeatureStore, "write_storage_chunk", real)
    result = run(good, weights, tmp_path, client, predictions=None, batch_size=2)
    # the failed run stopped at its first storage chunk, whose three chunks were staged: those are trusted
    assert result.skipped >= 3 and result.computed + result.skipped == 6 and result.recomputed == 0
    resumed = zarr.open_group(tmp_path / "a.zarr", mode="r")
    assert resumed["features"].chunks == (6, 512) and resumed["errors"].chunks == (6,)
    assert sorted(os.listdir(tmp_path / "a.zarr" / "features" / "c")) == ["0", "1"]  # one file per storage chunk
    assert not staged.exists()  # staged rows removed once written
    numpy.testing.assert_array_equal(resumed["features"][:], whole["features"][:])
    assert resumed["errors"][:].tolist() == whole["errors"][:].tolist() and resumed["done"][:].all()
