"""What a command writes never costs the user a file they did not offer.

Every command that writes a file (``summary --html``, ``draw --out``, ``receptive-field --out``,
``convert``'s DST) replaces an existing file only with ``--force``, a directory never, and one of
its own inputs never, even with ``--force``; each refusal comes before any work, in one line naming
the flag.
"""

import os
import stat

import numpy
import pytest

from npresnet.cli import main

PRECIOUS = b"the user's own bytes"


@pytest.fixture
def photo(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    path = tmp_path / "photo.png"
    PIL.fromarray(numpy.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=numpy.uint8)).save(path)
    return path


def commands(photo):
    """Each writing command, as a function of its output path: (flag, argv)."""
    field = ["receptive-field", "resnet18", str(photo), "--layer", "layer1.0", "--unit", "1,1", "--crop-size", "32"]
    return {
        "summary": ("--html", lambda out: ["summary", "resnet18", "--html", str(out)]),
        "draw": ("--out", lambda out: ["draw", "conv2d", "--input", "4", "--kernel", "3", "--out", str(out)]),
        "receptive-field": ("--out", lambda out: [*field, "--resize-size", "32", "--out", str(out)]),
    }


@pytest.mark.parametrize("command", ["summary", "draw", "receptive-field"])
def test_an_existing_file_is_replaced_only_with_force(tmp_path, photo, capsys, command):
    flag, argv = commands(photo)[command]
    out = tmp_path / ("picture.png" if command != "summary" else "page.html")
    out.write_bytes(PRECIOUS)
    assert main(argv(out)) == 1
    err = capsys.readouterr().err
    assert f"{flag} {out} exists; pass --force to replace it" in err and len(err.splitlines()) == 1
    assert out.read_bytes() == PRECIOUS
    assert main([*argv(out), "--force"]) == 0
    assert out.read_bytes() != PRECIOUS and out.stat().st_size > 0
    capsys.readouterr()
    folder = tmp_path / ("folder.png" if command != "summary" else "folder.html")
    folder.mkdir()
    assert main([*argv(folder), "--force"]) == 1
    assert f"{flag} {folder} is a directory" in capsys.readouterr().err
    assert list(folder.iterdir()) == []


def test_receptive_field_never_draws_over_its_own_image(tmp_path, photo, capsys):
    flag, argv = commands(photo)["receptive-field"]
    before = photo.read_bytes()
    link = tmp_path / "same.png"
    link.symlink_to(photo)
    for out in (photo, link):  # the image itself, and the same file under another name
        assert main([*argv(out), "--force"]) == 1
        assert f"--out {out} is the input {photo}; refusing to overwrite it" in capsys.readouterr().err
    assert photo.read_bytes() == before and link.is_symlink()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX's")
@pytest.mark.parametrize("command", ["summary", "draw", "receptive-field"])
def test_a_fifo_or_a_missing_folder_is_refused_before_any_work_naming_the_flag(tmp_path, photo, capsys, command):
    flag, argv = commands(photo)[command]
    fifo = tmp_path / ("pipe.png" if command != "summary" else "pipe.html")
    os.mkfifo(fifo)
    assert main([*argv(fifo), "--force"]) == 1  # --force too: writing would block, or replace the FIFO
    assert f"{flag} {fifo} is a FIFO, device or socket, not a file" in capsys.readouterr().err
    missing = tmp_path / "no" / ("x.png" if command != "summary" else "x.html")
    assert main(argv(missing)) == 1
    assert f"{flag} {missing}: no such directory {missing.parent}" in capsys.readouterr().err
    assert not missing.parent.exists() and stat.S_ISFIFO(os.lstat(fifo).st_mode)
