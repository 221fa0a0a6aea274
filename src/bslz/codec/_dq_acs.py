"""The trellis's add-compare-select step as LLVM vector code (numba has no SIMD types of its own).

Each step of the Viterbi search in `dq` gives every state the cheaper of its two predecessors:
new[j] = min(cost[first[j]] + error[first_error[j]], cost[second[j]] + error[second_error[j]]),
with a decision bit j set when the second is strictly cheaper. Written out in scalar numba code
it took ~70 instructions a value (16 adds, 8 compares, 8 minimums, the bits assembled one by
one); as vectors of the eight costs it is two shuffles, two adds, a compare and a select, and the
compare's mask is the decision byte: 3.8 -> 2.6 ns a value (MiniLM-like Gaussian data, one
thread), the same decisions bit for bit. LLVM lowers the vectors to whatever the CPU has (two
AVX2 registers, one AVX-512 register, NEON pairs).

Each step waits for the last (shuffle, add, select: ~10 cycles), so the search runs `chains`
trellises (blocks) in lockstep, each its own costs, errors and decisions. The costs are float32
(eight to a 256-bit register, twice the lanes of float64) and each value's four errors are one
128-bit load; with four chains the add-compare-select went from 2.1 (float64, two chains) to
1.0 ns a value (one thread), and the float32 sums give the float64 search's path cost to 1e-7.
"""

import numpy as np

from bslz.codec._jit import JIT_DISABLED, njit, njit_variant

LANES = 8
ROWS = 4  # errors rows a chain: quantizer 0 even / odd index, quantizer 1 even / odd


def lane_tables(pred_states, pred_parities, quantizer):
    """(first, second, first_error, second_error): per new state, its two predecessors and the row
    of the errors array (2 * quantizer + parity of the index) that each path adds."""
    first, second = (pred_states[:, i].tolist() for i in (0, 1))
    first_error, second_error = (
        [2 * int(quantizer[s]) + int(p) for s, p in zip(pred_states[:, i], pred_parities[:, i])] for i in (0, 1)
    )
    return first, second, first_error, second_error


def make_add_compare_select(pred_states, pred_parities, quantizer, chains=1):
    """acs(costs, errors, decisions, stride, lo, n): n steps of `chains` trellises in lockstep.

    Chain c: costs[8c : 8c + 8] (float32, in and out); errors[c, i, r] (float32, >= n values) the
    squared error of quantizer r // 2's index of parity r % 2 at value i; its decision for value i
    at decisions[c * stride + lo + i] (uint8, bit j for state j)."""
    tables = lane_tables(pred_states, pred_parities, quantizer)
    if len(tables[0]) != LANES:
        raise ValueError(f"the vector code is written for {LANES} states")
    if JIT_DISABLED:
        return _python_twin(*tables, chains)
    return _vector_kernel(*tables, chains)


@njit
def _check(costs, errors, decisions, stride, lo, n, chains):
    """Every access the steps make lies inside the arrays (the vector code has no bounds checks)."""
    if (
        costs.size != LANES * chains
        or errors.shape[0] != chains
        or errors.shape[2] != ROWS
        or not 0 <= n <= errors.shape[1]
    ):
        raise ValueError("add-compare-select: wrong costs or errors shape")
    if lo < 0 or stride < lo + n or (chains - 1) * stride + lo + n > decisions.size:
        raise ValueError("add-compare-select: decisions out of range")


def _python_twin(first, second, first_error, second_error, chains):
    """The same steps in numpy, for NUMBA_DISABLE_JIT runs."""
    first, second = np.array(first), np.array(second)
    first_error, second_error = np.array(first_error), np.array(second_error)
    weights = np.left_shift(1, np.arange(LANES))

    def acs(costs, errors, decisions, stride, lo, n):
        _check(costs, errors, decisions, stride, lo, n, chains)
        for c in range(chains):
            cost, error = costs[LANES * c : LANES * (c + 1)], errors[c]
            for i in range(n):
                a = cost[first] + error[i, first_error]
                b = cost[second] + error[i, second_error]
                later = b < a
                cost[:] = np.where(later, b, a)
                decisions[c * stride + lo + i] = int(weights[later].sum())

    return acs


