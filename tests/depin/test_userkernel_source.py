"""A kernel file's canonical source and id (docs/KERNELS.md 3): line endings, the final newline, and the files
refused (not UTF-8, a BOM, over 64 KiB, over 2,000 lines)."""

from __future__ import annotations

import hashlib
import re

import pytest

from depin.errors import KernelRefused, UserError
from depin.protocol import MAX_KERNEL_SOURCE
from depin.userkernel.source import MAX_LINES, canonical, kernel_id


def test_line_endings_become_newlines_and_a_final_one_is_added() -> None:
    assert canonical(b"a\r\nb\rc\nd") == b"a\nb\nc\nd\n"
    assert canonical(b"a\r\r\n") == b"a\n\n"
    assert canonical(b"a\n") == b"a\n"
    assert canonical(canonical(b"x\r\ny")) == canonical(b"x\r\ny")
    assert canonical("é = 'ü'\r\n".encode()) == "é = 'ü'\n".encode()


def test_the_id_is_the_sha256_of_the_canonical_source() -> None:
    assert kernel_id(b"x = 1") == "9e26bf369911c45c243c684147b23fc9e1dcfcf257d299a1c632016a6fcd33f4"  # lowercase hex
    assert kernel_id(b"x = 1\r\n") == kernel_id(b"x = 1") == hashlib.sha256(b"x = 1\n").hexdigest()
    assert kernel_id(b"x = 2") != kernel_id(b"x = 1")


@pytest.mark.parametrize(("raw", "says"), [
    (b"\xef\xbb\xbfx = 1\n", "byte order mark"),
    (b"x = '\xff'\n", "not UTF-8 (byte 5"),
    (b"x = '\xc3'\n", "not UTF-8"),
    ("x = '\ud800'\n".encode("utf-8", "surrogatepass"), "not UTF-8"),
    (b"#" * MAX_KERNEL_SOURCE + b"\n", f"{MAX_KERNEL_SOURCE + 1} bytes, over 64 KiB"),
    (b"#" * MAX_KERNEL_SOURCE, f"{MAX_KERNEL_SOURCE + 1} bytes, over 64 KiB"),  # the added newline counts
    (b"#" * (2 * MAX_KERNEL_SOURCE + 1), "over 64 KiB"),
    (b"\n" * (MAX_LINES + 1), f"{MAX_LINES + 1} lines, over {MAX_LINES}"),
    (b"\r" * MAX_LINES + b"x", f"{MAX_LINES + 1} lines"),
])
def test_refused_files(raw: bytes, says: str) -> None:
    with pytest.raises(KernelRefused, match=re.escape(says)) as info:
        canonical(raw)
    assert isinstance(info.value, UserError)
    with pytest.raises(KernelRefused):
        kernel_id(raw)


def test_the_largest_files_allowed() -> None:
    assert len(canonical(b"#" * (MAX_KERNEL_SOURCE - 1) + b"\n")) == MAX_KERNEL_SOURCE
    assert len(canonical(b"\r\n" * MAX_LINES)) == MAX_LINES  # CRLF files count after canonicalising
