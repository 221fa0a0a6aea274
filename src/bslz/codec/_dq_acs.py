"""The trellis's add-compare-select step as LLVM vector code (numba has no SIMD types of its own).

Each step of the Viterbi search in `dq` gives every state the cheaper of its two predecessors:
new[j] = min(cost[first[j]] + error[first_error[j]], cost[second[j]] + error[second_error[j]]),
with a decision bit j set when the second is strictly cheaper. Written out in scalar numba code
it took ~70 instructions a value (16 adds, 8 compares, 8 minimums, the bits assembled one by
one); as vectors of the eight costs it is two shuffles, two adds, a compare and a select, and the
compare's mask is the decision byte. 3.8 -> 2.6 ns a value (MiniLM-like Gaussian data, one
thread), the same decisions bit for bit. LLVM lowers the vectors to whatever the CPU has (two
AVX2 registers, one AVX-512 register, NEON pairs).
"""

import numpy as np

from bslz.codec._jit import JIT_DISABLED, njit

LANES = 8


def lane_tables(pred_states, pred_parities, quantizer):
    """(first, second, first_error, second_error): per new state, its two predecessors and the row
    of the errors array (2 * quantizer + parity of the index) that each path adds."""
    first, second = (pred_states[:, i].tolist() for i in (0, 1))
    first_error, second_error = (
        [2 * int(quantizer[s]) + int(p) for s, p in zip(pred_states[:, i], pred_parities[:, i])] for i in (0, 1)
    )
    return first, second, first_error, second_error


def make_add_compare_select(pred_states, pred_parities, quantizer):
    """acs(costs, errors, decisions, lo, n): n steps. costs: float64[8] in and out; errors: float64
    (4, >= n), row r the squared error of quantizer r // 2's index of parity r % 2 at each value;
    decisions[lo + i]: uint8, bit j for state j at value i."""
    tables = lane_tables(pred_states, pred_parities, quantizer)
    if len(tables[0]) != LANES:
        raise ValueError(f"the vector code is written for {LANES} states")
    if JIT_DISABLED:
        return _python_twin(*tables)
    return _vector_kernel(*tables)


@njit
def _check(costs, errors, decisions, lo, n):
    """Every access the steps make lies inside the arrays (the vector code has no bounds checks)."""
    if costs.size != LANES or errors.shape[0] != 4 or not 0 <= n <= errors.shape[1]:
        raise ValueError("add-compare-select: wrong costs or errors shape")
    if lo < 0 or lo + n > decisions.size:
        raise ValueError("add-compare-select: decisions out of range")


def _python_twin(first, second, first_error, second_error):
    """The same steps in numpy, for NUMBA_DISABLE_JIT runs."""
    first, second = np.array(first), np.array(second)
    first_error, second_error = np.array(first_error), np.array(second_error)
    weights = np.left_shift(1, np.arange(LANES))

    def acs(costs, errors, decisions, lo, n):
        _check(costs, errors, decisions, lo, n)
        for i in range(n):
            a = costs[first] + errors[first_error, i]
            b = costs[second] + errors[second_error, i]
            later = b < a
            costs[:] = np.where(later, b, a)
            decisions[lo + i] = int(weights[later].sum())

    return acs


def _vector_kernel(first, second, first_error, second_error):
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    f64, i32, i64 = ir.DoubleType(), ir.IntType(32), ir.IntType(64)
    costs_vec, errors_vec = ir.VectorType(f64, LANES), ir.VectorType(f64, 4)

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
    def acs_steps(typingctx, costs, errors, decisions, lo, n):
        if not (
            contiguous(costs, 1, types.float64)
            and contiguous(errors, 2, types.float64)
            and contiguous(decisions, 1, types.uint8)
        ):
            return None  # a typing error at compile time, not wrong memory accesses
        signature = types.void(costs, errors, decisions, types.intp, types.intp)

        def codegen(context, builder, sig, args):
            costs_arg, errors_arg, decisions_arg, lo_arg, n_arg = args
            costs_a = context.make_array(sig.args[0])(context, builder, costs_arg)
            errors_a = context.make_array(sig.args[1])(context, builder, errors_arg)
            decisions_a = context.make_array(sig.args[2])(context, builder, decisions_arg)
            row = cgutils.unpack_tuple(builder, errors_a.shape, 2)[1]
            costs_ptr = builder.bitcast(costs_a.data, costs_vec.as_pointer())
            start = builder.load(costs_ptr, align=8)
            entry = builder.block
            loop, done = builder.append_basic_block("acs.loop"), builder.append_basic_block("acs.done")
            builder.cbranch(builder.icmp_signed(">", n_arg, ir.Constant(i64, 0)), loop, done)

            builder.position_at_end(loop)
            i, cost = builder.phi(i64), builder.phi(costs_vec)
            i.add_incoming(ir.Constant(i64, 0), entry)
            cost.add_incoming(start, entry)
            error = ir.Constant(errors_vec, ir.Undefined)  # the value's four errors, errors[:, i]
            for r in range(4):
                at = builder.gep(errors_a.data, [builder.add(builder.mul(ir.Constant(i64, r), row), i)])
                error = builder.insert_element(error, builder.load(at), ir.Constant(i32, r))

            def path(states, rows):  # cost of each predecessor plus its error, lane j for new state j
                return builder.fadd(
                    builder.shuffle_vector(cost, cost, mask(states)), builder.shuffle_vector(error, error, mask(rows))
                )

            a, b = path(first, first_error), path(second, second_error)
            later = builder.fcmp_ordered("<", b, a)  # ties keep the first predecessor
            new_cost = builder.select(later, b, a)
            at = builder.gep(decisions_a.data, [builder.add(lo_arg, i)])
            builder.store(builder.bitcast(later, ir.IntType(LANES)), at)  # lane j -> bit j
            following = builder.add(i, ir.Constant(i64, 1))
            i.add_incoming(following, loop)
            cost.add_incoming(new_cost, loop)
            builder.cbranch(builder.icmp_signed("<", following, n_arg), loop, done)

            builder.position_at_end(done)
            final = builder.phi(costs_vec)
            final.add_incoming(start, entry)
            final.add_incoming(new_cost, loop)
            builder.store(final, costs_ptr, align=8)
            return context.get_dummy_value()

        return signature, codegen

    @njit
    def acs(costs, errors, decisions, lo, n):
        _check(costs, errors, decisions, lo, n)
        acs_steps(costs, errors, decisions, lo, n)

    return acs
