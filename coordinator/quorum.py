"""Quorum: given the results a task has, decide whether it is validated, failed, or needs more.

Results are grouped by agreement (equal digests for exact kernels, the kernel's compare otherwise). The first
group to reach `quorum` members wins and its first result is canonical. A task that has `max_results` results
without such a group, or can no longer reach one within that bound, fails, and nobody is judged (we cannot
tell who was wrong). Otherwise it asks for exactly as
many more results as the largest group still lacks: a disagreement leases one more replica instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """One result as quorum sees it; `output` is None for a malformed result, which agrees with nothing."""

    key: str  # lease id
    digest: bytes
    output: np.ndarray | None


@dataclass(frozen=True)
class Decision:
    """`state` is pending, validated or failed; `valid` and `invalid` are lease ids."""

    state: str
    more: int = 0
    canonical: str | None = None
    valid: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    reason: str = ""


def decide(
    results: Sequence[Candidate],
    *,
    quorum: int,
    max_results: int,
    exact: bool,
    compare: Callable[[np.ndarray, np.ndarray], bool],
) -> Decision:
    """The decision for a task with these results, in arrival order."""
    groups: list[list[Candidate]] = []
    for r in results:
        if r.output is None:
            continue
        for g in groups:
            rep = g[0]
            if rep.digest == r.digest or (not exact and rep.output is not None and compare(rep.output, r.output)):
                g.append(r)
                break
        else:
            groups.append([r])
    best = max(groups, key=len, default=[])
    if len(best) >= quorum:
        winners = {r.key for r in best}
        return Decision(
            state="validated",
            canonical=best[0].key,
            valid=tuple(r.key for r in results if r.key in winners),
            invalid=tuple(r.key for r in results if r.key not in winners),
        )
    lacking = quorum - len(best)
    room = max_results - len(results)
    if room < lacking:
        return Decision(
            state="failed",
            reason=f"no {quorum} agreeing results among {len(results)} (limit {max_results})",
        )
    return Decision(state="pending", more=lacking)
