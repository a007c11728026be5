"""worker.witness.audit: a worker keeps checkpoints and proved credits, and catches a coordinator that rewrites,
truncates or forks its ledger, or lies about a credit. No sockets: a fake client answers each GET from a real
coordinator ledger (coordinator.store + coordinator.audit in a temporary directory), as the server would, and a test
can swap that ledger for a forged one or tamper with an answer on its way."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.audit import Audit
from coordinator.store import Store
from depin import checkpoint, ledger
from depin.accounts import MINT, escrow_account
from depin.crypto import SigningKey
from depin.errors import PeerProtocolError, VerificationError
from worker import witness
from worker.journal import Journal

KEY = SigningKey(bytes([9]) * 32)  # the coordinator's
IMPOSTOR = SigningKey(bytes([10]) * 32)
ME = SigningKey(bytes([11]) * 32).id  # this worker
OTHER = SigningKey(bytes([12]) * 32).id  # another worker
SUBMITTER = "sub" + "2" * 29
JOB = "job0000000000001"
ESCROW = escrow_account(JOB)


class Coordinator:
    """A coordinator's ledger: real store, real Book, real Audit (checkpoints and proofs), no scheduler."""

    def __init__(self, path: Path, key: SigningKey = KEY) -> None:
        self.store = Store(path)
        self.book = ledger.Book()
        self.audit = Audit(self.store, key, every=1, interval_ms=0)
        self.tasks = 0

    def append(self, **fields: Any) -> ledger.Entry:
        entry, nodes = self.book.append(time=1000 + self.book.size, **fields)
        self.store.db.execute("BEGIN IMMEDIATE")
        self.store.ledger.write([entry], nodes)
        self.store.db.execute("COMMIT")
        return entry

    def fund(self, amount: int = 1000) -> None:
        self.append(kind="grant", from_=MINT, to=SUBMITTER, amount=amount)
        self.append(kind="escrow", from_=SUBMITTER, to=ESCROW, amount=amount, job_id=JOB)

    def pay(self, worker: str) -> ledger.Entry:
        self.tasks += 1
        return self.append(kind="reward", from_=ESCROW, to=worker, amount=5, job_id=JOB, task_id=f"{JOB}-{self.tasks}")

    def sign(self) -> checkpoint.Checkpoint:
        assert self.audit.maybe_checkpoint(self.book, now=2000 + self.book.size)
        assert self.audit.latest is not None
        return self.audit.latest


