"""npresnet.distributed.list_images: which images, in which order (the row order of every output)."""

import glob
import os
import subprocess
import sys

import numpy
import pytest

from npresnet.distributed.paths import list_images, paths_digest

pytest.importorskip("distributed")


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return str(path)


def test_directory_glob_and_list_orders(tmp_path):
    b = touch(tmp_path / "d" / "b.JPG")
    a = touch(tmp_path / "d" / "a.png")
    deep = touch(tmp_path / "d" / "sub" / "c.jpeg")
    touch(tmp_path / "d" / "notes.txt")  # not an image suffix: skipped
    touch(tmp_path / "d" / ".hidden.png")  # hidden: skipped
    assert list_images(tmp_path / "d") == [a, b, deep]
    assert list_images(str(tmp_path / "d" / "**" / "*.jp*g")) == [deep]
    assert list_images(str(tmp_path / "d" / "**" / "*.*")) == sorted([a, b, deep, str(tmp_path / "d" / "notes.txt")])
    missing = str(tmp_path / "missing.jpg")  # kept: it becomes an error row, not a failed job
    assert list_images([deep, missing, a]) == [deep, missing, a]
    assert list_images([b, tmp_path / "d" / "sub"]) == [b, deep]


def test_nothing_or_too_much_is_refused_before_work(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image paths"):
        list_images(tmp_path / "empty")
    with pytest.raises(ValueError, match="no image paths"):
        list_images([])
    with pytest.raises(ValueError, match="matches no file"):
        list_images(str(tmp_path / "*.png"))
    for i in range(5):
        touch(tmp_path / "many" / f"{i}.png")
    with pytest.raises(ValueError, match="max_images"):
        list_images(tmp_path / "many", max_images=4)
    with pytest.raises(ValueError, match="max_images"):
        list_images([os.fspath(tmp_path / "many" / "0.png")] * 5, max_images=4)
    with pytest.raises(ValueError, match="NUL"):
        list_images(["a\0b.png"])


def test_digest_depends_on_order_and_boundaries():
    assert paths_digest(["a", "b"]) != paths_digest(["b", "a"])
    assert paths_digest(["ab", "c"]) != paths_digest(["a", "bc"])
    assert paths_digest(["a", "b"]) == paths_digest(("a", "b"))


def _random_tree(root, rng):
    """Directories and files with names a glob treats differently: hidden, suffixed, upper case."""
    dirs = [""]
    for i in range(int(rng.integers(1, 9))):
        parent = dirs[int(rng.integers(len(dirs)))]
        path = os.path.join(parent, ["a", "b", ".h", "c1", "x.png"][int(rng.integers(5))] + str(i % 3))
        os.makedirs(os.path.join(root, path), exist_ok=True)
        dirs.append(path)
    for i in range(int(rng.integers(0, 13))):
        parent = dirs[int(rng.integers(len(dirs)))]
        name = ["p.png", "q.jpg", ".hid.png", "r.PNG", "s"][int(rng.integers(5))] + str(i % 2)
        open(os.path.join(root, parent, name), "w").close()


def test_patterns_match_what_glob_matches(tmp_path):
    """The oracle is the standard library's glob (duplicates, which ``**/**`` gives it, removed)."""
    rng = numpy.random.default_rng(0)
    patterns = ["**/*.png*", "*/*", "**", "a*/**/*", "**/q*", "*/**/*.jpg*", "**/.h*/*", "**/**/p*", "*", "[ab]*/*"]
    for trial in range(40):
        root = tmp_path / str(trial)
        root.mkdir()
        _random_tree(root, rng)
        for pattern in patterns:
            full = os.path.join(root, pattern)
            expected = sorted({p for p in glob.glob(full, recursive=True) if not os.path.isdir(p)})
            if expected:
                assert list_images(full) == expected, pattern
            else:
                with pytest.raises(ValueError, match="matches no file"):
                    list_images(full)


def test_a_link_loop_does_not_trap_a_recursive_pattern(tmp_path):
    """``d/**`` over a tree whose links lead back up: glob follows them without end; this lists each file once."""
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "a.png").write_bytes(b"")
    (tmp_path / "d" / "e" / "up").symlink_to(tmp_path / "d")
    (tmp_path / "d" / "again").symlink_to(tmp_path / "d")
    code = f"from npresnet.distributed import list_images; print(list_images({str(tmp_path / 'd' / '**' / '*.png')!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr([str(tmp_path / "d" / "e" / "a.png")])
