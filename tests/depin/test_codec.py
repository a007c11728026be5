"""depin.codec: canonical msgpack bytes, strict decoding, and arrays on the wire.

Expected bytes are written out by hand from the msgpack spec, so these tests do not trust the msgpack library
to define "canonical" either.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depin import codec
from depin.errors import LocalProtocolError, PeerProtocolError
from tests.spec_examples import SPEC, unbin

# ---- canonical encoding ---------------------------------------------------------------------------------


def test_map_keys_are_sorted_by_utf8_bytes() -> None:
    value = {"b": 1, "a": 2, "\u00e9": 3, "aa": 4}
    assert codec.encode(value) == bytes.fromhex("84" "a161" "02" "a26161" "04" "a162" "01" "a2c3a9" "03")


def test_key_order_is_utf8_not_utf16() -> None:
    # UTF-16 would put U+10000 (a surrogate pair, 0xD800...) before U+FF61; UTF-8 bytes put it after.
    encoded = codec.encode({"\U00010000": 1, "\uff61": 2})
    assert encoded == bytes.fromhex("82" "a3efbda1" "02" "a4f0908080" "01")


def test_nested_maps_are_sorted_at_every_level() -> None:
    encoded = codec.encode({"z": {"y": 1, "x": 2}, "a": [{"d": 3, "c": 4}]})
    assert encoded == bytes.fromhex("82" "a161" "91" "82a16304a16403" "a17a" "82a17802a17901")


def test_same_map_in_any_insertion_order_gives_same_bytes() -> None:
    a = {"kernel": "m", "params": {"width": 3, "height": 2}, "tasks": 4}
    b = {"tasks": 4, "params": {"height": 2, "width": 3}, "kernel": "m"}
    assert codec.encode(a) == codec.encode(b)


@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (65535, "cdffff"),
        (65536, "ce00010000"),
        (2**32 - 1, "ceffffffff"),
        (2**32, "cf0000000100000000"),
        (2**64 - 1, "cfffffffffffffffff"),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (-32768, "d18000"),
        (-32769, "d2ffff7fff"),
        (-(2**31), "d280000000"),
        (-(2**31) - 1, "d3ffffffff7fffffff"),
        (-(2**63), "d38000000000000000"),
    ],
)
def test_integers_use_their_shortest_form(value: int, hex_bytes: str) -> None:
    assert codec.encode(value) == bytes.fromhex(hex_bytes)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_integers_outside_64_bits_are_refused(value: int) -> None:
    with pytest.raises(LocalProtocolError, match="integer out of the 64-bit range"):
        codec.encode(value)


def test_numpy_scalars_encode_as_plain_numbers() -> None:
    assert codec.encode(np.int64(5)) == b"\x05"
    assert codec.encode(np.uint64(2**64 - 1)) == bytes.fromhex("cfffffffffffffffff")
    assert codec.encode(np.float32(1.5)) == bytes.fromhex("cb3ff8000000000000")


@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [
        (1.5, "cb3ff8000000000000"),
        (0.0, "cb0000000000000000"),
        (-0.0, "cb8000000000000000"),
        (1.0, "cb3ff0000000000000"),  # integral floats stay floats
        (float("inf"), "cb7ff0000000000000"),
        (0.1, "cb3fb999999999999a"),
    ],
)
def test_floats_are_always_float64(value: float, hex_bytes: str) -> None:
    assert codec.encode(value) == bytes.fromhex(hex_bytes)


def test_bytes_use_the_bin_family() -> None:
    assert codec.encode(b"") == bytes.fromhex("c400")
    assert codec.encode(b"ab") == bytes.fromhex("c4026162")
    assert codec.encode(b"\x00" * 255) == bytes.fromhex("c4ff") + b"\x00" * 255
    assert codec.encode(b"\x00" * 256) == bytes.fromhex("c50100") + b"\x00" * 256
    assert codec.encode(b"\x00" * 65536) == bytes.fromhex("c600010000") + b"\x00" * 65536


def test_strings_use_their_shortest_form() -> None:
    assert codec.encode("") == bytes.fromhex("a0")
    assert codec.encode("x" * 31) == b"\xbf" + b"x" * 31
    assert codec.encode("x" * 32) == bytes.fromhex("d920") + b"x" * 32
    assert codec.encode("x" * 256) == bytes.fromhex("da0100") + b"x" * 256


def test_tuples_are_arrays() -> None:
    assert codec.encode((1, 2)) == bytes.fromhex("920102")
    assert codec.encode((1, 2)) == codec.encode([1, 2])
    assert codec.encode(tuple(range(16))) == bytes.fromhex("dc0010") + bytes(range(16))


def test_containers_use_their_shortest_headers() -> None:
    assert codec.encode([]) == b"\x90"
    assert codec.encode({}) == b"\x80"
    sixteen = {f"k{i:02d}": 0 for i in range(16)}
    assert codec.encode(sixteen)[:3] == bytes.fromhex("de0010")


def test_constants() -> None:
    assert codec.encode([True, False, None]) == bytes.fromhex("93c3c2c0")


@pytest.mark.parametrize(
    ("value", "name"),
    [({1, 2}, "set"), (bytearray(b"x"), "bytearray"), (object(), "object"), (np.zeros(2), "ndarray")],
)
def test_values_without_a_canonical_form_are_refused(value: object, name: str) -> None:
    with pytest.raises(LocalProtocolError, match=f"cannot encode {name}"):
        codec.encode({"k": value})


@pytest.mark.parametrize("key", [1, b"k", None, 1.5])
def test_non_string_map_keys_are_refused(key: object) -> None:
    with pytest.raises(LocalProtocolError, match="map keys must be strings"):
        codec.encode({key: 1})


@pytest.mark.parametrize("example", SPEC["encodings"], ids=lambda e: e["what"][:40])
def test_protocol_md_worked_encodings(example: dict[str, Any]) -> None:
    value = unbin(example["value"])
    assert codec.encode(value).hex() == example["hex"]
    assert codec.decode_canonical(bytes.fromhex(example["hex"])) == value


# ---- round trips ------------------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_round_trip_through_decode_canonical(value: object) -> None:
    data = codec.encode(value)
    assert codec.decode_canonical(data) == value
    assert codec.decode(data) == value


def test_round_trip_keeps_nan_bits() -> None:
    nan = float("nan")
    data = codec.encode(nan)
    assert data == bytes.fromhex("cb7ff8000000000000")
    assert codec.encode(codec.decode_canonical(data)) == data


def test_tuples_come_back_as_lists() -> None:
    assert codec.decode_canonical(codec.encode({"t": (1, (2, 3))})) == {"t": [1, [2, 3]]}


# ---- refusing non-canonical and malformed input -------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_bytes", "what"),
    [
        ("82a16201a16102", "unsorted keys"),
        ("82a16101a16102", "duplicate key"),
        ("ca3fc00000", "float32"),
        ("cc05", "uint8 for a fixint"),
        ("cd00ff", "uint16 for a uint8"),
        ("ce0000ffff", "uint32 for a uint16"),
        ("cf00000000ffffffff", "uint64 for a uint32"),
        ("d005", "int8 for a positive fixint"),
        ("d0ff", "int8 for a negative fixint"),
        ("d1ff80", "int16 for an int8"),
        ("d3ffffffffffffffff", "int64 for -1"),
        ("d901 61", "str8 for a fixstr"),
        ("da0001 61", "str16 for a fixstr"),
        ("c5000161", "bin16 for a bin8"),
        ("dc000101", "array16 for a fixarray"),
        ("de0001a16101", "map16 for a fixmap"),
        ("d40102", "fixext"),
        ("d6ff00000000", "timestamp ext"),
        ("81c4016101", "bytes map key"),
    ],
)
def test_decode_canonical_refuses_non_canonical_bytes(hex_bytes: str, what: str) -> None:
    data = bytes.fromhex(hex_bytes.replace(" ", ""))
    codec.decode(data)  # well-formed msgpack: only canonicity is wrong
    with pytest.raises(PeerProtocolError, match="not canonical msgpack"):
        codec.decode_canonical(data)


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "",  # empty
        "c1",  # the one never-used byte
        "0101",  # trailing data
        "92",  # array header with no items
        "8101",  # map with a key but no value
        "810102",  # int map key
        "81910102",  # array map key
        "a3616263ff",  # trailing byte after a string
        "a2ff61",  # invalid UTF-8 in a str
        "db00000010",  # str32 longer than the input
    ],
)
def test_malformed_input_is_a_peer_protocol_error(hex_bytes: str) -> None:
    data = bytes.fromhex(hex_bytes)
    for fn in (codec.decode, codec.decode_canonical):
        with pytest.raises(PeerProtocolError, match="malformed msgpack"):
            fn(data)


def test_every_truncation_of_a_message_is_refused() -> None:
    data = codec.encode({"results": [{"lease_id": "L1", "output": {"data": b"\x01\x02", "shape": [2]}}], "ts": 2**40})
    for n in range(len(data)):
        with pytest.raises(PeerProtocolError, match="malformed msgpack"):
            codec.decode_canonical(data[:n])


def test_deep_nesting_is_refused_not_a_crash() -> None:
    data = b"\x91" * 100_000 + b"\x00"
    with pytest.raises(PeerProtocolError, match="malformed msgpack"):
        codec.decode(data)


def test_max_size_is_checked_before_decoding() -> None:
    data = codec.encode(b"x" * 100)
    assert codec.decode(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(PeerProtocolError, match=f"message of {len(data)} bytes exceeds {len(data) - 1}"):
        codec.decode_canonical(data, max_size=len(data) - 1)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=48))
def test_garbage_gives_a_value_or_peer_protocol_error(data: bytes) -> None:
    for fn in (codec.decode, codec.decode_canonical):
        try:
            fn(data)
        except PeerProtocolError:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values, st.data())
def test_corrupted_encodings_give_a_value_or_peer_protocol_error(value: object, data: st.DataObject) -> None:
    encoded = bytearray(codec.encode(value))
    pos = data.draw(st.integers(0, len(encoded) - 1))
    encoded[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut])):
        try:
            codec.decode_canonical(candidate)
        except PeerProtocolError:
            pass


# ---- arrays on the wire ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", codec.DTYPES)
def test_array_round_trip_every_dtype(dtype: str) -> None:
    arr = (np.arange(24) * 3 + 1).astype(dtype).reshape(2, 3, 4)
    wire = codec.array_to_wire(arr)
    assert wire["dtype"] == dtype
    assert wire["shape"] == [2, 3, 4]
    assert wire["data"] == arr.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    back = codec.array_from_wire(codec.decode_canonical(codec.encode(wire)))
    assert back.dtype == np.dtype(dtype)
    assert back.shape == (2, 3, 4)
    assert np.array_equal(back, arr)


def test_array_data_is_little_endian_c_order() -> None:
    arr = np.array([[1, 256], [65536, 2**32 - 1]], dtype=">u4")  # big-endian input
    wire = codec.array_to_wire(arr)
    assert wire == {
        "dtype": "uint32",
        "shape": [2, 2],
        "data": bytes.fromhex("01000000" "00010000" "00000100" "ffffffff"),
    }
    strided = np.arange(6, dtype="<u4").reshape(2, 3)[:, ::2]  # not contiguous
    assert codec.array_to_wire(strided)["data"] == bytes.fromhex("00000000" "02000000" "03000000" "05000000")


def test_array_zero_dims_and_empty() -> None:
    scalar = codec.array_from_wire({"dtype": "uint8", "shape": [], "data": b"\x05"})
    assert scalar.shape == () and int(scalar) == 5
    empty = codec.array_from_wire({"dtype": "float64", "shape": [0, 7], "data": b""})
    assert empty.shape == (0, 7) and empty.dtype == np.float64
    assert codec.array_to_wire(np.zeros((0, 3), dtype=np.int32)) == {"dtype": "int32", "shape": [0, 3], "data": b""}


@pytest.mark.parametrize("dtype", ["bool", "float16", "complex128", "int8", "uint16", "object"])
def test_array_to_wire_refuses_other_dtypes(dtype: str) -> None:
    with pytest.raises(LocalProtocolError, match=f"dtype {dtype} cannot travel on the wire"):
        codec.array_to_wire(np.zeros(2, dtype=dtype))


_GOOD = {"dtype": "uint32", "shape": [2, 3], "data": bytes(24)}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2], "array must be a map with exactly dtype, shape, data"),
        ({"dtype": "uint32", "shape": [2, 3]}, "array must be a map with exactly dtype, shape, data"),
        ({**_GOOD, "order": "C"}, "array must be a map with exactly dtype, shape, data"),
        ({**_GOOD, "dtype": "bool"}, "array.dtype: unsupported 'bool'"),
        ({**_GOOD, "dtype": "<u4"}, "array.dtype: unsupported '<u4'"),
        ({**_GOOD, "dtype": 5}, "array.dtype: unsupported 5"),
        ({**_GOOD, "dtype": ["uint32"]}, "array.dtype: unsupported"),
        ({**_GOOD, "shape": (2, 3)}, "array.shape: must be a list of at most 4 non-negative ints"),
        ({**_GOOD, "shape": 6}, "array.shape"),
        ({**_GOOD, "shape": [2, -3]}, "array.shape"),
        ({**_GOOD, "shape": [2, 3.0]}, "array.shape"),
        ({**_GOOD, "shape": [True, 3]}, "array.shape"),
        ({**_GOOD, "shape": [2**31, 0]}, "array.shape"),
        ({**_GOOD, "shape": [1, 1, 1, 2, 3]}, "array.shape"),
        ({**_GOOD, "data": "x" * 24}, "array.data: must be bytes"),
        ({**_GOOD, "data": bytes(23)}, r"array.data: 23 bytes do not fit shape \[2, 3\] of uint32"),
        ({**_GOOD, "data": bytes(25)}, r"array.data: 25 bytes do not fit shape \[2, 3\] of uint32"),
        ({**_GOOD, "shape": [3, 3]}, r"array.data: 24 bytes do not fit shape \[3, 3\] of uint32"),
        ({**_GOOD, "dtype": "uint64"}, r"array.data: 24 bytes do not fit shape \[2, 3\] of uint64"),
    ],
)
def test_array_from_wire_refuses(obj: object, message: str) -> None:
    with pytest.raises(PeerProtocolError, match=message):
        codec.array_from_wire(obj)


def test_array_from_wire_max_bytes() -> None:
    assert codec.array_from_wire(_GOOD, max_bytes=24).shape == (2, 3)
    with pytest.raises(PeerProtocolError, match="array.data: 24 bytes exceeds 23"):
        codec.array_from_wire(_GOOD, max_bytes=23)


def test_array_from_wire_reads_little_endian() -> None:
    arr = codec.array_from_wire({"dtype": "int32", "shape": [2], "data": bytes.fromhex("01000000" "feffffff")})
    assert arr.tolist() == [1, -2]
    assert arr.dtype == np.dtype("int32")
