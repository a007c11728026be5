"""The `depin` command line as a user runs it (the real console script, in a subprocess), against live daemons.

The contract: machine-readable --json output with documented keys; exit 0 on success; every error is exactly one
line on stderr starting "depin: error:", never a traceback, with the documented exit code (2 bad input, 3
coordinator unreachable, 4 verification failure, 1 a job that ended badly).
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
from tests.integration.support import Cluster, Coordinator, free_port, wait_until

SMALL = ["-p", "width=64", "-p", "height=48", "-p", "max_iter=64"]
TASKS, REPLICAS, PRICE = 2, 2, 5


@dataclass
class Env:
    cluster: Cluster
    coordinator: Coordinator
    job_id: str  # a done job: TASKS x REPLICAS rewards in the ledger

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
    got = module_cluster.cli("submit", "--coordinator", coordinator.url, "--json", "mandelbrot", *SMALL,
                             "--tasks", str(TASKS), "--replicas", str(REPLICAS), "--price", str(PRICE))
    assert got.returncode == 0, got.stderr
    job_id = json.loads(got.stdout)["job_id"]
    assert coordinator.api.wait_job(job_id)["state"] == "done"
    return Env(module_cluster, coordinator, job_id)


def one_error_line(got: Any) -> str:
    """The single stderr line of a failed command (asserting there is exactly one, and no traceback)."""
    assert got.returncode != 0, (got.stdout, got.stderr)
    assert "Traceback" not in got.stderr + got.stdout, got.stderr
    lines = got.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{got.stderr}"
    assert lines[0].startswith("depin: error: "), lines[0]
    assert got.stderr.endswith("\n")
    return str(lines[0])


# ---- job commands ------------------------------------------------------------------------------------------


def test_submit_prints_the_job_id_and_json_gives_it(env: Env) -> None:
    plain = env.run("submit", "--coordinator", env.url, "mandelbrot", *SMALL, "--tasks", "2")
    assert plain.returncode == 0, plain.stderr
    job_id = plain.stdout.strip()
    assert job_id and "\n" not in job_id and " " not in job_id
    as_json = env.run("submit", "--coordinator", env.url, "--json", "mandelbrot", *SMALL, "--tasks", "2")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert list(answer) == ["job_id"] and answer["job_id"] != job_id
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
    for e in env.coordinator.api.ledger():
        paid[e["to"]] = paid.get(e["to"], 0) + e["amount"]
    assert {r["worker_id"]: r["balance"] for r in rows if r["balance"]} == paid
    assert all(isinstance(r["balance"], int) for r in rows)
    assert env.run("earnings", "--coordinator", env.url).returncode == 0


def test_cancel_then_wait_is_non_zero(cluster: Cluster) -> None:
    coordinator = cluster.coordinator()  # no workers: the job stays queued until cancelled
    url = coordinator.url
    job_id = cluster.cli("submit", "--coordinator", url, "mandelbrot", *SMALL).stdout.strip()
    stranger = cluster.env(DEPIN_HOME=str(cluster.root / "stranger"))
    refused = cluster.cli("cancel", "--coordinator", url, job_id, env=stranger)
    assert "submitter" in one_error_line(refused)
    assert coordinator.api.job(job_id)["state"] == "queued"

    got = cluster.cli("cancel", "--coordinator", url, "--json", job_id)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"job_id": job_id, "state": "cancelled"}
    waited = cluster.cli("wait", "--coordinator", url, "--json", job_id)
    assert waited.returncode == 1, waited.stderr
    assert json.loads(waited.stdout)["state"] == "cancelled"
    assert "cancelled" in one_error_line(cluster.cli("cancel", "--coordinator", url, job_id))
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
    assert got.stdout.startswith(f"ledger ok: {len(entries)} entries, head {entries[-1]['hash']}")
    as_json = json.loads(env.run("ledger", "verify", "--file", str(path), "--json").stdout)
    assert as_json["ok"] is True and as_json["entries"] == len(entries)
    assert as_json["credits"] == sum(e["amount"] for e in entries)


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


def test_ledger_verify_against_the_coordinator_and_its_data_dir(env: Env) -> None:
    head = env.coordinator.api.status()["ledger"]
    for source in (["--coordinator", env.url], ["--data-dir", str(env.coordinator.data_dir)]):
        got = env.run("ledger", "verify", *source, "--json")
        assert got.returncode == 0, got.stderr
        report = json.loads(got.stdout)
        assert (report["ok"], report["entries"], report["head_hash"]) == (True, head["entries"], head["head_hash"])


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
