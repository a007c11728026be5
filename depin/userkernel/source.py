"""A kernel file's canonical source and its id (docs/KERNELS.md 3): the bytes everyone hashes, stores and checks."""

from __future__ import annotations

import hashlib

from depin.errors import KernelRefused
from depin.protocol import MAX_KERNEL_SOURCE

MAX_LINES = 2000


def canonical(raw: bytes) -> bytes:
    """The file as UTF-8 without a BOM, every line ending `\\n`, ending in one; a KernelRefused if it cannot be."""
    if len(raw) > 2 * MAX_KERNEL_SOURCE:  # "\r\n" -> "\n" at most halves it: too big whatever it holds
        raise KernelRefused(f"the kernel file is over {MAX_KERNEL_SOURCE // 1024} KiB")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise KernelRefused("the kernel file starts with a byte order mark: save it as UTF-8 without one")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KernelRefused(f"the kernel file is not UTF-8 (byte {exc.start}: {exc.reason})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    out = text.encode("utf-8")
    if len(out) > MAX_KERNEL_SOURCE:
        raise KernelRefused(f"the kernel file is {len(out)} bytes, over {MAX_KERNEL_SOURCE // 1024} KiB")
    lines = out.count(b"\n")
    if lines > MAX_LINES:
        raise KernelRefused(f"the kernel file has {lines} lines, over {MAX_LINES}")
    return out


def kernel_id(raw: bytes) -> str:
    """The kernel's id: the lowercase hex SHA-256 of its canonical source."""
    return hashlib.sha256(canonical(raw)).hexdigest()
