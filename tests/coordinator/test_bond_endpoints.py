"""POST /v1/bond and /v1/unbond (PROTOCOL.md 7.22, 7.23) through the real aiohttp app: the signer bonds its own
credits, and every refusal answers the documented status and text and changes nothing (fuzz_support.check_post)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from depin.crypto import SigningKey
from tests.coordinator.fuzz_support import SUBMITTERS, Answer, Harness, Request
from tests.msgpack_ref import ref_encode

MAX_GRANT = 2**53 - 1


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "coordinator")
    try:
        yield harness
    finally:
        harness.close()


def _post(h: Harness, endpoint: str, key: SigningKey, amount: Any) -> Answer:
    req = Request(endpoint, key, {"amount": amount, **h.fresh()})
    return h.check_post(req.path, req.body(), endpoint=endpoint)


def _bonded(h: Harness, party: str) -> int:
    answer = h.get(f"/v1/accounts/{quote('bond:' + party, safe='')}")
    assert answer.status == 200 and answer.value["account"] == "bond:" + party, answer
    bonded: int = answer.value["balance"]
    return bonded


def _funded_worker(h: Harness, credits: int) -> SigningKey:
    worker = h.new_worker()
    h.grant(worker.id, credits)
    return worker


def test_a_bond_moves_the_signers_credits_into_its_bond(h: Harness) -> None:
    worker = _funded_worker(h, 500)
    answer = _post(h, "bond", worker, 200)
    assert answer.status == 200, answer
    value = answer.value
    assert value == {"worker_id": worker.id, "amount": 200, "seq": value["seq"], "bonded": 200, "balance": 300}
    entry = h.get(f"/v1/ledger?start={value['seq']}&limit=1").value["entries"][0]
    assert (entry["kind"], entry["from"], entry["to"], entry["amount"]) == ("bond", worker.id, "bond:" + worker.id,
                                                                           200)
    assert _bonded(h, worker.id) == 200
    assert h.get(f"/v1/accounts/{worker.id}").value["balance"] == 300
    # A second bond adds to the first; the answer gives the total.
    assert _post(h, "bond", worker, 300).value["bonded"] == 500


def test_a_bond_of_min_bond_shortens_the_trust_streak_and_an_unbond_lengthens_it_again(h: Harness) -> None:
    worker = _funded_worker(h, 100)
    trust = h.service.scheduler.trust
    assert trust.threshold(worker.id) == trust.policy.trust_after
    assert _post(h, "bond", worker, trust.policy.min_bond).status == 200
    assert trust.threshold(worker.id) == trust.policy.bonded_trust_after
    assert _post(h, "unbond", worker, 1).status == 200
    assert trust.threshold(worker.id) == trust.policy.trust_after


def test_a_bond_beyond_the_signers_credits_is_402(h: Harness) -> None:
    worker = _funded_worker(h, 50)
    answer = _post(h, "bond", worker, 51)
    assert answer.status == 402, answer
    assert answer.value["error"] == f"insufficient funds: account {worker.id} holds 50 credits, cannot bond 51"
    stranger = h.new_worker()
    answer = _post(h, "bond", stranger, 1)
    assert answer.status == 402, answer
    assert answer.value["error"] == f"insufficient funds: account {stranger.id} holds 0 credits, cannot bond 1"
    assert _bonded(h, worker.id) == _bonded(h, stranger.id) == 0


def test_an_unbond_gives_back_at_most_what_the_bond_holds(h: Harness) -> None:
    worker = _funded_worker(h, 500)
    _post(h, "bond", worker, 200)
    answer = _post(h, "unbond", worker, 201)
    assert answer.status == 409, answer
    assert answer.value["error"] == ("the bond holds 200 credits and 0 of them cover single results not yet"
                                     " audited: at most 200 can be taken out now")
    answer = _post(h, "unbond", worker, 150)
    assert answer.status == 200, answer
    value = answer.value
    assert value == {"worker_id": worker.id, "amount": 150, "seq": value["seq"], "bonded": 50, "balance": 450}
    entry = h.get(f"/v1/ledger?start={value['seq']}&limit=1").value["entries"][0]
    assert (entry["kind"], entry["from"], entry["to"], entry["amount"]) == ("unbond", "bond:" + worker.id,
                                                                           worker.id, 150)
    assert _post(h, "unbond", worker, 50).value["bonded"] == 0
    answer = _post(h, "unbond", worker, 1)
    assert answer.status == 409 and "at most 0 can be taken out now" in answer.value["error"], answer


def test_an_unbond_keeps_what_covers_the_workers_exposure(h: Harness) -> None:
    worker = _funded_worker(h, 500)
    _post(h, "bond", worker, 300)
    h.lease(worker)  # now the scheduler has a record of this worker
    h.service.scheduler.workers[worker.id].exposure = 120  # single results not yet audited (coordinator.auditing)
    answer = _post(h, "unbond", worker, 181)
    assert answer.status == 409, answer
    assert answer.value["error"] == ("the bond holds 300 credits and 120 of them cover single results not yet"
                                     " audited: at most 180 can be taken out now")
    assert _post(h, "unbond", worker, 180).value["bonded"] == 120


@pytest.mark.parametrize("endpoint", ["bond", "unbond"])
def test_a_banned_worker_is_refused_before_its_credits_move(h: Harness, endpoint: str) -> None:
    worker = _funded_worker(h, 500)
    _post(h, "bond", worker, 100)
    # Three wrong results out of three: banned (PROTOCOL.md 12.5).
    h.grant(SUBMITTERS[0].id, 10**6)
    job = {"kernel": "nonce", "params": {"seed": 1, "difficulty": 1, "count": 3}, "tasks": 3, "replicas": 1,
           "quorum": 1, "max_errors": 64, "max_results": 64, "price": 5}
    h.send(Request("submit", SUBMITTERS[0], {**job, **h.fresh()}))
    grants = h.lease(worker, max_tasks=3, kernels=("nonce@1",))
    junk = {"dtype": "uint8", "shape": [1], "data": b"\0"}
    h.send(Request("results", worker, {"results": [h.result_item(g, junk) for g in grants], **h.fresh()}))
    answer = _post(h, endpoint, worker, 10)
    assert answer.status == 403, answer
    assert answer.value["error"] == "worker banned: 3 invalid results out of 3"
    assert _bonded(h, worker.id) == 100


@pytest.mark.parametrize("endpoint", ["bond", "unbond"])
def test_a_replayed_request_is_refused_and_moves_nothing(h: Harness, endpoint: str) -> None:
    worker = _funded_worker(h, 500)
    if endpoint == "unbond":
        _post(h, "bond", worker, 100)
    req = Request(endpoint, worker, {"amount": 10, **h.fresh()})
    body = req.body()
    assert h.check_post(req.path, body, endpoint=endpoint).status == 200
    bonded = _bonded(h, worker.id)
    answer = h.check_post(req.path, body, endpoint=endpoint)
    assert answer.status == 409 and "nonce" in answer.value["error"], answer
    assert _bonded(h, worker.id) == bonded


def test_a_bond_signed_as_an_unbond_does_not_verify(h: Harness) -> None:
    worker = _funded_worker(h, 500)
    req = Request("bond", worker, {"amount": 10, **h.fresh()})
    answer = h.request("POST", "/v1/bond", body=ref_encode(req.envelope(kind="unbond")))
    assert answer.status == 401, answer
    assert _bonded(h, worker.id) == 0


@pytest.mark.parametrize(("amount", "error"), [
    (0, "field amount: 0 outside [1, 9007199254740991]"),
    (MAX_GRANT + 1, "field amount: 9007199254740992 outside [1, 9007199254740991]"),
    (True, "field amount: wrong type bool"),
    ("5", "field amount: wrong type str"),
])
def test_a_bad_amount_is_400(h: Harness, amount: Any, error: str) -> None:
    worker = _funded_worker(h, 500)
    for endpoint in ("bond", "unbond"):
        answer = _post(h, endpoint, worker, amount)
        assert answer.status == 400 and answer.value["error"] == error, answer


def test_the_bond_survives_a_restart(h: Harness) -> None:
    worker = _funded_worker(h, 500)
    _post(h, "bond", worker, 150)
    h.restart()
    assert _bonded(h, worker.id) == 150
    assert h.service.scheduler.trust.threshold(worker.id) == h.service.scheduler.trust.policy.bonded_trust_after
    value = _post(h, "unbond", worker, 150).value
    assert value == {"worker_id": worker.id, "amount": 150, "seq": value["seq"], "bonded": 0, "balance": 500}
