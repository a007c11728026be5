"""The kernel registry: every kernel depin can run, by name and version."""

from __future__ import annotations

from depin.errors import UserError
from depin.kernels import mandelbrot, montecarlo, nonce
from depin.kernels.base import Chunks, Kernel, Param, Params, exact_compare, output_digest, parse_params, wire_digest

_REGISTRY: dict[str, Kernel] = {k.name: k for k in (mandelbrot.KERNEL, montecarlo.KERNEL, nonce.KERNEL)}
# Published kernels this process has loaded (docs/KERNELS.md): named by their id, at version 0.
_PUBLISHED: dict[str, Kernel] = {}


def register(kernel: Kernel) -> None:
    """Make a published kernel known to this process (the coordinator when it is published or loaded, the CLI and
    workers when they fetched it): `get` finds it by its id from then on."""
    _PUBLISHED[kernel.name] = kernel


def get(name: str, version: int | None = None) -> Kernel:
    """The kernel `name` (at `version`, if given), or a UserError listing what exists."""
    kernel = _REGISTRY.get(name) or _PUBLISHED.get(name)
    if kernel is None:
        raise UserError(f"unknown kernel {name!r}; available: {', '.join(sorted(_REGISTRY))}, or the id of a"
                        " published kernel (depin kernels)")
    if version is not None and version != kernel.version:
        raise UserError(f"kernel {name} version {version} is not supported (have {kernel.version})")
    return kernel


def all_kernels() -> list[Kernel]:
    """Every registered kernel, by name."""
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


__all__ = [
    "Chunks", "Kernel", "Param", "Params", "all_kernels", "exact_compare", "get", "output_digest", "parse_params",
    "register", "wire_digest",
]
