"""Quorum: given the results a task has, decide whether it is validated, failed, or needs more.

A result a kernel can check on its own (`verified` True) validates its task at once. A result that is malformed
or that the kernel's check refutes (`verified` False) is an *error*; more than `max_errors` of them fail the task.
An error that does not `count` (from an identity on probation, or banned) is left out of everything: free
identities cannot fail a task.
The remaining results are grouped by agreement (equal digests for exact kernels, the kernel's compare otherwise).
The first group with `quorum` members wins, provided that, when `need_trusted` is set, it includes a trusted
worker's result: a swarm of fresh identities cannot validate each other while a trusted worker could be asked. When
two groups have trusted members (trusted workers disagree), members on probation do not count toward a quorum: a
trusted cheater cannot have its own fresh Sybil out-vote an honest trusted worker.
The winner's first result is canonical, its members are valid, everyone else is invalid. A task that has
`max_results` results without such a group, or can no longer reach one within that bound, fails, and nobody is
judged (we cannot tell who was wrong). Otherwise it asks for exactly as many more results as the largest group
still lacks (at least one, from a trusted worker, when only trust is missing): a disagreement leases one more
replica instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """One result as quorum sees it; `output` is None for a malformed result, which agrees with nothing."""

    key: str  # lease id
    digest: bytes
    output: np.ndarray | None
    verified: bool | None = None  # the kernel's own check: True right, False wrong, None cannot tell
    trusted: bool = False  # from a worker trusted for this kernel, and not flagged as implausibly fast
    counts: bool = True  # False for an error of an identity on probation or banned: it is left out altogether
    probation: bool = False  # from a worker still on probation: it never decides between trusted workers

    @property
    def error(self) -> bool:
        """Malformed, or refuted by the kernel's check."""
        return self.output is None or self.verified is False


@dataclass(frozen=True)
class Decision:
    """`state` is pending, validated or failed; `valid` and `invalid` are lease ids."""

    state: str
    more: int = 0
    needs_trusted: bool = False  # pending only: the next result should come from a trusted worker
    canonical: str | None = None
    valid: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    reason: str = ""
    # Pending only, facts for the caller rather than part of the decision: how many groups of agreeing results there
    # are (2 or more: a disagreement), and whether one has a trusted member.
    groups: int = field(default=0, compare=False)
    trusted_group: bool = field(default=False, compare=False)


def decide(
    results: Sequence[Candidate],
    *,
    quorum: int,
    max_results: int,
    max_errors: int | None = None,
    exact: bool,
    compare: Callable[[np.ndarray, np.ndarray], bool],
    need_trusted: bool = False,
) -> Decision:
    """The decision for a task with these results, in arrival order."""
    results = [r for r in results if r.counts]
    verified = [r for r in results if r.verified is True]
    if verified:
        winners = {r.key for r in verified}
        return Decision(
            state="validated", canonical=verified[0].key,
            valid=tuple(r.key for r in results if r.key in winners),
            invalid=tuple(r.key for r in results if r.key not in winners),
        )
    errors = sum(1 for r in results if r.error)
    if max_errors is not None and errors > max_errors:
        return Decision(state="failed", reason=f"{errors} error results (limit {max_errors})")
    groups: list[list[Candidate]] = []
    for r in results:
        if r.error:
            continue
        for g in groups:
            rep = g[0]
            if rep.digest == r.digest or (not exact and rep.output is not None and r.output is not None
                                          and compare(rep.output, r.output)):
                g.append(r)
                break
        else:
            groups.append([r])
    # Trusted workers that disagree are not settled by identities on probation: then only the members past
    # probation count toward a group's quorum (one more of them is asked for, as for any disagreement).
    contested = sum(1 for g in groups if any(r.trusted for r in g)) >= 2

    def size(g: list[Candidate]) -> int:
        return sum(1 for r in g if not (contested and r.probation))

    for g in groups:
        if size(g) >= quorum and (not need_trusted or any(r.trusted for r in g)):
            winners = {r.key for r in g}
            return Decision(
                state="validated", canonical=g[0].key,
                valid=tuple(r.key for r in results if r.key in winners),
                invalid=tuple(r.key for r in results if r.key not in winners),
            )
    # The group closest to qualifying decides what to ask for: a group with a trusted member (or any group, when
    # no trust is needed) lacks quorum - size results of anyone; an untrusted group lacks at least one, and its
    # last missing result must come from a trusted worker.
    def lacks(g: list[Candidate]) -> tuple[int, bool]:
        short = quorum - size(g)
        if need_trusted and not any(r.trusted for r in g):
            return max(short, 1), short <= 1
        return short, False

    lacking, needs_trusted = min((lacks(g) for g in groups), default=(quorum, False), key=lambda x: (x[0], x[1]))
    room = max_results - len(results)
    if room < lacking:
        if needs_trusted and quorum - max((size(g) for g in groups), default=0) <= 0:
            reason = (f"{max(size(g) for g in groups)} agreeing results but none from a trusted worker, and no"
                      f" room for one (limit {max_results})")
        else:
            reason = f"no {quorum} agreeing results among {len(results)} (limit {max_results})"
        return Decision(state="failed", reason=reason)
    return Decision(state="pending", more=lacking, needs_trusted=needs_trusted, groups=len(groups),
                    trusted_group=any(r.trusted for g in groups for r in g))
