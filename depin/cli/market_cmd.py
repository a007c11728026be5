"""`depin grant | balance | bond | unbond | receipts | provenance`: credits in, credits held, credits a worker locks
in its bond, credits earned and proved, and how a job's output was made. Every ledger entry shown here has had its
inclusion proof checked against a checkpoint signed by the coordinator's key (depin.ledger_client)."""

from __future__ import annotations

import argparse
import urllib.parse
from pathlib import Path
from typing import Any

from depin import config, ledger_client
from depin.checkpoint import Checkpoint
from depin.cli import output
from depin.client import Client
from depin.crypto import load_key
from depin.errors import UserError

PAGE = 1000


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


async def grant(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    """Mint credits into an account, signed with the coordinator's own key (read from its data dir)."""
    key_path = Path(args.data_dir) / "coordinator.key"
    if not key_path.exists():  # only the coordinator's own key authorises a grant: never suggest making one
        raise UserError(f"no coordinator key at {key_path}: --data-dir must be the coordinator's data dir")
    key = load_key(key_path)
    async with Client(cfg.coordinator) as c:
        answer = await c.post_signed("/v1/grants", key, "grant", {"account": args.account, "amount": args.amount})
    output.emit(cfg.json, answer,
                f"granted {answer['amount']} credits to {answer['account']} (ledger entry {answer['seq']});"
                f" balance {answer['balance']}")
    return 0


async def balance(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    """An account's balance; yours (the key in --home) by default."""
    account = args.account or load_key(cfg.home / "key").id
    async with Client(cfg.coordinator) as c:
        answer = {"account": account, "balance": await c.balance(account)}
    output.emit(cfg.json, answer, f"{answer['account']}  {answer['balance']} credits")
    return 0


async def bond(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    """`depin bond` / `depin unbond`: move credits between a worker's account and its bond, signed with the worker's
    own key (DATA_DIR/worker.key, as `depin worker` uses it): the signer is the bonded party."""
    key = load_key(Path(args.data_dir) / "worker.key")
    kind = args.command  # "bond" or "unbond": the endpoint and the signature kind
    async with Client(cfg.coordinator) as c:
        answer = await c.move_bond(key, kind, args.amount)
    did = "bonded" if kind == "bond" else "unbonded"
    output.emit(cfg.json, answer,
                f"{did} {answer['amount']} credits (ledger entry {answer['seq']}); bond {answer['bonded']},"
                f" balance {answer['balance']}")
    return 0


def _worker_id(args: argparse.Namespace) -> str:
    if args.worker:
        return str(args.worker)
    if args.data_dir:
        path = Path(args.data_dir) / "worker.key"
        return load_key(path).id
    raise UserError("give --worker ID, or --data-dir of a worker")


def _local_receipts(cfg: config.ClientConfig, data_dir: Path) -> int:
    """A worker's own evidence, from its journal alone: what it sent, how it was acknowledged, which credits it
    proved against which checkpoint, and any alarm. Needs no coordinator."""
    from worker.journal import Journal

    path = data_dir / "journal.sqlite3"
    if not path.exists():
        raise UserError(f"no worker journal at {path}")
    journal = Journal(path)
    try:
        story, alarms, cps, evidence = journal.story(), journal.alarms(), journal.checkpoints(), journal.evidence()
        proved, earned = journal.credited()
    finally:
        journal.close()
    latest = cps[-1].to_json() if cps else None
    data = {"worker_data_dir": str(data_dir), "earned": earned, "checkpoints": len(cps), "latest_checkpoint": latest,
            "alarms": [{"time": t, "message": m} for t, m in alarms], "evidence": evidence, "receipts": story}
    lines = [f"!!! LEDGER ALARM {output.when(t)}: {m}" for t, m in alarms]
    if evidence:
        lines.append(f"    signed evidence kept: {len(evidence)} pair(s) of conflicting checkpoints (see --json)")
    lines.append(f"{len(story)} results sent; {proved} ledger entries paying this worker proved, {earned} credits;"
                 f" {len(cps)} checkpoints kept" + (f", latest {latest['size']}" if latest else ""))
    lines.append(output.table(
        ["SENT", "TASK", "ACK", "CREDITED", "ENTRY", "PROVED IN"],
        [[output.when(r["computed"]), r["task_id"], r["status"] + (f" ({r['reason']})" if r["reason"] else ""),
          r["amount"] if r["seq"] is not None else "-", r["seq"] if r["seq"] is not None else "-",
          f"checkpoint {r['checkpoint']}" if r["seq"] is not None else "-"] for r in story], right=(3, 4)))
    output.emit(cfg.json, data, "\n".join(lines))
    return 4 if alarms else 0  # a caught ledger lie is a verification failure


async def receipts(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    """Every result a worker sent: its verdict, its reward entry and the entry's checked inclusion proof."""
    if args.data_dir and not args.worker and not args.coordinator:
        return _local_receipts(cfg, Path(args.data_dir))
    worker = _worker_id(args)
    rows: list[dict[str, Any]] = []
    async with Client(cfg.coordinator) as c:
        key = await ledger_client.coordinator_key(c, args.coordinator_key)
        cp: Checkpoint | None = None
        while True:
            page = await c.get_json(f"/v1/workers/{_q(worker)}/receipts?offset={len(rows)}&limit={PAGE}")
            page_cp = ledger_client.parse_checkpoint(page["checkpoint"], key)
            cp = cp or page_cp
            for r in page["receipts"]:
                proved = None if r["reward"] is None else ledger_client.check_proved(r["reward"], page_cp)
                credited = r["reward"]["entry"] if r["reward"] is not None else None
                rows.append({**r, "credited": credited is not None, "proved": proved is not None,
                             "entry": credited})
            if len(page["receipts"]) < PAGE:
                break
    assert cp is not None
    earned = sum(r["entry"]["amount"] for r in rows if r["entry"] is not None)
    data = {"worker_id": worker, "checkpoint": cp.to_json(), "earned": earned, "receipts": rows}
    text = [f"worker {worker}: {len(rows)} results sent, {sum(r['credited'] for r in rows)} credited,"
            f" {earned} credits; proofs checked against checkpoint {cp.size} signed by {cp.coordinator}"]
    text.append(output.table(
        ["SENT", "TASK", "VERDICT", "CREDITED", "ENTRY", "PROOF", "WHY"],
        [[output.when(r["received_ms"]), r["task_id"], r["verdict"],
          r["entry"]["amount"] if r["entry"] else "-", r["entry"]["seq"] if r["entry"] else "-",
          "ok" if r["proved"] else ("awaiting checkpoint" if r["entry"] else
                                    ("MISSING: validated, not credited" if r["verdict"] == "valid" else "-")),
          r["formula"] if r["entry"] else (r["error"] or ("not validated" if r["verdict"] != "valid" else "-"))]
         for r in rows], right=(3, 4)))
    output.emit(cfg.json, data, "\n".join(text))
    return 0


async def provenance(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    """Which kernel made a job's output, who computed and agreed on each task, and what it cost, proved."""
    async with Client(cfg.coordinator) as c:
        key = await ledger_client.coordinator_key(c, args.coordinator_key)
        answer = await c.get_json(f"/v1/jobs/{_q(args.job)}/provenance")
    cp = ledger_client.parse_checkpoint(answer["checkpoint"], key)
    proved = [ledger_client.check_proved(item, cp) for item in answer["entries"]]
    answer["proofs_checked"] = sum(p is not None for p in proved)
    job = answer["job"]
    lines = [
        f"job        {job['job_id']} ({job['state']}), submitted by {job['submitter']}",
        f"kernel     {job['kernel']}@{job['kernel_version']} params {job['params']}",
        f"policy     quorum {job['quorum']} of {job['replicas']} replicas, at most {job['max_results']} results"
        f" per task; {job['price']} credits per validated result",
        f"output     sha256 {answer['output_digest'] or '-'}",
        "",
        output.table(["TASK", "STATE", "DIGEST", "AGREED", "OTHERS"],
                     [[t["index"], t["state"], (t["digest"] or "-")[:16], ", ".join(t["agreed"]) or "-",
                       ", ".join(f"{r['worker_id']} ({r['verdict']})" for r in t["results"]
                                 if r["verdict"] != "valid") or "-"] for t in answer["tasks"]], right=(0,)),
        "",
        output.table(["SEQ", "KIND", "FROM", "TO", "AMOUNT", "PROOF"],
                     [[i["entry"]["seq"], i["entry"]["kind"], i["entry"]["from"], i["entry"]["to"],
                       i["entry"]["amount"], "ok" if p is not None else "awaiting checkpoint"]
                      for i, p in zip(answer["entries"], proved, strict=True)], right=(0, 4)),
        f"{answer['proofs_checked']} of {len(proved)} ledger entries proved against checkpoint {cp.size}"
        f" signed by {cp.coordinator}",
    ]
    output.emit(cfg.json, answer, "\n".join(lines))
    return 0
