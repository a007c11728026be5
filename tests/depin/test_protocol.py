"""depin.protocol: every wire message refuses what docs/PROTOCOL.md does not allow, naming the field at fault."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from depin import codec, protocol
from depin.errors import PeerProtocolError
from depin.protocol import (
    AckItem,
    BondRequest,
    CancelRequest,
    Freshness,
    GrantRequest,
    JobRequest,
    LeaseGrant,
    LeaseRequest,
    ReleaseRequest,
    ResultItem,
    ResultsAck,
    ResultsRequest,
    SubmitRequest,
    TaskMessage,
    UnbondRequest,
)

FRESH: dict[str, Any] = {"ts": 1_700_000_000_000, "nonce": b"\x01" * 16}
OUTPUT = {"dtype": "uint32", "shape": [1, 2], "data": bytes(8)}


def _refuses(parse: Callable[[dict[str, Any]], Any], payload: Any, message: str) -> None:
    with pytest.raises(PeerProtocolError, match=re.escape(message)):
        parse(payload)


def _wire(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as the peer would see it after canonical msgpack."""
    decoded: dict[str, Any] = codec.decode_canonical(codec.encode(payload))
    return decoded


# ---- freshness -----------------------------------------------------------------------------------------


def test_freshness() -> None:
    assert Freshness.from_payload({**FRESH, "other": 1}) == Freshness(FRESH["ts"], FRESH["nonce"])
    assert Freshness.from_payload({"ts": 0, "nonce": b"x" * 8}).ts == 0
    assert Freshness.from_payload({"ts": 2**63 - 1, "nonce": b"x" * 32}).nonce == b"x" * 32


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"nonce": b"x" * 8}, "missing field ts"),
        ({"ts": 1}, "missing field nonce"),
        ({"ts": -1, "nonce": b"x" * 8}, "field ts: -1 outside [0, 9223372036854775807]"),
        ({"ts": 1.0, "nonce": b"x" * 8}, "field ts: wrong type float"),
        ({"ts": True, "nonce": b"x" * 8}, "field ts: wrong type bool"),
        ({"ts": "1", "nonce": b"x" * 8}, "field ts: wrong type str"),
        ({"ts": 1, "nonce": "x" * 8}, "field nonce: wrong type str"),
        ({"ts": 1, "nonce": b"x" * 7}, "field nonce: length must be 8..32 bytes"),
        ({"ts": 1, "nonce": b"x" * 33}, "field nonce: length must be 8..32 bytes"),
    ],
)
def test_freshness_refuses(payload: dict[str, Any], message: str) -> None:
    _refuses(Freshness.from_payload, payload, message)


# ---- lease request -------------------------------------------------------------------------------------------

LEASE = {"max_tasks": 4, "wait_ms": 20_000, "kernels": ["mandelbrot@1"]}


def test_lease_request_round_trip() -> None:
    req = LeaseRequest.from_payload(_wire({**LEASE, **FRESH}))
    assert req == LeaseRequest(4, 20_000, ("mandelbrot@1",))
    assert req.to_payload() == LEASE
    assert LeaseRequest.from_payload({**req.to_payload(), **FRESH}) == req


def test_lease_request_min_price_round_trip() -> None:
    req = LeaseRequest.from_payload(_wire({**LEASE, "owner": "o" * 32, "min_price": 9, **FRESH}))
    assert req == LeaseRequest(4, 20_000, ("mandelbrot@1",), "o" * 32, 9)
    assert req.to_payload() == {**LEASE, "owner": "o" * 32, "min_price": 9}
    assert LeaseRequest.from_payload({**LEASE, "min_price": 0}).min_price == 0  # 0 is sent as given
    assert LeaseRequest.from_payload({**LEASE, "min_price": 2**40 - 1}).min_price == protocol.MAX_PRICE
    assert "min_price" not in LeaseRequest(1, 0, ("a@1",)).to_payload()  # absent unless set
    assert LeaseRequest.from_payload(LEASE).min_price is None


