"""Reputation: who is trusted for which kernel, who looks suspicious, who is banned. Pure, clock passed in.

Trust is earned per (worker, kernel version), BOINC-style: after `trust_after` consecutive valid results that were
cross-checked (agreed with another worker, or passed the kernel's own check), a worker's tasks for that kernel may
go out single, still spot-checked with probability max(spot_floor, 1 / consecutive_valid). Any invalid result
resets that count to zero. Two anomaly signals are raised before they can cost anything: a result returned faster
than `fast_factor` times the fastest the worker (or, while it has little history, anyone) was ever measured doing
that kernel's declared work, and a disagreement rate far above the population's. Either suspends the worker's
trust. A worker with `ban_min_invalid` invalid results, making up more than `ban_ratio` of its judged results, is
banned: it is refused (403) from then on and its pending results are thrown out.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrustPolicy:
    """The constants of the trust rules (documented in PROTOCOL.md, "Trust")."""

    trust_after: int = 10
    spot_floor: float = 0.05
    fast_factor: float = 8.0
    speed_samples: int = 5
    ban_min_invalid: int = 3
    ban_ratio: float = 0.2
    outlier_min_judged: int = 5
    outlier_floor: float = 0.2
    outlier_factor: float = 3.0
    online_ms: int = 60_000


@dataclass
class Trust:
    """One worker's record for one kernel version."""

    worker_id: str
    kernel: str  # name@version
    consecutive_valid: int = 0
    valid: int = 0
    invalid: int = 0
    max_speed: float = 0.0  # declared work units per millisecond, best seen on a validated result
    samples: int = 0


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
    # Derived from `records`, kept up to date as verdicts arrive (see "outliers" below).
    _by_worker: dict[str, list[int]] | None = field(default=None, repr=False)
    _index: dict[str, list[Trust]] | None = field(default=None, repr=False)
    _earned: set[tuple[str, str]] | None = field(default=None, repr=False)
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
                            if r.consecutive_valid >= self.policy.trust_after}
        return self._earned

    def _streak_moved(self, r: Trust) -> None:
        if self._earned is not None:
            if r.consecutive_valid >= self.policy.trust_after:
                self._earned.add((r.worker_id, r.kernel))
            else:
                self._earned.discard((r.worker_id, r.kernel))

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
        return r is not None and r.consecutive_valid >= self.policy.trust_after

    def spot_check_probability(self, worker_id: str, kernel: str) -> float:
        """Chance that a trusted worker's task is replicated anyway."""
        r = self.records.get((worker_id, kernel))
        streak = r.consecutive_valid if r is not None else 0
        return 1.0 if streak <= 0 else max(self.policy.spot_floor, 1.0 / streak)

    def too_fast(self, worker_id: str, kernel: str, speed: float) -> bool:
        """Whether `speed` (work units per ms) is implausible for this worker on this kernel."""
        own = self.records.get((worker_id, kernel))
        if own is not None and own.samples >= self.policy.speed_samples:
            reference = own.max_speed
        else:
            known = [r for r in self.records.values() if r.kernel == kernel and r.samples > 0]
            if sum(r.samples for r in known) < self.policy.speed_samples:
                return False  # nobody measured yet: no basis for a judgment
            reference = max(r.max_speed for r in known)
        return speed > self.policy.fast_factor * reference

    def banned(self, worker_id: str) -> str | None:
        """The ban reason, if banned."""
        s = self.standing.get(worker_id)
        return None if s is None else s.banned

    # ---- events ------------------------------------------------------------------------------------------

    def note_fast(self, worker_id: str, kernel: str) -> Trust:
        """A result was flagged as implausibly fast: counted, and the kernel's trust must be earned again."""
        self.standing_of(worker_id).too_fast += 1
        r = self.record(worker_id, kernel)
        r.consecutive_valid = 0
        self._streak_moved(r)
        return r

    def judged_valid(self, worker_id: str, kernel: str, *, cross_checked: bool, speed: float | None) -> Trust:
        """A result of this worker was validated; only cross-checked ones build trust."""
        r = self.record(worker_id, kernel)
        r.valid += 1
        if cross_checked:
            r.consecutive_valid += 1
            self._streak_moved(r)
        if speed is not None:
            r.max_speed = max(r.max_speed, speed)
            r.samples += 1
        self._count(worker_id, valid=1)
        return r

    def judged_invalid(self, worker_id: str, kernel: str) -> tuple[Trust, str | None]:
        """A result of this worker was invalid; returns its record and a ban reason if this bans it."""
        r = self.record(worker_id, kernel)
        r.invalid += 1
        r.consecutive_valid = 0
        self._streak_moved(r)
        valid, invalid = self._count(worker_id, invalid=1)
        s = self.standing_of(worker_id)
        if s.banned is None and invalid >= self.policy.ban_min_invalid and invalid > self.policy.ban_ratio * (
                valid + invalid):
            s.banned = f"{invalid} invalid results out of {valid + invalid}"
            return r, s.banned
        return r, None

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
