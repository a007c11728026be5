"""Bonds with real processes: the operator grants a worker id credits, `depin bond` locks some in `bond:<id>` signed
with the worker's own key, `depin ledger verify` still passes, `depin unbond` gives some back, and every refusal is
one stderr line with the documented exit code (README, "Commands")."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from depin.crypto import load_or_create_key
from tests.integration.support import Cluster, free_port, one_error_line


@pytest.mark.timeout(120)
def test_bond_and_unbond_through_the_cli(cluster: Cluster, tmp_path: Path) -> None:
    coordinator = cluster.coordinator()
    url = coordinator.url
    worker_dir = tmp_path / "worker"
    worker_id = load_or_create_key(worker_dir / "worker.key").id  # what `depin worker --data-dir` would use

    got = cluster.cli("grant", worker_id, "1000", "--data-dir", str(coordinator.data_dir), "--coordinator", url)
    assert got.returncode == 0, got.stderr

    got = cluster.cli("bond", "400", "--data-dir", str(worker_dir), "--coordinator", url, "--json")
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    assert answer == {"worker_id": worker_id, "amount": 400, "seq": 1, "bonded": 400, "balance": 600}
    assert coordinator.api.balance(quote("bond:" + worker_id, safe="")) == 400
    assert coordinator.api.balance(worker_id) == 600
    entry = coordinator.api.ledger()[1]
    assert (entry["kind"], entry["from"], entry["to"], entry["amount"]) == ("bond", worker_id, "bond:" + worker_id,
                                                                           400)

    coordinator.api.wait_checkpointed()
    got = cluster.cli("ledger", "verify", "--coordinator", url, "--json")
    assert got.returncode == 0, (got.stdout, got.stderr)
    assert json.loads(got.stdout)["ok"] is True

    got = cluster.cli("unbond", "150", "--data-dir", str(worker_dir), "--coordinator", url)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "unbonded 150 credits (ledger entry 2); bond 250, balance 750\n"
    assert coordinator.api.balance(quote("bond:" + worker_id, safe="")) == 250
    got = cluster.cli("balance", "bond:" + worker_id, "--coordinator", url)
    assert (got.returncode, got.stdout) == (0, f"bond:{worker_id}  250 credits\n"), got.stderr

    # Refusals: one line, exit 2 (a request the coordinator refuses), nothing moved.
    got = cluster.cli("unbond", "251", "--data-dir", str(worker_dir), "--coordinator", url)
    assert got.returncode == 2
    assert one_error_line(got) == ("depin: error: the bond holds 250 credits and 0 of them cover single results not"
                                   " yet audited: at most 250 can be taken out now")
    got = cluster.cli("bond", "751", "--data-dir", str(worker_dir), "--coordinator", url)
    assert got.returncode == 2
    assert one_error_line(got) == (f"depin: error: insufficient funds: account {worker_id} holds 750 credits,"
                                   " cannot bond 751")
    got = cluster.cli("bond", "0", "--data-dir", str(worker_dir), "--coordinator", url)
    assert got.returncode == 2
    assert one_error_line(got) == "depin: error: field amount: 0 outside [1, 9007199254740991]"
    assert coordinator.api.balance(quote("bond:" + worker_id, safe="")) == 250
    assert len(coordinator.api.ledger()) == 3

    # No worker key: exit 2, and no key is made. No coordinator: exit 3.
    got = cluster.cli("bond", "5", "--data-dir", str(tmp_path / "nobody"), "--coordinator", url)
    assert got.returncode == 2 and "no key at" in one_error_line(got)
    assert not (tmp_path / "nobody" / "worker.key").exists()
    got = cluster.cli("unbond", "5", "--data-dir", str(worker_dir), "--coordinator", f"http://127.0.0.1:{free_port()}")
    assert got.returncode == 3 and "cannot reach the coordinator" in one_error_line(got)

    got = cluster.cli("ledger", "verify", "--data-dir", str(coordinator.data_dir), "--json")
    assert got.returncode == 0, (got.stdout, got.stderr)
    report = json.loads(got.stdout)
    assert report["ok"] is True, report
