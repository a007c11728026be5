"""worker.sandbox_wire: frames split anywhere, caps enforced from the header, and every message a child may send
checked (a hostile child writes anything)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from depin import codec
from depin.errors import PeerProtocolError
from worker import sandbox_wire
from worker.sandbox_wire import Frames, answer, frame, ready, refusal


def drain(frames: Frames) -> list[dict[str, object]]:
    out = []
    while (message := frames.next()) is not None:
        out.append(message)
    return out


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=8), st.integers(min_value=1, max_value=50))
def test_frames_survive_any_split(sizes: list[int], step: int) -> None:
    messages = [{"kind": "output", "n": n, "data": bytes(n)} for n in sizes]
    stream = b"".join(frame(m) for m in messages)
    frames, got = Frames(cap=1000), []
    for i in range(0, len(stream), step):
        frames.feed(stream[i:i + step])
        got += drain(frames)
    assert got == messages


def test_a_frame_over_the_cap_is_refused_from_its_header_alone() -> None:
    frames = Frames(cap=100)
    frames.feed(sandbox_wire.HEADER.pack(2**31))  # no body at all: the header is enough to refuse it
    with pytest.raises(PeerProtocolError, match="over the cap of 100"):
        frames.next()


def test_a_frame_at_the_cap_is_read() -> None:
    body = codec.encode({"kind": "x", "pad": b""})
    frames = Frames(cap=len(body))
    frames.feed(frame({"kind": "x", "pad": b""}))
    assert frames.next() == {"kind": "x", "pad": b""}


@pytest.mark.parametrize("body", [b"\xc1", codec.encode([1, 2]), codec.encode({"kind": 3}), codec.encode({"a": 1})])
def test_garbage_and_messages_without_a_kind_are_refused(body: bytes) -> None:
    frames = Frames(cap=100)
    frames.feed(sandbox_wire.HEADER.pack(len(body)) + body)
    with pytest.raises(PeerProtocolError):
        frames.next()


def test_ready_is_checked() -> None:
    assert ready({"kind": "ready", "compile_s": 1.5, "layers": {"seccomp": "active"}}) == (1.5, {"seccomp": "active"})
    for bad in ({"kind": "ready", "compile_s": -1.0, "layers": {}}, {"kind": "ready", "compile_s": 1, "layers": {}},
                {"kind": "ready", "compile_s": 1.0, "layers": {"x": 1}}, {"kind": "output"}):
        with pytest.raises(PeerProtocolError):
            ready(bad)


def test_refusal_says_why_and_only_for_refused() -> None:
    assert refusal({"kind": "refused", "reason": "line 3: import os"}) == "line 3: import os"
    assert refusal({"kind": "ready"}) is None
    with pytest.raises(PeerProtocolError):
        refusal({"kind": "refused", "reason": b"bytes"})


def test_an_answer_must_be_the_output_asked_for() -> None:
    out = np.arange(6, dtype=np.int32).reshape(2, 3)
    got = answer({"kind": "output", "array": codec.array_to_wire(out)}, "int32", (2, 3))
    assert isinstance(got, np.ndarray) and np.array_equal(got, out)
    for dtype, shape in (("int64", (2, 3)), ("int32", (3, 2)), ("int32", (6,))):
        with pytest.raises(PeerProtocolError, match="not the"):
            answer({"kind": "output", "array": codec.array_to_wire(out)}, dtype, shape)
    with pytest.raises(PeerProtocolError, match="expected output or error"):
        answer({"kind": "ready"}, "int32", (2, 3))
    with pytest.raises(PeerProtocolError):
        answer({"kind": "output", "array": {"dtype": "int32", "shape": [2, 3], "data": b"short"}}, "int32", (2, 3))


def test_an_error_answer_is_its_type_and_message_cut_to_size() -> None:
    got = answer({"kind": "error", "error": "IndexError", "message": "x" * 10_000}, "float64", (1,))
    assert got == ("IndexError", "x" * sandbox_wire.MAX_TEXT)


def test_the_answer_cap_fits_the_largest_output_and_no_more_than_a_little() -> None:
    out = np.zeros((512, 1024), dtype=np.float64)  # 4 MiB, the largest task output (docs/KERNELS.md 1)
    cap = sandbox_wire.answer_cap("float64", out.shape)
    data = frame({"kind": "output", "array": codec.array_to_wire(out)})
    assert len(data) - sandbox_wire.HEADER.size <= cap < out.nbytes + 16 * 1024
