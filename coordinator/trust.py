"""Reputation: who is trusted for which kernel, who looks suspicious, who is banned. Pure, clock passed in.

Trust is earned per (worker, kernel version), BOINC-style, but only from *independent* evidence: a valid result
adds to the worker's streak (`consecutive_valid`) if the kernel's own check confirmed it, or if it agreed with at
least one partner with whom it has agreed fewer than `partner_cap` times in this streak. So a pair of identities
can lift each other by at most `partner_cap` each, and a streak of `trust_after` needs several distinct partners;
the coordinator, not the workers, picks who sits next to whom (coordinator.placement). The streak also counts the
credits its results were priced at (`earned`): trust earned on cheap tasks does not let a worker go unchecked on a
task priced above its streak's average. After `trust_after` such results a worker's tasks for that kernel may go
out single (spot-checked with probability max(spot_floor, 1 / streak)). An invalid result that lost to a verified
or trusted outcome resets the streak and counts toward a ban; one that merely lost a vote of untrusted identities
is *disputed*: it is not paid but costs the worker nothing (a mob of fresh identities cannot ban anyone). A
disagreement rate far above the population's suspends trust (outlier). A worker with `ban_min_invalid` invalid
results, making up more than `ban_ratio` of its judged results, is banned: refused (403) from then on. The
concentration of a worker's agreements on one partner is its collusion score (shown to operators).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrustPolicy:
    """The constants of the trust rules (documented in PROTOCOL.md, "Trust")."""

    trust_after: int = 10
    spot_floor: float = 0.05
    fast_factor: float = 8.0
    speed_samples: int = 3
    speed_floor_ms: int = 1_000  # work the other workers did faster than this is never judged too fast (speed.py)
    ban_min_invalid: int = 3
    ban_ratio: float = 0.2
    outlier_min_judged: int = 5
    outlier_floor: float = 0.2
    outlier_factor: float = 3.0
    online_ms: int = 60_000
    bonded_trust_after: int = 3  # the streak that makes a worker with at least min_bond in its bond trusted
    min_bond: int = 100  # credits of bond that shorten the streak (coordinator.auditing)
    partner_cap: int = 5  # agreements with one partner that count toward one streak (trust_after / 2: two partners)
    probation_valid: int = 3  # validated results after which a worker is no longer on probation
    trusted_wait_ms: int = 10_000  # how long a task waits for a trusted worker before a larger quorum stands in
    trusted_backlog: int = 2  # lease requests' worth of tasks per available trusted worker that may wait for one


@dataclass
class Trust:
    """One worker's record for one kernel version."""

    worker_id: str
    kernel: str  # name@version
    consecutive_valid: int = 0
    valid: int = 0
    invalid: int = 0
    disputed: int = 0  # out-voted by untrusted identities only: not paid, not held against the worker
    earned: int = 0  # credits (prices) of the results that built the current streak
    partners: dict[str, int] = field(default_factory=dict)  # the current streak's partners -> agreements counted


@dataclass
class Standing:
    """One worker's flags across kernels."""

    too_fast: int = 0
    banned: str | None = None
    outlier: bool = False


