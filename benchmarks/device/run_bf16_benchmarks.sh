#!/bin/bash
# bslz on the 16-core device machine (no network): the BF16 rows of bench_container and bench_limits,
# on 2 CPUs (taskset) and on 16. Wheels of zstandard and zlib-ng and zipnn's sdist in .whl/, MiniLM bf16
# (as bench_container.py writes it) in .devdata/; results in $OUT.
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site .whl/zipnn-0.5.4.tar.gz > $OUT/zipnn_build.log 2>&1 || { tail -20 $OUT/zipnn_build.log; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/benchmarks
python3 -c "import zipnn, zstandard, zlib_ng, numba, numpy, torch, bslz; print('numba', numba.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)"
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|L2|L3" > $OUT/cpu.txt; cat $OUT/cpu.txt
F=${BF16_FILE:-.devdata/minilm-bf16.safetensors}
s=$(date +%s)
taskset -c 0,1 python3 benchmarks/bench_limits.py --bf16-file $F --rounds 5 > $OUT/limits_2cpu.md 2>&1; echo "limits 2cpu rc=$? $(( $(date +%s)-s ))s"
taskset -c 0,1 python3 benchmarks/bench_container.py --bf16-file $F --lossy-dtypes BF16 > $OUT/container_2cpu.md 2>&1; echo "container 2cpu rc=$? $(( $(date +%s)-s ))s"
python3 benchmarks/bench_container.py --bf16-file $F --lossy-dtypes BF16 --quick > $OUT/container_16cpu.md 2>&1; echo "container 16cpu rc=$? $(( $(date +%s)-s ))s"
grep -A30 "^## Targets" $OUT/container_2cpu.md
