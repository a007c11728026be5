"""The `depin` command line as a user runs it (the real console script, in a subprocess), against live daemons.

The contract: machine-readable --json output with documented keys; exit 0 on success; every error is exactly one
line on stderr starting "depin: error:", never a traceback, with the documented exit code (2 bad input, 3
coordinator unreachable, 4 verification failure, 1 a job that ended badly or a request the coordinator forbids).
The market commands (grant, balance, receipts, provenance, ledger prove, result) are held to the same contract.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from depin import ledger
from depin.crypto import SigningKey
from tests.integration.support import (
    Cluster,
    Coordinator,
    check_conservation,
    check_escrow,
    free_port,
    one_error_line,
    wait_until,
)

SMALL = ["-p", "width=64", "-p", "height=48", "-p", "max_iter=64"]
TASKS, REPLICAS, PRICE = 2, 2, 5
GRANT = 10**6  # the CLI submitter's grant: plenty for every job of the module


@dataclass
class Env:
    cluster: Cluster
    coordinator: Coordinator
    job_id: str  # a done job: TASKS x REPLICAS rewards in the ledger
    submitter: str  # the id of the key in DEPIN_HOME, which submitted it

    @property
    def url(self) -> str:
        return self.coordinator.url

    def run(self, *args: str) -> Any:
        return self.cluster.cli(*args)


@pytest.fixture(scope="module")
def env(module_cluster: Cluster) -> Env:
    """A coordinator with two workers and one finished job, shared by this module's tests."""
    coordinator = module_cluster.coordinator()
    for i in range(2):
        module_cluster.worker(coordinator, f"worker-{i}")
    submitter = module_cluster.fund(coordinator, GRANT)
    got = module_cluster.cli("submit", "--coordinator", coordinator.url, "--json", "mandelbrot", *SMALL,
                             "--tasks", str(TASKS), "--replicas", str(REPLICAS), "--price", str(PRICE))
    assert got.returncode == 0, got.stderr
    job_id = json.loads(got.stdout)["job_id"]
    assert coordinator.api.wait_job(job_id)["state"] == "done"
    return Env(module_cluster, coordinator, job_id, submitter)


# ---- job commands ------------------------------------------------------------------------------------------


def test_submit_prints_the_job_id_and_json_gives_it(env: Env) -> None:
    plain = env.run("submit", "--coordinator", env.url, "mandelbrot", *SMALL, "--tasks", "2")
    assert plain.returncode == 0, plain.stderr
    job_id = plain.stdout.strip()
    assert job_id and "\n" not in job_id and " " not in job_id
    before = env.coordinator.api.balance(env.submitter)
    as_json = env.run("submit", "--coordinator", env.url, "--json", "mandelbrot", *SMALL, "--tasks", "2")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert set(answer) == {"job_id", "tasks", "price", "escrow", "balance"} and answer["job_id"] != job_id
    # The default price is 10 and max_results replicas + 3 = 5: 2 x 5 x 10 escrowed out of the balance.
    assert (answer["tasks"], answer["price"], answer["escrow"]) == (2, 10, 100), answer
    assert answer["balance"] == before - 100
    for jid in (job_id, answer["job_id"]):
        assert env.run("wait", "--coordinator", env.url, "--json", jid).returncode == 0


def test_status_json_has_the_documented_fields(env: Env) -> None:
    got = env.run("status", "--coordinator", env.url, "--json", env.job_id)
    assert got.returncode == 0, got.stderr
    job = json.loads(got.stdout)
    assert {"job_id", "kernel", "state", "tasks_total", "tasks_validated"} <= set(job)
    assert (job["job_id"], job["kernel"], job["state"]) == (env.job_id, "mandelbrot", "done")
    assert job["tasks_total"] == job["tasks_validated"] == TASKS
    assert job == env.coordinator.api.job(env.job_id)
    text = env.run("status", "--coordinator", env.url, env.job_id)
    assert text.returncode == 0 and env.job_id in text.stdout and "done" in text.stdout


def test_wait_exits_zero_on_a_done_job(env: Env) -> None:
    got = env.run("wait", "--coordinator", env.url, "--json", env.job_id)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["state"] == "done"
    assert env.run("wait", "--coordinator", env.url, env.job_id).returncode == 0


def test_jobs_json_lists_every_job(env: Env) -> None:
    got = env.run("jobs", "--coordinator", env.url, "--json")
    assert got.returncode == 0, got.stderr
    jobs = json.loads(got.stdout)
    assert isinstance(jobs, list)
    assert env.job_id in {j["job_id"] for j in jobs}
    assert all({"job_id", "kernel", "state", "tasks_total", "tasks_validated"} <= set(j) for j in jobs)
    assert env.run("jobs", "--coordinator", env.url).returncode == 0


