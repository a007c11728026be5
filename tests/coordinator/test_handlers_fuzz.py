"""Hostile input to every coordinator endpoint, through the real aiohttp app on loopback, in this process.

Every POST is checked by fuzz_support.Harness.check_post against fuzz_support.Spec (a model of PROTOCOL.md and the
money rules of LEDGER.md): the status must be the one the spec gives (a 4xx with a JSON {"error": text} body, or a
2xx of the right shape for a valid request), a refused request must leave the database and the scheduler's memory
exactly as they were, and GET /v1/status must still answer 200 afterwards. The ledger's read endpoints (checkpoint,
proofs, accounts, credits, receipts, provenance) get hostile query strings and path segments, and every proof they
serve is checked against the signed checkpoint. Nothing may answer 5xx or take longer than 10 s.

`make test` runs the "ci" hypothesis profile (tests/conftest.py). For a long fuzzing run (5000 examples a test;
--timeout=0 because one such test outlasts pytest-timeout's 300 s):

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q --timeout=0 tests/depin/test_codec_properties.py \
        tests/coordinator/test_handlers_fuzz.py
"""

from __future__ import annotations

import math
import re
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgpack
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from coordinator import server
from depin import accounts, checkpoint, ledger, merkle
from tests.coordinator.fuzz_strategies import (
    MUTATIONS,
    SIGNERS,
    field_strategy,
    known_jobs,
    loose_encode,
    mutate_body,
    mutate_envelope,
    mutate_payload,
    other_kind,
    payloads,
    pick,
    url_job_ids,
    valid_request,
)
from tests.coordinator.fuzz_support import (
    CHECKPOINT_EVERY,
    JOB_ENDPOINTS,
    LIMITS,
    PATHS,
    SUBMITTERS,
    TINY_JOB,
    Answer,
    Harness,
    Request,
    job_path,
    worker_key,
    zeros_output,
)
from tests.msgpack_ref import ref_encode, values

ENDPOINTS = ["lease", "release", "results", "submit", "cancel", "result", "grant", "bond", "unbond"]
FUNDS = 10**9


def _seed(h: Harness) -> None:
    """A little history to aim at: credits for both submitters, a done job (refunded what it did not use), a
    validated task with its rewards, a leased one, a cancelled job; checkpoints at 0, 5 and 9 entries."""
    for key in SUBMITTERS:
        assert h.grant(key.id, FUNDS) == FUNDS
    finisher, first, second, third = h.new_worker(), h.new_worker(), h.new_worker(), h.new_worker()
    h.done_job = h.submit(SUBMITTERS[0], tasks=1, replicas=1, price=50)  # the dearest job: leased first
    grant = h.grant_for(finisher)
    h.send(Request("results", finisher, {"results": [h.result_item(grant)], **h.fresh()}))
    assert h.get(job_path(h.done_job)).value["state"] == "done"
    h.submit(SUBMITTERS[0])
    for worker in (first, second):
        grant = h.grant_for(worker)
        h.send(Request("results", worker, {"results": [h.result_item(grant)], **h.fresh()}))
    h.grant_for(third)
    job_id = h.submit(SUBMITTERS[1])
    h.send(Request("cancel", SUBMITTERS[1], {"job_id": job_id, **h.fresh()}, job_id=job_id))
    kinds = [e["kind"] for e in h.get("/v1/ledger").value["entries"]]
    assert kinds == ["grant", "grant", "escrow", "reward", "refund", "escrow", "reward", "reward", "escrow", "refund"]
    assert [r[0] for r in h.db.execute("SELECT size FROM checkpoints ORDER BY size")] == [0, 5, 9]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """One coordinator shared by every example of a test: what a refused example did not change, the next sees."""
    h = Harness(tmp_path / "coordinator", seed=_seed)
    try:
        yield h
    finally:
        h.close()


def _endpoint_path(h: Harness, endpoint: str, data: st.DataObject, payload: Any = None) -> tuple[str, str | None]:
    if endpoint not in JOB_ENDPOINTS:
        return PATHS[endpoint], None
    job_id = data.draw(url_job_ids(h, payload if isinstance(payload, dict) else {}), label="url job_id")
    return job_path(job_id, JOB_ENDPOINTS[endpoint]), job_id


def test_the_model_knows_every_body_limit() -> None:
    assert LIMITS == server.LIMITS


# ---- POST: bytes, payloads, mutations ------------------------------------------------------------------------

