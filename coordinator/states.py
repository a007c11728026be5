"""Job, task and lease states, and the only moves between them.

Each table maps a state to the states it may move to; `move` raises StateError on anything else. The names
here are the names the status API and docs/PROTOCOL.md use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from depin.errors import StateError

JOB: Mapping[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled"}),
    "running": frozenset({"done", "failed", "cancelled"}),
    "done": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

TASK: Mapping[str, frozenset[str]] = {
    "pending": frozenset({"validated", "failed", "cancelled"}),
    "validated": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

# A lease is active until its result arrives (returned), it times out (expired), the worker gives it back
# (released), or its task ends first (cancelled). A late result on an expired lease still counts.
LEASE: Mapping[str, frozenset[str]] = {
    "active": frozenset({"returned", "expired", "released", "cancelled"}),
    "expired": frozenset({"returned", "cancelled"}),
    "returned": frozenset(),
    "released": frozenset(),
    "cancelled": frozenset(),
}

# A result is judged once its task is decided; a valid result that an audit proves wrong is overturned.
RESULT: Mapping[str, frozenset[str]] = {
    "pending": frozenset({"valid", "invalid", "void"}),
    "valid": frozenset({"overturned"}),
    "overturned": frozenset(),
    "invalid": frozenset(),
    "void": frozenset(),
}

FINISHED_JOB = frozenset(s for s, nxt in JOB.items() if not nxt)

# A validated task's audit (coordinator.auditing): none drawn (None), then due -> passed, or due -> disputed (an
# auditor disagreed) -> passed (the original stood) | corrected (the auditors agreed on another output) |
# unresolved (max_audits results, no verdict); due or disputed -> skipped when no auditor came in time.
AUDIT: Mapping[str | None, frozenset[str]] = {
    None: frozenset({"due"}),
    "due": frozenset({"passed", "disputed", "skipped"}),
    "disputed": frozenset({"passed", "corrected", "unresolved", "skipped"}),
    "passed": frozenset(),
    "corrected": frozenset(),
    "unresolved": frozenset(),
    "skipped": frozenset(),
}
OPEN_AUDIT = frozenset({"due", "disputed"})


def move(table: Mapping[Any, frozenset[str]], current: Any, new: str) -> str:
    """`new`, if the table allows current -> new; StateError otherwise."""
    if new not in table.get(current, frozenset()):
        raise StateError(f"illegal state change {current} -> {new}")
    return new
