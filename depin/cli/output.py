"""How the CLI prints: JSON for machines (--json), aligned text for people, logs on stderr for daemons."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any


def emit(as_json: bool, data: Any, text: str) -> None:
    """Print `data` as JSON or `text` as is."""
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """A plain aligned text table; columns listed in `right` are right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def when(ms: int | None) -> str:
    """A unix-ms time as local 'YYYY-MM-DD HH:MM:SS' ('-' for None)."""
    return _when(ms)


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def job_text(job: dict[str, Any]) -> str:
    """A job's status for people."""
    lines = [
        f"job        {job['job_id']}",
        f"kernel     {job['kernel']}@{job['kernel_version']}",
        f"state      {job['state']}",
        f"progress   {job['tasks_validated']}/{job['tasks_total']} tasks validated",
        f"replicas   {job['replicas']} (at most {job['max_results']} results per task)",
        f"price      {job['price']} credits per validated result",
        f"created    {_when(job['created_ms'])}",
    ]
    if job.get("finished_ms"):
        lines.append(f"finished   {_when(job['finished_ms'])}")
    if job.get("error"):
        lines.append(f"error      {job['error']}")
    return "\n".join(lines)


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    """All jobs, one line each."""
    if not jobs:
        return "no jobs"
    return table(
        ["JOB", "KERNEL", "STATE", "VALIDATED", "CREATED"],
        [[j["job_id"], f"{j['kernel']}@{j['kernel_version']}", j["state"],
          f"{j['tasks_validated']}/{j['tasks_total']}", _when(j["created_ms"])] for j in jobs],
        right=(3,),
    )


def earnings_table(workers: list[dict[str, Any]]) -> str:
    """Credits per worker."""
    if not workers:
        return "no workers yet"
    return table(
        ["WORKER", "BALANCE", "VALIDATED", "REJECTED", "ONLINE", "TRUSTED FOR", "FLAGS"],
        [[w["worker_id"], w["balance"], w["tasks_validated"], w["tasks_rejected"], "yes" if w["online"] else "no",
          ", ".join(w.get("trusted") or []) or "-", _flags(w)] for w in workers],
        right=(1, 2, 3),
    )


def _flags(w: dict[str, Any]) -> str:
    flags = [f"banned ({w['banned']})" if w.get("banned") else "", "disagrees often" if w.get("outlier") else "",
             f"{w['too_fast']} too fast" if w.get("too_fast") else "", "on probation" if w.get("probation") else "",
             f"bond {w['bond']} (exposure {w.get('exposure', 0)})" if w.get("bond") else "",
             f"{w['audits_failed']} failed audits" if w.get("audits_failed") else "",
             f"{w['disputed']} out-voted" if w.get("disputed") else ""]
    return "; ".join(f for f in flags if f) or "-"


def kernels_text(rows: list[dict[str, Any]]) -> str:
    """Kernels and their parameters."""
    out = []
    for k in rows:
        out.append(f"{k['name']}@{k['version']}: {k['doc']}")
        for p in k["params"]:
            default = "required" if p["default"] is None else f"default {p['default']}"
            out.append(f"  -p {p['name']}=<{p['type']}>  {p['doc']} ({default}; {p['min']}..{p['max']})")
    return "\n".join(out)


def setup_logging() -> None:
    """Daemon logs: one line per event on stderr."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
