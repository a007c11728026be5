"""The kernel registry: every kernel depin can run, by name and version."""

from __future__ import annotations

from depin.errors import UserError
from depin.kernels import mandelbrot, montecarlo, nonce
from depin.kernels.base import Chunks, Kernel, Param, Params, exact_compare, output_digest, parse_params, wire_digest

_REGISTRY: dict[str, Kernel] = {k.name: k for k in (mandelbrot.KERNEL, montecarlo.KERNEL, nonce.KERNEL)}


def get(name: str, version: int | None = None) -> Kernel:
    """The kernel `name` (at `version`, if given), or a UserError listing what exists."""
    kernel = _REGISTRY.get(name)
    if kernel is None:
        raise UserError(f"unknown kernel {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    if version is not None and version != kernel.version:
        raise UserError(f"kernel {name} version {version} is not supported (have {kernel.version})")
    return kernel


def all_kernels() -> list[Kernel]:
    """Every registered kernel, by name."""
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


__all__ = [
    "Chunks", "Kernel", "Param", "Params", "all_kernels", "exact_compare", "get", "output_digest", "parse_params",
    "wire_digest",
]
