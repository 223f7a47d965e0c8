"""Every value a loaded ``.pth`` tensor holds was read from its own storage's bytes.

Each storage is filled with sentinel values unique to it and to the position
(storage ``k``, element ``i`` holds ``1000 * (k + 1) + i``). A tensor is described by
random storage, offset, size and stride; the oracle walks every index tuple of the
view by hand (``itertools.product``) and reads ``storage[offset + sum(index * stride)]``,
refusing the view if any such position falls outside the storage. The loader must
agree: the same values in the same positions, or ``WeightsError``. A second tensor
that names the first one (taken back from the memo) as its storage must always be
refused, whatever its view.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from _helpers.pickles import (
    binget,
    binput,
    p_dict,
    p_str,
    pickle_of,
    rebuild,
    storage_ref,
    write_pth,
)
from npresnet.errors import WeightsError
from npresnet.weights import load_weights

SIZES = {"0": 12, "1": 7}  # elements of the two storages


def sentinel_storage(key: str) -> np.ndarray:
    return (1000.0 * (int(key) + 1) + np.arange(SIZES[key])).astype(np.float32)


def oracle(storage: np.ndarray, offset: int, size: tuple, stride: tuple):
    """The view's values by walking every index, or None if one falls outside ``storage``."""
    values = []
    for index in itertools.product(*(range(n) for n in size)):
        position = offset + sum(i * s for i, s in zip(index, stride))
        if not 0 <= position < storage.size:
            return None
        values.append(storage[position])
    if values and len(values) > storage.size:
        return None  # the loader does not read broadcast views (more elements than the storage)
    return np.array(values, dtype=storage.dtype).reshape(size)


views = st.integers(0, 3).flatmap(
    lambda ndim: st.tuples(
        st.sampled_from(sorted(SIZES)),
        st.integers(0, 14),  # offset
        st.tuples(*[st.integers(0, 5)] * ndim),  # size
        st.tuples(*[st.integers(0, 7)] * ndim),  # stride
    )
)


def _write(tmp_path, body: bytes):
    storages = {key: sentinel_storage(key).astype("<f4").tobytes() for key in SIZES}
    return write_pth(tmp_path / "views.pth", pickle_of(body), storages=storages)


@given(view=views)
def test_values_come_from_their_own_storage(tmp_path_factory, view):
    key, offset, size, stride = view
    tmp_path = tmp_path_factory.mktemp("views")
    path = _write(tmp_path, p_dict((p_str("w"), rebuild(storage_ref(key, SIZES[key]), offset, size, stride))))
    expected = oracle(sentinel_storage(key), offset, size, stride)
    try:
        loaded = load_weights(path)["w"]
    except WeightsError as exc:
        assert expected is None, f"refused a view the oracle reads: {exc}"
        return
    assert expected is not None, "loaded a view that reaches outside its storage"
    assert loaded.dtype == np.float32 and loaded.shape == size
    np.testing.assert_array_equal(loaded, expected)
    assert loaded.flags.owndata and loaded.flags.writeable and loaded.flags.c_contiguous


@given(first=views, second=views)
def test_a_tensor_is_never_a_storage(tmp_path_factory, first, second):
    key, offset, size, stride = first
    _, offset2, size2, stride2 = second
    tmp_path = tmp_path_factory.mktemp("views")
    a = rebuild(storage_ref(key, SIZES[key]), offset, size, stride) + binput(0)
    b = rebuild(binget(0), offset2, size2, stride2)
    path = _write(tmp_path, p_dict((p_str("a"), a), (p_str("b"), b)))
    try:
        load_weights(path)
    except WeightsError as exc:
        message = str(exc)
    else:
        raise AssertionError("a tensor rebuilt from another tensor was loaded")
    # refused either for the first view (outside its storage) or for using a tensor as a storage
    assert (
        "a tensor is rebuilt from a ndarray" in message or oracle(sentinel_storage(key), offset, size, stride) is None
    ), message
