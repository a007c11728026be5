"""`depin ledger export|verify|prove`: read the ledger from a live coordinator, a data dir or an export, check it
(chain, money rules, Merkle root against the signed checkpoint), and check proofs of single entries and of growth."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from depin import checkpoint, config, ledger, ledger_client
from depin.accounts import holdings
from depin.cli import output
from depin.client import Client
from depin.crypto import VerifyKey
from depin.errors import LedgerError, PeerProtocolError, UserError, VerificationError

PAGE = 1000


def _from_data_dir(data_dir: Path) -> Iterator[dict[str, Any]]:
    """The stored entries, streamed (a ledger of millions of entries is never held in memory at once)."""
    from coordinator.store import Store

    store = Store(data_dir / "coordinator.sqlite3", readonly=True)
    try:
        for e in store.ledger.entries():
            yield e.to_dict()
    finally:
        store.close()


async def _from_coordinator(url: str, pinned: str | None = None, *, signed_only: bool
                            ) -> tuple[list[dict[str, Any]], checkpoint.Checkpoint]:
    """The ledger and the latest checkpoint; with `signed_only`, exactly the entries that checkpoint covers."""
    entries: list[dict[str, Any]] = []
    async with Client(url) as c:
        key = await ledger_client.coordinator_key(c, pinned)
        cp = await ledger_client.latest_checkpoint(c, key)
        while True:
            want = min(PAGE, cp.size - len(entries)) if signed_only else PAGE
            if want <= 0:
                break
            page = await c.get_json(f"/v1/ledger?start={len(entries)}&limit={want}")
            entries.extend(page["entries"])
            if not page["entries"] or (not signed_only and len(entries) >= page["total"]):
                break
    return (entries[:cp.size] if signed_only else entries), cp


def _from_file(path: Path) -> Iterator[dict[str, Any]]:
    try:
        # Bytes that are not UTF-8 become lone surrogates, which the entry checks refuse at that entry's position.
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            yield from ledger.iter_jsonl(f)
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory") from None


def _write_lines(out: TextIO, entries: Iterable[dict[str, Any]]) -> int:
    count = 0
    for e in entries:
        out.write(json.dumps(e, separators=(",", ":")) + "\n")
        count += 1
    return count


def _source(args: argparse.Namespace) -> tuple[str, Any, checkpoint.Checkpoint | None]:
    chosen = [n for n in ("file", "data_dir", "coordinator") if getattr(args, n, None)]
    if len(chosen) > 1:
        raise UserError("give only one of --file, --data-dir, --coordinator")
    if getattr(args, "file", None):
        return args.file, _from_file(Path(args.file)), None
    if args.data_dir:
        return args.data_dir, _from_data_dir(Path(args.data_dir)), None
    url = config.coordinator_url(args.coordinator, config.environment())
    # verify checks exactly what the latest checkpoint signs; export copies everything there is
    signed_only = args.ledger_command == "verify"
    entries, cp = asyncio.run(_from_coordinator(url, getattr(args, "coordinator_key", None), signed_only=signed_only))
    return url, entries, (cp if signed_only else None)


def run(args: argparse.Namespace) -> int:
    """Dispatch `depin ledger ACTION`."""
    if args.ledger_command == "prove":
        return asyncio.run(_prove(args))
    where, entries, cp = _source(args)
    if args.ledger_command == "export":
        if args.output == "-":
            _write_lines(sys.stdout, entries)
            return 0
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                count = _write_lines(f, entries)
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc.strerror}") from None
        print(f"wrote {count} ledger entries to {args.output}")
        return 0
    if getattr(args, "checkpoint", None):
        if cp is not None:
            raise UserError("--checkpoint is for --file or --data-dir; against a coordinator, use depin ledger prove"
                            " --since")
        cp = _saved_checkpoint(args.checkpoint, args.coordinator_key)
    try:
        summary = ledger.verify(entries, at_size=None if cp is None else cp.size)
    except LedgerError as exc:
        if args.json:
            output.emit(True, {"ok": False, "first_bad_seq": exc.seq, "error": str(exc)}, "")
        raise LedgerError(f"ledger of {where} is broken at seq {exc.seq}: {exc}", exc.seq) from None
    if cp is not None and summary.root_at is None:
        _mismatch(args, f"ledger of {where} has {summary.entries} entries, fewer than the {cp.size} its checkpoint"
                        f" covers")
    if cp is not None and summary.root_at != cp.root.hex():
        _mismatch(args, f"ledger of {where}: its first {cp.size} entries have Merkle root {summary.root_at},"
                        f" but the coordinator signed {cp.root.hex()}")
    in_accounts, escrow, bonds = holdings(summary.balances)
    data = {"ok": True, "entries": summary.entries, "head_hash": summary.head_hash, "root_hash": summary.root_hash,
            "minted": summary.minted, "in_escrow": escrow, "in_accounts": in_accounts, "in_bonds": bonds,
            "checkpoint": None if cp is None else cp.to_json()}
    signed = "" if cp is None else f"; the first {cp.size} match the checkpoint signed by {cp.coordinator}"
    bonded = f" + {bonds} in bonds" if bonds else ""  # a ledger without bonds reads as it always did
    output.emit(args.json, data,
                f"ledger ok: {summary.entries} entries, head {summary.head_hash}, root {summary.root_hash}{signed}\n"
                f"credits: {summary.minted} minted = {in_accounts} in accounts + {escrow} in escrow{bonded}")
    return 0


def _mismatch(args: argparse.Namespace, message: str) -> None:
    if args.json:
        output.emit(True, {"ok": False, "first_bad_seq": None, "error": message}, "")
    raise VerificationError(message)


def _saved_checkpoint(path: str, key_hex: str | None) -> checkpoint.Checkpoint:
    """A checkpoint kept in a file, its signature checked against the coordinator key the user names."""
    if key_hex is None:
        raise UserError("--checkpoint needs --coordinator-key: a checkpoint proves nothing without its signer's key")
    try:
        key = VerifyKey(bytes.fromhex(key_hex))
    except (ValueError, PeerProtocolError):
        raise UserError("--coordinator-key must be 64 hex digits") from None
    cp = _read_checkpoint(path)
    cp.verify(key)
    return cp


def _read_checkpoint(path: str) -> checkpoint.Checkpoint:
    """A checkpoint kept in a file (its signature is checked by the caller); UserError if it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        return checkpoint.Checkpoint.from_json(json.loads(text, object_pairs_hook=ledger.no_duplicate_keys))
    except (OSError, ValueError, VerificationError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"cannot read checkpoint {path}: {reason}") from None