def test_lease_request_bounds_accepted() -> None:
    LeaseRequest.from_payload({"max_tasks": 1, "wait_ms": 0, "kernels": ["k" * 48 + "@123456789"] * 64})
    LeaseRequest.from_payload({"max_tasks": protocol.MAX_BATCH, "wait_ms": protocol.MAX_WAIT_MS, "kernels": ["a@1"]})


def test_lease_request_published_and_platform_round_trip() -> None:
    req = LeaseRequest.from_payload({**LEASE, "published": True, "platform": "x86_64 numba-0.68.1", **FRESH})
    assert (req.published, req.platform) == (True, "x86_64 numba-0.68.1")
    assert LeaseRequest.from_payload({**req.to_payload(), **FRESH}) == req
    plain = LeaseRequest.from_payload(LEASE)
    assert (plain.published, plain.platform) == (False, None)
    assert "published" not in plain.to_payload() and "platform" not in plain.to_payload()  # absent unless set


@pytest.mark.parametrize(("changes", "message"), [
    ({"published": 1}, "field published: wrong type int"),
    ({"platform": ""}, "field platform: must be 1..128 printable ASCII characters"),
    ({"platform": "x" * 129}, "field platform: must be 1..128"),
    ({"platform": "x86\n"}, "field platform: must be 1..128"),
    ({"platform": "é"}, "field platform: must be 1..128"),
    ({"platform": None}, "field platform: wrong type NoneType"),
])
def test_lease_request_refuses_bad_published_or_platform(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PeerProtocolError, match=message):
        LeaseRequest.from_payload({**LEASE, **changes})


@pytest.mark.parametrize("key", ["mandelbrot", "mandelbrot@", "@1", "Mandelbrot@1", "k" * 49 + "@1", "m@1x", ""])
def test_lease_request_refuses_malformed_kernel_keys(key: str) -> None:
    with pytest.raises(PeerProtocolError, match="field kernels: must list 1..64 'name@version' strings"):
        LeaseRequest.from_payload({"max_tasks": 1, "wait_ms": 0, "kernels": [key]})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({k: v for k, v in LEASE.items() if k != "max_tasks"}, "missing field max_tasks"),
        ({k: v for k, v in LEASE.items() if k != "wait_ms"}, "missing field wait_ms"),
        ({k: v for k, v in LEASE.items() if k != "kernels"}, "missing field kernels"),
        ({**LEASE, "priority": 1}, "unknown field priority"),
        ({**LEASE, "max_tasks": 0}, "field max_tasks: 0 outside [1, 256]"),
        ({**LEASE, "max_tasks": 257}, "field max_tasks: 257 outside [1, 256]"),
        ({**LEASE, "max_tasks": "4"}, "field max_tasks: wrong type str"),
        ({**LEASE, "max_tasks": True}, "field max_tasks: wrong type bool"),
        ({**LEASE, "wait_ms": -1}, "field wait_ms: -1 outside [0, 30000]"),
        ({**LEASE, "wait_ms": 30_001}, "field wait_ms: 30001 outside [0, 30000]"),
        ({**LEASE, "wait_ms": 1.5}, "field wait_ms: wrong type float"),
        ({**LEASE, "kernels": "mandelbrot@1"}, "field kernels: wrong type str"),
        ({**LEASE, "kernels": []}, "field kernels: must list 1..64 'name@version' strings"),
        ({**LEASE, "kernels": ["a"] * 65}, "field kernels: must list 1..64"),
        ({**LEASE, "kernels": [""]}, "field kernels: must list 1..64"),
        ({**LEASE, "kernels": ["k" * 65]}, "field kernels: must list 1..64"),
        ({**LEASE, "kernels": [1]}, "field kernels: must list 1..64"),
        ({**LEASE, "min_price": -1}, "field min_price: -1 outside [0, 1099511627775]"),
        ({**LEASE, "min_price": 2**40}, "field min_price: 1099511627776 outside [0, 1099511627775]"),
        ({**LEASE, "min_price": None}, "field min_price: wrong type NoneType"),
        ({**LEASE, "min_price": True}, "field min_price: wrong type bool"),
        ({**LEASE, "min_price": 1.0}, "field min_price: wrong type float"),
        ({**LEASE, "min_price": "5"}, "field min_price: wrong type str"),
        ({**LEASE, "max_price": 5}, "unknown field max_price"),
    ],
)
def test_lease_request_refuses(payload: dict[str, Any], message: str) -> None:
    _refuses(LeaseRequest.from_payload, payload, message)


