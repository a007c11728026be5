"""Where in a kernel file a refusal points: `line L, col C: ...`, columns counted from 1 as editors show them."""

from __future__ import annotations

import ast

from depin.errors import KernelRefused


def refused(node: ast.AST, message: str) -> KernelRefused:
    """A KernelRefused naming `node`'s line and column."""
    line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1
    return KernelRefused(f"line {line}, col {col}: {message}")
