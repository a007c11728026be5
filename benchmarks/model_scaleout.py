"""Back-of-envelope model of 10^5 workers on the scale-out design (docs/SCALING.md, section 3).

    .venv/bin/python benchmarks/bench_scaleout.py --json /tmp/scaleout.json
    .venv/bin/python benchmarks/model_scaleout.py /tmp/scaleout.json

Arithmetic, not a simulation: the per-operation costs measured by bench_scaleout.py (PostgreSQL CPU, client CPU
and WAL per lease, per validation and per sequenced entry) times the operation rates that W workers produce at a
task duration d, a lease batch b and rho results per validated task. Every input that is not measured by
bench_scaleout.py is a named constant below, with where it comes from. Outputs are estimates.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from typing import Any

W = 100_000
AUDIT_S = 30.0            # a worker's ledger audit: checkpoint + consistency proof + credits (LEDGER.md 11.1)
AUDIT_REQUESTS = 3
LONG_POLL_S = 30.0        # the longest wait_ms (PROTOCOL.md 7.2): one request per 30 s per idle worker
IDLE_KIB = 16.0           # coordinator memory per idle long-polling worker (issue 10, measured at 10,000)
COORD_US = 100.0          # coordinator CPU per result besides the database driver: ~5,000 validated tasks/s (10^4
                          # results/s) on one core with 8 simulated identities at --batch 256 (issue 10); it
                          # includes SQLite's work, so it is an upper bound here
CORE_UTIL = 0.5           # plan each process at half a core, for bursts
GROUP_MS = 2.0            # coordinator-side group commit: one PostgreSQL transaction per coordinator per 2 ms
ROWS_PER_RESULT = 10      # lease row, offer row, result row, trust row, posting in and out, ledger row, ~2 Merkle
                          # nodes, and the worker row once per request (counted separately, below)

# (task seconds d, tasks per lease request b, results per validated task rho, what it stands for)
SCENARIOS = [
    (1.0, 1, 2.0, "1 s tasks, replicas 2"),
    (1.0, 4, 2.0, "1 s tasks, batch 4, replicas 2"),
    (10.0, 1, 2.0, "10 s tasks, replicas 2"),
    (60.0, 1, 2.0, "60 s tasks, replicas 2"),
    (1.0, 4, 1.15, "1 s tasks, batch 4, mostly trusted (single + 5% spot checks + 10% audits)"),
]


def per_op(figures: dict[str, Any], prefix: str) -> dict[str, float]:
    """Each figure's median over the rows whose key starts with prefix (every N): costs per operation."""
    rows = [v for k, v in figures.items() if k.startswith(prefix)]
    if not rows:
        raise SystemExit(f"no figure {prefix!r} in the JSON: run bench_scaleout.py with its defaults")
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figures", help="the --json output of bench_scaleout.py")
    fig = json.load(open(ap.parse_args().figures))
    lease = per_op(fig["leasing"], "pg k=16 random task N=")
    lease1 = per_op(fig["leasing"], "pg k=1 random task N=")
    prod = per_op(fig["ledger"], "pg sequencer v=16 N=")
    kept_up = fig["ledger"]["pg sequencer v=16 N=1"]  # WAL is machine-wide: take it where the sequencer kept up
    seq = fig["ledger"]["sequencer alone fixed"]

    print("Inputs measured by bench_scaleout.py (medians over N = 1..8 on that machine):\n")
    print("| operation | PG CPU | client CPU | WAL |")
    print("|---|---:|---:|---:|")
    print(f"| lease, 16 per transaction | {lease['pg_us']:.0f} µs | {lease['client_us']:.0f} µs |"
          f" {lease['wal_b']:.0f} B |")
    print(f"| lease, 1 per transaction | {lease1['pg_us']:.0f} µs | {lease1['client_us']:.0f} µs |"
          f" {lease1['wal_b']:.0f} B |")
    print(f"| validation (2 results, 1 task, 2 postings), 16 per transaction | {prod['pg_us']:.0f} µs |"
          f" {prod['client_us']:.0f} µs | {kept_up['wal_b']:.0f} B, its 2 entries included (N = 1, backlog at end"
          f" {kept_up['backlog']:.0f}) |")
    print(f"| sequenced entry (fixed-layout hash) | {seq['pg_us']:.1f} µs | {seq['client_us']:.1f} µs |"
          f" {seq['wal_b']:.0f} B |")
    print(f"\nOne sequencer: {seq['entries_s']:,.0f} entries/s measured with PostgreSQL on that machine; its serial"
          f" part (chain + Merkle) {seq['chain_us']:.1f} µs per entry, {1e6 / seq['chain_us']:,.0f}/s.\n")

    print(f"Estimates for W = {W:,} workers, all busy:\n")
    print("| scenario | results/s | validated tasks/s | worker requests/s | coordinator processes |"
          " PG cores (group commit) | PG cores (1 lease per transaction) | WAL | DB row writes per validated task |"
          " ledger entries/s | vs one sequencer as measured | vs its serial part |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d, b, rho, label in SCENARIOS:
        results = W / d
        validated = results / rho
        requests = W * (2 / (b * d) + AUDIT_REQUESTS / AUDIT_S)
        per_result_pg = lease["pg_us"] + prod["pg_us"] / 2 + seq["pg_us"]
        per_result_pg1 = lease1["pg_us"] + prod["pg_us"] / 2 + seq["pg_us"]
        coord_us = COORD_US + lease["client_us"] + prod["client_us"] / 2
        coordinators = math.ceil(results * coord_us / 1e6 / CORE_UTIL)
        pg_cores = results * per_result_pg / 1e6
        pg_cores1 = results * per_result_pg1 / 1e6
        wal = results * (lease["wal_b"] + kept_up["wal_b"] / 2) / 2**20
        rows = rho * (ROWS_PER_RESULT + 2 / b) + 1
        print(f"| {label} | {results:,.0f} | {validated:,.0f} | {requests:,.0f} | {coordinators} |"
              f" {pg_cores:.1f} | {pg_cores1:.1f} | {wal:.0f} MiB/s | {rows:.0f} | {results:,.0f} |"
              f" {results / seq['entries_s']:.2f}x | {results * seq['chain_us'] / 1e6:.2f}x |")
    idle_requests = W * (1 / LONG_POLL_S + AUDIT_REQUESTS / AUDIT_S)
    print(f"\nAll idle: {idle_requests:,.0f} requests/s (a long poll per {LONG_POLL_S:.0f} s and the audit), and"
          f" {W * IDLE_KIB / 2**20:.1f} GiB of coordinator memory ({IDLE_KIB:.0f} KiB each); PostgreSQL keeps a"
          f" worker row of {fig['sizes']['worker']:.0f} bytes each ({W * fig['sizes']['worker'] / 2**20:.0f} MiB)."
          f" Group commit at {GROUP_MS:.0f} ms: at most {1000 / GROUP_MS:.0f} transactions/s per coordinator.")
    print("\nEvery paid result is one entry (rewards; refunds and escrows are per job). A ratio above 1 in the last"
          " two columns means one sequencer cannot keep up.")


if __name__ == "__main__":
    main()