# ---- release -------------------------------------------------------------------------------------------------


def test_release_round_trip() -> None:
    req = ReleaseRequest.from_payload(_wire({"lease_ids": ["a", "b"], **FRESH}))
    assert req == ReleaseRequest(("a", "b"))
    assert req.to_payload() == {"lease_ids": ["a", "b"]}
    assert ReleaseRequest.from_payload({"lease_ids": []}) == ReleaseRequest(())
    assert len(ReleaseRequest.from_payload({"lease_ids": ["x" * 128] * 256}).lease_ids) == 256


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "missing field lease_ids"),
        ({"lease_ids": [], "all": True}, "unknown field all"),
        ({"lease_ids": "a"}, "field lease_ids: wrong type str"),
        ({"lease_ids": ["a"] * 257}, "field lease_ids: must list at most 256 lease ids"),
        ({"lease_ids": [""]}, "field lease_ids: must list at most 256 lease ids"),
        ({"lease_ids": ["x" * 129]}, "field lease_ids"),
        ({"lease_ids": [b"a"]}, "field lease_ids"),
    ],
)
def test_release_refuses(payload: dict[str, Any], message: str) -> None:
    _refuses(ReleaseRequest.from_payload, payload, message)


# ---- results ---------------------------------------------------------------------------------------------------

ITEM = {"lease_id": "L1", "task_id": "J-0", "output": OUTPUT, "elapsed_ms": 12}


def test_results_round_trip() -> None:
    second = {**ITEM, "lease_id": "L2", "elapsed_ms": 0}
    req = ResultsRequest.from_payload(_wire({"results": [ITEM, second], **FRESH}))
    assert req.results == (ResultItem("L1", "J-0", OUTPUT, 12), ResultItem("L2", "J-0", OUTPUT, 0))
    assert req.to_payload() == {"results": [ITEM, second]}
    assert ResultsRequest.from_payload({**req.to_payload(), **FRESH}) == req
    assert ResultItem.from_payload(req.results[0].to_payload(), 0) == req.results[0]


