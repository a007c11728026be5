"""Hypothesis strategies for the handler fuzz tests: payloads over the protocol's field names, and mutations.

Every field has a "good" strategy (values the spec accepts, mostly) and a "bad" one (boundaries, wrong types,
anything); a payload draws each field good, bad or absent, and sometimes an extra field. The labels only steer the
mix: whether a request is valid is decided by fuzz_support.Spec, never here. Strategies that need the
coordinator's state (its clock, fresh nonces, known job and lease ids) are built per draw from a Harness.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st

from tests.coordinator.fuzz_support import (
    FIELDS,
    ITEM_FIELDS,
    KINDS,
    MAX_GRANT,
    MAX_PRICE,
    STEP_MS,
    STRANGERS,
    SUBMITTERS,
    WINDOW_MS,
    Harness,
    Request,
    worker_key,
)
from tests.msgpack_ref import ref_encode, values

POOL_WORKERS = [worker_key(10_000 + i) for i in range(2)]
SIGNERS = SUBMITTERS + STRANGERS + POOL_WORKERS
_SCALAR_JUNK: list[Any] = [None, True, False, -1, 0, 1.5, float("nan"), "", "x", b"", bytes(8), [], {}]
junk = st.sampled_from(_SCALAR_JUNK) | values


T = TypeVar("T")


def pick(items: Callable[[], Sequence[T]], fallback: T) -> st.SearchStrategy[T]:
    """One of the items known when drawn. The draw's shape must not depend on how many there are (hypothesis
    replays choice sequences and calls a strategy whose shape changed between examples flaky), so it draws an
    index of fixed range and wraps it."""
    def at(i: int) -> T:
        xs = items()
        return xs[i % len(xs)] if xs else fallback

    return st.integers(0, 2**16 - 1).map(at)


def _known(h: Harness, sql: str) -> Callable[[], list[str]]:
    return lambda: [row[0] for row in h.db.execute(sql)]


def known_jobs(h: Harness) -> st.SearchStrategy[str]:
    return pick(_known(h, "SELECT job_id FROM jobs ORDER BY created_ms, job_id"), "0000000000000000")


def known_leases(h: Harness) -> st.SearchStrategy[str]:
    return pick(_known(h, "SELECT lease_id FROM leases ORDER BY issued_ms, lease_id"), "0000000000000000")


def known_tasks(h: Harness) -> st.SearchStrategy[str]:
    return pick(_known(h, "SELECT task_id FROM tasks ORDER BY job_id, idx"), "0000000000000000-0")


ids = st.text(min_size=1, max_size=24)
bad_ids = st.sampled_from(["", "x" * 129, "é" * 129]) | st.sampled_from(_SCALAR_JUNK).filter(lambda v: v != "x")


# ---- field strategies ----------------------------------------------------------------------------------------


def _ts(h: Harness, good: bool) -> st.SearchStrategy[Any]:
    if good:
        return st.builds(lambda: h.clock.now)
    offsets = [-WINDOW_MS - 1_000, STEP_MS - WINDOW_MS, STEP_MS + WINDOW_MS, WINDOW_MS + 1_000]
    return (st.sampled_from(offsets).map(lambda off: h.clock.now + off)
            | st.builds(lambda: h.spec.not_before - 1)
            | st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**64 - 1, True]) | junk)


def _nonce(h: Harness, good: bool) -> st.SearchStrategy[Any]:
    if good:
        return st.builds(h.nonce)
    replay = pick(lambda: sorted({nonce for _, nonce in h.spec.used}), bytes(16))
    return st.binary(max_size=40) | st.sampled_from([bytes(7), bytes(33)]) | replay | junk


_KERNEL_KEYS = ["mandelbrot@1", "mandelbrot@2", "mandelbrot@01", "x@1", "a_b9@123456789", "a" * 48 + "@1"]
_BAD_KERNEL_KEYS = ["mandelbrot", "Mandelbrot@1", "mandelbrot@1\n", "@1", "1a@1", "a" * 49 + "@1", "a@1234567890",
                    "a@", "mandelbrot@1 ", "mandelbrot@\u0661", "m\u00e9@1", "_a@1"]


def _kernels(good: bool) -> st.SearchStrategy[Any]:
    if good:
        return st.lists(st.sampled_from(_KERNEL_KEYS), min_size=1, max_size=3)
    bad_entry = st.sampled_from(_BAD_KERNEL_KEYS) | st.text(max_size=12) | junk
    return (st.just([]) | st.just(["mandelbrot@1"] * 65)
            | st.tuples(st.lists(st.sampled_from(_KERNEL_KEYS), max_size=2), bad_entry).map(lambda t: [*t[0], t[1]])
            | junk)


def _params(good: bool) -> st.SearchStrategy[Any]:
    floats = st.floats(-3, 3, allow_nan=False) | st.integers(-3, 3)
    valid = st.fixed_dictionaries(
        {"width": st.integers(1, 8), "height": st.integers(1, 8)},
        optional={"max_iter": st.integers(1, 64), "x_min": floats, "x_max": floats, "y_min": floats, "y_max": floats},
    )
    if good:
        return valid
    names = ["width", "height", "max_iter", "x_min", "x_max", "y_min", "y_max", "w", "row_start", "zoom", ""]
    bad_number = st.sampled_from([0, -1, 4097, 1_000_001, 2**64 - 1, 1.0, 8.5, 1e7, -1e7, float("nan"),
                                  float("inf"), float("-inf"), -0.0, True, "8", None, b"\x08", [8]])
    one_bad = st.tuples(valid, st.sampled_from(names), bad_number).map(lambda t: {**t[0], t[1]: t[2]})
    too_much = st.just({"width": 4096, "height": 4096, "max_iter": 10_000})
    many = st.just({f"p{i}": i for i in range(65)})
    return one_bad | too_much | many | junk


def field_strategy(h: Harness, name: str, good: bool) -> st.SearchStrategy[Any]:
    """Values for one payload field."""
    if name == "ts":
        return _ts(h, good)
    if name == "nonce":
        return _nonce(h, good)
    if name == "kernels":
        return _kernels(good)
    if name == "params":
        return _params(good)
    if name == "results":
        return result_lists(h, good)
    if name == "lease_ids":
        if good:
            return st.lists(known_leases(h) | ids, max_size=4)
        return (st.just(["x"] * 257) | st.tuples(st.lists(ids, max_size=2), bad_ids).map(lambda t: [*t[0], t[1]])
                | junk)
    if name == "job_id":
        return (known_jobs(h) | ids) if good else (bad_ids | known_jobs(h).map(lambda j: j + "x") | junk)
    if name in ("owner", "account"):
        ids_ok = sorted({key.id for key in SIGNERS}) + ["a" * 32, "2" * 32]
        return st.sampled_from(ids_ok) if good else (
            st.sampled_from(["", "A" * 32, "a" * 31, "a" * 33, "0" * 32, "8" * 32, "a" * 31 + "\n", None, "mint",
                             "escrow:" + "0" * 16])
            | st.text(alphabet="abcxyz234567", min_size=30, max_size=34) | junk)
    if name == "kernel":
        return st.just("mandelbrot") if good else (
            st.sampled_from(["Mandelbrot", "mandelbrot@1", "", "x" * 129, "nope", " mandelbrot"]) | ids | junk)
    ranges: dict[str, tuple[st.SearchStrategy[Any], list[Any]]] = {
        "max_tasks": (st.integers(1, 4), [0, 257, -1, 2**64 - 1, True, 1.0, "1", None]),
        "wait_ms": (st.just(0), [-1, 30_001, 2**63, True, 0.0, "0", None]),
        "tasks": (st.integers(1, 4), [0, 1_000_001, 9, 4097, -1, True, 2.0]),
        "replicas": (st.integers(1, 3), [0, 17, True, 2.0, None, "2"]),
        "max_results": (st.none() | st.integers(3, 8), [0, 1, 65, True, "x", 1.0, -1]),
        "quorum": (st.none() | st.integers(1, 3), [0, 4, 17, True, "1", 1.0, -1]),
        "max_errors": (st.none() | st.integers(0, 5), [-1, 65, True, "3", 0.5]),
        "price": (st.integers(1, 1000), [0, 2**40, 2**40 - 1, -1, True, 1.5]),
        "min_price": (st.integers(0, 8) | st.just(MAX_PRICE), [-1, MAX_PRICE + 1, 2**64 - 1, True, 1.0, "0", None]),
        "published": (st.booleans(), [0, 1, None, "true"]),
        "platform": (st.sampled_from(["x86_64 numba-0.68.1 llvm-22.1.0 glibc-2.36", "p", "~" * 128]),
                     ["", "x" * 129, "é", "a\nb", None, 5, b"x"]),
        "amount": (st.integers(1, 10**6) | st.just(MAX_GRANT),
                   [0, -1, MAX_GRANT + 1, 2**63, 2**64 - 1, True, 1.0, "1", None]),
    }
    ok, edges = ranges[name]
    return ok if good else (st.sampled_from(edges) | junk)


# ---- results -------------------------------------------------------------------------------------------------

_DTYPES = ["uint32", "uint8", "int32", "int64", "uint64", "float32", "float64", "float16", "bool", ""]


@st.composite
def outputs(draw: st.DrawFn) -> Any:
    """Output maps, from the right shape for a tiny task to nonsense."""
    kind = draw(st.sampled_from(["fits", "fits", "shape", "anything"]))
    if kind == "anything":
        return draw(values)
    dtype = draw(st.sampled_from(_DTYPES)) if kind == "shape" else "uint32"
    shape = draw(st.lists(st.integers(0, 5), max_size=3)) if kind == "shape" else [1, 4]
    size = 4
    for n in shape:
        size *= n
    out = {"dtype": dtype, "shape": shape, "data": draw(st.sampled_from([bytes(size), bytes(size + 1), b""]))}
    if draw(st.booleans()):
        out = draw(_mutated_map(out))
    return out


def _mutated_map(m: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`m` with one field dropped, retyped or an extra one added."""
    keys = sorted(m)
    drop = st.sampled_from(keys).map(lambda k: {x: v for x, v in m.items() if x != k})
    retype = st.tuples(st.sampled_from(keys), junk).map(lambda t: {**m, t[0]: t[1]})
    extra = st.tuples(st.text(max_size=8).filter(lambda k: k not in m), junk).map(lambda t: {**m, t[0]: t[1]})
    return drop | retype | extra


