"""Auto-bonding: how many of its credits a worker locks in its bond, and when. Pure: numbers in, a plan out.

Why a worker bonds: the coordinator gives a task to one trusted worker alone (single issue, PROTOCOL.md 12.5) only
while the worker's bond covers it: bond >= `bond_per_price` x price, and its exposure (the prices of its single
results not yet cleared by an audit) plus the price within the bond (12.6). A bond of at least `min_bond` also
makes the worker trusted after 3 agreements instead of 10. Without bonds nothing goes single and a network computes
every task about twice; with them about 1.2 times (benchmarks/RESULTS.md, section 6). Both numbers are the
coordinator's: it publishes them in GET /v1/info, and a coordinator that does not leaves auto-bonding idle.

The target: HEADROOM x `bond_per_price` x the highest price among the tasks this worker computed in the last
PRICE_WINDOW_MS, at least `min_bond` (no price seen yet: just `min_bond`, for the shorter road to trust) and at most
the owner's `max_bond`. A bond of exactly `bond_per_price` x price covers one single task at that price with nothing
to spare: every single result adds its price to the exposure, and only a passed audit (drawn with probability 0.1
per single result, then computed by another worker) clears it, so with HEADROOM 3 about 3 x `bond_per_price` single
results may wait for their audit before the worker drops back to replicated work. Measured on 4 trusted workers
running 300-task jobs at price 10 (benchmarks/RESULTS.md, section 6): 1.30 results per task at HEADROOM 2 (bond 400),
1.18 and 1.21 at 3 (600), 1.17 at 4 (800), 1.17-1.19 with 1000 bonded by hand, 2.02 with no bond. A `max_bond`
below `min_bond` means no auto-bond at all: a bond that small buys neither trust nor (at usual prices) single issue.

The step: bond what the balance allows towards the target, but in steps of at least `min_bond` credits (or what is
left to reach the target), so the first bond already reaches `min_bond` and the ledger gets a few entries, not one
per reward. Never more than the balance. It never unbonds: credits the owner takes out with `depin unbond` are
bonded again while the target stands; lower `max_bond` or turn auto-bonding off to keep them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

HEADROOM = 3  # target = HEADROOM x bond_per_price x price: room for single results awaiting their audit
PRICE_WINDOW_MS = 24 * 3_600_000  # the prices the target follows: those of the last day's tasks
_BUCKET_MS = 3_600_000  # prices are remembered per hour: at most 25 numbers, whatever the rate of tasks


@dataclass(frozen=True)
class Rules:
    """The coordinator's bond rules (PROTOCOL.md 12.6), as GET /v1/info gives them."""

    min_bond: int  # a bond of at least this shortens the road to trust
    bond_per_price: int  # a single task at price p needs a bond of at least this x p

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> Rules | None:
        """The rules from a /v1/info answer; None if it does not give them (an older coordinator) or gives nonsense."""
        min_bond, per_price = info.get("min_bond"), info.get("bond_per_price")
        if not (_credits(min_bond) and _credits(per_price)):
            return None
        return cls(min_bond, per_price)


def _credits(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**53


@dataclass
class Prices:
    """The highest task price per hour over the last PRICE_WINDOW_MS; the clock is passed in."""

    hours: dict[int, int] = field(default_factory=dict)

    def note(self, now_ms: int, price: int) -> bool:
        """Remember a task's price; whether the highest price of the window rose."""
        before = self.highest(now_ms)
        hour = now_ms // _BUCKET_MS
        self.hours[hour] = max(self.hours.get(hour, 0), price)
        return self.highest(now_ms) > before

    def highest(self, now_ms: int) -> int:
        """The highest price noted within the window (0: none), forgetting older hours."""
        oldest = (now_ms - PRICE_WINDOW_MS) // _BUCKET_MS
        for hour in [h for h in self.hours if h < oldest]:
            del self.hours[hour]
        return max(self.hours.values(), default=0)


def target(rules: Rules, max_bond: int, price: int) -> int:
    """The bond to hold for tasks at `price` (0: none, when `max_bond` is below the coordinator's `min_bond`)."""
    if max_bond < rules.min_bond:
        return 0
    return min(max_bond, max(rules.min_bond, HEADROOM * rules.bond_per_price * price))


@dataclass(frozen=True)
class Plan:
    """What to do now: bond `amount` credits (0: nothing), towards `target`, and why, in words for the owner."""

    target: int
    amount: int
    note: str


def plan(rules: Rules, *, max_bond: int, price: int, bonded: int, balance: int) -> Plan:
    """How much to bond now, given the bond and the spendable balance the coordinator reports."""
    goal = target(rules, max_bond, price)
    if goal == 0:
        return Plan(0, 0, f"not bonding: max_bond {max_bond} is below the coordinator's min_bond {rules.min_bond}")
    missing = goal - bonded
    if missing <= 0:
        return Plan(goal, 0, "at its target")
    step = min(missing, rules.min_bond)
    amount = min(missing, balance)
    if amount < step:
        return Plan(goal, 0, f"waiting for {step} spendable credits to bond")
    return Plan(goal, amount, f"bonding {amount} credits")