def test_a_result_item_may_carry_an_error_instead_of_an_output() -> None:
    failed = {"lease_id": "L1", "task_id": "J-0", "error": "IndexError: index 9 is out of bounds", "elapsed_ms": 3}
    item = ResultItem.from_payload(failed, 0)
    assert (item.output, item.error) == (None, "IndexError: index 9 is out of bounds")
    assert item.to_payload() == failed
    with pytest.raises(PeerProtocolError, match="unknown field results\\[0\\].output"):
        ResultItem.from_payload({**failed, "output": OUTPUT}, 0)  # one or the other
    with pytest.raises(PeerProtocolError, match="field results\\[0\\].error: length must be 1..200"):
        ResultItem.from_payload({**failed, "error": "x" * 201}, 0)
    with pytest.raises(PeerProtocolError, match="field results\\[0\\].error: wrong type bytes"):
        ResultItem.from_payload({**failed, "error": b"x"}, 0)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "missing field results"),
        ({"results": [ITEM], "batch": 1}, "unknown field batch"),
        ({"results": ITEM}, "field results: wrong type dict"),
        ({"results": []}, "field results: must hold 1..256 items"),
        ({"results": [ITEM] * 257}, "field results: must hold 1..256 items"),
        ({"results": [ITEM, ITEM]}, "field results: a lease_id appears twice"),
        ({"results": [ITEM, "x"]}, "field results[1]: must be a map"),
        ({"results": [{k: v for k, v in ITEM.items() if k != "lease_id"}]}, "missing field results[0].lease_id"),
        ({"results": [{k: v for k, v in ITEM.items() if k != "task_id"}]}, "missing field results[0].task_id"),
        ({"results": [{k: v for k, v in ITEM.items() if k != "output"}]}, "missing field results[0].output"),
        ({"results": [{k: v for k, v in ITEM.items() if k != "elapsed_ms"}]}, "missing field results[0].elapsed_ms"),
        ({"results": [{**ITEM, "digest": b""}]}, "unknown field results[0].digest"),
        ({"results": [ITEM, {**ITEM, "lease_id": 5}]}, "field results[1].lease_id: wrong type int"),
        ({"results": [{**ITEM, "lease_id": ""}]}, "field results[0].lease_id: length must be 1..128"),
        ({"results": [{**ITEM, "task_id": "t" * 129}]}, "field results[0].task_id: length must be 1..128"),
        ({"results": [{**ITEM, "output": [1, 2]}]}, "field results[0].output: wrong type list"),
        ({"results": [{**ITEM, "output": b"raw"}]}, "field results[0].output: wrong type bytes"),
        ({"results": [{**ITEM, "elapsed_ms": -1}]}, "field results[0].elapsed_ms: -1 outside [0, 2147483647]"),
        ({"results": [{**ITEM, "elapsed_ms": 2**31}]}, "field results[0].elapsed_ms: 2147483648 outside"),
        ({"results": [{**ITEM, "elapsed_ms": 1.0}]}, "field results[0].elapsed_ms: wrong type float"),
    ],
)
def test_results_refuse(payload: dict[str, Any], message: str) -> None:
    _refuses(ResultsRequest.from_payload, payload, message)


def test_result_item_from_payload_checks_it_is_a_map() -> None:
    _refuses(lambda p: ResultItem.from_payload(p, 7), None, "field results[7]: must be a map")


# ---- submit ------------------------------------------------------------------------------------------------------

SUBMIT = {"kernel": "mandelbrot", "params": {"width": 64, "x_min": -1.5}, "tasks": 4, "replicas": 2,
          "max_results": 5, "price": 10}


def test_submit_round_trip() -> None:
    req = SubmitRequest.from_payload(_wire({**SUBMIT, **FRESH}))
    assert req == SubmitRequest("mandelbrot", {"width": 64, "x_min": -1.5}, 4, 2, 5, 10)
    assert req.to_payload() == SUBMIT
    assert SubmitRequest.from_payload({**req.to_payload(), **FRESH}) == req


def test_submit_max_results_may_be_null_or_absent() -> None:
    assert SubmitRequest.from_payload({**SUBMIT, "max_results": None}).max_results is None
    absent = {k: v for k, v in SUBMIT.items() if k != "max_results"}
    req = SubmitRequest.from_payload(absent)
    assert req.max_results is None
    assert req.to_payload() == {**absent, "max_results": None}


def test_submit_limits() -> None:
    assert (protocol.MAX_REPLICAS, protocol.MAX_RESULTS, protocol.MAX_PRICE) == (16, 64, 2**40 - 1)