def _vector_kernel(first, second, first_error, second_error, chains):
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
    costs_vec, errors_vec = ir.VectorType(f32, LANES), ir.VectorType(f32, ROWS)

    def mask(indices):
        return ir.Constant(ir.VectorType(i32, LANES), list(indices))

    def contiguous(array_type, ndim, dtype):
        return (
            isinstance(array_type, types.Array)
            and array_type.ndim == ndim
            and array_type.layout == "C"
            and (array_type.dtype == dtype)
        )

    @intrinsic
    def acs_steps(typingctx, costs, errors, decisions, stride, lo, n):
        if not (
            contiguous(costs, 1, types.float32)
            and contiguous(errors, 3, types.float32)
            and contiguous(decisions, 1, types.uint8)
        ):
            return None  # a typing error at compile time, not wrong memory accesses
        signature = types.void(costs, errors, decisions, types.intp, types.intp, types.intp)

        def codegen(context, builder, sig, args):
            costs_arg, errors_arg, decisions_arg, stride_arg, lo_arg, n_arg = args
            costs_a = context.make_array(sig.args[0])(context, builder, costs_arg)
            errors_a = context.make_array(sig.args[1])(context, builder, errors_arg)
            decisions_a = context.make_array(sig.args[2])(context, builder, decisions_arg)
            per_chain = cgutils.unpack_tuple(builder, errors_a.shape, 3)[1]  # values a chain
            costs_ptrs = [
                builder.bitcast(builder.gep(costs_a.data, [ir.Constant(i64, LANES * c)]), costs_vec.as_pointer())
                for c in range(chains)
            ]
            starts = [builder.load(p, align=4) for p in costs_ptrs]
            entry = builder.block
            loop, done = builder.append_basic_block("acs.loop"), builder.append_basic_block("acs.done")
            builder.cbranch(builder.icmp_signed(">", n_arg, ir.Constant(i64, 0)), loop, done)

            builder.position_at_end(loop)
            i = builder.phi(i64)  # every phi first: LLVM wants them at the top of the block
            i.add_incoming(ir.Constant(i64, 0), entry)
            costs = [builder.phi(costs_vec) for _ in range(chains)]
            new_costs = []
            for c, cost in enumerate(costs):
                cost.add_incoming(starts[c], entry)
                # the value's four errors, errors[c, i, :]: one load
                at = builder.mul(builder.add(builder.mul(ir.Constant(i64, c), per_chain), i), ir.Constant(i64, ROWS))
                error = builder.load(
                    builder.bitcast(builder.gep(errors_a.data, [at]), errors_vec.as_pointer()), align=4
                )

                def path(states, rows, cost=cost, error=error):  # lane j: the predecessor's cost plus its error
                    return builder.fadd(
                        builder.shuffle_vector(cost, cost, mask(states)),
                        builder.shuffle_vector(error, error, mask(rows)),
                    )

                a, b = path(first, first_error), path(second, second_error)
                later = builder.fcmp_ordered("<", b, a)  # ties keep the first predecessor
                new_costs.append(builder.select(later, b, a))
                offset = builder.add(builder.mul(ir.Constant(i64, c), stride_arg), builder.add(lo_arg, i))
                builder.store(builder.bitcast(later, ir.IntType(LANES)), builder.gep(decisions_a.data, [offset]))
            following = builder.add(i, ir.Constant(i64, 1))
            i.add_incoming(following, loop)
            for cost, new_cost in zip(costs, new_costs):
                cost.add_incoming(new_cost, loop)
            builder.cbranch(builder.icmp_signed("<", following, n_arg), loop, done)

            builder.position_at_end(done)
            finals = [builder.phi(costs_vec) for _ in range(chains)]
            for c, final in enumerate(finals):
                final.add_incoming(starts[c], entry)
                final.add_incoming(new_costs[c], loop)
                builder.store(final, costs_ptrs[c], align=4)
            return context.get_dummy_value()

        return signature, codegen

    @njit_variant(f"{chains}_chains")
    def acs(costs, errors, decisions, stride, lo, n):
        _check(costs, errors, decisions, stride, lo, n, chains)
        acs_steps(costs, errors, decisions, stride, lo, n)

    return acs