def result_items(h: Harness, good: bool) -> st.SearchStrategy[Any]:
    item = st.fixed_dictionaries({
        "lease_id": known_leases(h) | ids, "task_id": known_tasks(h) | ids, "output": outputs(),
        "elapsed_ms": st.integers(0, 2**31 - 1),
    })
    if good:
        return item
    bad_field = st.sampled_from(sorted(ITEM_FIELDS)).flatmap(
        lambda name: st.tuples(st.just(name), bad_ids if name.endswith("_id") else
                               st.sampled_from([-1, 2**31, True, 1.5, None, [], "1"]) | junk))
    return item.flatmap(_mutated_map) | st.tuples(item, bad_field).map(lambda t: {**t[0], t[1][0]: t[1][1]}) | junk


def result_lists(h: Harness, good: bool) -> st.SearchStrategy[Any]:
    def unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for item in items:
            seen.setdefault(item["lease_id"], item)
        return list(seen.values())

    if good:
        return st.lists(result_items(h, True), min_size=1, max_size=3).map(unique)
    twice = result_items(h, True).map(lambda item: [item, dict(item)])
    mixed = st.tuples(st.lists(result_items(h, True), max_size=2), result_items(h, False)).map(
        lambda t: [*t[0], t[1]])
    return st.just([]) | twice | mixed | result_items(h, True).map(lambda item: [item] * 257) | junk