def test_submit_bounds_accepted() -> None:
    req = SubmitRequest.from_payload({**SUBMIT, "tasks": 1_000_000, "replicas": 16, "max_results": 64,
                                      "price": 2**40 - 1, "params": {f"p{i}": i for i in range(64)}})
    assert (req.tasks, req.replicas, req.max_results, req.price) == (1_000_000, 16, 64, 2**40 - 1)
    low = SubmitRequest.from_payload({**SUBMIT, "tasks": 1, "replicas": 1, "max_results": 1, "price": 1, "params": {}})
    assert (low.tasks, low.replicas, low.max_results, low.price) == (1, 1, 1, 1)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({k: v for k, v in SUBMIT.items() if k != "kernel"}, "missing field kernel"),
        ({k: v for k, v in SUBMIT.items() if k != "params"}, "missing field params"),
        ({k: v for k, v in SUBMIT.items() if k != "tasks"}, "missing field tasks"),
        ({k: v for k, v in SUBMIT.items() if k != "replicas"}, "missing field replicas"),
        ({k: v for k, v in SUBMIT.items() if k != "price"}, "missing field price"),
        ({**SUBMIT, "deadline": 5}, "unknown field deadline"),
        ({**SUBMIT, "kernel": 1}, "field kernel: wrong type int"),
        ({**SUBMIT, "kernel": ""}, "field kernel: length must be 1..128"),
        ({**SUBMIT, "params": [1]}, "field params: wrong type list"),
        ({**SUBMIT, "params": {"width": [64]}}, "field params: at most 64 values, each an int or a float"),
        ({**SUBMIT, "params": {"width": None}}, "field params: at most 64 values, each an int or a float"),
        ({**SUBMIT, "params": {"width": "64"}}, "field params: at most 64 values, each an int or a float"),
        ({**SUBMIT, "params": {"width": True}}, "field params: at most 64 values, each an int or a float"),
        ({**SUBMIT, "params": {f"p{i}": i for i in range(65)}}, "field params: at most 64"),
        ({**SUBMIT, "tasks": 0}, "field tasks: 0 outside [1, 1000000]"),
        ({**SUBMIT, "tasks": 1_000_001}, "field tasks: 1000001 outside [1, 1000000]"),
        ({**SUBMIT, "tasks": 2.0}, "field tasks: wrong type float"),
        ({**SUBMIT, "replicas": 0}, "field replicas: 0 outside [1, 16]"),
        ({**SUBMIT, "replicas": 17}, "field replicas: 17 outside [1, 16]"),
        ({**SUBMIT, "max_results": 0}, "field max_results: 0 outside [1, 64]"),
        ({**SUBMIT, "max_results": 65}, "field max_results: 65 outside [1, 64]"),
        ({**SUBMIT, "max_results": "5"}, "field max_results: wrong type str"),
        ({**SUBMIT, "price": 0}, "field price: 0 outside [1, 1099511627775]"),
        ({**SUBMIT, "price": 2**40}, "field price: 1099511627776 outside [1, 1099511627775]"),
        ({**SUBMIT, "price": -3}, "field price: -3 outside"),
        ({**SUBMIT, "price": False}, "field price: wrong type bool"),
    ],
)
def test_submit_refuses(payload: dict[str, Any], message: str) -> None:
    _refuses(SubmitRequest.from_payload, payload, message)


# ---- cancel ------------------------------------------------------------------------------------------------------


def test_cancel_round_trip() -> None:
    req = CancelRequest.from_payload(_wire({"job_id": "abc", **FRESH}))
    assert req == CancelRequest("abc")
    assert req.to_payload() == {"job_id": "abc"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "missing field job_id"),
        ({"job_id": "a", "force": True}, "unknown field force"),
        ({"job_id": 5}, "field job_id: wrong type int"),
        ({"job_id": ""}, "field job_id: length must be 1..128"),
        ({"job_id": "j" * 129}, "field job_id: length must be 1..128"),
    ],
)
def test_cancel_refuses(payload: dict[str, Any], message: str) -> None:
    _refuses(CancelRequest.from_payload, payload, message)


# ---- result request --------------------------------------------------------------------------------------------


