"""JIT settings for every kernel, in one place.

Kernels are compiled with `cache=True` and never with fastmath (it could reshape a bitstream).
Under NUMBA_DISABLE_JIT=1 the same source runs as plain Python: the helpers below have a Python
twin so that path stays exact.
"""

import sys

import numba
import numpy as np

JIT_DISABLED = bool(numba.config.DISABLE_JIT)

njit = numba.njit(cache=True, nogil=True)
# Small helpers called from hot loops: inlined at Numba IR level, since calls that return tuples
# are not inlined by LLVM and cost ~15x in a decode loop.
njit_inline = numba.njit(cache=True, nogil=True, inline="always")


def njit_variant(tag, inline=False):
    """`njit` (`njit_inline` if `inline`) for a kernel that a factory makes more than one of, its
    qualified name suffixed with `tag`. Numba names compiled code by qualified name and a counter
    of the process that compiles it: two kernels of one factory compiled in two processes can get
    the same name, and once both are loaded from numba's cache into a third, calls meant for one
    run the other's code (seen: the float32 and float64 searches, each cached by a process of its
    own, loaded into one; an add-compare-select step's shape check raised). The tag gives each
    variant a name of its own (tests/test_jit_cache.py)."""

    def decorate(fn):
        fn.__qualname__ = f"{fn.__qualname__}_{tag}"
        return (njit_inline if inline else njit)(fn)

    return decorate


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

    def store_pair16(arr, index, value):
        """arr[index], arr[index + 1] = the low and high halves of value's low 32 bits (uint16 arr)."""
        arr[index] = int(value) & 0xFFFF
        arr[index + 1] = (int(value) >> 16) & 0xFFFF

    def load_le64(arr, index):
        """The 8 bytes arr[index: index + 8] of a uint8 arr as a little-endian uint64."""
        return np.uint64(int.from_bytes(bytes(arr[index : index + 8]), "little"))

else:
    from llvmlite import ir
    from numba import types
    from numba.cpython.unsafe.numbers import leading_zeros
    from numba.extending import intrinsic

    @intrinsic
    def _store_pair16(typingctx, arr, index, value):
        if not (isinstance(arr, types.Array) and arr.dtype == types.uint16 and arr.layout == "C"):
            return None
        if index != types.uint64 or value != types.uint64:
            return None

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            target = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(32).as_pointer())
            pair = builder.trunc(args[2], ir.IntType(32))
            if sys.byteorder == "big":  # arr[index] is then the word's high half
                sixteen = ir.Constant(ir.IntType(32), 16)
                pair = builder.or_(builder.shl(pair, sixteen), builder.lshr(pair, sixteen))
            store = builder.store(pair, target)
            store.align = 2  # an element's alignment: x86 stores 4 bytes at any address
            return context.get_dummy_value()

        return types.void(arr, types.uint64, types.uint64), codegen

    @numba.njit(inline="always")
    def store_pair16(arr, index, value):
        """arr[index], arr[index + 1] = the low and high halves of value's low 32 bits, in one
        32-bit store, for a C-contiguous uint16 arr. No bounds check: callers keep
        index + 1 inside arr. Two symbols a store took a Huffman decoder's lookup from 15 to 9
        instructions (1.10 -> 0.84 ns a symbol)."""
        _store_pair16(arr, np.uint64(index), np.uint64(value))

    @intrinsic
    def _load_le64(typingctx, arr, index):
        if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.layout == "C"):
            return None
        if index != types.uint64:
            return None

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            source = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
            load = builder.load(source)
            load.align = 1  # x86 loads 8 bytes at any address
            if sys.byteorder == "big":
                return builder.bswap(load)
            return load

        return types.uint64(arr, types.uint64), codegen

    @numba.njit(inline="always")
    def load_le64(arr, index):
        """The 8 bytes arr[index: index + 8] of a C-contiguous uint8 arr as a little-endian uint64,
        in one unaligned load. No bounds check: callers keep index + 8 <= arr.size. A Huffman
        decoder reads its next 57 bits or more this way wherever they start, with no refill logic."""
        return _load_le64(arr, np.uint64(index))

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
