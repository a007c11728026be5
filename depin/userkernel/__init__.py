"""Bring-your-own kernels (docs/KERNELS.md): a kernel file's canonical source and id (`source`), its check
(`check.check`), its spec and the `Kernel` the coordinator and the CLI use (`spec`). Nothing here executes the file;
`depin.userkernel.compiled` (which imports numba) compiles it, for workers (inside their sandbox) and
`depin kernel check`."""

from depin.userkernel import check, source, spec
from depin.userkernel.source import canonical, kernel_id
from depin.userkernel.spec import Input, Spec, to_kernel

__all__ = ["Input", "Spec", "canonical", "check", "kernel_id", "source", "spec", "to_kernel"]