def test_job_request_round_trip() -> None:
    req = JobRequest.from_payload(_wire({"job_id": "abc", **FRESH}))
    assert req == JobRequest("abc")
    assert req.to_payload() == {"job_id": "abc"}
    assert JobRequest.from_payload({**req.to_payload(), **FRESH}) == req


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "missing field job_id"),
        ({"job_id": "a", "format": "png"}, "unknown field format"),
        ({"job_id": 5}, "field job_id: wrong type int"),
        ({"job_id": b"abc"}, "field job_id: wrong type bytes"),
        ({"job_id": ""}, "field job_id: length must be 1..128"),
        ({"job_id": "j" * 129}, "field job_id: length must be 1..128"),
    ],
)
def test_job_request_refuses(payload: dict[str, Any], message: str) -> None:
    _refuses(JobRequest.from_payload, payload, message)


# ---- grant -------------------------------------------------------------------------------------------------------

ACCOUNT = "alice" + "2" * 27


def test_grant_request_round_trip() -> None:
    req = GrantRequest.from_payload(_wire({"account": ACCOUNT, "amount": 1000, **FRESH}))
    assert req == GrantRequest(ACCOUNT, 1000)
    assert req.to_payload() == {"account": ACCOUNT, "amount": 1000}
    assert GrantRequest.from_payload({**req.to_payload(), **FRESH}) == req


def test_grant_request_bounds_accepted() -> None:
    assert protocol.MAX_GRANT == 2**53 - 1
    assert GrantRequest.from_payload({"account": ACCOUNT, "amount": 1}).amount == 1
    assert GrantRequest.from_payload({"account": ACCOUNT, "amount": 2**53 - 1}).amount == 2**53 - 1
    assert GrantRequest.from_payload({"account": "2" * 32, "amount": 1}).account == "2" * 32


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"amount": 1}, "missing field account"),
        ({"account": ACCOUNT}, "missing field amount"),
        ({"account": ACCOUNT, "amount": 1, "job_id": "j"}, "unknown field job_id"),
        ({"account": ACCOUNT, "amount": 0}, "field amount: 0 outside [1, 9007199254740991]"),
        ({"account": ACCOUNT, "amount": -1}, "field amount: -1 outside [1, 9007199254740991]"),
        ({"account": ACCOUNT, "amount": 2**53}, "field amount: 9007199254740992 outside [1, 9007199254740991]"),
        ({"account": ACCOUNT, "amount": 1.0}, "field amount: wrong type float"),
        ({"account": ACCOUNT, "amount": True}, "field amount: wrong type bool"),
        ({"account": ACCOUNT, "amount": "10"}, "field amount: wrong type str"),
        ({"account": "mint", "amount": 1}, "field account: must be a party id (32 characters a-z, 2-7)"),
        ({"account": "escrow:j", "amount": 1}, "field account: must be a party id"),
        ({"account": ACCOUNT.upper(), "amount": 1}, "field account: must be a party id"),
        ({"account": ACCOUNT[:-1], "amount": 1}, "field account: must be a party id"),
        ({"account": ACCOUNT + "2", "amount": 1}, "field account: must be a party id"),
        ({"account": ACCOUNT[:-1] + "1", "amount": 1}, "field account: must be a party id"),
        ({"account": ACCOUNT[:-1] + "\n", "amount": 1}, "field account: must be a party id"),
        ({"account": 5, "amount": 1}, "field account: wrong type int"),
        ({"account": ACCOUNT.encode(), "amount": 1}, "field account: wrong type bytes"),
    ],
)
def test_grant_request_refuses(payload: dict[str, Any], message: str) -> None:
    _refuses(GrantRequest.from_payload, payload, message)


# ---- bond and unbond ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [BondRequest, UnbondRequest])
def test_bond_requests_round_trip(cls: type[BondRequest]) -> None:
    req = cls.from_payload(_wire({"amount": 250, **FRESH}))
    assert req == cls(250) and type(req) is cls
    assert req.to_payload() == {"amount": 250}
    assert cls.from_payload({**req.to_payload(), **FRESH}) == req
    assert cls.from_payload({"amount": 1}).amount == 1
    assert cls.from_payload({"amount": protocol.MAX_GRANT}).amount == protocol.MAX_GRANT


