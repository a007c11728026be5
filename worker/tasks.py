"""A leased task's life on the worker, as pure functions: check it, run it, package the result.

`check` refuses anything the pinned coordinator did not sign, anything not addressed to a kernel we run, and
parameters the kernel itself rejects, before a single cycle is spent. `run` calls the kernel and builds the
result item that will be journaled and signed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from depin import codec, kernels
from depin.crypto import VerifyKey
from depin.errors import DepinError, PeerProtocolError, VerificationError
from depin.kernels import Kernel, Params
from depin.protocol import LeaseGrant, ResultItem, TaskMessage


@dataclass(frozen=True)
class Checked:
    """A lease whose task verified: ready to run."""

    lease_id: str
    task: TaskMessage
    kernel: Kernel
    params: Params


def check(grant: LeaseGrant, coordinator: VerifyKey, min_price: int = 0) -> Checked:
    """Verify the task's signature and contents; VerificationError or PeerProtocolError if it is not runnable (or
    pays less than this worker asks)."""
    coordinator.verify("task", grant.task, grant.sig)
    payload = codec.decode_canonical(grant.task)
    if not isinstance(payload, dict):
        raise PeerProtocolError("task payload must be a map")
    task = TaskMessage.from_payload(payload)
    if task.coordinator != coordinator.id:
        raise VerificationError("task names a different coordinator")
    if task.price < min_price:
        raise PeerProtocolError(f"task {task.task_id} pays {task.price} credits, below our minimum of {min_price}")
    try:
        kernel = kernels.get(task.kernel, task.kernel_version)
        params = kernel.validate_task(task.params)
    except DepinError as exc:
        raise PeerProtocolError(f"task {task.task_id} is not runnable: {exc}") from None
    return Checked(grant.lease_id, task, kernel, params)


def run(checked: Checked) -> ResultItem:
    """Compute the task and package its output (the CPU-heavy part; call it off the event loop)."""
    started = time.perf_counter()
    output = checked.kernel.run(checked.params)
    elapsed_ms = int((time.perf_counter() - started) * 1000)
    return ResultItem(lease_id=checked.lease_id, task_id=checked.task.task_id,
                      output=codec.array_to_wire(output), elapsed_ms=elapsed_ms)