# ---- whole payloads ------------------------------------------------------------------------------------------

_ALL_NAMES = sorted(set().union(*FIELDS.values()) | ITEM_FIELDS | {"ts", "nonce", "key", "payload", "sig", "dtype",
                                                                   "shape", "data", "params", "request_nonce"})


def extra_names(endpoint: str) -> st.SearchStrategy[str]:
    """Field names a payload of `endpoint` must not have: other messages' fields, near misses, anything."""
    own = FIELDS[endpoint] | {"ts", "nonce"}
    near = [n.upper() for n in sorted(own)] + [n + " " for n in sorted(own)] + ["", "\x00"]
    return (st.sampled_from([n for n in _ALL_NAMES if n not in own] + near) | st.text(max_size=8)).filter(
        lambda n: n not in own)


def no_long_poll(payload: dict[str, Any]) -> dict[str, Any]:
    """A valid wait_ms other than 0 would make an idle lease request wait (up to 30 s, by design): use 0 instead."""
    wait = payload.get("wait_ms")
    if isinstance(wait, int) and not isinstance(wait, bool) and 0 < wait <= 30_000:
        return {**payload, "wait_ms": 0}
    return payload


_MODES = ["good"] * 6 + ["bad"] * 2 + ["absent"]


@st.composite
def payloads(draw: st.DrawFn, h: Harness, endpoint: str) -> dict[str, Any]:
    """A payload map for `endpoint`: each field good, bad or absent, sometimes with extra fields."""
    payload: dict[str, Any] = {}
    for name in sorted(FIELDS[endpoint] | {"ts", "nonce"}):
        mode = draw(st.sampled_from(_MODES))
        if mode != "absent":
            payload[name] = draw(field_strategy(h, name, mode == "good"))
    if draw(st.integers(0, 3)) == 0:
        payload.update(draw(st.dictionaries(extra_names(endpoint), junk, min_size=1, max_size=2)))
    return no_long_poll(payload)