def test_a_bond_is_not_an_unbond() -> None:
    assert BondRequest(5) != UnbondRequest(5)


@pytest.mark.parametrize("cls", [BondRequest, UnbondRequest])
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "missing field amount"),
        ({"amount": 1, "account": ACCOUNT}, "unknown field account"),
        ({"amount": 0}, "field amount: 0 outside [1, 9007199254740991]"),
        ({"amount": -5}, "field amount: -5 outside [1, 9007199254740991]"),
        ({"amount": 2**53}, "field amount: 9007199254740992 outside [1, 9007199254740991]"),
        ({"amount": 2**64 - 1}, "outside [1, 9007199254740991]"),
        ({"amount": 1.0}, "field amount: wrong type float"),
        ({"amount": True}, "field amount: wrong type bool"),
        ({"amount": "10"}, "field amount: wrong type str"),
        ({"amount": None}, "field amount: wrong type NoneType"),
    ],
)
def test_bond_requests_refuse(cls: type[BondRequest], payload: dict[str, Any], message: str) -> None:
    _refuses(cls.from_payload, payload, message)


# ---- task message ---------------------------------------------------------------------------------------------

TASK = {"task_id": "J-0", "job_id": "J", "kernel": "mandelbrot", "kernel_version": 1,
        "params": {"width": 2, "height": 2}, "coordinator": "c" * 32, "price": 7}


def test_task_message() -> None:
    msg = TaskMessage.from_payload(_wire(TASK))
    assert msg == TaskMessage("J-0", "J", "mandelbrot", 1, {"width": 2, "height": 2}, "c" * 32, 7)
    assert TaskMessage.from_payload({**TASK, "price": 1}).price == 1
    assert TaskMessage.from_payload({**TASK, "price": 2**40 - 1}).price == protocol.MAX_PRICE


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({k: v for k, v in TASK.items() if k != "task_id"}, "missing field task.task_id"),
        ({k: v for k, v in TASK.items() if k != "coordinator"}, "missing field task.coordinator"),
        ({k: v for k, v in TASK.items() if k != "params"}, "missing field task.params"),
        ({k: v for k, v in TASK.items() if k != "price"}, "missing field task.price"),
        ({**TASK, "min_price": 1}, "unknown field task.min_price"),
        ({**TASK, "price": 0}, "field task.price: 0 outside [1, 1099511627775]"),
        ({**TASK, "price": 2**40}, "field task.price: 1099511627776 outside [1, 1099511627775]"),
        ({**TASK, "price": -7}, "field task.price: -7 outside"),
        ({**TASK, "price": 7.0}, "field task.price: wrong type float"),
        ({**TASK, "price": True}, "field task.price: wrong type bool"),
        ({**TASK, "price": None}, "field task.price: wrong type NoneType"),
        ({**TASK, "kernel_version": -1}, "field task.kernel_version: -1 outside [0, 2147483648]"),
        ({**TASK, "kernel_version": "1"}, "field task.kernel_version: wrong type str"),
        ({**TASK, "params": []}, "field task.params: wrong type list"),
        ({**TASK, "job_id": ""}, "field task.job_id: length must be 1..128"),
        ({**TASK, "kernel": None}, "field task.kernel: wrong type NoneType"),
    ],
)
def test_task_message_refuses(payload: dict[str, Any], message: str) -> None:
    _refuses(TaskMessage.from_payload, payload, message)


# ---- lease grant -------------------------------------------------------------------------------------------------

GRANT = {"lease_id": "L1", "expires_ms": 5, "task": b"\x80", "sig": bytes(64)}


