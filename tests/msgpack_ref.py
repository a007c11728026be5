"""An independent canonical msgpack encoder and generated protocol values, for the property and fuzz tests.

`ref_encode` is written from docs/PROTOCOL.md section 3.2 alone (struct, no msgpack library), so tests that use it
check "canonical" against the spec, not against depin.codec. `same` compares values with floats by their 64 bits:
every NaN pattern and -0.0 must survive a round trip unchanged (section 3.2).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from hypothesis import strategies as st

# ---- an independent canonical encoder (PROTOCOL.md 3.2) --------------------------------------------------


def _ref_len(n: int, fix: int | None, fix_max: int, forms: tuple[tuple[int, int, str], ...]) -> bytes:
    if fix is not None and n <= fix_max:
        return bytes([fix | n])
    for first, limit, fmt in forms:
        if n <= limit:
            return bytes([first]) + struct.pack(fmt, n)
    raise AssertionError(f"length {n} too long for msgpack")


def ref_encode(v: Any) -> bytes:
    """Canonical msgpack of `v`, straight from the table in PROTOCOL.md 3.2."""
    if v is None:
        return b"\xc0"
    if v is True or v is False:
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v <= 0x7F:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack(">b", v)
        forms = ((0xCC, ">B"), (0xCD, ">H"), (0xCE, ">I"), (0xCF, ">Q")) if v >= 0 else (
            (0xD0, ">b"), (0xD1, ">h"), (0xD2, ">i"), (0xD3, ">q"))
        for first, fmt in forms:
            try:
                return bytes([first]) + struct.pack(fmt, v)
            except struct.error:
                continue
        raise AssertionError(f"{v} is outside the 64-bit range")
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        raw = v.encode("utf-8")
        return _ref_len(len(raw), 0xA0, 31, ((0xD9, 0xFF, ">B"), (0xDA, 0xFFFF, ">H"), (0xDB, 2**32 - 1, ">I"))) + raw
    if isinstance(v, bytes):
        return _ref_len(len(v), None, -1, ((0xC4, 0xFF, ">B"), (0xC5, 0xFFFF, ">H"), (0xC6, 2**32 - 1, ">I"))) + v
    if isinstance(v, (list, tuple)):
        head = _ref_len(len(v), 0x90, 15, ((0xDC, 0xFFFF, ">H"), (0xDD, 2**32 - 1, ">I")))
        return head + b"".join(ref_encode(x) for x in v)
    if isinstance(v, dict):
        head = _ref_len(len(v), 0x80, 15, ((0xDE, 0xFFFF, ">H"), (0xDF, 2**32 - 1, ">I")))
        pairs = sorted((k.encode("utf-8"), ref_encode(x)) for k, x in v.items())
        return head + b"".join(ref_encode(k.decode("utf-8")) + x for k, x in pairs)
    raise AssertionError(f"not a protocol value: {type(v).__name__}")


def same(a: Any, b: Any) -> bool:
    """Structural equality where floats compare by their bits (NaN payloads and -0.0 count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# ---- generated values of the protocol's value model (3.1) ------------------------------------------------------------

_INT_EDGES = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
              -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
_any_float_bits = st.integers(0, 2**64 - 1).map(lambda bits: struct.unpack(">d", bits.to_bytes(8, "big"))[0])
floats = st.floats() | _any_float_bits | st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -2.0])
# Strings and byte strings around every header boundary (31/32, 255/256) as well as arbitrary text.
_sized_text = st.sampled_from([0, 1, 31, 32, 255, 256]).map(lambda n: "é" * (n // 2) + "x" * (n % 2))
_sized_bytes = st.sampled_from([0, 1, 255, 256]).map(lambda n: b"\xff" * n)
scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.sampled_from(_INT_EDGES) | floats
    | st.text(max_size=40) | _sized_text | st.binary(max_size=40) | _sized_bytes
)


def depth(v: Any) -> int:
    """Nesting depth of arrays and maps (a scalar is 0)."""
    if isinstance(v, dict):
        return 1 + max(map(depth, v.values()), default=0)
    if isinstance(v, list):
        return 1 + max(map(depth, v), default=0)
    return 0


# Protocol messages nest a few levels; the decoder refuses very deep nesting, so generated values stay shallow.
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=18) | st.dictionaries(st.text(max_size=10), inner, max_size=18),
    max_leaves=40,
).filter(lambda v: depth(v) <= 16)
