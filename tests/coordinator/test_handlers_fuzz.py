"""Hostile input to every coordinator endpoint, through the real aiohttp app on loopback, in this process.

Every POST is checked by fuzz_support.Harness.check_post against fuzz_support.Spec (a model of PROTOCOL.md): the
status must be the one the spec gives (a 4xx with a JSON {"error": text} body, or a 2xx of the right shape for a
valid request), a refused request must leave the database and the scheduler's memory exactly as they were, and
GET /v1/status must still answer 200 afterwards. Nothing may answer 5xx or take longer than 10 s.

`make test` runs the "ci" hypothesis profile (tests/conftest.py). For a long fuzzing run (5000 examples a test;
--timeout=0 because one such test outlasts pytest-timeout's 300 s):

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q --timeout=0 tests/depin/test_codec_properties.py \
        tests/coordinator/test_handlers_fuzz.py
"""

from __future__ import annotations

import math
import re
import shutil
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

from depin import ledger
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

ENDPOINTS = ["lease", "release", "results", "submit", "cancel"]


def _seed(h: Harness) -> None:
    """A little history to aim at: a validated task with its rewards, a leased one, a cancelled job."""
    first, second, third = h.new_worker(), h.new_worker(), h.new_worker()
    h.submit(SUBMITTERS[0])
    for worker in (first, second):
        grant = h.grant_for(worker)
        h.send(Request("results", worker, {"results": [h.result_item(grant)], **h.fresh()}))
    h.grant_for(third)
    job_id = h.submit(SUBMITTERS[1])
    h.send(Request("cancel", SUBMITTERS[1], {"job_id": job_id, **h.fresh()}, job_id=job_id))
    assert h.get("/v1/status").value["ledger"]["entries"] == 2


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """One coordinator shared by every example of a test: what a refused example did not change, the next sees."""
    h = Harness(tmp_path / "coordinator", seed=_seed)
    try:
        yield h
    finally:
        h.close()


def _endpoint_path(h: Harness, endpoint: str, data: st.DataObject, payload: Any = None) -> tuple[str, str | None]:
    if endpoint != "cancel":
        return PATHS[endpoint], None
    job_id = data.draw(url_job_ids(h, payload if isinstance(payload, dict) else {}), label="url job_id")
    return job_path(job_id, "/cancel"), job_id


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
    key = data.draw(st.sampled_from(SIGNERS), label="signer")
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
        if target == "cancel":
            job_id = data.draw(url_job_ids(h, req.payload), label="url job_id")
            path = job_path(job_id, "/cancel")
        else:
            path, job_id = PATHS[target], None
    h.check_post(path, body, endpoint=target, url_job_id=job_id)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_bodies_over_the_limit_are_413_before_parsing(harness: Harness, endpoint: str) -> None:
    path = job_path("0000000000000000", "/cancel") if endpoint == "cancel" else PATHS[endpoint]
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
        state = h.get(job_path(job_id)).value["state"]
        answer = h.get(job_path(job_id, "/result"))
        assert answer.status == (200 if state == "done" else 409), answer
        if answer.status == 200:
            assert answer.value["output"]["dtype"] == dtype, answer.value


# ---- GET: query strings and path segments --------------------------------------------------------------------

_LENIENT = object()  # a string Python's int() takes but that is not plain decimal: 200 or 400 are both fine


def _query_int(raw: str | None, default: int) -> Any:
    if raw is None:
        return default
    if re.fullmatch(r"[+-]?[0-9]+", raw):
        return int(raw) if len(raw.lstrip("+-")) <= 4000 else _LENIENT
    try:
        int(raw)
    except ValueError:
        return None
    return _LENIENT


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
    elif first is _LENIENT or count is _LENIENT:
        allowed = {200, 400}
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


_segments = st.text(min_size=1, max_size=24).filter(lambda s: s not in (".", ".."))
_METHODS = ["GET", "GET", "GET", "HEAD", "PUT", "DELETE", "PATCH", "POST"]


