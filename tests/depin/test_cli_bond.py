"""`depin bond` / `depin unbond` map the coordinator's refusal of a banned worker (403) to exit code 5, one line.

The rest of their behaviour runs against a real coordinator in tests/integration/test_e2e_bond.py; a ban takes a
worker's wrong results to reach, so this refusal is stood in for here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from depin.cli import main as cli
from depin.client import Client
from depin.crypto import load_or_create_key
from depin.errors import Forbidden


@pytest.mark.parametrize("command", ["bond", "unbond"])
def test_a_banned_worker_exits_5_with_one_line(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    key = load_or_create_key(tmp_path / "worker.key")
    sent: list[tuple[str, str, str, dict[str, Any]]] = []

    async def refuse(self: Client, path: str, signer: Any, kind: str, payload: dict[str, Any], **kw: Any) -> Any:
        sent.append((path, signer.id, kind, payload))
        raise Forbidden("worker banned: 3 invalid results out of 3")

    monkeypatch.setattr(Client, "post_signed", refuse)
    code = cli.main([command, "7", "--data-dir", str(tmp_path), "--coordinator", "http://127.0.0.1:9"])
    assert code == 5
    assert sent == [(f"/v1/{command}", key.id, command, {"amount": 7})]
    out, err = capsys.readouterr()
    assert out == "" and err == "depin: error: worker banned: 3 invalid results out of 3\n"
