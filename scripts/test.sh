#!/usr/bin/env bash
# The whole test suite: the normal run, then the kernel tests once without the JIT (pure-Python
# path) and once with numba's bounds checking (own cache dir: cached machine code would skip it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
python -m pytest -q "$@"
NUMBA_DISABLE_JIT=1 python -m pytest -q -m small -p no:cacheprovider tests/
NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR="$(mktemp -d)" python -m pytest -q -m small -p no:cacheprovider tests/
