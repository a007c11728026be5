"""Properties of depin.codec over generated values and hostile bytes.

"Canonical" is checked against tests/msgpack_ref.py, an encoder written from docs/PROTOCOL.md section 3.2 alone,
not against the code under test. Floats are compared by their bits (NaN payloads and -0.0 must survive).

Sample counts come from the hypothesis profile (tests/conftest.py): HYPOTHESIS_PROFILE=long for a deep run.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from depin import codec
from depin.errors import PeerProtocolError
from tests.msgpack_ref import floats, ref_encode, same, values


def _reordered(value: Any, rnd: Any) -> Any:
    """The same value with every map rebuilt in a random insertion order."""
    if isinstance(value, dict):
        keys = list(value)
        rnd.shuffle(keys)
        return {k: _reordered(value[k], rnd) for k in keys}
    if isinstance(value, list):
        return [_reordered(x, rnd) for x in value]
    return value


# ---- round trip and canonical form -----------------------------------------------------------------------


@given(values)
@example(math.nan)
@example(struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0])  # a signalling NaN keeps its bits
@example({"z": -0.0, "a": 0.0, "é": [2**64 - 1, -(2**63)], "": b""})
def test_round_trip_is_exact(value: Any) -> None:
    data = codec.encode(value)
    assert same(codec.decode_canonical(data), value)
    assert same(codec.decode(data), value)


@given(values)
def test_encode_is_the_canonical_encoding_of_the_spec(value: Any) -> None:
    assert codec.encode(value) == ref_encode(value)


@given(values, st.randoms(use_true_random=False))
def test_encode_is_deterministic_whatever_the_map_insertion_order(value: Any, rnd: Any) -> None:
    data = codec.encode(value)
    assert codec.encode(value) == data
    assert codec.encode(_reordered(value, rnd)) == data
    assert codec.encode(codec.decode_canonical(data)) == data


# ---- hostile bytes ---------------------------------------------------------------------------------------

# Every msgpack first byte that is not a fix-family member, plus one of each fix family, followed by random
# bytes: a cheap way to steer generated garbage into the decoder's header paths.
_headers = st.sampled_from([0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xE0, 0xFF, *range(0xC0, 0xE0)])
_chunk = (
    st.tuples(_headers.map(lambda b: bytes([b])), st.binary(max_size=9)).map(lambda t: t[0] + t[1])
    | values.map(codec.encode)
    | st.binary(max_size=12)
)
msgpackish = st.lists(_chunk, max_size=12).map(b"".join)
# Runs of one-element array or map headers: nesting around Python's recursion limit and msgpack's own (1024).
_openers = st.sampled_from([b"\x91", b"\x81\xa1k", b"\xdc\x00\x01", b"\x92\xc0", b"\x81\xa0"])
_depths = st.integers(0, 1100) | st.sampled_from([32, 33, 500, 1000, 1024, 1025])


def _decodes_or_refuses(data: bytes) -> None:
    for fn in (codec.decode, codec.decode_canonical):
        try:
            value = fn(data)
        except PeerProtocolError as exc:
            assert str(exc)
            continue
        if fn is codec.decode_canonical:
            # Accepted as canonical only if it is exactly the spec's encoding of what it decoded to.
            assert codec.encode(value) == data
            assert ref_encode(value) == data


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_value_or_a_peer_protocol_error(data: bytes) -> None:
    _decodes_or_refuses(data)


@given(msgpackish)
def test_msgpack_like_garbage_gives_a_value_or_a_peer_protocol_error(data: bytes) -> None:
    _decodes_or_refuses(data)


@given(_openers, _depths, values.map(codec.encode) | st.binary(max_size=4))
def test_deep_nesting_gives_a_value_or_a_peer_protocol_error(opener: bytes, depth: int, inner: bytes) -> None:
    _decodes_or_refuses(opener * depth + inner)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    """The canonical encoding of a value, with one byte flipped, set, inserted or deleted, or a cut."""
    data = bytearray(codec.encode(draw(values)))
    op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
    pos = draw(st.integers(0, len(data) - (0 if op == "insert" else 1)))
    if op == "flip":
        data[pos] ^= 1 << draw(st.integers(0, 7))
    elif op == "set":
        data[pos] = draw(st.integers(0, 255))
    elif op == "insert":
        data.insert(pos, draw(st.integers(0, 255)))
    elif op == "delete":
        del data[pos]
    else:
        del data[pos:]
    return bytes(data)


@given(mutated_encodings())
def test_mutated_canonical_bytes_are_refused_or_still_canonical(data: bytes) -> None:
    try:
        value = codec.decode_canonical(data)
    except PeerProtocolError:
        return
    assert codec.encode(value) == data


@given(values)
def test_values_of_the_model_are_never_refused_by_the_lenient_decoder(value: Any) -> None:
    # Padding a canonical value into a one-element array: still canonical, never a false refusal.
    data = b"\x91" + codec.encode(value)
    assert same(codec.decode_canonical(data), [value])


# Regression: before codec.MAX_DEPTH, decode_canonical let RecursionError escape from its recursive re-encoding
# (2 Python frames per array level) for nesting msgpack itself accepts (up to 1024 levels).
@pytest.mark.parametrize(("opener", "depth"), [(b"\x91", 600), (b"\x91", 1024), (b"\x81\xa1k", 1020)],
                         ids=["arrays-600", "arrays-1024", "maps-1020"])
def test_deep_nesting_is_a_peer_protocol_error(opener: bytes, depth: int) -> None:
    data = opener * depth + b"\x00"
    try:
        codec.decode_canonical(data)
    except PeerProtocolError:
        return
    # Accepting it is fine too, as long as it is canonical: nothing but PeerProtocolError may escape.
    assert codec.encode(codec.decode(data)) == data


# ---- arrays on the wire ----------------------------------------------------------------------------------

_dtype_field = (
    st.sampled_from(codec.DTYPES)
    | st.sampled_from(["float16", "int8", "bool", "object", "O", "V8", "U4", "<u4", ">u4", "uint32 ", "UINT32"])
    | values
)
_dim = st.integers(0, 6) | st.integers(-3, 2**31 + 1) | st.booleans() | floats | st.text(max_size=3)
_shape_field = st.lists(_dim, max_size=6) | values
_data_field = st.binary(max_size=96) | values
_extra_field = st.dictionaries(st.text(max_size=6).filter(lambda k: k not in ("dtype", "shape", "data")), values,
                               max_size=2)


@st.composite
def wire_maps(draw: st.DrawFn) -> Any:
    """Maps shaped like an array's wire form, from almost right (a byte too many) to nonsense."""
    kind = draw(st.sampled_from(["fitting", "fields", "anything"]))
    if kind == "anything":
        return draw(values)
    if kind == "fitting":
        dtype = draw(st.sampled_from(codec.DTYPES))
        shape = draw(st.lists(st.integers(0, 4), max_size=5))
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        size = max(0, size + draw(st.sampled_from([0, 0, 0, -1, 1])))
        wire: dict[str, Any] = {"dtype": dtype, "shape": shape, "data": draw(st.binary(min_size=size, max_size=size))}
    else:
        wire = draw(st.fixed_dictionaries({}, optional={"dtype": _dtype_field, "shape": _shape_field,
                                                        "data": _data_field}))
    return {**wire, **draw(_extra_field)}