def test_earnings_json_matches_the_ledger(env: Env) -> None:
    got = env.run("earnings", "--coordinator", env.url, "--json")
    assert got.returncode == 0, got.stderr
    rows = json.loads(got.stdout)
    assert rows and all({"worker_id", "balance", "tasks_validated", "tasks_rejected"} <= set(r) for r in rows)
    paid: dict[str, int] = {}
    for e in env.coordinator.api.rewards():
        paid[e["to"]] = paid.get(e["to"], 0) + e["amount"]
    assert {r["worker_id"]: r["balance"] for r in rows if r["balance"]} == paid
    assert all(isinstance(r["balance"], int) for r in rows)
    assert env.run("earnings", "--coordinator", env.url).returncode == 0


def test_cancel_then_wait_is_non_zero(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()  # no workers: the job stays queued until cancelled
    url = coordinator.url
    submitter = cluster.fund(coordinator, 1000)
    job_id = cluster.cli("submit", "--coordinator", url, "mandelbrot", *SMALL).stdout.strip()
    assert coordinator.api.balance(submitter) == 1000 - 8 * 5 * 10  # 8 tasks x 5 results x 10 credits held
    cluster.home_id(cluster.root / "stranger")  # someone else with a key of their own
    stranger = cluster.env(DEPIN_HOME=str(cluster.root / "stranger"))
    refused = cluster.cli("cancel", "--coordinator", url, job_id, env=stranger)
    assert "submitter" in one_error_line(refused)
    assert refused.returncode == 2  # 403: the coordinator forbids it (a user error)
    assert coordinator.api.job(job_id)["state"] == "queued"

    got = cluster.cli("cancel", "--coordinator", url, "--json", job_id)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"job_id": job_id, "state": "cancelled"}
    waited = cluster.cli("wait", "--coordinator", url, "--json", job_id)
    assert waited.returncode == 1, waited.stderr
    assert json.loads(waited.stdout)["state"] == "cancelled"
    assert "cancelled" in one_error_line(cluster.cli("cancel", "--coordinator", url, job_id))
    # Nothing was computed: the whole escrow came back.
    check_escrow(coordinator.api.ledger(), coordinator.api.job(job_id))
    assert coordinator.api.balance(submitter) == 1000
    # A plain cancel prints "<job> cancelled".
    other = cluster.cli("submit", "--coordinator", url, "mandelbrot", *SMALL).stdout.strip()
    got = cluster.cli("cancel", "--coordinator", url, other)
    assert (got.returncode, got.stdout.strip()) == (0, f"{other} cancelled")


# ---- the ledger --------------------------------------------------------------------------------------------


def export(env: Env, path: Path) -> list[str]:
    got = env.run("ledger", "export", "--coordinator", env.url, "-o", str(path))
    assert got.returncode == 0, got.stderr
    lines = path.read_text().splitlines()
    assert got.stdout.strip() == f"wrote {len(lines)} ledger entries to {path}"
    return lines


