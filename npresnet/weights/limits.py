"""The limits every weight reader enforces on a file it did not make, in one place.

Each limit is checked *before* the work it bounds starts, and a file that exceeds
one is refused with :class:`~npresnet.errors.WeightsError` naming the limit. The
margins are measured, not guessed: ``torch.save`` of the largest torchvision ResNets
(seeded, torch 2.x) gives

=====================================  ==================  =================
what                                   resnet152           wide_resnet101_2
=====================================  ==================  =================
``data.pkl`` bytes                     115,291             77,338
pickle opcodes                         31,570              21,234
tuples, lists and dicts built          5,086               3,420
highest memo index                     8,002               5,384
nesting (MARKs open / containers)      3 / 3               3 / 3
zip members                            938                 632
zip central directory bytes            58,077              39,105
safetensors header bytes               85,336              57,448
safetensors JSON nesting               3                   3
=====================================  ==================  =================

so each size and count limit below leaves a margin of 18 times or more over a real checkpoint
(nesting and dimensions about 10 times).
The user guide's Safety page (docs/guide/safety.md) quotes these numbers; change them here and there together.
"""

from __future__ import annotations

__all__ = [
    "MAX_PICKLE_BYTES",
    "MAX_CONTAINERS",
    "MAX_MEMO_ENTRIES",
    "MAX_NESTING",
    "MAX_INT_BYTES",
    "MAX_DIMENSIONS",
    "MAX_ZIP_MEMBERS",
    "MAX_ZIP_DIRECTORY_BYTES",
    "MAX_TENSOR_BYTES",
    "MAX_SAFETENSORS_HEADER_BYTES",
    "MIN_VIEW_BUDGET_BYTES",
    "MAX_STORAGE_KEY_CHARS",
]

MAX_PICKLE_BYTES = 2 * 2**20
"""Largest ``data.pkl`` of a ``.pth`` checkpoint, in bytes (2 MiB; resnet152's is 113 kB).

Every opcode is at least one byte, so this also bounds the unpickler's work: at most
about two million opcodes, each a constant amount of work (a few seconds of pure Python)."""

MAX_CONTAINERS = 100_000
"""Most tuples, lists and dicts one ``data.pkl`` may build (resnet152 builds 5,086).

With :data:`MAX_PICKLE_BYTES` it bounds the unpickler's memory to tens of megabytes,
whatever one-byte opcodes such as ``EMPTY_DICT`` a file repeats."""

MAX_MEMO_ENTRIES = 2**18
"""Memo indices (``PUT``/``GET``) must lie in ``[0, MAX_MEMO_ENTRIES)`` (262,144; resnet152 uses 8,003).

The memo is a list, so an index costs no hashing and no attacker-chosen collisions."""

MAX_NESTING = 32
"""Deepest nesting of containers in a pickle (open ``MARK``s, tuples in tuples, ...)
and of arrays/objects in a safetensors JSON header. Real files nest 3 deep."""

MAX_INT_BYTES = 8
"""Largest integer a pickle may hold, in bytes of two's complement: every value is
within ``[-2**63, 2**63)`` (sizes, strides, offsets and counts are int64 in torch).
Text integers (protocol 0) may have at most 20 digits."""

MAX_DIMENSIONS = 32
"""Most dimensions of one tensor (NumPy's own limit is 64; a ResNet weight has 4)."""

MAX_STORAGE_KEY_CHARS = 64
"""Longest storage key (the ``<key>`` of the member ``<archive>/data/<key>``; torch writes "0", "1", ...)."""

MAX_ZIP_MEMBERS = 65_535
"""Most members of a ``.pth`` or ``.npz`` zip archive (the most a zip without zip64
extensions can hold; resnet152's checkpoint has 938)."""

MAX_ZIP_DIRECTORY_BYTES = 8 * 2**20
"""Largest central directory of a ``.pth`` or ``.npz`` zip archive, in bytes (8 MiB; resnet152's
is 58 kB, 62 bytes a member). ``zipfile`` may read this plus the end records (at most 131 kB).

``zipfile`` parses every entry of the directory into a ``ZipInfo`` before
:data:`MAX_ZIP_MEMBERS` can be checked. A 94 MB file of 2 million bare 47-byte entries took it
23 s and about 0.5 GB here. This cap is checked first, so at most about 180,000 entries are
ever parsed (by proportion, about 2 s and 50 MB). It leaves room for :data:`MAX_ZIP_MEMBERS`
members of 128 bytes each."""

MAX_TENSOR_BYTES = 4 * 2**30
"""Most bytes of tensor data one file may hold (4 GiB, as many as one model's parameters may take,
:data:`npresnet.limits.MAX_PARAMETER_BYTES`; resnet152's are 241 MB), checked before any is read:
the zip members' declared sizes, a safetensors file's size."""

MAX_SAFETENSORS_HEADER_BYTES = 4 * 2**20
"""Largest JSON header of a ``.safetensors`` file, in bytes (4 MiB; resnet152's is 85 kB).
The format itself allows 100 MB, which ``json`` parses into gigabytes of objects."""

MIN_VIEW_BUDGET_BYTES = 64 * 2**20
"""Views of one storage are copied out separately, so tensors may need more bytes than
their storages (tied weights, slices). The copies may total the bytes of the storages
actually read, plus that much again or this many bytes (64 MiB), whichever is larger."""