@given(wire_maps(), st.none() | st.integers(0, 128))
def test_array_from_wire_gives_the_array_or_a_peer_protocol_error(wire: Any, max_bytes: int | None) -> None:
    try:
        arr = codec.array_from_wire(wire, max_bytes=max_bytes)
    except PeerProtocolError as exc:
        assert str(exc)
        return
    # Accepted: exactly the map the spec allows, and the array is exactly what it describes.
    assert set(wire) == {"dtype", "shape", "data"}
    assert wire["dtype"] in codec.DTYPES
    assert arr.dtype == np.dtype(wire["dtype"])
    assert list(arr.shape) == wire["shape"] and all(type(n) is int for n in wire["shape"])
    assert arr.astype(arr.dtype.newbyteorder("<")).tobytes() == wire["data"]
    assert max_bytes is None or len(wire["data"]) <= max_bytes


@given(st.sampled_from(codec.DTYPES), st.lists(st.integers(0, 5), max_size=4), st.data())
def test_array_to_wire_and_back_through_canonical_bytes(dtype: str, shape: list[int], data: st.DataObject) -> None:
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    arr = np.frombuffer(data.draw(st.binary(min_size=size, max_size=size)), dtype=np.dtype(dtype)).reshape(shape)
    back = codec.array_from_wire(codec.decode_canonical(codec.encode(codec.array_to_wire(arr))))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()