def url_job_ids(h: Harness, payload: dict[str, Any]) -> st.SearchStrategy[str]:
    """The {job_id} of a cancel URL: usually the payload's, else a known job or any segment."""
    # "." and ".." are not ids in a URL but path steps: the client would resolve them away.
    job_id = payload.get("job_id")
    same = [job_id] if isinstance(job_id, str) and job_id not in ("", ".", "..") else []
    segment = st.text(min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))
    return (st.sampled_from(same) if same else st.nothing()) | known_jobs(h) | segment


# ---- valid requests and their mutations ---------------------------------------------------------------------


def valid_request(h: Harness, endpoint: str) -> Request:
    """A request the spec accepts, built from the harness's current state (may send honest setup traffic)."""
    if endpoint == "lease":
        return Request("lease", h.new_worker(), {"max_tasks": 1, "wait_ms": 0, "kernels": ["mandelbrot@1"],
                                                 **h.fresh()})
    if endpoint == "submit":
        return Request("submit", SUBMITTERS[0], {"kernel": "mandelbrot", "params": {"width": 4, "height": 3},
                                                 "tasks": 3, "replicas": 2, "max_results": None, "price": 5,
                                                 **h.fresh()})
    if endpoint == "cancel":
        job_id = h.submit(SUBMITTERS[0])
        return Request("cancel", SUBMITTERS[0], {"job_id": job_id, **h.fresh()}, job_id=job_id)
    if endpoint == "result":
        job_id = h.done_job
        return Request("result", SUBMITTERS[0], {"job_id": job_id, **h.fresh()}, job_id=job_id)
    if endpoint == "grant":
        return Request("grant", h.operator, {"account": SUBMITTERS[1].id, "amount": 3, **h.fresh()})
    if endpoint == "bond":  # any party with credits may bond them; SUBMITTERS[1] holds plenty
        return Request("bond", SUBMITTERS[1], {"amount": 3, **h.fresh()})
    if endpoint == "unbond":
        h.send(Request("bond", SUBMITTERS[1], {"amount": 3, **h.fresh()}))
        return Request("unbond", SUBMITTERS[1], {"amount": 3, **h.fresh()})
    worker = h.new_worker()
    grant = h.grant_for(worker)
    if endpoint == "release":
        return Request("release", worker, {"lease_ids": [grant["lease_id"]], **h.fresh()})
    return Request("results", worker, {"results": [h.result_item(grant)], **h.fresh()})


def loose_encode(v: Any, pick: Callable[[], bool]) -> bytes:
    """msgpack of `v` where `pick()` chooses, node by node, a legal but non-canonical form (PROTOCOL.md 3.3)."""
    if isinstance(v, bool) or v is None:
        return ref_encode(v)
    if isinstance(v, int):
        if pick():
            return b"\xd3" + struct.pack(">q", v) if -(2**63) <= v < 2**63 else b"\xcf" + struct.pack(">Q", v)
        return ref_encode(v)
    if isinstance(v, float):
        if pick() and struct.pack(">d", struct.unpack(">f", struct.pack(">f", v))[0]) == struct.pack(">d", v):
            return b"\xca" + struct.pack(">f", v)
        return ref_encode(v)
    if isinstance(v, str):
        raw = v.encode("utf-8")
        return b"\xdb" + struct.pack(">I", len(raw)) + raw if pick() else ref_encode(v)
    if isinstance(v, bytes):
        return b"\xc6" + struct.pack(">I", len(v)) + v if pick() else ref_encode(v)
    if isinstance(v, list):
        head = b"\xdd" + struct.pack(">I", len(v)) if pick() else _count(0x90, 0xDC, len(v))
        return head + b"".join(loose_encode(x, pick) for x in v)
    items = sorted(v.items(), key=lambda kv: kv[0].encode("utf-8"))
    if pick():
        items.reverse()
    pairs = [loose_encode(k, pick) + loose_encode(x, pick) for k, x in items]
    if pairs and pick():
        pairs.append(pairs[0])  # a duplicate key
    head = b"\xdf" + struct.pack(">I", len(pairs)) if pick() else _count(0x80, 0xDE, len(pairs))
    return head + b"".join(pairs)