def test_ledger_export_then_verify_file(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    lines = export(env, path)
    entries = [json.loads(line) for line in lines]
    assert entries == env.coordinator.api.ledger()[: len(entries)]
    assert len(entries) >= TASKS * REPLICAS
    got = env.run("ledger", "verify", "--file", str(path))
    assert got.returncode == 0, got.stderr
    held = check_conservation(entries)
    escrow = sum(v for k, v in held.items() if k.startswith("escrow:"))
    minted = sum(e["amount"] for e in entries if e["kind"] == "grant")
    ok, credits = got.stdout.splitlines()
    assert ok.startswith(f"ledger ok: {len(entries)} entries, head {entries[-1]['hash']}, root "), ok
    assert "signed" not in ok  # a file carries no checkpoint
    assert credits == f"credits: {minted} minted = {minted - escrow} in accounts + {escrow} in escrow"
    as_json = json.loads(env.run("ledger", "verify", "--file", str(path), "--json").stdout)
    assert set(as_json) == {"ok", "entries", "head_hash", "root_hash", "minted", "in_escrow", "in_bonds",
                            "in_accounts", "checkpoint"}
    assert as_json["ok"] is True and as_json["entries"] == len(entries)
    assert (as_json["minted"], as_json["in_escrow"], as_json["in_accounts"]) == (minted, escrow, minted - escrow)
    assert as_json["head_hash"] == entries[-1]["hash"] and as_json["checkpoint"] is None


def _amount(lines: list[str], k: int) -> list[str]:
    e = json.loads(lines[k])
    e["amount"] += 1
    return lines[:k] + [json.dumps(e)] + lines[k + 1:]


def _amount_rehashed(lines: list[str], k: int) -> list[str]:
    # A forger who also recomputes the entry's own hash is caught by the next entry's prev_hash.
    e = json.loads(lines[k])
    e["amount"] += 1
    e["hash"] = ledger.entry_hash(e)
    return lines[:k] + [json.dumps(e)] + lines[k + 1:]


def _delete(lines: list[str], k: int) -> list[str]:
    return lines[:k] + lines[k + 1:]


def _swap(lines: list[str], k: int) -> list[str]:
    return lines[:k] + [lines[k + 1], lines[k]] + lines[k + 2:]


def _recipient(lines: list[str], k: int) -> list[str]:
    e = json.loads(lines[k])
    e["to"] = "mallory"
    return lines[:k] + [json.dumps(e)] + lines[k + 1:]


@pytest.mark.parametrize(("tamper", "k", "bad_seq"), [
    (_amount, 1, 1), (_amount, 0, 0), (_amount_rehashed, 1, 2), (_delete, 1, 1), (_delete, 0, 0), (_swap, 1, 1),
    (_recipient, 2, 2),
], ids=["amount", "amount-first", "amount-rehashed", "delete", "delete-first", "swap", "recipient"])
def test_tampered_export_names_the_first_bad_seq(env: Env, tmp_path: Path,
                                                 tamper: Callable[[list[str], int], list[str]],
                                                 k: int, bad_seq: int) -> None:
    lines = export(env, tmp_path / "good.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(line + "\n" for line in tamper(lines, k)))
    got = env.run("ledger", "verify", "--file", str(bad))
    assert got.returncode == 4, got.stderr
    line = one_error_line(got)
    assert f"seq {bad_seq}" in line, line
    as_json = env.run("ledger", "verify", "--file", str(bad), "--json")
    assert as_json.returncode == 4
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["first_bad_seq"] == bad_seq


def _rechain(entries: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """A forger's chain: every entry from k on gets a fresh prev_hash and hash, so the hash chain holds again."""
    out = [dict(e) for e in entries]
    for i in range(k, len(out)):
        out[i]["prev_hash"] = out[i - 1]["hash"] if i else "0" * 64
        out[i]["hash"] = ledger.entry_hash(out[i])
    return out


def _first(entries: list[dict[str, Any]], kind: str) -> int:
    return next(i for i, e in enumerate(entries) if e["kind"] == kind)


def _skim_a_reward(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    # One credit less to a worker: the job's refund then no longer returns the whole escrow.
    k = _first(entries, "reward")
    forged = [dict(e) for e in entries]
    forged[k]["amount"] -= 1
    refund = next(i for i, e in enumerate(entries) if e["kind"] == "refund" and e["job_id"] == entries[k]["job_id"])
    return _rechain(forged, k), refund


def _reward_from_mint(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    # Credits out of thin air, as rewards were paid before escrow existed.
    k = _first(entries, "reward")
    forged = [dict(e) for e in entries]
    forged[k]["from"] = "mint"
    return _rechain(forged, k), k


def _refund_to_a_stranger(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    k = _first(entries, "refund")
    forged = [dict(e) for e in entries]
    forged[k]["to"] = entries[_first(entries, "reward")]["to"]
    return _rechain(forged, k), k


def _overdrawn_escrow(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    # The submitter escrows more than its grant gave it.
    k = _first(entries, "escrow")
    forged = [dict(e) for e in entries]
    forged[k]["amount"] = GRANT + 1
    return _rechain(forged, k), k


@pytest.mark.parametrize("forge", [_skim_a_reward, _reward_from_mint, _refund_to_a_stranger, _overdrawn_escrow],
                         ids=["skim-a-reward", "reward-from-mint", "refund-to-a-stranger", "overdrawn-escrow"])
def test_a_rechained_forgery_breaks_the_money_rules(env: Env, tmp_path: Path, forge: Any) -> None:
    # A forger who rebuilds the whole hash chain after the change gets past the chain check, not the money rules.
    entries = [json.loads(line) for line in export(env, tmp_path / "good.jsonl")]
    forged, bad_seq = forge(entries)
    assert forged != entries
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(e) + "\n" for e in forged))
    got = env.run("ledger", "verify", "--file", str(bad))
    assert got.returncode == 4, (got.stdout, got.stderr)
    line = one_error_line(got)
    assert f"seq {bad_seq}" in line and f"entry {bad_seq}:" in line, line
    report = json.loads(env.run("ledger", "verify", "--file", str(bad), "--json").stdout)
    assert (report["ok"], report["first_bad_seq"]) == (False, bad_seq)


def test_ledger_verify_an_export_against_a_kept_checkpoint(env: Env, tmp_path: Path) -> None:
    env.coordinator.api.wait_checkpointed()
    saved = tmp_path / "cp.json"
    assert env.run("ledger", "prove", "--coordinator", env.url, "--save", str(saved)).returncode == 0
    cp = json.loads(saved.read_text())
    key = env.coordinator.api.info()["public_key"]
    # An export that the ledger grew past since still extends the kept checkpoint.
    env.coordinator.grant(env.submitter, 1)
    path = tmp_path / "later.jsonl"
    got = env.run("ledger", "export", "--data-dir", str(env.coordinator.data_dir), "-o", str(path))
    assert got.returncode == 0, got.stderr
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(entries) > cp["size"]
    against = ["--checkpoint", str(saved), "--coordinator-key", key]
    got = env.run("ledger", "verify", "--file", str(path), *against, "--json")
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    assert (report["ok"], report["entries"], report["checkpoint"]) == (True, len(entries), cp)
    text = env.run("ledger", "verify", "--file", str(path), *against)
    assert f"; the first {cp['size']} match the checkpoint signed by {cp['coordinator']}" in text.stdout, text.stdout
    assert env.run("ledger", "verify", "--data-dir", str(env.coordinator.data_dir), *against).returncode == 0

    # A rewrite that keeps the chain and the money rules (one entry's time changed, everything after re-hashed)
    # is caught by the kept checkpoint alone, offline.
    forged = _rechain([{**e, "time": e["time"] + 1} if e["seq"] == 1 else e for e in entries], 1)
    bad = tmp_path / "forged.jsonl"
    bad.write_text("".join(json.dumps(e) + "\n" for e in forged))
    assert env.run("ledger", "verify", "--file", str(bad)).returncode == 0  # nothing else can tell
    got = env.run("ledger", "verify", "--file", str(bad), *against)
    assert got.returncode == 4
    line = one_error_line(got)
    assert f"first {cp['size']} entries have Merkle root" in line and cp["root"] in line, line
    as_json = env.run("ledger", "verify", "--file", str(bad), *against, "--json")
    assert as_json.returncode == 4 and json.loads(as_json.stdout)["ok"] is False
    # A truncated export cannot extend it either.
    short = tmp_path / "short.jsonl"
    short.write_text("".join(json.dumps(e) + "\n" for e in entries[: cp["size"] - 1]))
    got = env.run("ledger", "verify", "--file", str(short), *against)
    assert got.returncode == 4 and f"fewer than the {cp['size']}" in one_error_line(got)
    # A checkpoint proves nothing without its signer's key; the wrong key fails its signature.
    got = env.run("ledger", "verify", "--file", str(path), "--checkpoint", str(saved))
    assert got.returncode == 2 and "--coordinator-key" in one_error_line(got)
    got = env.run("ledger", "verify", "--file", str(path), "--checkpoint", str(saved), "--coordinator-key",
                  SigningKey.generate().public.hex())
    assert got.returncode == 4, got.stderr
    one_error_line(got)


def test_ledger_verify_against_the_coordinator_and_its_data_dir(env: Env) -> None:
    wait_until(lambda: all(j["state"] == "done" for j in env.coordinator.api.get("/v1/jobs")["jobs"]),
               "every job to be done")
    head = env.coordinator.api.wait_checkpointed()
    for source in (["--coordinator", env.url], ["--data-dir", str(env.coordinator.data_dir)]):
        got = env.run("ledger", "verify", *source, "--json")
        assert got.returncode == 0, got.stderr
        report = json.loads(got.stdout)
        assert (report["ok"], report["entries"], report["head_hash"]) == (True, head["entries"], head["head_hash"])
        assert (report["root_hash"], report["minted"], report["in_escrow"]) == (
            head["root_hash"], head["minted"], head["in_escrow"])
        # From a coordinator, the root is checked against its signed checkpoint; a data dir has no signature.
        assert report["checkpoint"] == (head["checkpoint"] if source[0] == "--coordinator" else None)
    text = env.run("ledger", "verify", "--coordinator", env.url)
    first = text.stdout.splitlines()[0]
    assert text.returncode == 0 and f"; the first {head['checkpoint']['size']} match the checkpoint signed by " \
        f"{head['checkpoint']['coordinator']}" in first, text.stdout


# ---- the market commands: grant, balance, receipts, provenance, ledger prove ---------------------------------


def test_grant_and_balance(env: Env, tmp_path: Path) -> None:
    newcomer = env.cluster.home_id(tmp_path / "newcomer")
    got = env.run("grant", newcomer, "250", "--data-dir", str(env.coordinator.data_dir), "--coordinator", env.url,
                  "--json")
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    assert set(answer) == {"account", "amount", "seq", "balance"}
    assert (answer["account"], answer["amount"], answer["balance"]) == (newcomer, 250, 250)
    entry = env.coordinator.api.ledger()[answer["seq"]]
    assert (entry["kind"], entry["from"], entry["to"], entry["amount"]) == ("grant", "mint", newcomer, 250)
    text = env.run("grant", newcomer, "50", "--data-dir", str(env.coordinator.data_dir), "--coordinator", env.url)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"granted 50 credits to {newcomer} (ledger entry ")
    assert text.stdout.rstrip().endswith("; balance 300")
    # balance: anyone's by id, or (without an id) the key in --home.
    for args in ((newcomer,), ("--home", str(tmp_path / "newcomer"))):
        got = env.run("balance", "--coordinator", env.url, "--json", *args)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout) == {"account": newcomer, "balance": 300}
    text = env.run("balance", "--coordinator", env.url, newcomer)
    assert (text.returncode, text.stdout) == (0, f"{newcomer}  300 credits\n")
    # A job's escrow is an account too.
    got = env.run("balance", "--coordinator", env.url, "--json", f"escrow:{env.job_id}")
    assert json.loads(got.stdout) == {"account": f"escrow:{env.job_id}", "balance": 0}


def test_receipts_from_the_coordinator_with_checked_proofs(env: Env) -> None:
    env.coordinator.api.wait_checkpointed()
    worker_dir = env.cluster.root / "worker-0"
    by_dir = env.run("receipts", "--coordinator", env.url, "--data-dir", str(worker_dir), "--json")
    assert by_dir.returncode == 0, by_dir.stderr
    data = json.loads(by_dir.stdout)
    assert set(data) == {"worker_id", "checkpoint", "earned", "receipts"}
    worker_id = data["worker_id"]
    rewards = [e for e in env.coordinator.api.rewards() if e["to"] == worker_id]
    assert rewards, "worker-0 earned nothing: the test proves nothing"
    assert data["earned"] == sum(e["amount"] for e in rewards)
    assert data["checkpoint"] == env.coordinator.api.get("/v1/ledger/checkpoint")
    credited = [r for r in data["receipts"] if r["credited"]]
    assert sorted(r["entry"]["seq"] for r in credited) == sorted(e["seq"] for e in rewards)
    for r in credited:
        assert r["verdict"] == "valid" and r["proved"] is True, r
        assert r["formula"].startswith(f"{r['entry']['amount']} credits: "), r["formula"]
        assert r["entry"] == r["reward"]["entry"] and r["reward"]["proof"], r
    by_id = env.run("receipts", "--coordinator", env.url, "--worker", worker_id, "--json")
    assert json.loads(by_id.stdout) == data
    text = env.run("receipts", "--coordinator", env.url, "--worker", worker_id)
    assert text.returncode == 0, text.stderr
    first = text.stdout.splitlines()[0]
    assert first.startswith(f"worker {worker_id}: ") and f"{len(credited)} credited, {data['earned']} credits" in first
    assert f"checkpoint {data['checkpoint']['size']} signed by " in first, first


def test_receipts_offline_from_a_worker_journal(env: Env) -> None:
    worker_dir = env.cluster.root / "worker-1"
    got = env.run("receipts", "--data-dir", str(worker_dir), "--json")
    assert got.returncode == 0, got.stderr
    data = json.loads(got.stdout)
    assert set(data) == {"worker_data_dir", "earned", "checkpoints", "latest_checkpoint", "alarms", "evidence",
                         "receipts"}
    assert data["alarms"] == data["evidence"] == [] and data["worker_data_dir"] == str(worker_dir)
    assert data["receipts"], "worker-1 sent nothing"
    assert {r["status"] for r in data["receipts"]} <= {"computed", "accepted", "duplicate", "rejected"}
    assert data["earned"] == sum(r["amount"] or 0 for r in data["receipts"])
    text = env.run("receipts", "--data-dir", str(worker_dir))
    assert text.returncode == 0 and "LEDGER ALARM" not in text.stdout, text.stdout
    assert f"{len(data['receipts'])} results sent" in text.stdout.splitlines()[0]


def test_provenance_of_a_done_job(env: Env) -> None:
    env.coordinator.api.wait_checkpointed()
    got = env.run("provenance", "--coordinator", env.url, env.job_id, "--json")
    assert got.returncode == 0, got.stderr
    data = json.loads(got.stdout)
    assert set(data) == {"job", "output_digest", "tasks", "entries", "checkpoint", "proofs_checked"}
    job = data["job"]
    assert (job["job_id"], job["state"], job["submitter"], job["price"]) == (env.job_id, "done", env.submitter, PRICE)
    assert job["kernel"] == "mandelbrot" and job["kernel_version"] == 1
    assert len(data["tasks"]) == TASKS and len(data["output_digest"]) == 64
    workers = {w for w in env.coordinator.api.workers()}
    paid = {(e["task_id"], e["to"]) for e in env.coordinator.api.rewards() if e["job_id"] == env.job_id}
    for t in data["tasks"]:
        assert t["state"] == "validated" and len(t["agreed"]) == REPLICAS and set(t["agreed"]) <= workers, t
        assert {(t["task_id"], w) for w in t["agreed"]} <= paid
    kinds = [i["entry"]["kind"] for i in data["entries"]]
    assert kinds == ["escrow"] + ["reward"] * TASKS * REPLICAS + ["refund"], kinds
    assert data["proofs_checked"] == len(data["entries"])
    text = env.run("provenance", "--coordinator", env.url, env.job_id)
    assert text.returncode == 0, text.stderr
    assert f"{len(kinds)} of {len(kinds)} ledger entries proved against checkpoint" in text.stdout
    assert "mandelbrot@1" in text.stdout and f"{PRICE} credits per validated result" in text.stdout


def test_ledger_prove_save_then_since(env: Env, tmp_path: Path) -> None:
    saved = tmp_path / "cp.json"
    got = env.run("ledger", "prove", "--coordinator", env.url, "0", "1", "--save", str(saved), "--json")
    assert got.returncode == 0, got.stderr
    data = json.loads(got.stdout)
    assert set(data) == {"entries", "checkpoint"}
    assert [e["seq"] for e in data["entries"]] == [0, 1]
    assert [e["kind"] for e in data["entries"]] == ["grant", "escrow"]
    assert json.loads(saved.read_text()) == data["checkpoint"]
    # The ledger grows (a grant), the coordinator signs a newer checkpoint: it must extend the saved one.
    env.coordinator.grant(env.submitter, 1)
    newer = wait_until(lambda: (cp := env.coordinator.api.get("/v1/ledger/checkpoint"))["size"]
                       > data["checkpoint"]["size"] and cp, "a newer checkpoint")
    got = env.run("ledger", "prove", "--coordinator", env.url, "--since", str(saved), "--json")
    assert got.returncode == 0, got.stderr
    proved = json.loads(got.stdout)
    assert proved["consistent_with"] == data["checkpoint"]["size"]
    assert proved["checkpoint"]["size"] >= newer["size"]
    text = env.run("ledger", "prove", "--coordinator", env.url, "--since", str(saved), "2")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("checkpoint: ") and lines[1].startswith(
        f"consistent: checkpoint {proved['checkpoint']['size']} extends your checkpoint {data['checkpoint']['size']}")
    assert lines[2].startswith("included:   entry 2 (reward "), lines


# ---- keys ---------------------------------------------------------------------------------------------------


def test_keygen_creates_a_private_key_once(cluster: Cluster) -> None:
    home = cluster.root / "keys"
    env = cluster.env(DEPIN_HOME=str(home))
    got = cluster.cli("keygen", "--json", env=env)
    assert got.returncode == 0, got.stderr
    info = json.loads(got.stdout)
    key = home / "key"
    assert info["created"] is True and Path(info["key_file"]) == key
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.stat().st_size == 32
    again = json.loads(cluster.cli("keygen", "--json", env=env).stdout)
    assert again["created"] is False and again["id"] == info["id"] and again["public_key"] == info["public_key"]
    text = cluster.cli("keygen", "--home", str(cluster.root / "other"))
    assert text.returncode == 0 and text.stdout.startswith("created key ")
    assert stat.S_IMODE(os.stat(cluster.root / "other" / "key").st_mode) == 0o600
    # A key others can read is refused, in one line.
    key.chmod(0o644)
    assert "chmod 600" in one_error_line(cluster.cli("keygen", env=env))


# ---- bad input: one line, no traceback, the right exit code -------------------------------------------------

UNKNOWN_JOB = "0123456789abcdef"


def _closed() -> str:
    return f"http://127.0.0.1:{free_port()}"


def case(name: str, argv: Callable[[Env, Path], list[str]], code: int, mentions: str, bug: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(argv, code, mentions, id=name, marks=marks)


def submit(*extra: str) -> Callable[[Env, Path], list[str]]:
    return lambda e, t: ["submit", "--coordinator", e.url, *extra]


def grant(account: str | None, amount: str, data_dir: Callable[[Env, Path], Path] | None = None,
          url: Callable[[Env], str] | None = None) -> Callable[[Env, Path], list[str]]:
    """`depin grant` (to the submitter by default, with the coordinator's data dir by default)."""
    return lambda e, t: ["grant", account or e.submitter, amount, "--coordinator", (url or (lambda e: e.url))(e),
                         "--data-dir", str((data_dir or (lambda e, t: e.coordinator.data_dir))(e, t))]


def _someone_elses_key(e: Env, t: Path) -> Path:
    """A data dir holding a coordinator.key that is not the coordinator's."""
    from depin.crypto import load_or_create_key

    load_or_create_key(t / "impostor" / "coordinator.key")
    return t / "impostor"


def _file(name: str, text: str) -> Callable[[Path], str]:
    def make(t: Path) -> str:
        (t / name).write_text(text)
        return str(t / name)
    return make


def _forged_checkpoint(e: Env, t: Path) -> str:
    cp = dict(e.coordinator.api.get("/v1/ledger/checkpoint"))
    cp["sig"] = ("0" if cp["sig"][0] != "0" else "1") + cp["sig"][1:]
    return _file("forged.json", json.dumps(cp))(t)


def _stranger(t: Path) -> str:
    """The --home of someone else, with a key of their own."""
    from depin.crypto import load_or_create_key

    load_or_create_key(t / "stranger" / "key")
    return str(t / "stranger")


BAD_INPUT = [
    case("unknown-kernel", submit("nosuchkernel", *SMALL), 2, "nosuchkernel"),
    case("bad-parameter-value", submit("mandelbrot", "-p", "width=abc", "-p", "height=48"), 2, "width"),
    case("parameter-out-of-range", submit("mandelbrot", "-p", "width=0", "-p", "height=48"), 2, "width"),
    case("parameter-not-finite", submit("mandelbrot", *SMALL, "-p", "x_min=nan"), 2, "x_min"),
    case("unknown-parameter", submit("mandelbrot", *SMALL, "-p", "colour=red"), 2, "colour"),
    case("missing-parameter", submit("mandelbrot", "-p", "width=64"), 2, "height"),
    case("bad-p-syntax", submit("mandelbrot", "-p", "width", "-p", "height=48"), 2, "KEY=VALUE"),
    case("repeated-p", submit("mandelbrot", *SMALL, "-p", "width=32"), 2, "width"),
    case("too-many-tasks", submit("mandelbrot", *SMALL, "--tasks", "49"), 2, "--tasks"),
    case("bad-replicas", submit("mandelbrot", *SMALL, "--replicas", "17"), 2, "replicas"),
    case("bad-price", submit("mandelbrot", *SMALL, "--price", "0"), 2, "price"),
    case("unknown-job-status", lambda e, t: ["status", "--coordinator", e.url, UNKNOWN_JOB], 2, UNKNOWN_JOB),
    case("unknown-job-wait", lambda e, t: ["wait", "--coordinator", e.url, UNKNOWN_JOB], 2, UNKNOWN_JOB),
    case("unknown-job-result", lambda e, t: ["result", "--coordinator", e.url, UNKNOWN_JOB, "-o", str(t / "x.npy")],
         2, UNKNOWN_JOB),
    case("unknown-job-cancel", lambda e, t: ["cancel", "--coordinator", e.url, UNKNOWN_JOB], 2, UNKNOWN_JOB),
    case("unreachable-status", lambda e, t: ["status", "--coordinator", _closed(), UNKNOWN_JOB], 3, "cannot reach"),
    case("unreachable-submit", lambda e, t: ["submit", "--coordinator", _closed(), "mandelbrot", *SMALL],
         3, "cannot reach"),
    case("unreachable-ledger", lambda e, t: ["ledger", "verify", "--coordinator", _closed()], 3, "cannot reach"),
    case("bad-coordinator-url", lambda e, t: ["jobs", "--coordinator", "ftp://example"], 2, "ftp://example"),
    case("bad-output-suffix", lambda e, t: ["result", "--coordinator", e.url, e.job_id, "-o", str(t / "x.txt")],
         2, ".npy or .png"),
    case("unwritable-output",
         lambda e, t: ["result", "--coordinator", e.url, e.job_id, "-o", str(t / "no" / "x.npy")], 2, "cannot write"),
    case("ledger-file-missing", lambda e, t: ["ledger", "verify", "--file", str(t / "none.jsonl")], 2, "none.jsonl"),
    case("ledger-two-sources", lambda e, t: ["ledger", "verify", "--file", "x", "--coordinator", e.url],
         2, "only one"),
    case("ledger-data-dir-missing", lambda e, t: ["ledger", "verify", "--data-dir", str(t)], 2, "no coordinator"),
    case("unknown-command", lambda e, t: ["frobnicate"], 2, "frobnicate"),
    case("missing-argument", lambda e, t: ["status", "--coordinator", e.url], 2, "job"),
    case("coordinator-port-in-use",
         lambda e, t: ["coordinator", "--data-dir", str(t / "c"), "--port", str(e.coordinator.port)], 2, "in use"),
    case("coordinator-impossible-data-dir", lambda e, t: ["coordinator", "--data-dir", "/proc/nope/x", "--port", "0"],
         2, "/proc/nope"),
    case("path-like-job-id", lambda e, t: ["status", "--coordinator", e.url, "../info"], 2, "../info"),
    # ---- the market ----
    case("insufficient-funds", lambda e, t: ["submit", "--coordinator", e.url, "--home", _stranger(t), "mandelbrot",
                                             *SMALL], 2, "insufficient funds"),
    case("result-not-the-submitter", lambda e, t: ["result", "--coordinator", e.url, e.job_id, "--home", _stranger(t),
                                                   "-o", str(t / "x.npy")], 2, "submitter"),
    case("cancel-not-the-submitter", lambda e, t: ["cancel", "--coordinator", e.url, e.job_id, "--home",
                                                   _stranger(t)], 2, "submitter"),
    # Commands that sign or name "your" account never invent a key: a --home without one is an error.
    case("result-without-a-key", lambda e, t: ["result", "--coordinator", e.url, e.job_id, "--home", str(t / "nokey"),
                                               "-o", str(t / "x.npy")], 2, "no key"),
    case("cancel-without-a-key", lambda e, t: ["cancel", "--coordinator", e.url, e.job_id, "--home", str(t / "nokey")],
         2, "no key"),
    case("balance-without-a-key", lambda e, t: ["balance", "--coordinator", e.url, "--home", str(t / "nokey")], 2,
         "no key"),
    case("grant-zero", grant(None, "0"), 2, "amount"),
    case("grant-negative", grant(None, "-5"), 2, "amount"),
    case("grant-over-2^53", grant(None, str(2**53)), 2, "amount"),
    case("grant-not-an-int", grant(None, "ten"), 2, "amount"),
    case("grant-not-an-account-id", grant("nobody", "5"), 2, "account"),
    case("grant-escrow-account", grant("escrow:" + UNKNOWN_JOB, "5"), 2, "account"),
    case("grant-not-a-coordinator-data-dir", grant(None, "5", lambda e, t: t), 2, "coordinator.key"),
    case("grant-someone-elses-key", grant(None, "5", _someone_elses_key), 2, "coordinator's key"),
    case("grant-unreachable", grant(None, "5", url=lambda e: _closed()), 3, "cannot reach"),
    case("grant-without-data-dir", lambda e, t: ["grant", e.submitter, "5", "--coordinator", e.url], 2,
         "--data-dir"),
    case("balance-unreachable", lambda e, t: ["balance", "--coordinator", _closed()], 3, "cannot reach"),
    case("balance-not-an-account", lambda e, t: ["balance", "nonsense", "--coordinator", e.url], 2, "not an account"),
    case("receipts-not-a-worker-id", lambda e, t: ["receipts", "--coordinator", e.url, "--worker", "abc"], 2,
         "not a party id"),
    case("receipts-of-nobody", lambda e, t: ["receipts", "--coordinator", e.url], 2, "--worker"),
    case("receipts-no-journal", lambda e, t: ["receipts", "--data-dir", str(t)], 2, "no worker journal"),
    case("receipts-no-worker-key", lambda e, t: ["receipts", "--data-dir", str(t), "--coordinator", e.url], 2,
         "worker.key"),
    case("receipts-wrong-coordinator-key", lambda e, t: ["receipts", "--coordinator", e.url, "--worker", e.submitter,
                                                         "--coordinator-key", "00" * 32], 4, "00" * 32),
    case("receipts-unreachable", lambda e, t: ["receipts", "--coordinator", _closed(), "--worker", e.submitter], 3,
         "cannot reach"),
    case("provenance-unknown-job", lambda e, t: ["provenance", "--coordinator", e.url, UNKNOWN_JOB], 2, UNKNOWN_JOB),
    case("provenance-wrong-coordinator-key", lambda e, t: ["provenance", "--coordinator", e.url, e.job_id,
                                                           "--coordinator-key", "ab" * 32], 4, "ab" * 32),
    case("provenance-unreachable", lambda e, t: ["provenance", "--coordinator", _closed(), e.job_id], 3,
         "cannot reach"),
    case("prove-unknown-seq", lambda e, t: ["ledger", "prove", "--coordinator", e.url, "999999"], 2, "999999"),
    case("prove-negative-seq", lambda e, t: ["ledger", "prove", "--coordinator", e.url, "--", "-1"], 2, "seq"),
    case("prove-since-missing-file", lambda e, t: ["ledger", "prove", "--coordinator", e.url, "--since",
                                                   str(t / "none.json")], 2, "none.json"),
    case("prove-since-not-json", lambda e, t: ["ledger", "prove", "--coordinator", e.url, "--since",
                                               _file("x.json", "not json")(t)], 2, "x.json"),
    case("prove-since-not-a-checkpoint", lambda e, t: ["ledger", "prove", "--coordinator", e.url, "--since",
                                                       _file("x.json", "{}")(t)], 2, "checkpoint"),
    case("prove-since-forged-signature", lambda e, t: ["ledger", "prove", "--coordinator", e.url, "--since",
                                                       _forged_checkpoint(e, t)], 4, "signature"),
    case("prove-save-unwritable", lambda e, t: ["ledger", "prove", "--coordinator", e.url, "--save",
                                                str(t / "no" / "cp.json")], 2, "cannot write"),
    case("prove-wrong-coordinator-key", lambda e, t: ["ledger", "prove", "--coordinator", e.url,
                                                      "--coordinator-key", "cd" * 32], 4, "cd" * 32),
    case("prove-unreachable", lambda e, t: ["ledger", "prove", "--coordinator", _closed()], 3, "cannot reach"),
    case("verify-wrong-coordinator-key", lambda e, t: ["ledger", "verify", "--coordinator", e.url,
                                                       "--coordinator-key", "ef" * 32], 4, "ef" * 32),
]


@pytest.mark.parametrize(("argv", "code", "mentions"), BAD_INPUT)
def test_bad_input_is_one_line_error(env: Env, tmp_path: Path, argv: Callable[[Env, Path], list[str]], code: int,
                                     mentions: str) -> None:
    got = env.run(*argv(env, tmp_path))
    line = one_error_line(got)
    assert got.returncode == code, (got.returncode, line)
    assert mentions in line, line
    assert got.stdout == ""


def test_a_bad_submit_changed_nothing(env: Env) -> None:
    # Runs after the bad-input cases: none of them created a job or paid anything.
    jobs = env.coordinator.api.get("/v1/jobs")["jobs"]
    assert all(j["kernel"] == "mandelbrot" and j["params"]["width"] == 64 for j in jobs)
    wait_until(lambda: all(j["state"] == "done" for j in env.coordinator.api.get("/v1/jobs")["jobs"]),
               "every job to be done")
    assert env.run("ledger", "verify", "--coordinator", env.url).returncode == 0
