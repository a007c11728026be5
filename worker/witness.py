"""The worker as a witness of its coordinator's ledger: keep checkpoints, prove every credit, catch a rewrite.

Every audit (each `audit_interval`, and once more on the way out) fetches the coordinator's latest signed
checkpoint and proves it extends the newest checkpoint this worker kept: a coordinator that rewrote, truncated or
forked anything an earlier checkpoint covered cannot produce that proof. Then it fetches the entries paying this
worker that it has not seen, and checks each one's inclusion proof against the verified checkpoint before keeping
it as a receipt. Any failure is a VerificationError; the daemon records it as an alarm and stops (exit code 4).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Any

from depin import ledger_client
from depin.client import Client
from depin.crypto import VerifyKey
from depin.errors import PeerProtocolError, VerificationError
from worker.journal import Journal

log = logging.getLogger("depin.worker")
PAGE = 1000


async def audit(client: Client, coordinator: VerifyKey, journal: Journal, worker_id: str) -> int:
    """One audit round; how many new credits were proved. Raises VerificationError on anything false."""
    now = int(time.time() * 1000)
    held = journal.latest_checkpoint()
    if held is None:
        cp = await ledger_client.latest_checkpoint(client, coordinator)
    else:
        held.verify(coordinator)
        cp = await ledger_client.prove_consistent(client, coordinator, held)
    proved: list[tuple[dict[str, Any], list[str]]] = []
    after = journal.last_credit_seq()
    account = urllib.parse.quote(worker_id, safe="")
    while True:
        answer = await client.get_json(f"/v1/accounts/{account}/credits?after={after}&size={cp.size}&limit={PAGE}")
        if not isinstance(answer, dict) or not isinstance(answer.get("credits"), list):
            raise PeerProtocolError("credits answer must be a map with a credits list")
        served = ledger_client.parse_checkpoint(answer.get("checkpoint"), coordinator)
        if served.size != cp.size or served.root != cp.root:
            raise ledger_client.ForkEvidence(f"LEDGER FORK: two checkpoints of size {cp.size} with different roots",
                                             cp, served, [])
        fresh = 0
        for item in answer["credits"]:
            entry = ledger_client.check_proved(item, cp)
            if entry is None:
                break  # newer than the checkpoint: proved at the next audit
            if entry["to"] != worker_id or entry["seq"] <= after:
                raise VerificationError(f"the coordinator listed entry {entry['seq']} as a new credit to this worker")
            proved.append((entry, list(item["proof"])))
            after = entry["seq"]
            fresh += 1
        if fresh < PAGE:
            break
    journal.add_evidence(cp, proved, now)
    if proved:
        log.info("ledger: %d new credits (%d credits) proved in checkpoint %d", len(proved),
                 sum(e["amount"] for e, _ in proved), cp.size)
    return len(proved)
