"""`depin ledger export|verify`: read the ledger from a live coordinator, a data dir or an export, and check it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from depin import config, ledger
from depin.cli import output
from depin.client import Client
from depin.errors import LedgerError, UserError

PAGE = 1000


def _from_data_dir(data_dir: Path) -> list[dict[str, Any]]:
    from coordinator.store import Store

    store = Store(data_dir / "coordinator.sqlite3", readonly=True)
    try:
        return list(store.ledger_rows_raw())
    finally:
        store.close()


async def _from_coordinator(url: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    async with Client(url) as c:
        while True:
            page = await c.get_json(f"/v1/ledger?start={len(entries)}&limit={PAGE}")
            entries.extend(page["entries"])
            if not page["entries"] or len(entries) >= page["total"]:
                return entries


def _from_file(path: Path) -> Iterator[dict[str, Any]]:
    try:
        # Bytes that are not UTF-8 become lone surrogates, which the entry checks refuse at that entry's position.
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            yield from ledger.iter_jsonl(f)
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory") from None


def _source(args: argparse.Namespace) -> tuple[str, Any]:
    chosen = [n for n in ("file", "data_dir", "coordinator") if getattr(args, n, None)]
    if len(chosen) > 1:
        raise UserError("give only one of --file, --data-dir, --coordinator")
    if getattr(args, "file", None):
        return args.file, _from_file(Path(args.file))
    if args.data_dir:
        return args.data_dir, _from_data_dir(Path(args.data_dir))
    url = config.coordinator_url(args.coordinator, config.environment())
    return url, asyncio.run(_from_coordinator(url))


def run(args: argparse.Namespace) -> int:
    """Dispatch `depin ledger ACTION`."""
    where, entries = _source(args)
    if args.ledger_command == "export":
        lines = [json.dumps(e, separators=(",", ":")) for e in entries]
        text = "".join(line + "\n" for line in lines)
        if args.output == "-":
            sys.stdout.write(text)
        else:
            try:
                Path(args.output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise UserError(f"cannot write {args.output}: {exc.strerror}") from None
            print(f"wrote {len(lines)} ledger entries to {args.output}")
        return 0
    try:
        summary = ledger.verify(entries)
    except LedgerError as exc:
        if args.json:
            output.emit(True, {"ok": False, "first_bad_seq": exc.seq, "error": str(exc)}, "")
        raise LedgerError(f"ledger of {where} is broken at seq {exc.seq}: {exc}", exc.seq) from None
    data = {"ok": True, "entries": summary.entries, "head_hash": summary.head_hash,
            "credits": sum(v for k, v in summary.balances.items() if k != ledger.MINT)}
    output.emit(args.json, data,
                f"ledger ok: {summary.entries} entries, head {summary.head_hash}, {data['credits']} credits paid")
    return 0
