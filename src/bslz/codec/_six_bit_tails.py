"""Six-bit tail pieces merged into their words sixteen at a time, as LLVM vector code: a bfloat16
word's sign and five low mantissa bits (the whole tail), a float32 word's sign and five mantissa
bits 16-20 (the top piece of its tail). Packed four values to three bytes, most significant first.

Sixteen values are twelve bytes. One 16-byte load; a byte shuffle puts, in 32-bit lane j, the two
bytes that hold value j (the higher one on top); a shift by each lane's own amount and a mask give
the six bits, whose top bit (the sign) moves to the word's top bit and the others to their place;
the lanes (narrowed to 16 bits for bfloat16) are OR-ed into sixteen words. numba cannot say
"shuffle these bytes", and its loop (`_merge_six_bit_groups`) goes a value at a time. Sixteen
lanes (one AVX-512 register; two AVX2 ones elsewhere) took 0.087 ns a value where eight took
0.123 (256 Ki bf16 values). `bench_heads.py --chunk-only` times whole chunks of MiniLM's bf16
and f32 embeddings through the decoder.
"""

import sys

import numpy as np

from bslz.codec._jit import JIT_DISABLED, njit

GROUP = 16  # values a step
GROUP_BYTES = 6 * GROUP // 8  # their packed bytes
LOAD_BYTES = 16  # read a step: four bytes past its twelve (the caller keeps them inside the array)
# value j of a group lies in bytes FIRST[j] and FIRST[j] + 1, SHIFT[j] bits above the bottom of
# the 16 bits they make (MSB first: value j's bits start at bit 6 j of the group)
FIRST = tuple((6 * j) // 8 for j in range(GROUP))
SHIFT = tuple(16 - (6 * j) % 8 - 6 for j in range(GROUP))


@njit
def _check(chunk, packed, groups):
    """Every load and store of the vector loop lies inside the arrays (it has no bounds checks)."""
    if groups < 0 or GROUP * groups > chunk.size or (groups and GROUP_BYTES * (groups - 1) + LOAD_BYTES > packed.size):
        raise ValueError("six-bit tails: groups beyond the arrays")


@njit
def places(word_bytes):
    """(the sign's shift, the five bits' shift) into a word of 2 or 4 bytes: the sign from bit 5 to
    the top, the five bits at the bottom (bf16) or at bit 16 (f32: below them, two mantissa bytes)."""
    return 8 * word_bytes - 6, 8 * word_bytes - 16


@njit
def merge_groups_scalar(chunk, packed, groups):
    """The same merge a value at a time (NUMBA_DISABLE_JIT runs, big-endian machines)."""
    _check(chunk, packed, groups)
    sign_shift, low_shift = places(chunk.itemsize)
    for g in range(groups):
        for j in range(GROUP):
            first = GROUP_BYTES * g + FIRST[j]
            pair = (np.uint32(packed[first]) << np.uint32(8)) | np.uint32(packed[first + 1])
            t = (pair >> np.uint32(SHIFT[j])) & np.uint32(63)
            bits = ((t & np.uint32(32)) << np.uint32(sign_shift)) | ((t & np.uint32(31)) << np.uint32(low_shift))
            chunk[GROUP * g + j] |= bits


if JIT_DISABLED or sys.byteorder == "big":  # the lanes below are assembled little-endian
    merge_groups = merge_groups_scalar
else:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def _merge_groups(typingctx, chunk, packed, groups):
        if not (
            isinstance(chunk, types.Array)
            and chunk.dtype in (types.uint16, types.uint32)
            and chunk.layout == "C"
            and isinstance(packed, types.Array)
            and packed.dtype == types.uint8
            and packed.layout == "C"
            and groups == types.int64
        ):
            return None

        def codegen(context, builder, signature, args):
            i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
            bytes_in = ir.VectorType(i8, LOAD_BYTES)
            lanes32 = ir.VectorType(i32, GROUP)
            word_bytes = signature.args[0].dtype.bitwidth // 8
            lanes_out = ir.VectorType(i16 if word_bytes == 2 else i32, GROUP)
            sign_shift, low_shift = places.py_func(word_bytes)
            chunk_data = context.make_array(signature.args[0])(context, builder, args[0]).data
            packed_data = context.make_array(signature.args[1])(context, builder, args[1]).data
            n = args[2]
            # lane j, little-endian: [byte FIRST[j] + 1, byte FIRST[j], 0, 0]; index LOAD_BYTES is
            # the zero vector's first byte
            order = []
            for j in range(GROUP):
                order += [FIRST[j] + 1, FIRST[j], LOAD_BYTES, LOAD_BYTES]
            mask = ir.Constant(ir.VectorType(i32, 4 * GROUP), order)
            zeros = ir.Constant(bytes_in, None)
            shifts = ir.Constant(lanes32, SHIFT)

            def splat(value):
                return ir.Constant(lanes32, [value] * GROUP)

            entry = builder.block
            loop, done = builder.append_basic_block("six.loop"), builder.append_basic_block("six.done")
            builder.cbranch(builder.icmp_signed(">", n, ir.Constant(i64, 0)), loop, done)
            builder.position_at_end(loop)
            g = builder.phi(i64)
            g.add_incoming(ir.Constant(i64, 0), entry)
            source = builder.gep(packed_data, [builder.mul(g, ir.Constant(i64, GROUP_BYTES))])
            loaded = builder.load(builder.bitcast(source, bytes_in.as_pointer()), align=1)
            pairs = builder.bitcast(builder.shuffle_vector(loaded, zeros, mask), lanes32)
            t = builder.and_(builder.lshr(pairs, shifts), splat(63))
            sign = builder.shl(builder.and_(t, splat(32)), splat(sign_shift))
            bits = builder.or_(sign, builder.shl(builder.and_(t, splat(31)), splat(low_shift)))
            if word_bytes == 2:
                bits = builder.trunc(bits, lanes_out)
            words = builder.gep(chunk_data, [builder.mul(g, ir.Constant(i64, GROUP))])
            target = builder.bitcast(words, lanes_out.as_pointer())
            builder.store(builder.or_(builder.load(target, align=word_bytes), bits), target, align=word_bytes)
            following = builder.add(g, ir.Constant(i64, 1))
            g.add_incoming(following, loop)
            builder.cbranch(builder.icmp_signed("<", following, n), loop, done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return types.void(chunk, packed, types.int64), codegen

    @njit
    def merge_groups(chunk, packed, groups):
        """OR the first GROUP * `groups` six-bit pieces packed in `packed` into chunk[:GROUP groups]:
        uint16 words (bfloat16 tails) or uint32 words (float32 tails' top pieces); `packed` must
        hold the LOAD_BYTES that the last step reads (GROUP_BYTES a step)."""
        _check(chunk, packed, groups)
        _merge_groups(chunk, packed, np.int64(groups))
