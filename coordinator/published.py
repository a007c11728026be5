"""Published kernels (docs/KERNELS.md): a submitter's kernel file, checked as every worker will check it again,
kept by its id, and known to the kernel registry as `<id>@0`. The coordinator never executes the file: the spec it
splits, checks and merges by is read from the file's literals (depin.userkernel)."""

from __future__ import annotations

from dataclasses import dataclass

from depin import kernels
from depin.kernels import Kernel
from depin.userkernel import check, source, spec

MAX_PER_PUBLISHER = 100  # kernels one account may publish: each is kept for good, up to 64 KiB


@dataclass(frozen=True)
class Admitted:
    """A kernel file that passed the check."""

    kernel_id: str
    source: bytes  # canonical
    name: str  # its NAME, for people
    kernel: Kernel  # as the coordinator uses it: named by its id, version 0


def admit(raw: bytes) -> Admitted:
    """A kernel file checked, or a UserError (KernelRefused) naming what is wrong with it."""
    canonical = source.canonical(raw)
    kernel_id = source.kernel_id(raw)
    found = check.check(canonical.decode())
    return Admitted(kernel_id, canonical, found.name, spec.to_kernel(found, kernel_id))


def load(raw: bytes) -> Kernel:
    """A stored kernel, admitted again and registered (a restart)."""
    kernel = admit(raw).kernel
    kernels.register(kernel)
    return kernel
