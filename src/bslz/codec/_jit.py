"""JIT settings for every kernel, in one place.

Kernels are compiled with `cache=True` and never with fastmath (it could reshape a bitstream).
Under NUMBA_DISABLE_JIT=1 the same source runs as plain Python: the helpers below have a Python
twin so that path stays exact.
"""

import numba
import numpy as np

JIT_DISABLED = bool(numba.config.DISABLE_JIT)

njit = numba.njit(cache=True, nogil=True)
# Small helpers called from hot loops: inlined at Numba IR level, since calls that return tuples
# are not inlined by LLVM and cost ~15x in a decode loop.
njit_inline = numba.njit(cache=True, nogil=True, inline="always")
njit_parallel = numba.njit(cache=True, nogil=True, parallel=True)
prange = numba.prange


if JIT_DISABLED:

    def bit_length(x):
        """Number of bits needed to write x (0 for 0), as uint64."""
        return np.uint64(int(x).bit_length())

else:
    from numba.cpython.unsafe.numbers import leading_zeros

    @numba.njit(inline="always")
    def bit_length(x):
        """Number of bits needed to write x (0 for 0), as uint64."""
        return np.uint64(64) - np.uint64(leading_zeros(np.uint64(x)))
