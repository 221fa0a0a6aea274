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