# Envelope-like prefixes (and 40 levels of nesting) followed by garbage get further than random bytes do.
_bodies = (
    st.binary(max_size=300)
    | values.map(ref_encode)
    | st.tuples(st.sampled_from([b"\x83", b"\x83\xa3key\xc4\x20", b"\x91" * 40, b"\xdf\xff\xff\xff\xff"]),
                st.binary(max_size=64)).map(lambda t: t[0] + t[1])
)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@given(data=st.data())
def test_arbitrary_bodies_are_refused_cleanly(harness: Harness, endpoint: str, data: st.DataObject) -> None:
    harness.begin_example()
    path, job_id = _endpoint_path(harness, endpoint, data)
    body = data.draw(_bodies, label="body")
    answer = harness.check_post(path, body, endpoint=endpoint, url_job_id=job_id)
    assert 400 <= answer.status < 500


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@given(data=st.data())
def test_signed_payloads_of_random_fields_get_the_spec_answer(harness: Harness, endpoint: str,
                                                              data: st.DataObject) -> None:
    harness.begin_example()
    key = data.draw(st.sampled_from([*SIGNERS, harness.operator]), label="signer")
    payload = data.draw(payloads(harness, endpoint), label="payload")
    path, job_id = _endpoint_path(harness, endpoint, data, payload)
    harness.check_post(path, Request(endpoint, key, payload, job_id).body(), endpoint=endpoint, url_job_id=job_id)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@given(data=st.data())
def test_mutations_of_a_valid_request_get_the_spec_answer(harness: Harness, endpoint: str,
                                                          data: st.DataObject) -> None:
    harness.begin_example()
    h = harness
    req = valid_request(h, endpoint)
    op = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    target, path, job_id = endpoint, req.path, req.job_id
    if op == "body-bytes":
        body = data.draw(mutate_body(req.body()), label="body")
    elif op == "envelope":
        body = data.draw(mutate_envelope(req), label="body")
    elif op in ("payload", "nested"):
        body = data.draw(mutate_payload(h, req, op == "nested"), label="request").body()
    elif op == "encoding":
        body = ref_encode(req.envelope(loose_encode(req.payload, lambda: data.draw(st.booleans()))))
    elif op == "kind":
        body = ref_encode(req.envelope(kind=data.draw(other_kind(endpoint), label="kind")))
    elif op == "signer":
        body = Request(endpoint, data.draw(st.sampled_from(SIGNERS), label="signer"), req.payload, job_id).body()
    elif op == "freshness":
        name = data.draw(st.sampled_from(["ts", "nonce"]), label="field")
        payload = {**req.payload, name: data.draw(field_strategy(h, name, good=False), label=name)}
        body = Request(endpoint, req.key, payload, job_id).body()
    elif op == "replay":
        body = req.body()
        assert h.check_post(path, body, endpoint=endpoint, url_job_id=job_id).status < 300
        if data.draw(st.booleans(), label="new ts"):  # the same nonce under a new timestamp is a replay too
            body = Request(endpoint, req.key, {**req.payload, "ts": h.clock.now}, job_id).body()
    else:  # the valid body at another URL: another endpoint, or (cancel) another job
        body = req.body()
        target = data.draw(st.sampled_from(ENDPOINTS), label="sent to")
        if target in JOB_ENDPOINTS:
            job_id = data.draw(url_job_ids(h, req.payload), label="url job_id")
            path = job_path(job_id, JOB_ENDPOINTS[target])
        else:
            path, job_id = PATHS[target], None
    h.check_post(path, body, endpoint=target, url_job_id=job_id)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_bodies_over_the_limit_are_413_before_parsing(harness: Harness, endpoint: str) -> None:
    path = job_path("0000000000000000", JOB_ENDPOINTS[endpoint]) if endpoint in JOB_ENDPOINTS else PATHS[endpoint]
    body = b"\x00" * (LIMITS[endpoint] + 1)
    harness.check_post(path, body, endpoint=endpoint, url_job_id="0000000000000000")
    # Without a Content-Length the body is read only until it passes the limit (PROTOCOL.md 2.4).
    before = harness.fingerprint()
    answer = harness.request("POST", path, body, chunked=True)
    assert answer.status == 413 and answer.value["error"], answer
    assert harness.fingerprint() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_deeply_nested_signed_payload_is_400(harness: Harness, endpoint: str) -> None:
    # Regression: such a payload (valid signature, 1000 levels) made decode_canonical raise RecursionError: a 500.
    fresh = harness.fresh()
    payload = (b"\x83" + ref_encode("deep") + b"\x91" * 1000 + b"\xc0" + ref_encode("nonce")
               + ref_encode(fresh["nonce"]) + ref_encode("ts") + ref_encode(fresh["ts"]))
    req = Request(endpoint, SIGNERS[-1], {}, "0000000000000000")
    answer = harness.check_post(req.path, ref_encode(req.envelope(payload)), endpoint=endpoint,
                                url_job_id=req.job_id)
    assert answer.status == 400, answer


# ---- every kernel's check, comparison and merge, on outputs workers agree to send -----------------------------

_TINY_JOBS = {
    "mandelbrot": {"width": 4, "height": 1, "max_iter": 4},
    "montecarlo": {"func": 1, "samples": 4, "seed": 1},
    "nonce": {"seed": 1, "difficulty": 1, "count": 4},
}
_OUTPUT_DTYPES = {"mandelbrot": "uint32", "montecarlo": "float64", "nonce": "uint64"}
_SPECIAL_OUTPUTS = {
    "uint32": [bytes(16), b"\xff" * 16],
    "float64": [struct.pack("<2d", *v) for v in [(math.inf, math.inf), (math.nan, 0.0), (1e308, 1e308),
                                                 (-1.0, -0.0), (0.0, 0.0), (5e-324, 1.0), (-math.inf, math.inf)]],
    "uint64": [struct.pack("<2Q", *v) for v in [(0, 0), (1, 0), (1, 1), (1, 2**64 - 1), (2, 0), (0, 1),
                                                (2**64 - 1, 2**64 - 1)]],
}


