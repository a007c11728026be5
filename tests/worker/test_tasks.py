"""worker.tasks: a leased task is checked before a cycle is spent, then run and packaged as a result item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from depin import codec
from depin.crypto import SigningKey, VerifyKey
from depin.errors import PeerProtocolError, VerificationError
from depin.kernels import mandelbrot
from depin.protocol import LeaseGrant, ResultItem
from tests.coordinator.sched_support import PRICE, lease, new_scheduler, submit
from tests.spec_examples import SPEC
from worker import tasks

COORD = SigningKey(bytes([3]) * 32)
IMPOSTOR = SigningKey(bytes([4]) * 32)
KNOWN: dict[str, Any] = json.loads((Path(__file__).resolve().parents[1] / "data" / "mandelbrot_24x16.json").read_text())
PARAMS = {"width": 8, "height": 6, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2, "max_iter": 50,
          "row_start": 2, "row_end": 5}


def _task(**changes: Any) -> dict[str, Any]:
    task = {"task_id": "J-0", "job_id": "J", "kernel": "mandelbrot", "kernel_version": 1, "params": dict(PARAMS),
            "coordinator": COORD.id, "price": 7}
    task.update(changes)
    return task


def _grant(task: Any, signer: SigningKey = COORD, kind: str = "task", body: bytes | None = None) -> LeaseGrant:
    body = codec.encode(task) if body is None else body
    return LeaseGrant(lease_id="L1", expires_ms=10, task=body, sig=signer.sign(kind, body))


def test_check_accepts_a_task_from_the_pinned_coordinator() -> None:
    checked = tasks.check(_grant(_task()), COORD.verify_key)
    assert checked.lease_id == "L1"
    assert (checked.task.task_id, checked.task.job_id, checked.task.coordinator) == ("J-0", "J", COORD.id)
    assert checked.task.price == 7
    assert checked.kernel is mandelbrot.KERNEL
    assert checked.params == PARAMS


def test_check_accepts_what_the_scheduler_signs() -> None:
    s = new_scheduler()
    submit(s, tasks=2)
    grants = lease(s, "A", now=0)
    assert len(grants) == 2
    for grant in grants:
        checked = tasks.check(grant, s.key.verify_key, min_price=PRICE)
        assert checked.params == s.tasks[checked.task.task_id].params
        assert checked.task.price == PRICE == s.jobs[checked.task.job_id].price


def test_check_accepts_the_protocol_md_example_grant() -> None:
    ex = SPEC["task"]
    (grant_map,) = codec.decode_canonical(bytes.fromhex(ex["lease_answer_hex"]))["leases"]
    grant = LeaseGrant.from_payload(grant_map, 0)
    checked = tasks.check(grant, VerifyKey(bytes.fromhex(ex["coordinator_public_key_hex"])))
    assert (checked.lease_id, checked.task.task_id) == (ex["lease_id"], f"{ex['job_id']}-0")
    assert checked.task.price == 1
    assert codec.array_from_wire(tasks.run(checked).output).tolist() == SPEC["result"]["output"]
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(grant, COORD.verify_key)  # pinned to another coordinator


def test_check_does_not_fill_parameter_defaults() -> None:
    # A coordinator sends every parameter, normalised; a task missing one is not runnable.
    params = {k: v for k, v in PARAMS.items() if k not in ("x_min", "max_iter")}
    with pytest.raises(PeerProtocolError, match="task J-0 is not runnable: task parameter x_min: must be present"):
        tasks.check(_grant(_task(params=params)), COORD.verify_key)


def test_check_refuses_a_bad_signature() -> None:
    grant = _grant(_task())
    sig = bytearray(grant.sig)
    sig[5] ^= 1
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(LeaseGrant(grant.lease_id, grant.expires_ms, grant.task, bytes(sig)), COORD.verify_key)


def test_check_refuses_a_tampered_task() -> None:
    grant = _grant(_task())
    forged = codec.encode(_task(params={**PARAMS, "max_iter": 1_000_000}))
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(LeaseGrant(grant.lease_id, grant.expires_ms, forged, grant.sig), COORD.verify_key)


def test_check_refuses_a_task_signed_by_another_coordinator() -> None:
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(_grant(_task(coordinator=IMPOSTOR.id), signer=IMPOSTOR), COORD.verify_key)


def test_check_refuses_a_task_that_names_another_coordinator() -> None:
    with pytest.raises(VerificationError, match="task names a different coordinator"):
        tasks.check(_grant(_task(coordinator=IMPOSTOR.id)), COORD.verify_key)


@pytest.mark.parametrize("min_price", [0, 1, 6, 7])
def test_check_accepts_a_task_paying_at_least_the_minimum(min_price: int) -> None:
    assert tasks.check(_grant(_task()), COORD.verify_key, min_price=min_price).task.price == 7


@pytest.mark.parametrize("min_price", [8, 2**40 - 1])
def test_check_refuses_a_task_paying_less_than_the_minimum(min_price: int) -> None:
    # The coordinator should never lease it (it filters by min_price too); if it does, not a cycle is spent.
    with pytest.raises(PeerProtocolError, match=f"task J-0 pays 7 credits, below our minimum of {min_price}"):
        tasks.check(_grant(_task()), COORD.verify_key, min_price=min_price)


def test_check_order_signature_then_coordinator_then_price_then_kernel() -> None:
    cheap_unrunnable = _task(price=1, kernel="julia")
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(_grant(cheap_unrunnable, signer=IMPOSTOR), COORD.verify_key, min_price=5)
    with pytest.raises(VerificationError, match="task names a different coordinator"):
        tasks.check(_grant({**cheap_unrunnable, "coordinator": IMPOSTOR.id}), COORD.verify_key, min_price=5)
    with pytest.raises(PeerProtocolError, match="pays 1 credits, below our minimum of 5"):
        tasks.check(_grant(cheap_unrunnable), COORD.verify_key, min_price=5)
    with pytest.raises(PeerProtocolError, match="not runnable: unknown kernel 'julia'"):
        tasks.check(_grant(cheap_unrunnable), COORD.verify_key, min_price=1)


@pytest.mark.parametrize(
    ("price", "message"),
    [(None, "missing field task.price"), (0, "field task.price: 0 outside"), ("7", "field task.price: wrong type str")],
)
def test_check_refuses_a_task_without_a_valid_price(price: Any, message: str) -> None:
    task = _task() if price is None else _task(price=price)
    if price is None:
        del task["price"]
    with pytest.raises(PeerProtocolError, match=message):
        tasks.check(_grant(task), COORD.verify_key)


def test_check_refuses_a_signature_of_another_kind() -> None:
    with pytest.raises(VerificationError, match="bad task signature"):
        tasks.check(_grant(_task(), kind="results-ack"), COORD.verify_key)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kernel": "julia"}, "task J-0 is not runnable: unknown kernel 'julia'; available: mandelbrot"),
        ({"kernel_version": 2}, "task J-0 is not runnable: kernel mandelbrot version 2 is not supported"),
        ({"params": {**PARAMS, "row_end": 7}}, "task J-0 is not runnable: task rows must satisfy"),
        ({"params": {**PARAMS, "width": 0}}, "task J-0 is not runnable: parameter width: 0 is outside"),
        ({"params": {**PARAMS, "max_iter": 10**7}}, "task J-0 is not runnable: parameter max_iter"),
        ({"params": {k: v for k, v in PARAMS.items() if k != "row_start"}},
         "task J-0 is not runnable: task parameter row_start: must be present as int"),
        ({"params": {**PARAMS, "shell": "rm -rf /"}}, "task J-0 is not runnable: unknown parameter 'shell'"),
        ({"params": {**PARAMS, "x_min": 2.0}}, "task J-0 is not runnable: parameter x_min must be less than x_max"),
    ],
)
def test_check_refuses_what_it_cannot_run(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(PeerProtocolError, match=message):
        tasks.check(_grant(_task(**changes)), COORD.verify_key)


def test_check_refuses_malformed_payloads() -> None:
    with pytest.raises(PeerProtocolError, match="task payload must be a map"):
        tasks.check(_grant([1, 2]), COORD.verify_key)
    with pytest.raises(PeerProtocolError, match="missing field task.job_id"):
        tasks.check(_grant({k: v for k, v in _task().items() if k != "job_id"}), COORD.verify_key)
    unsorted = bytes.fromhex("82a16201a16102")
    with pytest.raises(PeerProtocolError, match="not canonical msgpack"):
        tasks.check(_grant(None, body=unsorted), COORD.verify_key)


def test_run_packages_a_result_item() -> None:
    checked = tasks.check(_grant(_task()), COORD.verify_key)
    result = tasks.run(checked)
    assert isinstance(result, ResultItem)
    assert (result.lease_id, result.task_id) == ("L1", "J-0")
    assert isinstance(result.elapsed_ms, int) and result.elapsed_ms >= 0
    assert result.output == codec.array_to_wire(mandelbrot.run(PARAMS))
    assert result.output["shape"] == [3, 8] and result.output["dtype"] == "uint32"
    # It survives the trip to the coordinator.
    assert ResultItem.from_payload(codec.decode_canonical(codec.encode(result.to_payload())), 0) == result


def test_run_gives_the_known_answer() -> None:
    params = dict(KNOWN["params"], row_start=0, row_end=KNOWN["params"]["height"])
    result = tasks.run(tasks.check(_grant(_task(params=params)), COORD.verify_key))
    assert codec.array_from_wire(result.output).tolist() == KNOWN["rows"]
    assert codec.array_from_wire(result.output).dtype == np.uint32
