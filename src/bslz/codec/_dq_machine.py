"""The state machine of dependent quantization (FORMAT.md): which quantizer each state uses, where
each index parity leads, and the value of an index under each quantizer.

Q0 reconstructs index k at 2·k·Δ, Q1 at (2·k − sgn k)·Δ (0 for k = 0). The quantizer for each value
is the one of the current state (QUANTIZER[state]), and the next state is TRANSITIONS[state][k & 1];
the state starts at 0 and is reset every block of values. Shared by the search (`_dq_search`) and
the decoder (`dq`).
"""

import numpy as np

from bslz.codec._jit import njit_inline

TRANSITIONS = np.array([[0, 4], [6, 0], [1, 7], [5, 1], [2, 6], [4, 2], [3, 5], [7, 3]], dtype=np.int64)
QUANTIZER = np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)
NUM_STATES = len(TRANSITIONS)


@njit_inline
def reconstruct_index(k, quantizer, step):
    """Value of index k under quantizer 0 or 1: (2k - quantizer * sgn k) * step in float64.
    Branch-free: in the Viterbi and the decoder the signs are random (a branch mispredicts)."""
    sgn = np.int64(k > 0) - np.int64(k < 0)
    return np.float64(2 * k - quantizer * sgn) * step
