"""npresnet.distributed.list_images: which images, in which order (the row order of every output)."""

import os

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
