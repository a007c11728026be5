"""Placement: which worker may fill which slot of a task, decided by the coordinator, never by the first comer.

Three rules, all pure (the randomness is passed in):

* **Probation and capacity.** Every identity starts with a lease capacity of `start_capacity` concurrent leases
  (BOINC's per-host in-progress limit). Each validated result doubles it (up to `max_capacity`); each result
  judged invalid, each error and each lease that expires halves it (down to 1). A worker is *on probation* until
  `TrustPolicy.probation_valid` of its results were validated: its error results and its expired leases never
  count toward failing a task, and once its lease on a task is older than the task's *grace*, the task is offered
  to another worker as if that lease were not there (its late result still counts).
* **Drawn replica slots.** A task's first slot goes to whoever asks (at a random offset in the job, so which
  tasks a worker gets is the coordinator's draw too). Every later slot, while the task has a member (an active
  lease or a usable result), is *reserved* for one worker drawn uniformly, with the coordinator's secret
  randomness, from the eligible workers that are present (asked for work within `presence_ms`, accept the
  kernel, ask no more than the job pays, are not banned, and could hold the task): trusted ones when the task
  needs trust, workers past probation when there are any. The drawn worker has `reserve_ms` to take the slot;
  then the draw is made again without it, and after `max_draws` draws the slot is open to any eligible worker.
  So an identity cannot arrange to sit next to its accomplice: it gets a slot next to a given task's holder with
  probability about 1/(present eligible workers) per draw.
* **Grace.** A probationary lease holds its slot for `grace_factor` times the fastest time measured for the same
  work (coordinator.speed), at least `min_grace_ms`, or a quarter of the lease timeout while nothing has been
  measured, never more than the lease timeout.
* **Backups.** A worker past probation that asks for work, once the rest of its walk found nothing for it, may
  take a slot still held by a probationary lease that is older than the task's *backup time* (the fastest time
  measured for the same work, at most the grace; `min_grace_ms` while nothing was measured): speculative
  execution, as MapReduce and Spark do for stragglers. Identities that take leases and abandon them then delay a
  task by about one honest computation, not by a grace per identity; the backup slot is drawn like any replica
  slot, so a patient cheater cannot use it to sit beside its own Sybil. The price: while workers past probation
  are idle, a newcomer's slow result may come in after the task was validated without it (and is not paid).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlacementPolicy:
    """The constants of placement (documented in PROTOCOL.md section 12.1)."""

    start_capacity: int = 2
    max_capacity: int = 1024
    presence_ms: int = 30_000
    reserve_ms: int = 3_000
    max_draws: int = 3
    grace_factor: int = 4
    min_grace_ms: int = 1_000


def grown(capacity: int, policy: PlacementPolicy) -> int:
    """The capacity after a validated result."""
    return min(policy.max_capacity, max(1, capacity) * 2)


def shrunk(capacity: int) -> int:
    """The capacity after an error, an invalid result or an expired lease."""
    return max(1, capacity // 2)


def backup_ms(policy: PlacementPolicy, lease_timeout_ms: int, typical_ms: int | None) -> int:
    """How old a probationary lease must be before an idle worker past probation may back it up."""
    grace = grace_ms(policy, lease_timeout_ms, typical_ms)
    return min(grace, policy.min_grace_ms if typical_ms is None else max(1, typical_ms))


def grace_ms(policy: PlacementPolicy, lease_timeout_ms: int, typical_ms: int | None) -> int:
    """How long a probationary lease keeps its slot."""
    if typical_ms is None:
        return max(policy.min_grace_ms, lease_timeout_ms // 4)
    return min(lease_timeout_ms, max(policy.min_grace_ms, policy.grace_factor * typical_ms))