def _output_shape(task: dict[str, Any]) -> list[int]:
    p = task["params"]
    return [p["row_end"] - p["row_start"], p["width"]] if task["kernel"] == "mandelbrot" else [2]


@pytest.mark.parametrize("kernel", sorted(_TINY_JOBS))
@settings(max_examples=max(10, settings().max_examples // 3))  # each example is a whole job: a few requests
@given(data=st.data())
def test_workers_agreeing_on_hostile_outputs(harness: Harness, kernel: str, data: st.DataObject) -> None:
    """Any output of the right dtype and shape (NaN, infinities, a nonce out of range...), sent by one worker or by
    several that agree: the kernel's check, its comparison and its merge must take it, and the job stay readable."""
    harness.begin_example()
    h = harness
    assert kernel in h.spec.kernels, f"GET /v1/info lists no {kernel} kernel"
    quorum = data.draw(st.sampled_from([1, 2]), label="quorum")
    job = {"kernel": kernel, "params": _TINY_JOBS[kernel], "tasks": 1, "replicas": 2, "quorum": quorum, "price": 5}
    h.send(Request("submit", SUBMITTERS[0], {**job, **h.fresh()}))
    dtype = _OUTPUT_DTYPES[kernel]  # every output here is 16 bytes: [2] of 64 bits, or mandelbrot's [1, 4] of 32
    outputs = st.sampled_from(_SPECIAL_OUTPUTS[dtype]) | st.binary(min_size=16, max_size=16)
    # Drawn up front: how many draws an example makes must not depend on what the coordinator answers.
    plan = data.draw(st.lists(st.tuples(st.booleans(), outputs), min_size=1, max_size=3), label="workers")
    jobs = set()
    output = plan[0][1]
    for agree, own in plan:
        output = output if agree else own
        worker = h.new_worker()
        grants = h.lease(worker, kernels=(f"{kernel}@1",))
        if not grants:
            break
        task = msgpack.unpackb(grants[0]["task"], raw=False)
        item = h.result_item(grants[0], {"dtype": dtype, "shape": _output_shape(task), "data": output})
        h.send(Request("results", worker, {"results": [item], **h.fresh()}))
        jobs.add(task["job_id"])
    for job_id in sorted(jobs):
        job = h.get(job_path(job_id)).value
        (owner,) = [key for key in SUBMITTERS if key.id == job["submitter"]]
        req = Request("result", owner, {"job_id": job_id, **h.fresh()}, job_id=job_id)
        answer = h.check_post(req.path, req.body(), endpoint="result", url_job_id=job_id)
        assert answer.status == (200 if job["state"] == "done" else 409), answer
        if answer.status == 200:
            assert answer.value["output"]["dtype"] == dtype, answer.value


# ---- GET: query strings and path segments --------------------------------------------------------------------

def _query_int(raw: str | None, default: int) -> Any:
    """The model of an integer query parameter: plain ASCII decimal, at most 19 digits, else None (400)."""
    if raw is None:
        return default
    return int(raw) if re.fullmatch(r"-?[0-9]{1,19}", raw) else None


_query_values = (
    st.none() | st.integers(-3, 12).map(str) | st.integers().map(str) | st.text(max_size=6)
    | st.sampled_from(["", "abc", "1.5", "1e3", " 5", "+5", "\u0663", "1_0", "0x10", "-0", "007", "10000", "10001",
                       "9" * 4400, str(2**63 - 1)])  # over 4300 digits: int() refuses them
)


@given(start=_query_values, limit=_query_values, extra=st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)),
                                                                   max_size=2))
def test_ledger_pages_and_hostile_query_strings(harness: Harness, start: str | None, limit: str | None,
                                                extra: list[tuple[str, str]]) -> None:
    harness.begin_example()
    first, count = _query_int(start, 0), _query_int(limit, 1000)
    query = [(k, v) for k, v in (("start", start), ("limit", limit)) if v is not None]
    query += [(k, v) for k, v in extra if k not in ("start", "limit")]
    path = "/v1/ledger" + ("?" + urlencode(query) if query else "")
    assume(len(path) < 8000)  # aiohttp's own request-line limit: see test_overlong_request_line_is_a_4xx
    before = harness.fingerprint()
    answer = harness.get(path)
    if first is None or count is None:
        allowed = {400}
    else:
        allowed = {200} if 0 <= first < 2**63 and 1 <= count <= 10_000 else {400}
    assert answer.status in allowed, f"GET {path} -> {answer}"
    assert answer.content_type == "application/json", answer
    if answer.status == 200:
        page = answer.value
        total = page["total"]
        assert total == harness.get("/v1/status").value["ledger"]["entries"]
        if isinstance(first, int) and isinstance(count, int):
            assert [e["seq"] for e in page["entries"]] == list(range(first, min(total, first + count)))
        for entry in page["entries"]:
            assert list(entry) == list(ledger.FIELDS)
    else:
        assert set(answer.value) == {"error"} and answer.value["error"], answer
    assert harness.fingerprint() == before


