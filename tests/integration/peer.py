"""A raw protocol peer for the integration tests: signs and sends exactly the bytes a test chooses.

Honest outputs come from the plain-Python reference (tests/reference/cref.py), independent of depin's kernel.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from depin import codec
from depin.crypto import SigningKey, open_envelope
from tests.reference import cref

if TYPE_CHECKING:
    from tests.integration.support import Coordinator

MSGPACK = {"Content-Type": "application/msgpack"}
# Tiny, so the test computes honest results with the plain-Python reference.
TINY_JOB = {"width": 12, "height": 8, "x_min": -2.0, "x_max": 1.0, "y_min": -1.2, "y_max": 1.2, "max_iter": 30}
LEASE_LIMIT = 64 << 10  # the coordinator's body limit for /v1/lease


def fresh(ts: int | None = None) -> dict[str, Any]:
    return {"ts": int(time.time() * 1000) if ts is None else ts, "nonce": secrets.token_bytes(16)}


def lease_payload(**overrides: Any) -> dict[str, Any]:
    return {"max_tasks": 1, "wait_ms": 0, "kernels": ["mandelbrot@1"], **fresh(), **overrides}


class Peer:
    """A raw HTTP peer: sends exact bytes, returns (status, decoded answer). Given the coordinator (whose key is the
    operator's), `submit` first grants the submitter what the job may cost."""

    def __init__(self, session: aiohttp.ClientSession, url: str, coordinator: Coordinator | None = None) -> None:
        self.session = session
        self.url = url
        self.coordinator = coordinator

    async def grant(self, account: str, amount: int) -> dict[str, Any]:
        """The operator's grant, signed with the coordinator's own key."""
        assert self.coordinator is not None, "Peer(..., coordinator=...) to grant"
        status, answer = await self.post("/v1/grants", self.coordinator.key, "grant",
                                         {"account": account, "amount": amount, **fresh()})
        assert status == 200, answer
        return dict(answer)

    async def post_bytes(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(self.url + path, data=body, headers=MSGPACK) as resp:
            data = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, json.loads(data)
            return resp.status, codec.decode(data)

    async def post(self, path: str, key: SigningKey, kind: str, payload: dict[str, Any]) -> tuple[int, Any]:
        return await self.post_bytes(path, codec.encode(key.seal(kind, payload)))

    async def lease(self, key: SigningKey) -> dict[str, Any]:
        status, answer = await self.post("/v1/lease", key, "lease-request", lease_payload())
        assert status == 200, answer
        assert len(answer["leases"]) == 1, answer
        grant: dict[str, Any] = answer["leases"][0]
        return grant

    async def submit(self, key: SigningKey, params: dict[str, Any], **options: Any) -> str:
        payload = {"kernel": "mandelbrot", "params": params, "tasks": 1, "replicas": 2, "max_results": None,
                   "price": 10, **options, **fresh()}
        if self.coordinator is not None:
            from tests.integration.support import max_cost

            await self.grant(key.id, max_cost(tasks=payload["tasks"], replicas=payload["replicas"],
                                              price=payload["price"], max_results=payload["max_results"]))
        status, answer = await self.post("/v1/jobs", key, "submit", payload)
        assert status == 200, answer
        return str(answer["job_id"])

    async def result(self, key: SigningKey, job_id: str) -> tuple[int, Any]:
        """POST /v1/jobs/{id}/result signed by `key`: (status, answer)."""
        return await self.post(f"/v1/jobs/{job_id}/result", key, "result-request", {"job_id": job_id, **fresh()})

    async def report(self, key: SigningKey, grant: dict[str, Any],
                     output: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one result; return its (signature-checked) ack item."""
        status, answer = await self.post("/v1/results", key, "results", results_payload(grant, output))
        assert status == 200, answer
        _, ack = open_envelope("results-ack", answer)
        assert ack["worker_id"] == key.id
        [item] = ack["acks"]
        assert item["lease_id"] == grant["lease_id"]
        return dict(item)


def honest_output(grant: dict[str, Any]) -> dict[str, Any]:
    """The correct output of a leased band, computed independently of depin."""
    task = codec.decode(grant["task"])
    p = task["params"]
    band = cref.python_reference(p["width"], p["height"], p["x_min"], p["x_max"], p["y_min"], p["y_max"],
                                 p["max_iter"], p["row_start"], p["row_end"])
    return {"dtype": "uint32", "shape": list(band.shape), "data": band.astype("<u4").tobytes()}


def results_payload(grant: dict[str, Any], output: dict[str, Any] | None = None) -> dict[str, Any]:
    task = codec.decode(grant["task"])
    item = {"lease_id": grant["lease_id"], "task_id": task["task_id"], "output": output or honest_output(grant),
            "elapsed_ms": 1}
    return {"results": [item], **fresh()}
