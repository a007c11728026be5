"""Audits and bonds: the rules that make cheating cost more than it earns. Pure; randomness passed in.

**Audits.** When a task is validated, the coordinator draws, with its secret randomness, whether to re-compute it
later: with probability `on_probation` if one of the agreeing workers was on probation, `single` if it was
validated by one trusted worker alone, and `replicated` otherwise. An audited task keeps its job open until the
audit is settled: its slot is drawn (coordinator.placement) among trusted workers that did not hold the task (any
worker past probation once `fallback_ms` passed without one). The audit result either agrees with the task's
output (a *clean audit* for every agreeing worker: their exposure is cleared) or disagrees, and then a second
audit decides: if the two auditors agree with each other, the original output was wrong: the task's output is
replaced by theirs, and every worker that agreed on the wrong output is slashed, banned, and every other result it
had a hand in since its last clean audit (in unfinished jobs) is audited too. If the second auditor agrees with the
original instead, the first auditor was wrong. `max_audits` audit results without a verdict leave the task marked
*disputed*.

**Bonds.** A worker may lock credits in its bond (ledger kind `bond`). A task goes out single to a trusted worker
only if its bond covers the task: `bonded >= bond_per_price x price` and its *exposure* (the prices of its single
results since its last clean audit) plus the price stays within the bond. With a bond a worker becomes trusted after
`TrustPolicy.bonded_trust_after` independent agreements instead of `trust_after`. A proven wrong result slashes the
whole bond to the harmed job's submitter. Unbonding is limited to what exceeds the exposure, and refused while one
of the worker's results is under audit.

**Why cheating does not pay** (docs/PROTOCOL.md 12.6, "The economics of cheating"): every single result is paid when
it is validated and audited with probability a = `single`, whatever it holds. A worker that slips k wrong single
results in among its honest ones is paid for each of them until the first one an audit catches, and then loses its
bond B: E[net] = (1 - (1 - a)^k) (p / a - B) for price p, which is negative for every k when B > p / a. The
default `bond_per_price` = 2 / a makes it at most -(1 - (1 - a)^k) p / a: cheating loses about p / a (ten tasks'
pay at a = 0.1) once it is caught, and it is caught with probability 1 - (1 - a)^k.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AuditPolicy:
    """The constants of audits and bonds (documented in PROTOCOL.md section 12.6)."""

    single: float = 0.1  # audit probability of a result validated alone
    replicated: float = 0.02  # ... of a task validated by agreeing workers past probation
    on_probation: float = 1.0  # ... of a task whose agreeing workers include one on probation
    fallback_ms: int = 10_000  # how long an audit waits for a trusted worker before any seasoned one may take it
    give_up_ms: int = 120_000  # how long an audit waits at all: then it is skipped, and the job says so
    max_audits: int = 3  # audit results a task takes before it is left disputed
    bond_required: bool = True  # single issue needs a bond covering the task (off only in tests of other rules)

    @property
    def bond_per_price(self) -> int:
        """Bond needed per credit of a single task's price: 2 / single, so that B >= 2 p / a > p / a."""
        return math.ceil(2 / self.single)


def audit_probability(policy: AuditPolicy, *, single: bool, probation: bool) -> float:
    """How likely a just-validated task is to be audited."""
    if probation:
        return policy.on_probation
    return policy.single if single else policy.replicated


def drawn(probability: float, rand: Callable[[], float]) -> bool:
    """Whether a draw with this probability comes up (rand in [0, 1)); certain outcomes cost no draw."""
    if probability <= 0.0 or probability >= 1.0:
        return probability >= 1.0
    return rand() < probability


def bond_covers(policy: AuditPolicy, *, bonded: int, exposure: int, price: int) -> bool:
    """Whether a worker's bond lets it take a task of this price single."""
    if not policy.bond_required:
        return True
    return bonded >= policy.bond_per_price * price and exposure + price <= bonded


def expected_gain(*, price: int, bond: int, audit: float, wrong: int) -> float:
    """A cheater's expected net credits from slipping `wrong` wrong single results in: paid for each until the first
    one audited, then its bond slashed."""
    caught = 1 - (1 - audit) ** wrong
    return caught * (price / audit - bond)