def test_overlong_request_line_is_a_4xx(harness: Harness) -> None:
    # aiohttp's HTTP parser refuses a request line over 8190 bytes before the app sees it: a 400 whose body is
    # aiohttp's plain text, not the JSON {"error": ...} of PROTOCOL.md 2.3. A 4xx all the same, and nothing changes.
    before = harness.fingerprint()
    answer = harness.get("/v1/ledger?start=" + "9" * 9000)
    assert 400 <= answer.status < 500, answer
    assert harness.fingerprint() == before
    assert harness.get("/v1/status").status == 200


@pytest.mark.parametrize("start", [str(2**63), "9" * 30])
def test_ledger_start_beyond_64_bits_is_400(harness: Harness, start: str) -> None:
    # Regression: such a start passed the >= 0 check and sqlite3 raised OverflowError binding it: a 500.
    answer = harness.get(f"/v1/ledger?start={start}")
    assert answer.status == 400 and answer.value["error"], answer


# ---- the ledger's read endpoints: checkpoints, proofs, accounts, credits, receipts, provenance -----------------

# name -> (default when absent, lowest, highest); a default of "required" means absent is a 400
_AUDIT_QUERIES: dict[str, tuple[Any, int, int]] = {
    "size": (None, 0, 2**63 - 1), "to": (None, 0, 2**63 - 1), "seq": ("required", 0, 2**63 - 1),
    "from": ("required", 0, 2**63 - 1), "after": (-1, -1, 2**63 - 1), "limit": (1000, 1, 1000),
    "offset": (0, 0, 2**63 - 1),
}
_AUDIT_READS = {  # what -> (path with {} for the id segment, its query parameters)
    "checkpoint": ("/v1/ledger/checkpoint", ("size",)),
    "inclusion": ("/v1/ledger/proof/inclusion", ("seq", "size")),
    "consistency": ("/v1/ledger/proof/consistency", ("from", "to")),
    "account": ("/v1/accounts/{}", ()),
    "credits": ("/v1/accounts/{}/credits", ("after", "size", "limit")),
    "receipts": ("/v1/workers/{}/receipts", ("offset", "limit")),
    "provenance": ("/v1/jobs/{}/provenance", ()),
}


class _Ledger:
    """The stored ledger as the read-only database has it: entries, leaves, checkpoint sizes."""

    def __init__(self, db: sqlite3.Connection) -> None:
        cols = "seq, time, kind, from_account, to_account, amount, job_id, task_id, prev_hash, hash"
        self.entries = [dict(zip(ledger.FIELDS, row, strict=True))
                        for row in db.execute(f"SELECT {cols} FROM ledger ORDER BY seq")]
        self.leaves = [ledger.leaf_of(e["hash"]) for e in self.entries]
        self.sizes = {row[0] for row in db.execute("SELECT size FROM checkpoints")}

    def balance(self, account: str) -> int:
        paid_in: int = sum(e["amount"] for e in self.entries if e["to"] == account)
        paid_out: int = sum(e["amount"] for e in self.entries if e["from"] == account)
        return paid_in - paid_out


def _audit_value(h: Harness) -> st.SearchStrategy[str | None]:
    sizes = pick(lambda: sorted(str(r[0]) for r in h.db.execute("SELECT size FROM checkpoints")), "0")
    return _query_values | sizes | st.integers(-2, 14).map(str)


def _audit_segment(h: Harness, what: str) -> st.SearchStrategy[str]:
    if what == "provenance":
        return known_jobs(h) | known_jobs(h).map(lambda j: j + "x") | _segments
    ids = pick(lambda: sorted({r[0] for r in h.db.execute("SELECT to_account FROM ledger")}
                              | {r[0] for r in h.db.execute("SELECT worker_id FROM workers")}), "mint")
    return ids | _segments


def _check_proved(item: dict[str, Any] | None, cp: checkpoint.Checkpoint, stored: _Ledger) -> None:
    """An {"entry", "proof"} of an answer: the stored entry, proved against the checkpoint unless newer."""
    assert item is not None
    entry = item["entry"]
    assert entry == stored.entries[entry["seq"]], entry
    if entry["seq"] >= cp.size:
        assert item["proof"] is None, item
    else:
        checkpoint.check_included(entry, cp, checkpoint.hashes_from_json(item["proof"]))


