#!/usr/bin/env bash
# The whole test suite: the normal run, then the kernel tests once without the JIT (pure-Python
# path) and once with numba's bounds checking (own cache dir: cached machine code would skip it).
# Those two re-runs are independent and each mostly one thread (Python, or LLVM compiling): they
# run side by side, each into its own log, printed when both are done.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
# numba's cache is kept per source file and goes stale when a kernel that a cached one calls, in
# another file, changes (the caller keeps the old machine code): after any edit under src/, start
# from an empty cache rather than test stale kernels
marker=src/bslz/__pycache__/.kernels-cached
if [ -n "$(find src -name '*.py' -newer "$marker" 2>/dev/null | head -1)" ] || [ ! -f "$marker" ]; then
    find src -name '*.nbi' -delete -o -name '*.nbc' -delete
    mkdir -p "$(dirname "$marker")" && touch "$marker"
fi
python -m pytest -q "$@"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
NUMBA_DISABLE_JIT=1 python -m pytest -q -m small -p no:cacheprovider tests/ >"$logs/nojit" 2>&1 &
nojit=$!
NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR="$logs/numba-cache" python -m pytest -q -m small -p no:cacheprovider tests/ \
    >"$logs/boundscheck" 2>&1 &
boundscheck=$!
status=0
wait "$nojit" || status=$?
echo "== NUMBA_DISABLE_JIT=1 (exit $status)"
cat "$logs/nojit"
second=0
wait "$boundscheck" || second=$?
echo "== NUMBA_BOUNDSCHECK=1 (exit $second)"
cat "$logs/boundscheck"
[ "$status" -eq 0 ] && [ "$second" -eq 0 ]