def test_lease_grant_round_trip() -> None:
    g = LeaseGrant.from_payload(_wire(GRANT), 0)
    assert g == LeaseGrant("L1", 5, b"\x80", bytes(64))
    assert g.to_payload() == GRANT


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "field leases[3]: must be a map"),
        ({k: v for k, v in GRANT.items() if k != "sig"}, "missing field leases[3].sig"),
        ({**GRANT, "worker": "w"}, "unknown field leases[3].worker"),
        ({**GRANT, "task": "text"}, "field leases[3].task: wrong type str"),
        ({**GRANT, "expires_ms": -5}, "field leases[3].expires_ms: -5 outside"),
        ({**GRANT, "lease_id": ""}, "field leases[3].lease_id: length must be 1..128"),
    ],
)
def test_lease_grant_refuses(payload: Any, message: str) -> None:
    _refuses(lambda p: LeaseGrant.from_payload(p, 3), payload, message)


# ---- acks --------------------------------------------------------------------------------------------------------

ACK = {"worker_id": "w" * 32, "request_nonce": b"n" * 16,
       "acks": [{"lease_id": "L1", "status": "accepted", "reason": ""},
                {"lease_id": "L2", "status": "rejected", "reason": "lease was given back"},
                {"lease_id": "L3", "status": "duplicate", "reason": "result already received"}]}


def test_results_ack_round_trip() -> None:
    ack = ResultsAck.from_payload(_wire(ACK))
    assert ack.acks[1] == AckItem("L2", "rejected", "lease was given back")
    assert ack.to_payload() == ACK
    assert ResultsAck.from_payload(ack.to_payload()) == ack


def test_ack_item_checks_its_status() -> None:
    assert AckItem.STATUSES == ("accepted", "duplicate", "rejected")
    with pytest.raises(PeerProtocolError, match=re.escape("ack status must be one of")):
        AckItem("L1", "ok", "")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({k: v for k, v in ACK.items() if k != "acks"}, "missing field acks"),
        ({k: v for k, v in ACK.items() if k != "worker_id"}, "missing field worker_id"),
        ({k: v for k, v in ACK.items() if k != "request_nonce"}, "missing field request_nonce"),
        ({**ACK, "signature": b""}, "unknown field signature"),
        ({**ACK, "request_nonce": "n"}, "field request_nonce: wrong type str"),
        ({**ACK, "acks": {}}, "field acks: wrong type dict"),
        ({**ACK, "acks": [1]}, "field acks[0]: must be a map"),
        ({**ACK, "acks": [{"lease_id": "L1", "status": "accepted"}]}, "missing field acks[0].reason"),
        ({**ACK, "acks": [{"lease_id": "L1", "status": 1, "reason": ""}]}, "field acks[0].status: wrong type int"),
        ({**ACK, "acks": [{"lease_id": "L1", "status": "ok", "reason": ""}]}, "ack status must be one of"),
        ({**ACK, "acks": [{"lease_id": "L", "status": "accepted", "reason": "", "x": 1}]}, "unknown field acks[0].x"),
    ],
)
def test_results_ack_refuses(payload: dict[str, Any], message: str) -> None:
    _refuses(ResultsAck.from_payload, payload, message)


def test_every_error_is_a_peer_protocol_error_never_a_crash() -> None:
    # The parsers index into what they are given; a few hostile shapes must still end as PeerProtocolError.
    hostile: list[Any] = [{"results": [None]}, {"results": [[]]}, {"acks": None}, {"kernels": None},
                          {"account": None, "amount": None}, {"job_id": None}, {"price": None}]
    for payload in hostile:
        for parse in (ResultsRequest.from_payload, LeaseRequest.from_payload, ResultsAck.from_payload,
                      GrantRequest.from_payload, JobRequest.from_payload, TaskMessage.from_payload,
                      BondRequest.from_payload, UnbondRequest.from_payload):
            with pytest.raises(PeerProtocolError):
                parse(payload)