@given(data=st.data())
def test_ledger_reads_prove_what_they_serve(harness: Harness, data: st.DataObject) -> None:
    harness.begin_example()
    h = harness
    what = data.draw(st.sampled_from(sorted(_AUDIT_READS)), label="read")
    template, names = _AUDIT_READS[what]
    raw = {name: data.draw(_audit_value(h), label=name) for name in names}
    segment = data.draw(_audit_segment(h, what), label="segment") if "{}" in template else ""
    path = template.replace("{}", quote(segment, safe=""))
    query = [(k, v) for k, v in raw.items() if v is not None]
    path += "?" + urlencode(query) if query else ""
    assume(len(path) < 8000)
    stored = _Ledger(h.db)
    latest = max(stored.sizes)
    bad = object()  # not an integer at all
    values = {name: _AUDIT_QUERIES[name][0] if raw[name] is None else _query_int(raw[name], 0) for name in names}
    values = {name: bad if raw[name] is not None and v is None else v for name, v in values.items()}
    if "{" in segment or "}" in segment:
        allowed = {404}
    elif (what == "account" and not accounts.is_account(segment)) or (
            what in ("credits", "receipts") and not accounts.is_party(segment)):
        allowed = {400}  # not an account (or not a party) id: refused before any query parameter is read
    elif any(v is bad or v == "required" for v in values.values()) or any(
            isinstance(v, int) and not _AUDIT_QUERIES[n][1] <= v <= _AUDIT_QUERIES[n][2] for n, v in values.items()):
        allowed = {400}
    else:
        size = values.get("size", values.get("to"))
        cp_size = latest if size is None else size
        if size is not None and size not in stored.sizes:
            allowed = {404}
        elif what == "inclusion" and values["seq"] >= cp_size:
            allowed = {404}
        elif what == "consistency" and values["from"] > cp_size:
            allowed = {404}
        elif what == "provenance" and not h.db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (segment,)).fetchall():
            allowed = {404}
        else:
            allowed = {200}
    before = h.fingerprint()
    answer = h.get(path)
    assert answer.status in allowed, f"GET {path} -> {answer}"
    assert answer.content_type == "application/json", answer
    assert h.fingerprint() == before
    if answer.status != 200:
        assert set(answer.value) == {"error"} and answer.value["error"], answer
        return
    value = answer.value
    if what == "account":
        assert value == {"account": segment, "balance": stored.balance(segment)}
        return
    cp = checkpoint.Checkpoint.from_json(value if what == "checkpoint" else value["checkpoint"])
    cp.verify(h.service.key.verify_key)
    assert cp.root == merkle.naive_root(stored.leaves[:cp.size])
    if what == "checkpoint":
        assert cp.size == (latest if values["size"] is None else values["size"])
    elif what == "inclusion":
        assert cp.size == (latest if values["size"] is None else values["size"])
        _check_proved({"entry": value["entry"], "proof": value["proof"]}, cp, stored)
        assert value["entry"]["seq"] == values["seq"]
    elif what == "consistency":
        old = values["from"]
        assert (value["from"], cp.size) == (old, latest if values["to"] is None else values["to"])
        merkle.verify_consistency(old, cp.size, merkle.naive_root(stored.leaves[:old]), cp.root,
                                  checkpoint.hashes_from_json(value["proof"]))
    elif what == "credits":
        after, limit = values["after"], values["limit"]
        assert value["account"] == segment
        expected = [e for e in stored.entries if e["to"] == segment and e["seq"] > after][:limit]
        assert [c["entry"] for c in value["credits"]] == expected
        for credit in value["credits"]:
            _check_proved(credit, cp, stored)
    elif what == "receipts":
        results = h.db.execute("SELECT COUNT(*) FROM results WHERE worker_id = ?", (segment,)).fetchone()[0]
        assert (value["worker_id"], value["offset"]) == (segment, values["offset"])
        assert len(value["receipts"]) == max(0, min(values["limit"], results - values["offset"]))
        for receipt in value["receipts"]:
            if receipt["reward"] is not None:
                assert receipt["verdict"] == "valid" and receipt["reward"]["entry"]["to"] == segment
                _check_proved(receipt["reward"], cp, stored)
    elif what == "provenance":
        assert value["job"]["job_id"] == segment
        assert [p["entry"] for p in value["entries"]] == [e for e in stored.entries if e["job_id"] == segment]
        for proved in value["entries"]:
            _check_proved(proved, cp, stored)


_segments = st.text(min_size=1, max_size=24).filter(lambda s: s not in (".", ".."))
_METHODS = ["GET", "GET", "GET", "HEAD", "PUT", "DELETE", "PATCH", "POST"]


@given(data=st.data())
def test_job_paths_and_methods(harness: Harness, data: st.DataObject) -> None:
    harness.begin_example()
    h = harness
    job_id = data.draw(known_jobs(h) | known_jobs(h).map(lambda j: j + "x") | _segments, label="job_id")
    suffix = data.draw(st.sampled_from(["", "/result", "/cancel", "/provenance", "/x", "/"]), label="suffix")
    method = data.draw(st.sampled_from(_METHODS), label="method")
    assume(not (method == "POST" and suffix in ("/cancel", "/result")))  # signed endpoints: fuzzed by the POST tests
    job = h.get(job_path(job_id)).value if "{" not in job_id and "}" not in job_id else {}
    exists = "job_id" in job
    # The result is a signed POST now (only the submitter may have it): a GET of it is 405, job or no job.
    routes = {"": ("GET", "HEAD"), "/result": ("POST",), "/cancel": ("POST",), "/provenance": ("GET", "HEAD")}
    if "{" in job_id or "}" in job_id or suffix not in routes:
        allowed = {404}
    elif method not in routes[suffix]:
        allowed = {405}
    elif not exists:
        allowed = {404}
    else:
        allowed = {200}
    before = h.fingerprint()
    answer = h.request(method, job_path(job_id, suffix), b"" if method in ("PUT", "PATCH", "POST") else None)
    assert answer.status in allowed, f"{method} {job_path(job_id, suffix)} -> {answer}"
    if answer.status >= 400 and method != "HEAD":
        assert answer.content_type == "application/json" and answer.value["error"], answer
    if answer.status == 200 and method == "GET":
        value = answer.value
        assert (value["job"] if suffix == "/provenance" else value)["job_id"] == job_id, value
    assert h.fingerprint() == before


