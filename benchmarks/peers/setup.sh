#!/usr/bin/env bash
# Sets up what the peer benchmarks need:
#   - in the main environment (the one that has bslz): zstandard, lz4, zipnn, matplotlib, transformers;
#   - a separate virtual environment benchmarks/peers/.venv for NNCodec 2.1.3 (it pins numpy<2) and DFloat11.
# The venv sees the main environment's site-packages (--system-site-packages) so that torch is not installed
# twice; numpy 1.26 inside the venv shadows the main numpy 2.x there.
# NNCodec imports torchvision (and, through its dataset modules, opencv/pandas/sklearn/...) at import time
# although its coding path uses none of them: torchvision is installed without dependencies when a wheel
# that matches torch is at hand; otherwise, and for the rest, setup writes stub modules into the venv
# (a meta-path finder in the venv, _nncodec_stubs.py; run_all.py lists what it stubbed).
#
#   bash benchmarks/peers/setup.sh            # PYTHON=... to choose the main interpreter
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"
VENV="$HERE/.venv"
LOG="$HERE/.venv-setup.log"
: > "$LOG"
status() { printf '%-44s %s\n' "$1" "$2"; }

echo "== main environment ($($PY -c 'import sys; print(sys.executable)'))"
for pkg in zstandard lz4 zipnn matplotlib transformers; do
    if $PY -m pip install -q "$pkg" >>"$LOG" 2>&1; then status "$pkg" "installed ($($PY -c "import importlib.metadata as m; print(m.version('$pkg'))"))";
    else status "$pkg" "FAILED (see $LOG)"; fi
done

echo "== peers venv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    $PY -m venv --system-site-packages "$VENV" || { echo "venv creation failed"; exit 1; }
fi
VPY="$VENV/bin/python"
# --system-site-packages shows the base interpreter's packages: when the main environment is itself a
# venv, its torch is elsewhere; a .pth puts the main site-packages after the venv's own (numpy<2 wins)
MAIN_SITE="$($PY -c 'import sys, sysconfig; print(sysconfig.get_paths()["purelib"] if sys.prefix != sys.base_prefix else "")')"
if [ -n "$MAIN_SITE" ]; then
    echo "$MAIN_SITE" > "$($VPY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_main_env.pth"
fi
# NNCodec's own runtime needs (its coding path), numpy<2 as it pins
$VPY -m pip install -q "numpy<2" pybind11 tqdm h5py "setuptools>=68" wheel >>"$LOG" 2>&1 \
    && status "numpy<2, pybind11, tqdm, h5py" "installed" || status "numpy<2, pybind11, tqdm, h5py" "FAILED"
TORCH_VER="$($VPY -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)"
# torchvision release paired with the torch in use (0.(minor+15)); no deps so that torch is not replaced
TV=""
case "$TORCH_VER" in 2.*) minor="${TORCH_VER#2.}"; minor="${minor%%.*}"; TV="0.$((minor + 15)).*";; esac
if [ -n "$TV" ] && $VPY -m pip install -q --no-deps "torchvision==$TV" >>"$LOG" 2>&1 \
    && $VPY -c 'import torchvision' >>"$LOG" 2>&1; then
    status "torchvision" "installed ($($VPY -c 'import torchvision; print(torchvision.__version__)'))"
else
    $VPY -m pip uninstall -q -y torchvision >>"$LOG" 2>&1
    status "torchvision" "not installable for torch $TORCH_VER: stubbed"
fi
if $VPY -m pip install -q --no-deps --no-build-isolation "nncodec==2.1.3" >>"$LOG" 2>&1; then
    status "nncodec 2.1.3 (built from sdist)" "installed"
else
    status "nncodec 2.1.3" "FAILED (see $LOG)"
fi
# stubs for modules NNCodec imports at import time but never calls on its coding path: a meta-path finder
# (last in sys.meta_path, so real packages win) that answers only for these names when nothing else can
SITE="$($VPY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$SITE/_nncodec_stubs.py" <<'PYEOF'
"""Written by benchmarks/peers/setup.sh. NNCodec 2.1.3 imports torchvision, opencv, pandas, ... at import
time (dataset and training helpers); its coding path (nnc.compress / nnc.decompress) uses none of them.
Where such a module is not installed, this finder supplies an inert stand-in."""
import importlib.abc
import importlib.machinery
import sys
import types

NAMES = ("torchvision", "cv2", "pandas", "sklearn", "torchmetrics", "ptflops", "wandb", "flwr", "sentencepiece")
USED = []


class _Anything:
    def __init__(self, *a, **k):
        pass

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    def __call__(self, *a, **k):
        return _Anything()

    def __mro_entries__(self, bases):
        return (object,)

    def __iter__(self):
        return iter(())


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in NAMES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            if finder.find_spec(fullname, path, target) is not None:
                return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        if spec.name.split(".")[0] not in USED:
            USED.append(spec.name.split(".")[0])
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.append(_Finder())
PYEOF
echo "import _nncodec_stubs" > "$SITE/zz_nncodec_stubs.pth"
if $VPY -c 'import nncodec.nnc, _nncodec_stubs; print("stubbed:", ", ".join(_nncodec_stubs.USED) or "none")' >>"$LOG" 2>&1; then
    status "import nncodec.nnc" "ok ($(tail -n 1 "$LOG"))"; else status "import nncodec.nnc" "FAILED (see $LOG)"; fi

if $VPY -m pip install -q --no-deps "dfloat11" "dahuffman==0.4.2" >>"$LOG" 2>&1; then
    status "dfloat11 (no deps) + dahuffman" "installed ($($VPY -c "import importlib.metadata as m; print(m.version('dfloat11'))"))"
else
    status "dfloat11" "FAILED (see $LOG)"
fi
echo "log: $LOG"
