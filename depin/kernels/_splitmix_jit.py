"""The numba twin of `splitmix`: imported only from the kernels' lazy `_compiled()`, never at module load.

numba's scalar integer rules differ from NumPy's: uint64 combined with any signed integer (a literal such as `1`,
or a `range` index) gives int64, on which `>>` is an arithmetic shift. The bits of + and * survive that, but the
shifts do not, and the result is silently wrong. So every operand here is a uint64: the arguments are converted
first, the constants are np.uint64, and so are the shift counts.

numba's cache key for a function covers its own bytecode and closure, not the functions it calls nor the globals it
froze: a kernel's cached machine code would keep an old `mix` after this file or splitmix.py changed. So each kernel
that calls `mix` keeps SOURCE_DIGEST (of both files) in its closure, and any edit gives it a new cache key. The cache
of `mix` itself only watches this file; test_splitmix.py fails if it ever disagrees with splitmix.py. (Changing what
`mix` computes is a new kernel version anyway.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numba
import numpy as np

from depin.kernels import splitmix

SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes() + Path(splitmix.__file__).read_bytes()).hexdigest()

_GOLDEN = np.uint64(splitmix.GOLDEN)
_MUL1 = np.uint64(splitmix.MUL1)
_MUL2 = np.uint64(splitmix.MUL2)
_ONE = np.uint64(1)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def mix(seed, counter):  # type: ignore[no-untyped-def]
    """splitmix.mix, on uint64 (wrap-around multiplication, logical shifts)."""
    z = np.uint64(seed) + (np.uint64(counter) + _ONE) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def unit(seed, counter):  # type: ignore[no-untyped-def]
    """splitmix.unit: the top 53 bits of mix as a float64 in [0, 1), exactly."""
    return np.float64(mix(seed, counter) >> _S11) * splitmix.UNIT