def _count(fix: int, wide16: int, n: int) -> bytes:
    return bytes([fix | n]) if n <= 15 else bytes([wide16]) + struct.pack(">H", n)


MUTATIONS = ["body-bytes", "envelope", "payload", "payload", "nested", "encoding", "kind", "signer", "freshness",
             "replay", "url"]


def other_kind(endpoint: str) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted({"task", "results-ack", "checkpoint", *KINDS.values()} - {KINDS[endpoint]}))


@st.composite
def mutate_body(draw: st.DrawFn, body: bytes) -> bytes:
    """One byte of `body` flipped, set, inserted or deleted."""
    data = bytearray(body)
    op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
    pos = draw(st.integers(0, 2**16)) % (len(data) + (1 if op == "insert" else 0))
    if op == "flip":
        data[pos] ^= 1 << draw(st.integers(0, 7))
    elif op == "set":
        data[pos] = draw(st.integers(0, 255))
    elif op == "insert":
        data.insert(pos, draw(st.integers(0, 255)))
    else:
        del data[pos]
    return bytes(data)


@st.composite
def mutate_envelope(draw: st.DrawFn, req: Request) -> bytes:
    """The envelope with a bit flipped in one field, a field dropped, added or replaced, or encoded loosely (which
    the body may be: only the payload must be canonical)."""
    env: dict[str, Any] = req.envelope()
    op = draw(st.sampled_from(["flip", "flip", "drop", "add", "replace", "replace", "loose"]))
    if op == "flip":  # one bit of the key, the payload bytes or the signature
        name = draw(st.sampled_from(sorted(env)))
        value = bytearray(env[name])
        value[draw(st.integers(0, 2**16)) % len(value)] ^= 1 << draw(st.integers(0, 7))
        env[name] = bytes(value)
    elif op == "drop":
        del env[draw(st.sampled_from(sorted(env)))]
    elif op == "add":
        env[draw(st.sampled_from(["x", "Key", "sig2", "payload ", "kind", ""]) | st.text(max_size=6))] = draw(junk)
    elif op == "replace":
        name = draw(st.sampled_from(sorted(env)))
        other = draw(st.sampled_from(SIGNERS))
        env[name] = draw(st.sampled_from([
            other.public, other.sign(KINDS[req.endpoint], env["payload"]), env[name][:-1], env[name] + b"\x00",
            req.key.sign(draw(other_kind(req.endpoint)), env["payload"]), env[name].hex(), list(env[name][:4]),
        ]) | junk)
    else:
        return loose_encode(env, lambda: draw(st.booleans()))
    return ref_encode(env)


@st.composite
def mutate_payload(draw: st.DrawFn, h: Harness, req: Request, nested: bool) -> Request:
    """The payload with a field dropped, added or replaced (or a change inside it), re-signed by the same key."""
    p = copy.deepcopy(req.payload)
    if nested:
        p = _mutate_inside(draw, h, req.endpoint, p)
    else:
        op = draw(st.sampled_from(["drop", "add", "replace", "replace"]))
        name = draw(st.sampled_from(sorted(p)))
        if op == "drop":
            del p[name]
        elif op == "add":
            p[draw(extra_names(req.endpoint))] = draw(junk)
        else:
            p[name] = draw(field_strategy(h, name, good=False) | field_strategy(h, name, good=True))
    return Request(req.endpoint, req.key, no_long_poll(p), req.job_id)


def _mutate_inside(draw: st.DrawFn, h: Harness, endpoint: str, p: dict[str, Any]) -> dict[str, Any]:
    if endpoint == "results":
        item = p["results"][0]
        if draw(st.booleans()):
            item["output"] = draw(_mutated_map(item["output"]) | outputs())
        else:
            p["results"][0] = draw(_mutated_map(item) | result_items(h, False))
        if draw(st.booleans()):
            p["results"].append(draw(result_items(h, True) | st.just(dict(item))))
    elif endpoint == "submit":
        p["params"] = draw(_mutated_map(p["params"]) | _params(False))
    elif endpoint == "lease":
        p["kernels"] = draw(_kernels(False))
    elif endpoint == "release":
        p["lease_ids"] = [*p["lease_ids"], draw(bad_ids | known_leases(h) | ids)]
    elif endpoint == "grant":
        name = draw(st.sampled_from(["account", "amount"]))
        p[name] = draw(field_strategy(h, name, good=False))
    elif endpoint in ("bond", "unbond"):
        p["amount"] = draw(field_strategy(h, "amount", good=False))
    else:
        p["job_id"] = draw(bad_ids | known_jobs(h) | ids)
    return p
