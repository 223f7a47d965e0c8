"""``npresnet fetch`` against a loopback HTTP server on 127.0.0.1; nothing touches the internet."""

import hashlib
import http.server
import io
import os
import subprocess
import sys
import threading
import time

import numpy
import pytest

torch = pytest.importorskip("torch")

import npresnet.fetch as fetch_module  # noqa: E402
from npresnet.fetch import FetchError, fetch  # noqa: E402
from npresnet.weights import load_weights  # noqa: E402


def make_checkpoint():
    buffer = io.BytesIO()
    generator = torch.Generator().manual_seed(0)
    torch.save({"fc.weight": torch.randn(10, 4, generator=generator), "fc.bias": torch.zeros(10)}, buffer)
    return buffer.getvalue()


PAYLOAD = make_checkpoint()
NAME = f"tiny-{hashlib.sha256(PAYLOAD).hexdigest()[:8]}.pth"


class Handler(http.server.BaseHTTPRequestHandler):
    """/good/NAME serves the file; /wrong/ other bytes; /short/ a cut transfer; /slow/ in pieces; /hang/ nothing;
    /trickle/ a byte at a time."""

    requests = []

    def do_GET(self):
        Handler.requests.append(self.path)
        mode = self.path.split("/")[1]
        body = PAYLOAD if mode != "wrong" else PAYLOAD[::-1]
        if mode == "missing" or not self.path.endswith("/" + NAME):
            self.send_error(404)
            return
        self.send_response(200)
        if mode == "huge":  # announces more than the download cap, sends nothing
            self.send_header("Content-Length", str(fetch_module.MAX_DOWNLOAD_BYTES + 1))
            self.end_headers()
            return
        if mode == "nolength":  # no Content-Length: the body ends when the connection closes
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Content-Length", str(len(body) + (1000 if mode == "short" else 0)))
        self.end_headers()
        if mode == "hang":
            time.sleep(3)  # bounded: the client gives up long before
            return
        if mode == "trickle":  # a byte every 0.1 s: each read arrives within any timeout
            for i in range(30):  # bounded: 3 s
                try:
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return
                time.sleep(0.1)
            return
        if mode == "short":
            self.wfile.write(body[: len(body) // 2])
            return
        if mode == "slow":
            for i in range(0, len(body), len(body) // 4 + 1):
                self.wfile.write(body[i : i + len(body) // 4 + 1])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def tiny_table(monkeypatch):
    monkeypatch.setitem(fetch_module.WEIGHTS, "tiny", {"IMAGENET1K_V1": NAME})


def assert_nothing_cached(directory):
    assert [p for p in os.listdir(directory) if not p.startswith(".")] == []
    assert [p for p in os.listdir(directory) if p.startswith(".")] == []  # temporary files removed too


def test_good_download_is_verified_converted_and_cached(tmp_path, server):
    Handler.requests.clear()
    path = fetch("tiny", dest=tmp_path, base_url=f"{server}/good")
    assert path == tmp_path / NAME.replace(".pth", ".npz")
    weights = load_weights(path)
    expected = torch.load(io.BytesIO(PAYLOAD), weights_only=True)
    numpy.testing.assert_array_equal(weights["fc.weight"], expected["fc.weight"].numpy())
    assert sorted(os.listdir(tmp_path)) == [path.name, path.name + ".sha256"]
    assert (tmp_path / (path.name + ".sha256")).read_text() == hashlib.sha256(path.read_bytes()).hexdigest() + "\n"
    again = fetch("tiny", dest=tmp_path, base_url=f"{server}/good")
    assert again == path and len(Handler.requests) == 1  # the cached file was not downloaded again


@pytest.mark.parametrize(
    "mode,message",
    [
        ("wrong", "SHA-256"),
        ("short", "cut short|transfer failed"),
        ("missing", "HTTP 404"),
        ("hang", "timed out"),
        ("trickle", r"slower than the 16,384 bytes/s a download must keep after its first 0\.5 s"),
    ],
)
def test_broken_downloads_leave_nothing(tmp_path, server, mode, message):
    start = time.monotonic()
    with pytest.raises(FetchError, match=message):
        fetch("tiny", dest=tmp_path, base_url=f"{server}/{mode}", timeout=0.5)
    assert time.monotonic() - start < 2.5
    assert_nothing_cached(tmp_path)
    assert fetch("tiny", dest=tmp_path, base_url=f"{server}/good").is_file()  # a rerun completes


def test_disk_full_while_downloading_or_converting(tmp_path, server, monkeypatch):
    def full(fd, data):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(fetch_module.os, "write", full)
        with pytest.raises(FetchError, match="No space left"):
            fetch("tiny", dest=tmp_path, base_url=f"{server}/good")
    assert_nothing_cached(tmp_path)

    import npresnet.weights.api as api

    def full_npz(arrays, file):
        file.write(b"PK\x03\x04partial")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(api, "write_npz", full_npz)
        with pytest.raises(OSError, match="No space left"):
            fetch("tiny", dest=tmp_path, base_url=f"{server}/good")
    assert_nothing_cached(tmp_path)


def test_two_fetches_at_once(tmp_path, server):
    results, errors = [], []

    def worker():
        try:
            results.append(fetch("tiny", dest=tmp_path, base_url=f"{server}/slow"))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert sorted(os.listdir(tmp_path)) == [results[0].name, results[0].name + ".sha256"]
    assert fetch_module._is_verified(results[0])  # whichever writer won, the record matches the file
    assert set(load_weights(results[0])) == {"fc.weight", "fc.bias"}


def test_unknown_arch_and_variant():
    with pytest.raises(ValueError, match="did you mean resnet18"):
        fetch("resnet81")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        fetch("resnet18", variant="IMAGENET1K_V9")


def fetch_command(*args):
    # The real command, with the published table pointed at the test file (its hash is not torchvision's).
    code = (
        "import sys, npresnet.fetch as f, npresnet.cli as c; "
        f"f.WEIGHTS['tiny'] = {{'IMAGENET1K_V1': {NAME!r}}}; sys.exit(c.main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, "fetch", "tiny", *args]


def run_fetch_cli(*args, env=None):
    return subprocess.run(
        fetch_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_cli_fetch_prints_path_env_overrides_and_fails_cleanly(tmp_path, server):
    proc = run_fetch_cli(env={"NPRESNET_HOME": str(tmp_path), "NPRESNET_WEIGHTS_URL": f"{server}/good"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / NAME.replace(".pth", ".npz"))
    other = tmp_path / "other"
    proc = run_fetch_cli("--dest", str(other), "--url", f"{server}/wrong")
    assert proc.returncode == 1 and "SHA-256" in proc.stderr and "Traceback" not in proc.stderr
    assert_nothing_cached(other)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX's")
def test_cli_fetch_terminated_mid_download_leaves_no_temporary_file(tmp_path, server):
    # SIGTERM's default action ends the process before any `finally`: the partial download stayed in the cache.
    command = fetch_command("--dest", str(tmp_path), "--url", f"{server}/trickle", "--timeout", "60")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not os.listdir(tmp_path):  # the temporary file exists once the download has started
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert stderr.strip() == "terminated" and stdout == ""
    assert_nothing_cached(tmp_path)


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "3601", "soon"])
def test_cli_timeout_is_validated_like_other_flags(tmp_path, timeout):
    proc = run_fetch_cli("--dest", str(tmp_path), "--url", "http://127.0.0.1:9/", f"--timeout={timeout}")
    assert proc.returncode == 2 and "--timeout" in proc.stderr and "Traceback" not in proc.stderr
    assert "Errno" not in proc.stderr and "out of range" not in proc.stderr  # the socket never saw it
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True, "30"])
def test_fetch_refuses_a_bad_timeout_before_connecting(tmp_path, server, timeout):
    Handler.requests.clear()
    with pytest.raises(ValueError, match="timeout must be seconds above 0 and at most 3600"):
        fetch("tiny", dest=tmp_path, base_url=f"{server}/good", timeout=timeout)
    assert Handler.requests == [] and os.listdir(tmp_path) == []


def test_without_platformdirs_the_hint_names_the_flag(tmp_path):
    code = "import sys; sys.modules['platformdirs'] = None; import npresnet.cli as c; sys.exit(c.main(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if k != "NPRESNET_HOME"}
    proc = subprocess.run(
        [sys.executable, "-c", code, "fetch", "resnet18"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "platformdirs" in proc.stderr and "--dest DIR" in proc.stderr and "NPRESNET_HOME" in proc.stderr


def test_base_url_must_be_a_string(tmp_path):
    with pytest.raises(TypeError, match="base_url must be a str"):
        fetch("tiny", dest=tmp_path, base_url=5)
    assert os.listdir(tmp_path) == []


def test_download_size_is_capped(tmp_path, server, monkeypatch):
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"announces 1,073,741,825 bytes, more than the limit of 1,073,741,824"):
        fetch("tiny", dest=tmp_path, base_url=f"{server}/huge")
    assert time.monotonic() - start < 2.5
    assert_nothing_cached(tmp_path)
    monkeypatch.setattr(fetch_module, "MAX_DOWNLOAD_BYTES", len(PAYLOAD) - 1)
    with pytest.raises(FetchError, match=f"runs past the limit of {len(PAYLOAD) - 1:,} bytes"):
        fetch("tiny", dest=tmp_path, base_url=f"{server}/nolength")  # no length announced: stopped while reading
    assert_nothing_cached(tmp_path)
    monkeypatch.setattr(fetch_module, "MAX_DOWNLOAD_BYTES", len(PAYLOAD))
    assert fetch("tiny", dest=tmp_path, base_url=f"{server}/nolength").is_file()  # exactly the cap is fine


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no record", "record of other bytes"])
def test_a_cached_file_is_verified_on_every_use(tmp_path, server, damage):
    """A damaged or replaced cache file used to be returned as weights because it existed."""
    path = fetch("tiny", dest=tmp_path, base_url=f"{server}/good")
    good = path.read_bytes()
    record = tmp_path / (path.name + ".sha256")
    if damage == "garbage":
        path.write_bytes(b"not weights at all")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "no record":
        record.unlink()
    else:
        record.write_text("0" * 64 + "\n")
    Handler.requests.clear()
    again = fetch("tiny", dest=tmp_path, base_url=f"{server}/good")
    assert again == path and len(Handler.requests) == 1  # downloaded again, not trusted
    assert path.read_bytes() == good and fetch_module._is_verified(path)
    assert set(load_weights(path)) == {"fc.weight", "fc.bias"}


def test_a_fifo_as_the_cache_record_does_not_hang(tmp_path, server):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = fetch("tiny", dest=tmp_path, base_url=f"{server}/good")
    record = tmp_path / (path.name + ".sha256")
    record.unlink()
    os.mkfifo(record)
    start = time.monotonic()
    assert not fetch_module._is_verified(path)
    assert time.monotonic() - start < 2
    record.unlink()
    record.mkdir()  # a directory: not verified, not an error naming a file descriptor
    assert not fetch_module._is_verified(path)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("mode", ["good", "nolength"])
def test_cli_progress_bar_on_a_terminal_with_and_without_a_known_length(tmp_path, server, monkeypatch, capsys, mode):
    # On a terminal with tqdm installed the command shows a bar; a download of unknown length has a
    # bar without a total, whose truth tqdm refuses to tell (TypeError), so the bar is never tested for it.
    pytest.importorskip("tqdm")
    import npresnet.cli as cli
    import npresnet.cli.common as common

    bars = []

    def opened(total, unit):
        bars.append(original(total, unit))
        return bars[-1]

    original = common.progress_bar
    monkeypatch.setattr(common, "progress_bar", opened)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert cli.main(["fetch", "tiny", "--dest", str(tmp_path), "--url", f"{server}/{mode}"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / NAME.replace(".pth", ".npz"))
    [bar] = bars  # one real tqdm bar, opened on the first report
    assert (bar.n, bar.total) == (len(PAYLOAD), None if mode == "nolength" else len(PAYLOAD))