@given(segment=_segments | st.sampled_from(["info", "status", "jobs", "workers", "ledger", "lease", "release",
                                             "results", "", "jobs/", "Status", "grants", "accounts", "grant", "bond",
                                             "unbond", "bonds"]),
       method=st.sampled_from(_METHODS))
def test_other_paths_and_methods(harness: Harness, segment: str, method: str) -> None:
    harness.begin_example()
    reads = {"info", "status", "jobs", "workers", "ledger"}
    writes = {"lease", "release", "results", "jobs", "grants", "bond", "unbond"}
    path = "/v1/" + quote(segment, safe="")
    assume(not (method == "POST" and segment in writes))  # signed endpoints: fuzzed by the POST tests
    if segment not in reads | writes:
        allowed = {404}
    elif (method in ("GET", "HEAD") and segment in reads) or (method == "POST" and segment in writes):
        allowed = {200}
    else:
        allowed = {405}
    before = harness.fingerprint()
    answer = harness.request(method, path, b"" if method in ("PUT", "PATCH", "POST") else None)
    assert answer.status in allowed, f"{method} {path} -> {answer}"
    if answer.status >= 400 and method != "HEAD":
        assert answer.content_type == "application/json" and answer.value["error"], answer
    assert harness.fingerprint() == before


# ---- work per read ---------------------------------------------------------------------------------------------


class _CountingDict(dict):  # type: ignore[type-arg]
    """A dict that counts how many values its values() iterations hand out."""

    visits = 0

    def values(self) -> Any:
        for value in super().values():
            type(self).visits += 1
            yield value


def test_status_reads_each_trust_record_a_bounded_number_of_times(harness: Harness) -> None:
    # Any key can submit a job and then, under as many fresh keys as it likes, lease its tasks and answer them:
    # each such worker gets a trust record. Reading the status must cost in proportion to that, not its square,
    # or a few thousand throwaway identities make every status read (run on the event loop) take seconds.
    h = harness
    n = 60  # one task that survives 64 errors: every worker leases it in turn and answers it wrongly
    job = {"kernel": "nonce", "params": {"seed": 1, "difficulty": 1, "count": 1}, "tasks": 1, "replicas": 1,
           "quorum": 1, "max_errors": 64, "max_results": 64, "price": 5}
    h.send(Request("submit", SUBMITTERS[0], {**job, **h.fresh()}))
    for _ in range(n):
        worker = h.new_worker()
        [grant] = h.lease(worker, kernels=("nonce@1",))
        junk_output = {"dtype": "uint8", "shape": [1], "data": b"\0"}  # malformed: judged invalid, record made
        h.send(Request("results", worker, {"results": [h.result_item(grant, junk_output)], **h.fresh()}))
    trust = h.service.scheduler.trust
    trust.records = _CountingDict(trust.records)
    assert len(trust.records) >= n
    _CountingDict.visits = 0
    assert h.get("/v1/status").status == 200
    assert _CountingDict.visits <= 4 * len(trust.records), \
        f"GET /v1/status visited trust records {_CountingDict.visits} times for {len(trust.records)} records"


# ---- a run of honest and hostile traffic ---------------------------------------------------------------------

HONEST = [worker_key(20_000 + i) for i in range(3)]
LIAR = worker_key(20_100)  # reports wrong counts (right shape): loses every quorum it is outvoted in
WORKERS = [*HONEST, LIAR]


