#!/bin/bash
# bslz on the device machine (one GPU, 16 cores, no network), in one call: the CUDA tests
# (tests/test_cuda.py) with the training tests under the machine's own torch, the training hook's
# cost against a step on the GPU (benchmarks/backslash/hook_overhead.py), loading MiniLM bf16 onto
# the GPU (benchmarks/bench_load_device.py), and the BF16 lossless rows of bench_container.py on 2 of
# its cores (taskset) and on 16. Wheels of zlib-ng and zstandard and zipnn's sdist in .whl/, MiniLM
# bf16 (as bench_container.py writes it) in .devdata/, both made here by prepare.sh and carried
# (device run: command "bash benchmarks/device/cuda_checks.sh", carry [".whl", ".devdata"]); results in $OUT.
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site \
    .whl/zipnn-0.5.4.tar.gz > "$OUT/zipnn_build.log" 2>&1 || { tail -20 "$OUT/zipnn_build.log"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/benchmarks
nvidia-smi -L
python3 -c "import numba, numpy, torch, safetensors; print('numba', numba.__version__, 'numpy', numpy.__version__, \
'torch', torch.__version__, 'safetensors', safetensors.__version__)"
lscpu | grep -E "Model name|^CPU\(s\)" | tee "$OUT/cpu.txt"
s=$(date +%s)
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_train.py -rs > "$OUT/pytest.txt" 2>&1
echo "pytest rc=$? $(( $(date +%s) - s ))s"; tail -8 "$OUT/pytest.txt"
python3 benchmarks/backslash/hook_overhead.py --device cuda --json "$OUT/hook_overhead.json" 2>&1 | tee "$OUT/hook_overhead.md"
echo "hook_overhead $(( $(date +%s) - s ))s"
F=${BF16_FILE:-.devdata/minilm-bf16.safetensors}
python3 benchmarks/bench_load_device.py "$F" --device cuda 2>&1 | tee "$OUT/load_device.md"
echo "load_device $(( $(date +%s) - s ))s"
taskset -c 0,1 python3 benchmarks/bench_container.py --bf16-file "$F" --lossy-dtypes none > "$OUT/container_2cpu.md" 2>&1
echo "container 2cpu rc=$? $(( $(date +%s) - s ))s"
python3 benchmarks/bench_container.py --bf16-file "$F" --lossy-dtypes none > "$OUT/container_16cpu.md" 2>&1
echo "container 16cpu rc=$? $(( $(date +%s) - s ))s"
grep -B2 -A12 "^## Targets" "$OUT/container_2cpu.md" "$OUT/container_16cpu.md"
