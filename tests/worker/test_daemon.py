"""worker.daemon: Backoff (exponential, jittered by an injected random source, capped), the journal flush, a cycle
against a fake coordinator (minimum price, the task's price in the journal), and the ledger witness in the loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from depin import codec
from depin.config import PolicySettings, WorkerConfig
from depin.crypto import SigningKey, open_envelope
from depin.errors import (
    BadRequest,
    Banned,
    ConnectionFailed,
    Forbidden,
    KeyMismatch,
    PeerProtocolError,
    VerificationError,
)
from depin.protocol import AckItem, ResultItem, ResultsAck, ResultsRequest
from worker import batching, witness
from worker.daemon import Backoff, LedgerAlarm, Worker
from worker.journal import Journal


def _delays(b: Backoff, n: int) -> list[float]:
    return [b.next_delay() for _ in range(n)]


def test_grows_exponentially_up_to_the_cap() -> None:
    top = Backoff(base_s=0.25, cap_s=30.0, rand=lambda: 1.0)
    assert _delays(top, 9) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    bottom = Backoff(base_s=0.25, cap_s=30.0, rand=lambda: 0.0)
    assert _delays(bottom, 9) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_jitter_spans_the_upper_half() -> None:
    assert Backoff(base_s=1.0, cap_s=100.0, rand=lambda: 0.5).next_delay() == 1.5  # ceiling 2: 1 + 0.5 * 1


def test_counts_failures_and_resets() -> None:
    b = Backoff(base_s=0.25, cap_s=30.0, rand=lambda: 1.0)
    _delays(b, 5)
    assert b.failures == 5
    b.reset()
    assert b.failures == 0
    assert _delays(b, 2) == [0.5, 1.0]


def test_many_failures_stay_at_the_cap() -> None:
    b = Backoff(base_s=0.25, cap_s=7.0, rand=lambda: 1.0)
    b.failures = 10_000
    assert b.next_delay() == 7.0


@pytest.mark.parametrize("r", [0.0, 0.3, 0.999])
def test_delays_stay_within_half_to_full_ceiling(r: float) -> None:
    b = Backoff(base_s=0.1, cap_s=5.0, rand=lambda: r)
    for n in range(1, 30):
        ceiling = min(5.0, 0.1 * 2**n)
        d = b.next_delay()
        assert isinstance(d, float)
        assert ceiling / 2 <= d <= ceiling


def test_defaults() -> None:
    b = Backoff()
    assert (b.base_s, b.cap_s, b.failures) == (0.25, 30.0, 0)
    assert 0.25 <= b.next_delay() <= 0.5


# ---- Worker._flush: what happens to journaled results when the coordinator answers ------------------------------

def _item(lease_id: str) -> ResultItem:
    return ResultItem(lease_id=lease_id, task_id=f"t-{lease_id}", output={"dtype": "uint8", "shape": [1],
                                                                          "data": b"\x00"}, elapsed_ms=1)


async def test_flush_sets_aside_only_the_result_the_coordinator_refuses_as_malformed(tmp_path: Path) -> None:
    w = Worker(WorkerConfig(coordinator="http://127.0.0.1:1", data_dir=tmp_path, coordinator_key=None),
               SigningKey(bytes(32)))
    for n, lease_id in enumerate(["a", "bad", "c"]):
        w.journal.add(_item(lease_id), now_ms=n)
    batches: list[list[str]] = []

    async def send(client: object, items: list[ResultItem]) -> ResultsAck:
        ids = [i.lease_id for i in items]
        batches.append(ids)
        if "bad" in ids:
            raise BadRequest("field results[0].output: must be a map")
        return ResultsAck(worker_id=w.key.id, request_nonce=b"n" * 16,
                          acks=tuple(AckItem(i, "accepted", "") for i in ids))

    w._send = send  # type: ignore[method-assign]
    await w._flush(client=None)  # type: ignore[arg-type]
    assert batches == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert w.journal.count() == 0
    assert w.journal.refused() == [("bad", "field results[0].output: must be a map")]
    assert (w.stats.accepted, w.stats.rejected) == (2, 0)
    w.journal.close()


@pytest.mark.parametrize(("error", "code"), [("banned", 5), ("key", 4)])
async def test_a_ban_or_a_changed_key_stops_the_worker(tmp_path: Path, error: str, code: int) -> None:
    # Retrying cannot help either: a 403 on a worker request means a ban, a changed key means an impostor.
    w = Worker(WorkerConfig(coordinator="http://127.0.0.1:1", data_dir=tmp_path, coordinator_key=None),
               SigningKey(bytes(32)))
    cycles = 0

    async def cycle(client: object) -> None:
        nonlocal cycles
        cycles += 1
        raise Forbidden("worker banned: 3 invalid results out of 3") if error == "banned" else KeyMismatch("changed")

    w._cycle = cycle  # type: ignore[method-assign]
    assert await w.run() == code
    assert cycles == 1


# ---- the ledger witness inside the worker loop --------------------------------------------------------------------

COORD = SigningKey(bytes([3]) * 32)


def _worker(tmp_path: Path, **config: Any) -> Worker:
    config.setdefault("policy", PolicySettings(always=True))  # the run policy has its own tests (test_policy.py)
    return Worker(WorkerConfig(coordinator="http://127.0.0.1:1", data_dir=tmp_path, coordinator_key=None, **config),
                  SigningKey(bytes(32)))


def _alarms(tmp_path: Path) -> list[tuple[int, str]]:
    j = Journal(tmp_path / "journal.sqlite3")
    try:
        return j.alarms()
    finally:
        j.close()


async def test_a_ledger_alarm_stops_the_worker_with_exit_code_4_and_is_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = _worker(tmp_path)
    fork = "LEDGER FORK: the checkpoint of size 9 does not extend the checkpoint of size 12"

    async def cycle(client: object) -> None:
        raise LedgerAlarm(fork) from VerificationError(fork)

    w._cycle = cycle  # type: ignore[method-assign]
    with caplog.at_level(logging.CRITICAL, logger="depin.worker"):
        assert await w.run() == 4
    assert [m for _, m in _alarms(tmp_path)] == [fork]
    assert f"!!! LEDGER ALARM: {fork}" in caplog.text


async def test_audit_runs_once_per_interval_unless_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _worker(tmp_path, audit_interval_ms=60_000)
    calls: list[str] = []

    async def audit(client: object, coordinator: object, journal: object, worker_id: str) -> int:
        calls.append(worker_id)
        return 0

    monkeypatch.setattr(witness, "audit", audit)
    await w._audit(client=None)  # type: ignore[arg-type]
    assert calls == []  # not connected yet: nothing to audit
    w.coordinator = COORD.verify_key
    await w._audit(client=None)  # type: ignore[arg-type]
    await w._audit(client=None)  # type: ignore[arg-type]
    assert calls == [w.key.id]
    await w._audit(client=None, force=True)  # type: ignore[arg-type]
    assert len(calls) == 2
    w.journal.close()


async def test_only_a_verification_error_becomes_an_alarm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _worker(tmp_path)
    w.coordinator = COORD.verify_key
    error: Exception = VerificationError("LEDGER FORK: two checkpoints of size 3 with different roots")

    async def audit(*args: object) -> int:
        raise error

    monkeypatch.setattr(witness, "audit", audit)
    with pytest.raises(LedgerAlarm, match="LEDGER FORK: two checkpoints") as info:
        await w._audit(client=None, force=True)  # type: ignore[arg-type]
    assert info.value.__cause__ is error
    error = PeerProtocolError("credits answer must be a map with a credits list")
    await w._audit(client=None, force=True)  # type: ignore[arg-type]  # a malformed answer: logged, work goes on
    assert w.journal.alarms() == []
    error = ConnectionFailed("cannot reach the coordinator")
    with pytest.raises(ConnectionFailed):  # the usual backoff, not an alarm
        await w._audit(client=None, force=True)  # type: ignore[arg-type]
    w.journal.close()


@pytest.mark.parametrize(("error", "code"), [(VerificationError("entry 4 is not in the signed ledger"), 4),
                                             (PeerProtocolError("credits answer must be a map"), 0)])
async def test_the_final_audit_on_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception,
                                              code: int) -> None:
    w = _worker(tmp_path)

    async def cycle(client: object) -> None:
        w.coordinator = COORD.verify_key
        w.stop.set()

    async def audit(*args: object) -> int:
        raise error

    w._cycle = cycle  # type: ignore[method-assign]
    monkeypatch.setattr(witness, "audit", audit)
    assert await w.run() == code
    assert [m for _, m in _alarms(tmp_path)] == ([str(error)] if code else [])


class _FakeCoordinator:
    """The two POSTs of a worker cycle, answered as the coordinator would (a signed task, a signed ack)."""

    def __init__(self, price: int) -> None:
        self.task = {"task_id": "J-0", "job_id": "J", "kernel": "mandelbrot", "kernel_version": 1,
                     "params": {"width": 8, "height": 2, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2,
                                "max_iter": 20, "row_start": 0, "row_end": 2},
                     "coordinator": COORD.id, "price": price}
        self.lease_payloads: list[dict[str, Any]] = []

    async def post_signed(self, path: str, key: SigningKey, kind: str, payload: dict[str, Any],
                          read_timeout_s: float | None = None) -> Any:
        assert (path, kind) == ("/v1/lease", "lease-request")
        self.lease_payloads.append(payload)
        body = codec.encode(self.task)
        return {"leases": [{"lease_id": "L1", "expires_ms": 1, "task": body, "sig": COORD.sign("task", body)}]}

    async def post(self, path: str, envelope: Any, read_timeout_s: float | None = None) -> Any:
        signer, body = open_envelope("results", envelope)
        items = ResultsRequest.from_payload(body).results
        ack = ResultsAck(worker_id=signer.id, request_nonce=body["nonce"],
                         acks=tuple(AckItem(i.lease_id, "accepted", "") for i in items))
        return COORD.seal("results-ack", ack.to_payload())


@pytest.mark.parametrize("min_price", [0, 5])
async def test_a_cycle_asks_for_its_minimum_price_and_journals_the_task_price(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, min_price: int
) -> None:
    w = _worker(tmp_path, min_price=min_price)
    w.coordinator = COORD.verify_key
    monkeypatch.setattr(witness, "audit", lambda *args: asyncio.sleep(0, 0))
    fake = _FakeCoordinator(price=7)
    await w._cycle(fake)  # type: ignore[arg-type]
    (payload,) = fake.lease_payloads
    assert payload.get("min_price") == (min_price or None)  # sent only when the worker sets one
    assert [(s["lease_id"], s["job_id"], s["price"], s["status"]) for s in w.journal.story()] == [
        ("L1", "J", 7, "accepted")]
    assert (w.stats.computed, w.stats.accepted, w.journal.count()) == (1, 1, 0)
    w.journal.close()


async def test_a_task_below_the_minimum_price_is_given_back_unrun(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    w = _worker(tmp_path, min_price=8)
    w.coordinator = COORD.verify_key
    monkeypatch.setattr(witness, "audit", lambda *args: asyncio.sleep(0, 0))
    released: list[list[str]] = []

    async def release(client: object, lease_ids: list[str]) -> None:
        released.append(lease_ids)

    w._release = release  # type: ignore[method-assign]
    with pytest.raises(PeerProtocolError, match="task J-0 pays 7 credits, below our minimum of 8"):  # then backs off
        await w._cycle(_FakeCoordinator(price=7))  # type: ignore[arg-type]
    assert released == [["L1"]]
    assert (w.stats.computed, w.journal.story()) == (0, [])
    w.journal.close()


async def test_a_fork_alarm_keeps_both_signed_checkpoints_as_evidence(tmp_path: Path) -> None:
    from depin import checkpoint, merkle
    from depin.ledger_client import ForkEvidence

    old = checkpoint.sign(COORD, size=3, root=merkle.leaf_hash(b"a"), time=1)
    new = checkpoint.sign(COORD, size=5, root=merkle.leaf_hash(b"b"), time=2)
    fork = ForkEvidence("LEDGER FORK: the checkpoint of size 5 does not extend the checkpoint of size 3", old, new,
                        [merkle.leaf_hash(b"c")])
    w = _worker(tmp_path)

    async def cycle(client: object) -> None:
        raise LedgerAlarm(str(fork)) from fork

    w._cycle = cycle  # type: ignore[method-assign]
    assert await w.run() == 4
    j = Journal(tmp_path / "journal.sqlite3")
    try:
        (kept,) = j.evidence()
    finally:
        j.close()
    assert kept == {"checkpoints": [old.to_json(), new.to_json()], "consistency_proof": [merkle.leaf_hash(b"c").hex()]}
    for cp in kept["checkpoints"]:  # anyone holding the coordinator's key can re-check both signatures
        checkpoint.Checkpoint.from_json(cp).verify(COORD.verify_key)


@pytest.mark.parametrize(("audit_interval_ms", "expected_wait_ms"), [(30_000, 20_000), (2_000, 2_000)])
async def test_an_idle_long_poll_ends_when_the_next_audit_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audit_interval_ms: int, expected_wait_ms: int
) -> None:
    w = _worker(tmp_path, audit_interval_ms=audit_interval_ms)
    w.coordinator = COORD.verify_key
    monkeypatch.setattr(witness, "audit", lambda *args: asyncio.sleep(0, 0))
    fake = _FakeCoordinator(price=7)
    await w._cycle(fake)  # type: ignore[arg-type]  # audits first, then leases
    (payload,) = fake.lease_payloads
    assert expected_wait_ms - 1_000 < payload["wait_ms"] <= expected_wait_ms  # the poll (20 s) or the audit, sooner
    w.journal.close()


# ---- auto-bonding in the loop (the plan itself: test_bonding.py) ----------------------------------------------------


class _FakeBank:
    """GET /v1/accounts and POST /v1/bond, as the coordinator answers them; `refuse` raises instead of bonding."""

    def __init__(self, balance: int, bonded: int = 0, refuse: Exception | None = None) -> None:
        self.held = {"me": balance, "bond": bonded}
        self.refuse = refuse
        self.bonds: list[int] = []
        self.reads = 0

    async def balance(self, account: str) -> int:
        self.reads += 1
        return self.held["bond" if account.startswith("bond:") else "me"]

    async def move_bond(self, key: SigningKey, kind: str, amount: int) -> dict[str, Any]:
        assert kind == "bond"
        if self.refuse is not None:
            raise self.refuse
        self.bonds.append(amount)
        self.held["me"] -= amount
        self.held["bond"] += amount
        return {"worker_id": key.id, "amount": amount, "seq": len(self.bonds), "bonded": self.held["bond"],
                "balance": self.held["me"]}


def _bonding_worker(tmp_path: Path, **config: Any) -> Worker:
    from worker.bonding import Rules

    w = _worker(tmp_path, **config)
    w.coordinator = COORD.verify_key
    w._bond_rules = Rules(min_bond=100, bond_per_price=20)
    return w


async def test_auto_bond_bonds_on_a_change_at_most_once_per_interval(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    w = _bonding_worker(tmp_path)
    bank = _FakeBank(balance=150)
    with caplog.at_level(logging.INFO, logger="depin.worker"):
        await w._autobond(bank)  # type: ignore[arg-type]  # due at start
    assert bank.bonds == [100]  # no price seen yet: the target is min_bond
    assert w.board.bond is not None
    assert (w.board.bond.bonded, w.board.bond.balance, w.board.bond.target) == (100, 50, 100)
    assert w.board.bond.note == "bonded 100 credits"
    assert "bonded 100 credits (ledger entry 1): bond 100, balance 50, target 100" in caplog.text
    await w._autobond(bank)  # type: ignore[arg-type]
    assert bank.reads == 2  # nothing changed: not even a look
    w._prices.note(int(time.time() * 1000), 10)  # a task at price 10 (noted by _compute): the target rises to 600...
    w._bond_due = True
    await w._autobond(bank)  # type: ignore[arg-type]
    assert bank.reads == 2  # ...but the audit interval has not passed
    w._next_bond = 0.0
    await w._autobond(bank)  # type: ignore[arg-type]
    assert bank.bonds == [100]  # 50 spendable: not a step of min_bond
    assert w.board.bond.note == "waiting for 100 spendable credits to bond"
    assert w.board.bond.summary() == ("100 credits bonded, 50 spendable; auto-bond (target 600, max 1000): waiting for "
                                      "100 spendable credits to bond")
    w.journal.close()


@pytest.mark.parametrize("error", [BadRequest("insufficient funds: account x holds 3 credits, cannot bond 100"),
                                   PeerProtocolError("the balance of x is not a whole number of credits")])
async def test_auto_bond_refused_says_so_once_and_tries_again_later(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                     error: Exception) -> None:
    w = _bonding_worker(tmp_path, audit_interval_ms=30_000)
    bank = _FakeBank(balance=500, refuse=error)
    with caplog.at_level(logging.WARNING, logger="depin.worker"):
        for _ in range(3):
            await w._autobond(bank)  # type: ignore[arg-type]
            w._next_bond = 0.0  # the interval passed
    assert caplog.text.count("auto-bond refused") == 1
    assert bank.reads == 6  # tried at every interval: a refusal may pass (the balance moved, a restart)
    assert w.board.bond is not None and w.board.bond.note == f"refused ({error}); trying again in 30s"
    w.journal.close()


async def test_auto_bond_stops_for_a_banned_worker(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    w = _bonding_worker(tmp_path)
    bank = _FakeBank(balance=500, refuse=Banned("worker banned: 3 invalid results out of 3"))
    with caplog.at_level(logging.WARNING, logger="depin.worker"):
        await w._autobond(bank)  # type: ignore[arg-type]
        w._bond_due, w._next_bond = True, 0.0
        await w._autobond(bank)  # type: ignore[arg-type]
    assert bank.reads == 2
    assert caplog.text.count("auto-bond stopped: worker banned") == 1
    assert w.board.bond is not None and w.board.bond.note == "stopped: worker banned: 3 invalid results out of 3"
    w.journal.close()


async def test_auto_bond_leaves_an_unreachable_coordinator_to_the_cycle(tmp_path: Path) -> None:
    w = _bonding_worker(tmp_path)

    class Down(_FakeBank):
        async def balance(self, account: str) -> int:
            raise ConnectionFailed("cannot reach the coordinator at http://127.0.0.1:1 (connection refused)")

    with pytest.raises(ConnectionFailed):
        await w._autobond(Down(0))  # type: ignore[arg-type]
    assert w._bond_due  # tried again once it is back
    w.journal.close()


async def test_auto_bond_off_or_without_rules_asks_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from depin.config import BondSettings

    off = _bonding_worker(tmp_path / "off", bond=BondSettings(auto_bond=False))
    bank = _FakeBank(balance=500)
    await off._autobond(bank)  # type: ignore[arg-type]
    assert off.board.bond is not None and off.board.bond.summary() == "bond not read yet; auto-bond off"
    old = _bonding_worker(tmp_path / "old")
    old._bond_rules = None  # a coordinator whose /v1/info has no min_bond and bond_per_price
    with caplog.at_level(logging.WARNING, logger="depin.worker"):
        await old._autobond(bank)  # type: ignore[arg-type]
    assert "auto-bond idle: the coordinator does not publish its bond rules" in caplog.text
    assert bank.reads == 0
    off.journal.close()
    old.journal.close()


# ---- the pipeline: adaptive batches, a lot leased ahead, one journal transaction per batch ---------------------------


class _Stream:
    """A coordinator with `n` one-sample montecarlo tasks: grants what is asked for, acks results, takes releases."""

    def __init__(self, n: int, on_lease: Any = None) -> None:
        self.todo = [f"J-{k}" for k in range(n)]
        self.requests: list[dict[str, Any]] = []
        self.granted: list[str] = []
        self.released: list[str] = []
        self.results: list[str] = []
        self.on_lease = on_lease

    async def post_signed(self, path: str, key: SigningKey, kind: str, payload: dict[str, Any],
                          read_timeout_s: float | None = None) -> Any:
        if path == "/v1/release":
            self.released += payload["lease_ids"]
            return {"released": len(payload["lease_ids"])}
        self.requests.append(payload)
        if self.on_lease is not None:
            await self.on_lease(len(self.requests))
        grants = []
        for task_id in self.todo[:payload["max_tasks"]]:
            k = int(task_id[2:])
            body = codec.encode({"task_id": task_id, "job_id": "J", "kernel": "montecarlo", "kernel_version": 1,
                                 "params": {"func": 0, "samples": 1 << 20, "seed": 7, "sample_start": k,
                                            "sample_end": k + 1},
                                 "coordinator": COORD.id, "price": 1})
            grants.append({"lease_id": f"L{k}", "expires_ms": 1, "task": body, "sig": COORD.sign("task", body)})
            self.granted.append(f"L{k}")
        del self.todo[:len(grants)]
        return {"leases": grants}

    async def post(self, path: str, envelope: Any, read_timeout_s: float | None = None) -> Any:
        signer, body = open_envelope("results", envelope)
        items = ResultsRequest.from_payload(body).results
        self.results += [i.lease_id for i in items]
        ack = ResultsAck(worker_id=signer.id, request_nonce=body["nonce"],
                         acks=tuple(AckItem(i.lease_id, "accepted", "") for i in items))
        return COORD.seal("results-ack", ack.to_payload())


async def test_a_cycle_grows_its_batches_leases_ahead_and_journals_each_batch_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _worker(tmp_path)
    w.coordinator = COORD.verify_key
    monkeypatch.setattr(witness, "audit", lambda *args: asyncio.sleep(0, 0))
    adds: list[int] = []
    real_add = w.journal.add_many

    def add_many(rows: list[Any], now_ms: int) -> None:
        adds.append(len(rows))
        real_add(rows, now_ms)

    monkeypatch.setattr(w.journal, "add_many", add_many)
    fake = _Stream(600)
    await w._cycle(fake)  # type: ignore[arg-type]
    (first,) = fake.requests  # nothing measured yet: one task, a long poll, and nothing leased ahead of it
    assert (first["max_tasks"], first["wait_ms"] > 0) == (1, True)
    await w._cycle(fake)  # type: ignore[arg-type]
    second, *ahead = fake.requests[1:]
    assert (second["max_tasks"] > 1, second["wait_ms"] > 0) == (True, True)  # tiny tasks: a bigger batch
    assert ahead and all(r["wait_ms"] == 0 for r in ahead)  # then each next batch leased while one computes
    assert sorted(fake.results) == sorted(fake.granted) and not fake.released and not fake.todo
    assert len(fake.results) == len(set(fake.results)) == 600  # each sent once
    assert sum(adds) == 600 and len(adds) < 600  # a transaction per batch
    assert (w.stats.computed, w.stats.accepted, w.journal.count()) == (600, 600, 0)
    w.journal.close()


async def test_sigterm_gives_back_the_lot_leased_ahead_and_the_tasks_not_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _worker(tmp_path)
    w.coordinator = COORD.verify_key
    monkeypatch.setattr(witness, "audit", lambda *args: asyncio.sleep(0, 0))
    w.pace.note(batching.Task("montecarlo@1", 1), 1e-5)  # measured already: it asks for big batches at once
    started = threading.Event()
    on_start = w._on_start

    def start(checked: Any) -> None:
        started.set()
        on_start(checked)

    monkeypatch.setattr(w, "_on_start", start)

    async def stop_on(request: int) -> None:
        if request == 2:  # the lease ahead, while the first batch computes: SIGTERM once a task is in hand
            await asyncio.get_running_loop().run_in_executor(None, started.wait)
            w.stop.set()

    fake = _Stream(1000, on_lease=stop_on)
    await w._cycle(fake)  # type: ignore[arg-type]
    assert len(fake.requests) == 2
    computed = {s["lease_id"] for s in w.journal.story()}
    assert computed and set(fake.results) == computed  # journaled, then sent
    assert computed.isdisjoint(fake.released)
    assert sorted(computed | set(fake.released)) == sorted(fake.granted)  # nothing held: each one done or given back
    assert w.journal.count() == 0
    w.journal.close()