@given(data=st.data())
def test_job_paths_and_methods(harness: Harness, data: st.DataObject) -> None:
    harness.begin_example()
    h = harness
    job_id = data.draw(known_jobs(h) | known_jobs(h).map(lambda j: j + "x") | _segments, label="job_id")
    suffix = data.draw(st.sampled_from(["", "/result", "/cancel", "/x", "/"]), label="suffix")
    method = data.draw(st.sampled_from(_METHODS), label="method")
    assume(not (method == "POST" and suffix == "/cancel"))  # the signed endpoint: fuzzed by the POST tests
    job = h.get(job_path(job_id)).value if "{" not in job_id and "}" not in job_id else {}
    exists = "job_id" in job
    routes = {"": ("GET", "HEAD"), "/result": ("GET", "HEAD"), "/cancel": ("POST",)}
    if "{" in job_id or "}" in job_id or suffix not in routes:
        allowed = {404}
    elif method not in routes[suffix]:
        allowed = {405}
    elif not exists:
        allowed = {404}
    elif suffix == "/result" and job["state"] != "done":
        allowed = {409}
    else:
        allowed = {200}
    before = h.fingerprint()
    answer = h.request(method, job_path(job_id, suffix), b"" if method in ("PUT", "PATCH", "POST") else None)
    assert answer.status in allowed, f"{method} {job_path(job_id, suffix)} -> {answer}"
    if answer.status >= 400 and method != "HEAD":
        assert answer.content_type == "application/json" and answer.value["error"], answer
    if answer.status == 200 and method == "GET":
        value = answer.value
        assert value["job_id"] == job_id, value
        if suffix == "/result":
            assert msgpack.unpackb(answer.data, raw=False)["output"]["dtype"] == "uint32"
    assert h.fingerprint() == before


@given(segment=_segments | st.sampled_from(["info", "status", "jobs", "workers", "ledger", "lease", "release",
                                             "results", "", "jobs/", "Status"]),
       method=st.sampled_from(_METHODS))
def test_other_paths_and_methods(harness: Harness, segment: str, method: str) -> None:
    harness.begin_example()
    reads, writes = {"info", "status", "jobs", "workers", "ledger"}, {"lease", "release", "results", "jobs"}
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
    """Honest submitters and workers, one liar, restarts, expiries and hostile messages against one coordinator.

    After every step the ledger verifies, pays each (task, worker) at most once and only for a result judged
    valid, and agrees with the status API; a restart changes nothing anyone can read.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="depin-fuzz-"))
        self.h = Harness(self.dir / "coordinator", lease_timeout_ms=60_000)
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

    @initialize(submitter=st.sampled_from(SUBMITTERS), tasks=st.integers(1, 3), replicas=st.integers(1, 3))
    def first_job(self, submitter: Any, tasks: int, replicas: int) -> None:
        self.submit(submitter, tasks, replicas)

    @rule(submitter=st.sampled_from(SUBMITTERS), tasks=st.integers(1, 3), replicas=st.integers(1, 3))
    def submit(self, submitter: Any, tasks: int, replicas: int) -> None:
        self._send(Request("submit", submitter, {"kernel": "mandelbrot", "params": TINY_JOB, "tasks": tasks,
                                                 "replicas": replicas, "max_results": None, "price": 5,
                                                 **self.h.fresh()}))

    @rule(w=st.integers(0, len(WORKERS) - 1), n=st.integers(1, 3))
    def lease(self, w: int, n: int) -> None:
        payload = {"max_tasks": n, "wait_ms": 0, "kernels": ["mandelbrot@1"], **self.h.fresh()}
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
        return status["jobs"], workers, status["ledger"], status["active_leases"], ledger_page

    @invariant()
    def ledger_verifies_and_pays_each_result_once(self) -> None:
        h = self.h
        entries = list(h.service.store.ledger_entries())
        summary = ledger.verify(entries)
        pairs = [(e.task_id, e.to) for e in entries]
        assert len(pairs) == len(set(pairs)), f"a (task, worker) paid twice: {pairs}"
        for e in entries:
            assert (e.kind, e.from_, e.amount) == ("reward", ledger.MINT, 5), e
            verdict = h.db.execute("SELECT verdict FROM results WHERE task_id = ? AND worker_id = ?",
                                   (e.task_id, e.to)).fetchall()
            assert verdict == [("valid",)], (e, verdict)
        status = h.get("/v1/status").value
        assert status["ledger"]["entries"] == summary.entries
        assert status["ledger"]["head_hash"] == (summary.head_hash if entries else None)
        for w in status["workers"]:
            assert w["balance"] == summary.balances.get(w["worker_id"], 0), w


TestCoordinatorUnderFire = CoordinatorUnderFire.TestCase
# A run is dozens of requests: a quarter of the profile's examples, each of up to 40 steps.
_PROFILE = settings()
TestCoordinatorUnderFire.settings = settings(_PROFILE, max_examples=max(5, _PROFILE.max_examples // 4),
                                             stateful_step_count=40)
