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

    def mulhi64(a, b):
        """The high 64 bits of the 128-bit product of two uint64, as uint64."""
        return np.uint64((int(a) * int(b)) >> 64)

    def bit_length(x):
        """Number of bits needed to write x (0 for 0), as uint64."""
        return np.uint64(int(x).bit_length())

    def gather_byte_bits(w):
        """Bit j = the low bit of byte j of w, for bytes that are 0 or 1 (as uint64)."""
        return np.uint64(sum(((int(w) >> (8 * j)) & 1) << j for j in range(8)))

else:
    from llvmlite import ir
    from numba import types
    from numba.cpython.unsafe.numbers import leading_zeros
    from numba.extending import intrinsic

    @intrinsic
    def _mulhi64(typingctx, a, b):
        if a != types.uint64 or b != types.uint64:
            return None

        def codegen(context, builder, signature, args):
            wide = ir.IntType(128)
            product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
            return builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))

        return types.uint64(types.uint64, types.uint64), codegen

    @numba.njit(inline="always")
    def mulhi64(a, b):
        """The high 64 bits of the 128-bit product of two uint64, as uint64: one widening multiply
        in LLVM IR (numba has no 128-bit integers), where four 32 x 32-bit products took ~4x the
        instructions."""
        return _mulhi64(np.uint64(a), np.uint64(b))

    @numba.njit(inline="always")
    def bit_length(x):
        """Number of bits needed to write x (0 for 0), as uint64."""
        return np.uint64(64) - np.uint64(leading_zeros(np.uint64(x)))

    @numba.njit(inline="always")
    def gather_byte_bits(w):
        """Bit j = the low bit of byte j of w, for bytes that are 0 or 1 (as uint64): the product
        puts byte j's bit at bit 56 + j, with no carries into the top byte (wraps modulo 2**64)."""
        return (np.uint64(w) * np.uint64(0x0102040810204080)) >> np.uint64(56)
