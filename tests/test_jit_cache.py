"""Numba's cache serves every kernel to a new process: a second run compiles nothing.

Each `bslz` command is a new process. A kernel numba cannot find in its cache is compiled again
there: the trellis search cost every lossy compression ~5 s, the rANS decoder every decompression
1-3 s, while MiniLM itself takes under half a second.
"""

import json
import os
import subprocess
import sys

import pytest

from bslz.codec._jit import JIT_DISABLED

SRC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

# Lossless, the three lossy targets and decoding, on every float dtype and an integer tensor; the
# 50.0 in the float32 tensor sends its search to float64 at step 1e-3 (beyond 4096 steps).
CHILD = """
import json, sys
import torch
from numba.core import event
from safetensors.torch import save
import bslz

compiled = []

class Compiles(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass

g = torch.Generator().manual_seed(0)
floats = torch.randn(70_000, generator=g) * 0.05
wide = floats.clone()
wide[7] = 50.0
image = save({
    "bf16": floats.to(torch.bfloat16),
    "f16": floats.to(torch.float16),
    "f32": floats,
    "wide": wide,
    "ints": torch.randint(-300, 300, (70_000,), generator=g, dtype=torch.int32),
})
with event.install_listener("numba:compile", Compiles()):
    for target in ({}, {"step": 1e-3}, {"bits": 5.0}, {"snr": 30.0}):
        bslz.decompress_bytes(bslz.compress_bytes(image, **target))
json.dump(compiled, sys.stdout)
"""


def compiled_in_a_new_process():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC_DIR, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=1200, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(JIT_DISABLED, reason="nothing is compiled without the JIT")
def test_a_second_process_compiles_no_kernel():
    compiled_in_a_new_process()  # fills the cache where it lacks these kernels
    assert compiled_in_a_new_process() == []


# The variants of one factory's kernels (`_jit.njit_variant`: the float32, float64 and bfloat16-words
# searches), each compiled by a process of its own into one cache, then all loaded into one
# process. Before the variants had names of their own, the float32 search, loaded beside the
# float64 one, ran another's add-compare-select and raised. 8 blocks on one thread: every search
# runs its 4-chain add-compare-select.
VARIANTS_CHILD = """
import hashlib, json, sys
import numpy as np
from bslz.codec.dq import quantize_dq_symbols

x = (np.random.default_rng(0).laplace(size=8 << 16) * 0.03).astype(np.float32)
words = (x.view(np.uint32) >> 16).astype(np.uint16)
x = (words.astype(np.uint32) << 16).view(np.float32)  # the values of those bfloat16 words
wide = x.copy()
wide[5] = 300.0  # beyond 4096 steps of 0.01: the float64 search
searches = {
    "float32": lambda: quantize_dq_symbols(x, 0.01),
    "words": lambda: quantize_dq_symbols(words, 0.01, bfloat16_words=True),
    "float64": lambda: quantize_dq_symbols(wide, 0.01),
}
json.dump({name: hashlib.sha1(searches[name]().tobytes()).hexdigest() for name in sys.argv[1:]}, sys.stdout)
"""


@pytest.mark.skipif(JIT_DISABLED, reason="nothing is compiled without the JIT")
def test_variants_compiled_in_different_processes_keep_their_own_code(tmp_path):
    env = dict(
        os.environ,
        NUMBA_CACHE_DIR=str(tmp_path),
        NUMBA_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([SRC_DIR, os.environ.get("PYTHONPATH", "")]),
    )

    def run(*names):
        done = subprocess.run(
            [sys.executable, "-c", VARIANTS_CHILD, *names], capture_output=True, text=True, env=env, timeout=1200
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    alone = {}
    for name in ("float64", "words", "float32"):  # each compiled alone
        alone.update(run(name))
    assert alone["words"] == alone["float32"]  # the same values
    assert run("float32", "float64", "words") == alone  # all three loaded from the cache
