#!/bin/bash
# Here, before a device run (the device machine has no network): what cuda_checks.sh and
# run_bf16_benchmarks.sh read there. Wheels of zlib-ng and zstandard for its Python (3.12, x86-64)
# and zipnn's sdist in .whl/, MiniLM cast to bf16 (as bench_container.py writes it) in .devdata/;
# both are ignored by git, so the run names them: carry [".whl", ".devdata"] (about 53 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .git/info .whl .devdata
grep -qx "/.devdata/" .git/info/exclude 2>/dev/null || echo "/.devdata/" >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl zlib-ng==1.1.0 zstandard==0.25.0
python3 -m pip download -q --no-deps --no-binary=:all: -d .whl zipnn==0.5.4
PYTHONPATH=src:benchmarks python3 -c "
import shutil, tempfile, bench_container as b
with tempfile.TemporaryDirectory() as work:
    shutil.copyfile(b.minilm_bf16(work), '.devdata/minilm-bf16.safetensors')
"
ls -l .whl .devdata