@dataclass
class TrustBook:
    """Every Trust record and every worker's standing, with the rules that move them."""

    policy: TrustPolicy = field(default_factory=TrustPolicy)
    records: dict[tuple[str, str], Trust] = field(default_factory=dict)
    standing: dict[str, Standing] = field(default_factory=dict)
    bonded: dict[str, int] = field(default_factory=dict)  # worker -> credits in its bond (kept by the scheduler)
    # Derived from `records`, kept up to date as verdicts arrive (see "outliers" below).
    _by_worker: dict[str, list[int]] | None = field(default=None, repr=False)
    _index: dict[str, list[Trust]] | None = field(default=None, repr=False)
    _earned: set[tuple[str, str]] | None = field(default=None, repr=False)
    _earned_by_kernel: dict[str, set[str]] = field(default_factory=dict, repr=False)  # the same, by kernel
    _verdicts: int = field(default=0, repr=False)
    _median: float | None = field(default=None, repr=False)

    def record(self, worker_id: str, kernel: str) -> Trust:
        """The record of (worker, kernel), created empty on first use."""
        key = (worker_id, kernel)
        if key not in self.records:
            self.records[key] = Trust(worker_id, kernel)
            if self._index is not None:
                self._index.setdefault(worker_id, []).append(self.records[key])
        return self.records[key]

    def earned(self) -> set[tuple[str, str]]:
        """(worker, kernel) pairs whose streak has reached trust_after (standing not checked), kept up to date as
        streaks move, so the scheduler finds trusted workers without scanning every record."""
        if self._earned is None:
            self._earned = {(r.worker_id, r.kernel) for r in self.records.values()
                            if r.consecutive_valid >= self.threshold(r.worker_id)}
            self._earned_by_kernel = {}
            for worker_id, kernel in self._earned:
                self._earned_by_kernel.setdefault(kernel, set()).add(worker_id)
        return self._earned

    def earned_for(self, kernel: str) -> set[str]:
        """The workers whose streak for this kernel has reached their threshold (standing not checked)."""
        self.earned()
        return self._earned_by_kernel.get(kernel, set())

    def threshold(self, worker_id: str) -> int:
        """The streak that makes this worker trusted: shorter for a worker with a bond at stake."""
        bonded = self.bonded.get(worker_id, 0) >= self.policy.min_bond
        return self.policy.bonded_trust_after if bonded else self.policy.trust_after

    def set_bond(self, worker_id: str, credits: int) -> None:
        """The worker's bond is now `credits`: its trust threshold may have moved."""
        self.bonded[worker_id] = credits
        for r in self.records_of(worker_id):
            self._streak_moved(r)

    def _streak_moved(self, r: Trust) -> None:
        if self._earned is not None:
            if r.consecutive_valid >= self.threshold(r.worker_id):
                self._earned.add((r.worker_id, r.kernel))
                self._earned_by_kernel.setdefault(r.kernel, set()).add(r.worker_id)
            else:
                self._earned.discard((r.worker_id, r.kernel))
                self._earned_by_kernel.get(r.kernel, set()).discard(r.worker_id)

    def records_of(self, worker_id: str) -> list[Trust]:
        """This worker's records, one per kernel it has results for (indexed: no scan of every record)."""
        if self._index is None:
            index: dict[str, list[Trust]] = {}
            for r in self.records.values():
                index.setdefault(r.worker_id, []).append(r)
            self._index = index
        return self._index.get(worker_id, [])

    def standing_of(self, worker_id: str) -> Standing:
        """The worker's flags, created clean on first use."""
        return self.standing.setdefault(worker_id, Standing())

    # ---- questions ---------------------------------------------------------------------------------------

    def trusted(self, worker_id: str, kernel: str) -> bool:
        """Earned trust for this kernel, and nothing suspends it."""
        s = self.standing.get(worker_id)
        if s is not None and (s.banned or s.outlier):
            return False
        r = self.records.get((worker_id, kernel))
        return r is not None and r.consecutive_valid >= self.threshold(worker_id)

    def spot_check_probability(self, worker_id: str, kernel: str) -> float:
        """Chance that a trusted worker's task is replicated anyway."""
        r = self.records.get((worker_id, kernel))
        streak = r.consecutive_valid if r is not None else 0
        return 1.0 if streak <= 0 else max(self.policy.spot_floor, 1.0 / streak)

    def single_ok(self, worker_id: str, kernel: str, price: int) -> bool:
        """Whether this worker's trust covers a task at `price` alone: trusted, and the price is at most the
        average price of the results that built its streak (trust from cheap tasks does not cover dear ones)."""
        r = self.records.get((worker_id, kernel))
        return (r is not None and self.trusted(worker_id, kernel)
                and price * max(1, r.consecutive_valid) <= r.earned)

    def collusion_score(self, worker_id: str) -> float:
        """The largest share of this worker's counted agreements (current streaks, all kernels) that came from one
        partner: 1.0 when every agreement was with the same identity, about 1/n among n partners drawn at random."""
        counts: dict[str, int] = {}
        for r in self.records_of(worker_id):
            for partner, n in r.partners.items():
                counts[partner] = counts.get(partner, 0) + n
        total = sum(counts.values())
        return 0.0 if total == 0 else max(counts.values()) / total

    def banned(self, worker_id: str) -> str | None:
        """The ban reason, if banned."""
        s = self.standing.get(worker_id)
        return None if s is None else s.banned

    # ---- events ------------------------------------------------------------------------------------------

    def note_fast(self, worker_id: str, kernel: str) -> Trust:
        """A result was flagged as implausibly fast: counted, and the kernel's trust must be earned again."""
        self.standing_of(worker_id).too_fast += 1
        r = self.record(worker_id, kernel)
        self._reset(r)
        return r

    def judged_valid(self, worker_id: str, kernel: str, *, partners: Iterable[str] = (), verified: bool = False,
                     price: int = 1) -> Trust:
        """A result of this worker was validated, alongside the results of `partners` (the other workers of the
        winning group) or by the kernel's own check (`verified`). It builds trust if it is independent evidence:
        verified, or agreeing with a partner that has not already lifted this streak `partner_cap` times."""
        r = self.record(worker_id, kernel)
        r.valid += 1
        fresh = [p for p in partners if r.partners.get(p, 0) < self.policy.partner_cap]
        if verified or fresh:
            r.consecutive_valid += 1
            r.earned += price
            self._streak_moved(r)
        for p in fresh:
            r.partners[p] = r.partners.get(p, 0) + 1
        self._count(worker_id, valid=1)
        return r

    def judged_disputed(self, worker_id: str, kernel: str) -> Trust:
        """A result of this worker lost a vote in which no trusted or verified result took part: it is not paid,
        but nothing is held against the worker (it may have been the one honest result among colluders)."""
        r = self.record(worker_id, kernel)
        r.disputed += 1
        return r

    def judged_invalid(self, worker_id: str, kernel: str) -> tuple[Trust, str | None]:
        """A result of this worker was invalid; returns its record and a ban reason if this bans it."""
        r = self.record(worker_id, kernel)
        r.invalid += 1
        self._reset(r)
        valid, invalid = self._count(worker_id, invalid=1)
        s = self.standing_of(worker_id)
        if s.banned is None and invalid >= self.policy.ban_min_invalid and invalid > self.policy.ban_ratio * (
                valid + invalid):
            s.banned = f"{invalid} invalid results out of {valid + invalid}"
            return r, s.banned
        return r, None

    def _reset(self, r: Trust) -> None:
        r.consecutive_valid, r.earned = 0, 0
        r.partners.clear()
        self._streak_moved(r)

    # ---- outliers ----------------------------------------------------------------------------------------
    # Per-worker totals are kept as verdicts arrive, and the median disagreement rate is recomputed every
    # MEDIAN_EVERY verdicts: a verdict costs O(1) amortised over the workers, however many identities exist.

    MEDIAN_EVERY = 64

    def _count(self, worker_id: str, *, valid: int = 0, invalid: int = 0) -> tuple[int, int]:
        totals = self._totals()
        t = totals.setdefault(worker_id, [0, 0])
        t[0] += valid
        t[1] += invalid
        self._verdicts += 1
        if self._verdicts % self.MEDIAN_EVERY == 0 or self._median is None:
            self.refresh_outliers()
        else:
            self._flag(worker_id, t)
        return t[0], t[1]

    def _totals(self) -> dict[str, list[int]]:
        if self._by_worker is None:
            by_worker: dict[str, list[int]] = {}
            for r in self.records.values():
                t = by_worker.setdefault(r.worker_id, [0, 0])
                t[0] += r.valid
                t[1] += r.invalid
            self._by_worker = by_worker
        return self._by_worker

    def _flag(self, worker_id: str, t: list[int]) -> None:
        judged = t[0] + t[1]
        if judged >= self.policy.outlier_min_judged:
            bar = max(self.policy.outlier_floor, self.policy.outlier_factor * (self._median or 0.0))
            self.standing_of(worker_id).outlier = t[1] / judged > bar

    def refresh_outliers(self) -> None:
        """Recompute the median disagreement rate and every worker's outlier flag (after a restore, and
        every MEDIAN_EVERY verdicts)."""
        self._by_worker = self._index = None  # rebuilt from the records, which are the truth
        self._earned = None
        totals = self._totals()
        rates = [inv / (v + inv) for v, inv in totals.values() if v + inv >= self.policy.outlier_min_judged]
        self._median = statistics.median(rates) if rates else 0.0
        for worker_id, t in totals.items():
            self._flag(worker_id, t)
