"""The worked examples of docs/PROTOCOL.md and docs/LEDGER.md, as stored in tests/data/spec_examples.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPEC: dict[str, Any] = json.loads((Path(__file__).resolve().parent / "data" / "spec_examples.json").read_text())


def unbin(value: Any) -> Any:
    """The JSON form back to a msgpack value: {"$bin": hex} becomes bytes."""
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        return {k: unbin(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unbin(v) for v in value]
    return value