class FakeClient:
    """Answers the GETs witness.audit makes the way coordinator/server.py does, through JSON."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.paths: list[str] = []
        self.tamper: Callable[[str, Any], Any] | None = None

    async def get_json(self, path: str) -> Any:
        self.paths.append(path)
        url = urllib.parse.urlsplit(path)
        q = {k: int(v) for k, v in urllib.parse.parse_qsl(url.query)}
        audit = self.coordinator.audit
        if url.path == "/v1/ledger/checkpoint":
            answer = audit.checkpoint(q.get("size"))
        elif url.path == "/v1/ledger/proof/consistency":
            answer = audit.consistency(q["from"], q.get("to"))
        elif url.path.startswith("/v1/accounts/") and url.path.endswith("/credits"):
            account = urllib.parse.unquote(url.path.split("/")[3])
            answer = audit.credits(account, q.get("after", -1), q.get("limit", 1000), q.get("size"))
        else:
            raise AssertionError(f"unexpected request {path}")
        answer = json.loads(json.dumps(answer))
        return answer if self.tamper is None else self.tamper(url.path, answer)


@pytest.fixture
def coord(tmp_path: Path) -> Coordinator:
    c = Coordinator(tmp_path / "honest.sqlite3")
    c.fund()
    return c


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


async def _audit(client: FakeClient, journal: Journal) -> int:
    return await witness.audit(client, KEY.verify_key, journal, ME)  # type: ignore[arg-type]


def _credits(journal: Journal) -> list[tuple[int, int, dict[str, Any], list[str]]]:
    rows = journal.db.execute("SELECT seq, checkpoint, entry, proof FROM credits ORDER BY seq")
    return [(r[0], r[1], json.loads(r[2]), json.loads(r[3])) for r in rows]


def _evidence(journal: Journal) -> tuple[Any, ...]:
    return journal.checkpoints(), _credits(journal)


# ---- an honest coordinator ---------------------------------------------------------------------------------------


async def test_the_first_audit_keeps_the_checkpoint_and_proves_every_credit(coord: Coordinator,
                                                                            journal: Journal) -> None:
    mine = [coord.pay(ME), coord.pay(ME)]
    coord.pay(OTHER)
    mine.append(coord.pay(ME))
    cp = coord.sign()
    client = FakeClient(coord)
    assert await _audit(client, journal) == 3
    assert journal.checkpoints() == [cp]
    assert [(seq, size, entry) for seq, size, entry, _ in _credits(journal)] == [
        (e.seq, cp.size, e.to_dict()) for e in mine]
    assert journal.last_credit_seq() == mine[-1].seq
    # The kept evidence stands on its own: each credit re-proves against the kept checkpoint, offline.
    for _, _, entry, proof in _credits(journal):
        checkpoint.check_included(entry, cp, checkpoint.hashes_from_json(proof))
    assert client.paths == ["/v1/ledger/checkpoint", f"/v1/accounts/{ME}/credits?after=-1&size={cp.size}&limit=1000"]


async def test_a_later_audit_proves_consistency_and_takes_only_the_new_credits(coord: Coordinator,
                                                                             journal: Journal) -> None:
    first = coord.pay(ME)
    old = coord.sign()
    client = FakeClient(coord)
    assert await _audit(client, journal) == 1
    coord.pay(OTHER)
    second = coord.pay(ME)
    new = coord.sign()
    client.paths.clear()
    assert await _audit(client, journal) == 1
    assert client.paths == ["/v1/ledger/checkpoint", f"/v1/ledger/proof/consistency?from={old.size}&to={new.size}",
                            f"/v1/accounts/{ME}/credits?after={first.seq}&size={new.size}&limit=1000"]
    assert journal.checkpoints() == [old, new]
    assert [(seq, size) for seq, size, _, _ in _credits(journal)] == [(first.seq, old.size), (second.seq, new.size)]


async def test_an_audit_with_nothing_new_changes_nothing(coord: Coordinator, journal: Journal) -> None:
    coord.pay(ME)
    coord.sign()
    client = FakeClient(coord)
    await _audit(client, journal)
    before = _evidence(journal)
    assert await _audit(client, journal) == 0
    assert _evidence(journal) == before


async def test_a_worker_with_no_credits_still_keeps_the_checkpoint(coord: Coordinator, journal: Journal) -> None:
    coord.pay(OTHER)
    cp = coord.sign()
    assert await _audit(FakeClient(coord), journal) == 0
    assert journal.checkpoints() == [cp] and _credits(journal) == []


async def test_a_credit_newer_than_the_checkpoint_waits_for_the_next_one(coord: Coordinator,
                                                                         journal: Journal) -> None:
    covered = coord.pay(ME)
    first = coord.sign()
    later = coord.pay(ME)  # written after the latest checkpoint: served with proof null
    client = FakeClient(coord)
    assert await _audit(client, journal) == 1
    assert journal.last_credit_seq() == covered.seq
    assert await _audit(client, journal) == 0  # still no checkpoint covers it
    second = coord.sign()
    assert await _audit(client, journal) == 1
    assert [(seq, size) for seq, size, _, _ in _credits(journal)] == [(covered.seq, first.size),
                                                                     (later.seq, second.size)]


async def test_credits_are_fetched_page_by_page(coord: Coordinator, journal: Journal,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(witness, "PAGE", 2)
    mine = [coord.pay(ME) for _ in range(5)]
    cp = coord.sign()
    client = FakeClient(coord)
    assert await _audit(client, journal) == 5
    assert [seq for seq, _, _, _ in _credits(journal)] == [e.seq for e in mine]
    afters = [p for p in client.paths if "/credits" in p]
    assert afters == [f"/v1/accounts/{ME}/credits?after={a}&size={cp.size}&limit=2"
                      for a in (-1, mine[1].seq, mine[3].seq)]


# ---- a coordinator that rewrites its ledger ----------------------------------------------------------------------


async def _caught(client: FakeClient, journal: Journal, message: str) -> None:
    before = _evidence(journal)
    with pytest.raises(VerificationError, match=message):
        await _audit(client, journal)
    assert _evidence(journal) == before  # nothing is stored when an audit fails


async def _held(coord: Coordinator, journal: Journal) -> FakeClient:
    """A worker that already audited an honest checkpoint (with one credit)."""
    coord.pay(ME)
    coord.sign()
    client = FakeClient(coord)
    assert await _audit(client, journal) == 1
    return client


def _rewrite(path: Path, size: int, *, change_at: int = 2) -> Coordinator:
    """The same coordinator key over another history: the honest market with entry `change_at` paid to OTHER."""
    forged = Coordinator(path)
    forged.fund()
    while forged.book.size < size:
        forged.pay(OTHER if forged.book.size == change_at else ME)
    forged.sign()
    return forged


async def test_a_rewritten_ledger_of_the_same_size_is_a_fork(coord: Coordinator, journal: Journal,
                                                             tmp_path: Path) -> None:
    client = await _held(coord, journal)
    client.coordinator = _rewrite(tmp_path / "forged.sqlite3", coord.book.size)
    await _caught(client, journal, f"LEDGER FORK: the checkpoint of size {coord.book.size} does not extend.*two"
                                   " different roots")


async def test_a_rewritten_and_grown_ledger_is_a_fork(coord: Coordinator, journal: Journal, tmp_path: Path) -> None:
    client = await _held(coord, journal)
    client.coordinator = _rewrite(tmp_path / "forged.sqlite3", coord.book.size + 4)
    await _caught(client, journal, "LEDGER FORK: .*consistency proof does not match the root")


async def test_a_truncated_ledger_is_a_fork(coord: Coordinator, journal: Journal, tmp_path: Path) -> None:
    client = await _held(coord, journal)
    shorter = Coordinator(tmp_path / "short.sqlite3")
    shorter.fund()  # the same first entries, without the credit the worker holds
    shorter.sign()
    client.coordinator = shorter
    await _caught(client, journal, f"LEDGER FORK: the coordinator's latest checkpoint covers {shorter.book.size}"
                                   f" entries, fewer than the {coord.book.size} it signed before")


async def test_a_tampered_consistency_proof_is_a_fork(coord: Coordinator, journal: Journal) -> None:
    client = await _held(coord, journal)
    coord.pay(OTHER)
    coord.pay(ME)
    coord.sign()

    def flip_first_hash(path: str, answer: Any) -> Any:
        if path.endswith("/consistency"):
            h = answer["proof"][0]
            answer["proof"][0] = ("0" if h[0] != "0" else "1") + h[1:]
        return answer

    client.tamper = flip_first_hash
    await _caught(client, journal, "LEDGER FORK: .*consistency proof does not match the root")


async def test_a_consistency_answer_for_another_checkpoint_is_a_fork(coord: Coordinator, journal: Journal,
                                                                     tmp_path: Path) -> None:
    client = await _held(coord, journal)
    coord.pay(ME)
    coord.sign()
    forged = _rewrite(tmp_path / "forged.sqlite3", coord.book.size)

    def forged_checkpoint(path: str, answer: Any) -> Any:
        if path.endswith("/consistency"):
            answer["checkpoint"] = forged.audit.checkpoint()
        return answer

    client.tamper = forged_checkpoint
    await _caught(client, journal, f"LEDGER FORK: two checkpoints of size {coord.book.size} with different roots")


async def test_a_credits_answer_under_another_checkpoint_is_a_fork(coord: Coordinator, journal: Journal,
                                                                   tmp_path: Path) -> None:
    coord.pay(ME)
    coord.sign()
    forged = _rewrite(tmp_path / "forged.sqlite3", coord.book.size)
    client = FakeClient(coord)

    def forged_checkpoint(path: str, answer: Any) -> Any:
        if path.endswith("/credits"):
            answer["checkpoint"] = forged.audit.checkpoint()
        return answer

    client.tamper = forged_checkpoint
    await _caught(client, journal, f"LEDGER FORK: two checkpoints of size {coord.book.size} with different roots")


async def test_a_checkpoint_signed_by_another_key_is_refused(coord: Coordinator, journal: Journal,
                                                             tmp_path: Path) -> None:
    client = await _held(coord, journal)
    impostor = Coordinator(tmp_path / "impostor.sqlite3", IMPOSTOR)
    impostor.fund()
    impostor.sign()
    client.coordinator = impostor
    await _caught(client, journal, f"checkpoint names coordinator {IMPOSTOR.id}, expected {KEY.id}")


# ---- a coordinator that lies about a credit ----------------------------------------------------------------------


async def test_a_credit_with_a_wrong_proof_is_refused(coord: Coordinator, journal: Journal) -> None:
    paid = coord.pay(ME)
    coord.pay(OTHER)
    coord.sign()
    client = FakeClient(coord)

    def flip(path: str, answer: Any) -> Any:
        if path.endswith("/credits"):
            h = answer["credits"][0]["proof"][-1]
            answer["credits"][0]["proof"][-1] = ("0" if h[0] != "0" else "1") + h[1:]
        return answer

    client.tamper = flip
    await _caught(client, journal, f"entry {paid.seq} is not in the signed ledger")
    assert journal.checkpoints() == []


async def test_a_credit_with_an_altered_amount_is_refused(coord: Coordinator, journal: Journal) -> None:
    paid = coord.pay(ME)
    coord.sign()
    client = FakeClient(coord)

    def more(path: str, answer: Any) -> Any:
        if path.endswith("/credits"):
            answer["credits"][0]["entry"]["amount"] = 500
        return answer

    client.tamper = more
    await _caught(client, journal, f"entry {paid.seq}: hash does not match its contents")


async def test_a_credit_to_another_worker_is_refused(coord: Coordinator, journal: Journal) -> None:
    coord.pay(ME)
    theirs = coord.pay(OTHER)
    cp = coord.sign()
    client = FakeClient(coord)
    their_credits = coord.audit.credits(OTHER, -1, 10, cp.size)["credits"]
    assert their_credits[0]["entry"]["seq"] == theirs.seq

    def swap(path: str, answer: Any) -> Any:
        if path.endswith("/credits"):
            answer["credits"] = json.loads(json.dumps(their_credits))  # a valid proof, for someone else's entry
        return answer

    client.tamper = swap
    await _caught(client, journal, f"the coordinator listed entry {theirs.seq} as a new credit to this worker")


async def test_a_credit_served_again_is_refused(coord: Coordinator, journal: Journal) -> None:
    client = await _held(coord, journal)
    (seen,) = [seq for seq, _, _, _ in _credits(journal)]
    coord.pay(ME)
    coord.sign()
    everything = coord.audit.credits(ME, -1, 10)["credits"]  # valid proofs in the new checkpoint, old credit first

    def replay(path: str, answer: Any) -> Any:
        if path.endswith("/credits"):
            answer["credits"] = json.loads(json.dumps(everything))
        return answer

    client.tamper = replay
    await _caught(client, journal, f"the coordinator listed entry {seen} as a new credit to this worker")


async def test_a_covered_credit_without_its_proof_is_refused(coord: Coordinator, journal: Journal) -> None:
    coord.pay(ME)
    coord.sign()
    client = FakeClient(coord)

    def drop(path: str, answer: Any) -> Any:
        if path.endswith("/credits"):
            answer["credits"][0]["proof"] = None
        return answer

    client.tamper = drop
    await _caught(client, journal, "an entry covered by the checkpoint came without its inclusion proof")


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda a: [], PeerProtocolError, "credits answer must be a map with a credits list"),
        (lambda a: {**a, "credits": None}, PeerProtocolError, "credits answer must be a map with a credits list"),
        (lambda a: {**a, "checkpoint": None}, VerificationError, "a checkpoint must have exactly the fields"),
        (lambda a: {**a, "credits": [{"entry": a["credits"][0]["entry"]}]}, PeerProtocolError,
         "a proved entry must be a map with entry and proof"),
        (lambda a: {**a, "credits": [None]}, PeerProtocolError, "a proved entry must be a map with entry and proof"),
        (lambda a: {**a, "credits": [{"entry": None, "proof": []}]}, VerificationError,
         "entry must have exactly the fields"),
        (lambda a: {**a, "credits": [{**a["credits"][0], "proof": "00" * 32}]}, VerificationError,
         "a proof must be a list of at most 128 hashes"),
    ],
)
async def test_a_malformed_credits_answer_is_refused_and_stores_nothing(
    coord: Coordinator, journal: Journal, change: Callable[[Any], Any], error: type[Exception], message: str
) -> None:
    coord.pay(ME)
    coord.sign()
    client = FakeClient(coord)
    client.tamper = lambda path, a: change(a) if path.endswith("/credits") else a
    with pytest.raises(error, match=message):
        await _audit(client, journal)
    assert _evidence(journal) == ([], [])


async def test_a_kept_checkpoint_is_checked_against_the_pinned_key_before_it_is_relied_on(
    coord: Coordinator, journal: Journal
) -> None:
    # A journal edited by hand (or carried over from another coordinator) is no witness for this one.
    coord.sign()
    journal.add_evidence(checkpoint.sign(IMPOSTOR, size=1, root=bytes(32), time=1), [], now_ms=1)
    await _caught(FakeClient(coord), journal, f"checkpoint names coordinator {IMPOSTOR.id}, expected {KEY.id}")
