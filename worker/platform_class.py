"""The worker's platform class (docs/KERNELS.md 5): what can make a kernel's floating-point bits differ between
machines - the CPU architecture, the numba and LLVM that compile kernels, and the C library whose libm they call.
Sent with every lease request; the coordinator compares the results of a kernel with homogeneous redundancy only
among workers of one class."""

from __future__ import annotations

import functools
import platform


@functools.cache
def platform_class() -> str:
    """e.g. "x86_64 numba-0.68.1 llvm-20.1.8 glibc-2.36" (printable ASCII, at most 128 characters)."""
    import llvmlite.binding
    import numba

    libc, version = platform.libc_ver()
    llvm = ".".join(str(n) for n in llvmlite.binding.llvm_version_info)
    text = f"{platform.machine() or 'unknown'} numba-{numba.__version__} llvm-{llvm} {libc or 'libc'}-{version or '?'}"
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:128]