class CoordinatorUnderFire(RuleBasedStateMachine):
    """Honest submitters and workers, one liar, grants, result fetches, restarts, expiries and hostile messages
    against one coordinator.

    After every step the ledger verifies (chain and money rules), holds exactly the credits granted, pays each
    (task, worker) at most once, only for a result judged valid and at its job's price, escrows each job's maximum
    cost and gives back exactly what a finished job did not pay, and agrees with the status API and the latest
    signed checkpoint; a restart changes nothing anyone can read.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="depin-fuzz-"))
        self.h = Harness(self.dir / "coordinator", lease_timeout_ms=60_000)
        self.granted = 0
        self.held: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(WORKERS))}
        self.reported: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(WORKERS))}
        self.sent: list[tuple[str, bytes, str, str | None]] = []  # accepted requests, to replay

    def teardown(self) -> None:
        self.h.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _send(self, req: Request) -> Answer:
        body = req.body()
        answer = self.h.check_post(req.path, body, endpoint=req.endpoint, url_job_id=req.job_id)
        if answer.status < 300:
            self.sent.append((req.path, body, req.endpoint, req.job_id))
        return answer

    def _report(self, w: int, grants: list[dict[str, Any]]) -> None:
        items = []
        for grant in grants:
            output = zeros_output(msgpack.unpackb(grant["task"], raw=False)["params"])
            if WORKERS[w] is LIAR:
                output["data"] = b"\x01" * len(output["data"])
            items.append(self.h.result_item(grant, output))
        self._send(Request("results", WORKERS[w], {"results": items, **self.h.fresh()}))

    @initialize(submitter=st.sampled_from(SUBMITTERS), tasks=st.integers(1, 3), replicas=st.integers(1, 3),
                funds=st.tuples(st.integers(0, 400), st.integers(0, 400)))
    def first_job(self, submitter: Any, tasks: int, replicas: int, funds: tuple[int, int]) -> None:
        for key, amount in zip(SUBMITTERS, funds, strict=True):
            if amount:
                self.grant(key.id, amount)
        self.submit(submitter, tasks, replicas)

    @rule(account=st.sampled_from([k.id for k in SUBMITTERS + WORKERS]), amount=st.integers(1, 400))
    def grant(self, account: str, amount: int) -> None:
        answer = self._send(Request("grant", self.h.operator, {"account": account, "amount": amount,
                                                               **self.h.fresh()}))
        assert answer.status == 200, answer
        self.granted += amount

    @rule(w=st.integers(0, len(WORKERS) - 1), amount=st.integers(1, 60), back=st.booleans())
    def bond(self, w: int, amount: int, back: bool) -> None:
        """A worker bonds some of what it holds, or takes some of its bond back (the spec says which answer)."""
        self._send(Request("unbond" if back else "bond", WORKERS[w], {"amount": amount, **self.h.fresh()}))

    @rule(data=st.data(), by_owner=st.booleans())
    def fetch_result(self, data: st.DataObject, by_owner: bool) -> None:
        job_id = data.draw(known_jobs(self.h), label="job")
        job = self.h.get(job_path(job_id)).value
        owner = [k for k in SUBMITTERS if k.id == job.get("submitter")]
        key = owner[0] if by_owner and owner else data.draw(st.sampled_from(SUBMITTERS), label="asker")
        self._send(Request("result", key, {"job_id": job_id, **self.h.fresh()}, job_id=job_id))

    @rule(submitter=st.sampled_from(SUBMITTERS), tasks=st.integers(1, 3), replicas=st.integers(1, 3))
    def submit(self, submitter: Any, tasks: int, replicas: int) -> None:
        self._send(Request("submit", submitter, {"kernel": "mandelbrot", "params": TINY_JOB, "tasks": tasks,
                                                 "replicas": replicas, "max_results": None, "price": 5,
                                                 **self.h.fresh()}))

    @rule(w=st.integers(0, len(WORKERS) - 1), n=st.integers(1, 3), min_price=st.sampled_from([None, None, 0, 5, 6]))
    def lease(self, w: int, n: int, min_price: int | None = None) -> None:
        payload = {"max_tasks": n, "wait_ms": 0, "kernels": ["mandelbrot@1"], **self.h.fresh()}
        if min_price is not None:
            payload["min_price"] = min_price
        answer = self._send(Request("lease", WORKERS[w], payload))
        if answer.status == 200:
            self.held[w] += answer.value["leases"]

    @rule(w=st.integers(0, len(WORKERS) - 1), n=st.integers(1, 3))
    def work(self, w: int, n: int) -> None:
        """Lease and report at once: what a worker does, in one step, so runs get as far as rewards."""
        self.lease(w, n)
        self.report(w, n)

    @rule(w=st.integers(0, len(WORKERS) - 1), k=st.integers(1, 3))
    def report(self, w: int, k: int) -> None:
        grants, self.held[w] = self.held[w][:k], self.held[w][k:]
        if grants:
            self._report(w, grants)
            self.reported[w] += grants

    @precondition(lambda self: any(self.reported.values()))
    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        def reported() -> list[tuple[int, dict[str, Any]]]:
            return [(w, g) for w, grants in self.reported.items() for g in grants]

        w, grant = data.draw(pick(reported, reported()[0]), label="resent")
        self._report(w, [grant])

    @precondition(lambda self: any(self.held.values()))
    @rule(w=st.integers(0, len(WORKERS) - 1), k=st.integers(0, 3))
    def release(self, w: int, k: int) -> None:
        grants, self.held[w] = self.held[w][:k], self.held[w][k:]
        self._send(Request("release", WORKERS[w], {"lease_ids": [g["lease_id"] for g in grants], **self.h.fresh()}))

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(known_jobs(self.h), label="job")
        key = data.draw(st.sampled_from(SUBMITTERS), label="submitter")
        self._send(Request("cancel", key, {"job_id": job_id, **self.h.fresh()}, job_id=job_id))

    @rule()
    def leases_expire(self) -> None:
        self.h.pass_time(61_000)

    @rule()
    def restart(self) -> None:
        before = self._readable()
        self.h.restart()
        assert self._readable() == before

    @rule(endpoint=st.sampled_from(ENDPOINTS), data=st.data())
    def hostile(self, endpoint: str, data: st.DataObject) -> None:
        h = self.h
        how = data.draw(st.sampled_from(["payload", "payload", "bytes", "replay"]), label="how")
        if how == "replay" and self.sent:
            path, body, endpoint, job_id = data.draw(pick(lambda: self.sent, self.sent[0]), label="replayed")
            h.check_post(path, body, endpoint=endpoint, url_job_id=job_id)
            return
        path, job_id = _endpoint_path(h, endpoint, data)
        if how == "bytes":
            body = data.draw(_bodies, label="body")
        else:
            payload = data.draw(payloads(h, endpoint), label="payload")
            path, job_id = _endpoint_path(h, endpoint, data, payload)
            body = Request(endpoint, data.draw(st.sampled_from(SIGNERS), label="signer"), payload, job_id).body()
        h.check_post(path, body, endpoint=endpoint, url_job_id=job_id)

    def _readable(self) -> Any:
        status = self.h.get("/v1/status").value
        workers = sorted((w["worker_id"], w["balance"], w["tasks_validated"], w["tasks_rejected"])
                         for w in status["workers"])
        ledger_page = self.h.get("/v1/ledger?limit=10000").value
        accounts = {k.id: self.h.get(f"/v1/accounts/{k.id}").value for k in SUBMITTERS + WORKERS}
        checkpoint_now = self.h.get("/v1/ledger/checkpoint").value
        return status["jobs"], workers, status["ledger"], status["active_leases"], ledger_page, accounts, checkpoint_now

    @invariant()
    def ledger_verifies_and_pays_each_result_once(self) -> None:
        h = self.h
        entries = list(h.service.store.ledger.entries())
        summary = ledger.verify(entries)  # the chain and every money rule
        assert summary.minted == self.granted
        assert sum(v for k, v in summary.balances.items() if k != ledger.MINT) == summary.minted
        status = h.get("/v1/status").value
        jobs = {j["job_id"]: j for j in status["jobs"]}
        rewards = [e for e in entries if e.kind == "reward"]
        pairs = [(e.task_id, e.to) for e in rewards]
        assert len(pairs) == len(set(pairs)), f"a (task, worker) paid twice: {pairs}"
        for e in entries:
            if e.kind == "grant":
                assert e.from_ == ledger.MINT and e.to in {k.id for k in SUBMITTERS + WORKERS}, e
                continue
            if e.kind in ("bond", "unbond"):  # a party's own credits, to and from its own bond, outside any job
                party = e.from_ if e.kind == "bond" else e.to
                assert accounts.is_party(party) and {e.from_, e.to} == {party, accounts.bond_account(party)}, e
                assert e.job_id is None and e.task_id is None, e
                continue
            job = jobs[e.job_id or ""]
            assert e.job_id is not None
            pot = "escrow:" + e.job_id
            if e.kind == "escrow":
                assert (e.from_, e.to, e.amount) == (job["submitter"], pot, job["max_cost"]), (e, job)
            elif e.kind == "reward":
                assert (e.from_, e.amount) == (pot, job["price"]), (e, job)
                verdict = h.db.execute("SELECT verdict FROM results WHERE task_id = ? AND worker_id = ?",
                                       (e.task_id, e.to)).fetchall()
                assert verdict == [("valid",)], (e, verdict)
            else:
                assert (e.kind, e.from_, e.to) == ("refund", pot, job["submitter"]), (e, job)
                assert job["state"] in ("done", "failed", "cancelled"), (e, job)
        for job_id, job in jobs.items():
            paid = job["price"] * sum(1 for e in rewards if e.job_id == job_id)
            back = sum(e.amount for e in entries if e.kind == "refund" and e.job_id == job_id)
            held = summary.balances.get("escrow:" + job_id, 0)
            assert job["escrow"] == held == job["max_cost"] - paid - back, job
            if job["state"] in ("done", "failed", "cancelled"):
                assert held == 0, job
        assert status["ledger"]["entries"] == summary.entries
        assert status["ledger"]["head_hash"] == (summary.head_hash if entries else None)
        assert status["ledger"]["root_hash"] == summary.root_hash
        assert (status["ledger"]["minted"], status["ledger"]["in_escrow"]) == (
            summary.minted, sum(v for k, v in summary.balances.items() if k.startswith("escrow:")))
        for w in status["workers"]:
            assert w["balance"] == summary.balances.get(w["worker_id"], 0), w
        cp = checkpoint.Checkpoint.from_json(status["ledger"]["checkpoint"])
        cp.verify(h.service.key.verify_key)
        assert summary.entries - CHECKPOINT_EVERY < cp.size <= summary.entries  # signed at the write reaching it
        assert cp.root == merkle.naive_root([ledger.leaf_of(e.hash) for e in entries[:cp.size]])


TestCoordinatorUnderFire = CoordinatorUnderFire.TestCase
# A run is dozens of requests: a quarter of the profile's examples, each of up to 40 steps.
_PROFILE = settings()
TestCoordinatorUnderFire.settings = settings(_PROFILE, max_examples=max(5, _PROFILE.max_examples // 4),
                                             stateful_step_count=40)
