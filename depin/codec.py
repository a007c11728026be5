"""Canonical msgpack: the only place depin turns values into bytes and back.

Canonical form (docs/PROTOCOL.md, "Canonical encoding"): maps have string keys sorted by their UTF-8
bytes, every integer and string uses its shortest msgpack form, floats are always float64, byte strings
use the bin family, tuples are arrays. Signatures and ledger hashes are computed over these bytes, so
two implementations that follow the rules produce the same bytes for the same value.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from depin.errors import LocalProtocolError, PeerProtocolError

# The only array element types that travel on the wire; little-endian always.
DTYPES = ("uint8", "uint32", "int32", "int64", "uint64", "float32", "float64")
MAX_ARRAY_DIMS = 4


def _canonical(value: Any) -> Any:
    # A copy msgpack packs as it is: maps as dicts in key order (Python's str order is the order of the keys' UTF-8
    # bytes, as both follow code points), tuples as lists, numpy scalars as Python numbers. One packer call then
    # packs the whole value in C (this was a Python walk per value; the ledger encodes every entry).
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise LocalProtocolError(f"map keys must be strings, got {type(k).__name__}")
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes, float)):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise LocalProtocolError("integer out of the 64-bit range")
        return int(value)  # an int subclass (an IntEnum) packs as the plain int
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise LocalProtocolError(f"cannot encode {type(value).__name__}")


def _default(obj: Any) -> Any:
    raise LocalProtocolError(f"cannot encode {type(obj).__name__}")


def encode(value: Any) -> bytes:
    """Canonical msgpack bytes of `value` (dicts with str keys, lists, str, bytes, int, float, bool, None)."""
    packed: bytes = msgpack.packb(_canonical(value), use_bin_type=True, use_single_float=False, default=_default)
    return packed


MAX_DEPTH = 32  # nesting of arrays and maps; protocol messages use fewer than 8 levels


def _check_depth(value: Any) -> None:
    # Iterative, so a hostile 1000-level message costs a loop, not Python's recursion limit.
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_DEPTH:
                raise PeerProtocolError(f"message nested deeper than {MAX_DEPTH} levels")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))


def decode(data: bytes, *, max_size: int | None = None) -> Any:
    """Decode msgpack from a peer (at most MAX_DEPTH levels deep); any malformation is a PeerProtocolError."""
    if max_size is not None and len(data) > max_size:
        raise PeerProtocolError(f"message of {len(data)} bytes exceeds {max_size}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise PeerProtocolError(f"malformed msgpack: {exc}") from None
    except Exception as exc:  # msgpack raises a few undocumented types on truncated input
        raise PeerProtocolError(f"malformed msgpack: {type(exc).__name__}") from None
    _check_depth(value)
    return value


def decode_canonical(data: bytes, *, max_size: int | None = None) -> Any:
    """Decode, and insist the bytes are the canonical encoding of what they decode to."""
    value = decode(data, max_size=max_size)
    try:
        again = encode(value)
    except LocalProtocolError as exc:
        raise PeerProtocolError(f"not canonical msgpack: {exc}") from None
    if again != data:
        raise PeerProtocolError("not canonical msgpack (see PROTOCOL.md, canonical encoding)")
    return value


def array_to_wire(arr: np.ndarray) -> dict[str, Any]:
    """An array as {"dtype", "shape", "data"}: raw little-endian C-order bytes, never a list."""
    name = arr.dtype.name
    if name not in DTYPES:
        raise LocalProtocolError(f"dtype {name} cannot travel on the wire")
    le = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return {"dtype": name, "shape": [int(n) for n in arr.shape], "data": le.tobytes()}


def array_from_wire(obj: Any, *, max_bytes: int | None = None) -> np.ndarray:
    """Inverse of array_to_wire; checks dtype, shape and byte count before touching the data."""
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        raise PeerProtocolError("array must be a map with exactly dtype, shape, data")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if dtype not in DTYPES:
        raise PeerProtocolError(f"array.dtype: unsupported {dtype!r}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_ARRAY_DIMS
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 for n in shape)
    ):
        raise PeerProtocolError("array.shape: must be a list of at most 4 non-negative ints")
    if not isinstance(data, bytes):
        raise PeerProtocolError("array.data: must be bytes")
    dt = np.dtype(dtype).newbyteorder("<")
    count = 1
    for n in shape:
        count *= n
    if count * dt.itemsize != len(data):
        raise PeerProtocolError(f"array.data: {len(data)} bytes do not fit shape {shape} of {dtype}")
    if max_bytes is not None and len(data) > max_bytes:
        raise PeerProtocolError(f"array.data: {len(data)} bytes exceeds {max_bytes}")
    return np.frombuffer(data, dtype=dt).reshape(shape).astype(np.dtype(dtype), copy=False)
