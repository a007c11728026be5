"""The pipe between the worker and a kernel's sandbox child: length-prefixed msgpack frames, and the messages.

A frame is a 4-byte big-endian length, then that many bytes of msgpack (depin.codec; arrays as codec.array_to_wire).
`Frames` is the reading side as a pure state machine in h11's manner: bytes in, messages out, no file descriptors.
Its cap is checked against a frame's header, before its body is read, so a hostile child writing a huge length or
endless bytes costs the worker at most `cap` bytes of memory. The worker sets the cap for what it waits for (a small
one for `ready`, the asked output's size plus a little for a task's answer); the child uses one generous cap.

The conversation (docs/KERNELS.md 4):

    worker -> child   hello   {kind, source, kernel_id, cache_dir, loader, path, limits}
    child  -> worker  ready   {kind, compile_s, layers}  or  refused {kind, reason}
    worker -> child   task    {kind, params, inputs}       (repeated; the child keeps the compiled kernel)
    child  -> worker  output  {kind, array}  or  error {kind, error, message}

Everything the worker reads here is checked (`ready`, `answer`): the child runs a stranger's code, so its messages
are a peer's, and every malformation is a PeerProtocolError.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from depin import codec
from depin.errors import PeerProtocolError

HEADER = struct.Struct(">I")
MAX_TEXT = 2000  # characters of a refusal or an error message kept
READY_CAP = 64 * 1024  # bytes of a `ready` or `refused` frame
ANSWER_SLACK = 4096  # bytes of an answer beyond its array's data (msgpack keys, dtype, shape)


def frame(message: dict[str, Any]) -> bytes:
    """The bytes of one frame carrying `message`."""
    body = codec.encode(message)
    return HEADER.pack(len(body)) + body


class Frames:
    """Frames out of a byte stream: `feed` what was read, then take messages with `next` until it says None."""

    def __init__(self, cap: int) -> None:
        self.cap = cap  # the largest frame body accepted; the reader may change it between messages
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        """Add bytes read from the stream."""
        self._buf += data

    def pending(self) -> int:
        """Bytes fed but not yet taken as a message."""
        return len(self._buf)

    def _length(self) -> int:
        (length,) = HEADER.unpack_from(self._buf)
        if length > self.cap:
            raise PeerProtocolError(f"a frame of {length} bytes, over the cap of {self.cap}")
        return int(length)

    def next(self) -> dict[str, Any] | None:
        """The next complete message, or None until more bytes are fed; PeerProtocolError on a malformed one."""
        if len(self._buf) < HEADER.size:
            return None
        end = HEADER.size + self._length()
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[HEADER.size:end])
        del self._buf[:end]
        message = codec.decode(body, max_size=self.cap)
        if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
            raise PeerProtocolError("a frame must hold a map with a kind")
        return message


def _text(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str):
        raise PeerProtocolError(f"{message['kind']}.{key} must be a string")
    return value[:MAX_TEXT]


def ready(message: dict[str, Any]) -> tuple[float, dict[str, str]]:
    """The compile time and the layers report of a `ready` message; PeerProtocolError if it is not one."""
    if message["kind"] != "ready":
        raise PeerProtocolError(f"expected ready, got {message['kind'][:40]!r}")
    seconds, layers = message.get("compile_s"), message.get("layers")
    if not isinstance(seconds, float) or not math.isfinite(seconds) or seconds < 0:
        raise PeerProtocolError("ready.compile_s must be a non-negative float")
    if not isinstance(layers, dict) or not all(isinstance(v, str) for v in layers.values()):
        raise PeerProtocolError("ready.layers must map names to strings")
    return seconds, {k: v[:MAX_TEXT] for k, v in layers.items()}


def refusal(message: dict[str, Any]) -> str | None:
    """The reason of a `refused` message, or None if it is another kind."""
    return _text(message, "reason") if message["kind"] == "refused" else None


def answer_cap(dtype: str, shape: tuple[int, ...]) -> int:
    """The largest frame an answer of this dtype and shape may take."""
    return int(np.dtype(dtype).itemsize * math.prod(shape)) + ANSWER_SLACK + MAX_TEXT * 4


def answer(message: dict[str, Any], dtype: str, shape: tuple[int, ...]) -> np.ndarray | tuple[str, str]:
    """A task's output, checked to have the dtype and shape asked for; or an error's (type name, message).
    PeerProtocolError for anything else."""
    if message["kind"] == "error":
        return _text(message, "error")[:100], _text(message, "message")
    if message["kind"] != "output":
        raise PeerProtocolError(f"expected output or error, got {message['kind'][:40]!r}")
    arr = codec.array_from_wire(message.get("array"), max_bytes=answer_cap(dtype, shape))
    if arr.dtype.name != dtype or arr.shape != tuple(shape):
        raise PeerProtocolError(f"output is {arr.dtype.name} {list(arr.shape)}, not the {dtype} {list(shape)} asked")
    return arr