async def _prove(args: argparse.Namespace) -> int:
    """Check the latest checkpoint's signature, the inclusion of entries, and consistency with a kept checkpoint."""
    url = config.coordinator_url(args.coordinator, config.environment())
    since = _read_checkpoint(args.since) if args.since else None
    lines: list[str] = []
    data: dict[str, Any] = {"entries": []}
    async with Client(url) as c:
        key = await ledger_client.coordinator_key(c, args.coordinator_key)
        if since is not None:
            since.verify(key)
            cp = await ledger_client.prove_consistent(c, key, since)
            lines.append(f"consistent: checkpoint {cp.size} extends your checkpoint {since.size}")
            data["consistent_with"] = since.size
        else:
            cp = await ledger_client.latest_checkpoint(c, key)
        lines.insert(0, f"checkpoint: {cp.size} entries, root {cp.root.hex()}, signed by {cp.coordinator}")
        for seq in args.seq:
            entry, at = await ledger_client.prove_entry(c, key, seq, cp)
            lines.append(f"included:   entry {seq} ({entry['kind']} {entry['amount']} {entry['from']} -> {entry['to']})"
                         f" is in checkpoint {at.size}")
            data["entries"].append(entry)
    data["checkpoint"] = cp.to_json()
    if args.save:
        try:
            Path(args.save).write_text(json.dumps(cp.to_json()) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {args.save}: {exc.strerror}") from None
        lines.append(f"saved:      checkpoint {cp.size} to {args.save}")
    output.emit(args.json, data, "\n".join(lines))
    return 0
