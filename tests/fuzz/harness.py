"""Long fuzz runs against the `.bslz` reader and decoders (and the safetensors input parser).

    python tests/fuzz/harness.py atheris [-atheris_runs=N] [libFuzzer flags...]   coverage-guided
    python tests/fuzz/harness.py plain --seconds 600 [--seed S] [--target bslz|safetensors]

Both check the property of `corpus.check_container`: a `BslzError` or exactly the bytes written.
`atheris` mutates with libFuzzer, guided by coverage of the bslz Python code (numba kernels are
native code it cannot see); `plain` applies the structure-aware mutations of `corpus.mutate`
(header fields set to hostile values, checksums recomputed so that corrupt payloads reach their
decoders), which are what reach deep into the decoders. Run `plain` under NUMBA_BOUNDSCHECK=1
(with its own NUMBA_CACHE_DIR) to turn an out-of-bounds access in a kernel into an IndexError.

Any failing input is written to tests/fuzz/regressions/<sha256 prefix>.bslz (or .safetensors);
tests/test_fuzz_mutations.py replays every file there in the normal test run.
"""

import argparse
import faulthandler
import hashlib
import os
import pathlib
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, for `fuzz.corpus`
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "src"))

from fuzz import corpus  # noqa: E402

REGRESSIONS = pathlib.Path(__file__).parent / "regressions"
HANG_SECONDS = 20  # one input taking longer is a hang: faulthandler dumps every stack and exits


def keep_regression(blob, suffix):
    REGRESSIONS.mkdir(exist_ok=True)
    path = REGRESSIONS / f"{hashlib.sha256(blob).hexdigest()[:16]}{suffix}"
    path.write_bytes(blob)
    return path


class Target:
    """One input at a time through a file on disk (the reader takes paths)."""

    def __init__(self, kind):
        self.kind = kind
        self.dir = tempfile.TemporaryDirectory(prefix="bslz-fuzz-")
        self.path = pathlib.Path(self.dir.name) / ("input.bslz" if kind == "bslz" else "input.safetensors")
        self.expected = {}
        for _, expected in corpus.seed_files().values():
            self.expected.update(expected)  # tensor names are unique across the seed files

    def __call__(self, blob, timed=True):
        self.path.write_bytes(blob)
        if timed:
            faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        try:
            if self.kind == "bslz":
                corpus.check_container(self.path, self.expected)
            else:
                corpus.check_safetensors(self.path)
        finally:
            faulthandler.cancel_dump_traceback_later()

    def warm_up(self, blobs):
        """Check `blobs` with no hang timer: the first inputs compile the kernels they reach (numba
        compiles on first call, ~20 s for the whole decoder under NUMBA_BOUNDSCHECK with an empty
        cache), which the timer took for a hang."""
        for blob in blobs:
            self(blob, timed=False)


def seeds(kind):
    if kind == "bslz":
        return [blob for blob, _ in corpus.seed_files().values()]
    import safetensors.numpy

    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": np.arange(5, dtype=np.int64), "e": np.zeros(0)}
    return [safetensors.numpy.save(tensors, metadata={"k": "v"}), safetensors.numpy.save({"x": np.ones(2, np.uint8)})]


def run_plain(args):
    """Random structure-aware mutations for `args.seconds`; returns the number of failures."""
    warnings.simplefilter("error")  # a RuntimeWarning (overflow in a cast) is a finding too
    target = Target(args.target)
    pool = seeds(args.target)
    target.warm_up(pool)
    rng = np.random.default_rng(args.seed)
    start, count, failures, seen = time.monotonic(), 0, 0, set()
    while time.monotonic() - start < args.seconds and (args.runs is None or count < args.runs):
        blob = corpus.mutate(pool[int(rng.integers(len(pool)))], rng, pool[int(rng.integers(len(pool)))])
        count += 1
        try:
            target(blob)
        except Exception as exc:  # noqa: BLE001 - every other exception is the finding
            where = traceback.extract_tb(exc.__traceback__)[-1]
            key = (type(exc).__name__, where.filename, where.lineno)
            failures += 1
            if key not in seen:
                seen.add(key)
                path = keep_regression(blob, "." + args.target)
                print(f"FAIL {type(exc).__name__}: {exc} at {where.filename}:{where.lineno} -> {path}", flush=True)
        if count % 10000 == 0:
            print(f"{count} inputs, {failures} failures, {time.monotonic() - start:.0f} s", flush=True)
    print(f"done: {count} inputs, {failures} failures ({len(seen)} distinct), {time.monotonic() - start:.0f} s")
    target.dir.cleanup()
    return failures


INSTRUMENTED_MODULES = (
    "bslz.api",
    "bslz.reader",
    "bslz.formats.container",
    "bslz.formats.tensor_codec",
    "bslz.formats.safetensors_io",
    "bslz.formats.dtypes",
    "bslz.codec.streams",
    "bslz.codec.floats",
    "bslz.codec.rans",
    "bslz.codec.expgolomb",
    "bslz.codec.quantize",
    "bslz.codec.dq",
)


def instrument_python_code():
    """Coverage for bslz's plain Python functions only: atheris.instrument_all() also rewrites the
    bytecode of @njit kernels, which numba then fails to compile."""
    import importlib
    import inspect

    import atheris

    count = 0
    for name in INSTRUMENTED_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        members = list(vars(module).values())
        members += [m for c in members if inspect.isclass(c) and c.__module__ == name for m in vars(c).values()]
        for obj in members:
            if inspect.isfunction(obj) and obj.__module__ == name:
                atheris.instrument_func(obj)  # patches obj.__code__ in place
                count += 1
    print(f"instrumented {count} functions", flush=True)


def run_atheris(argv, kind):
    import atheris

    target = Target(kind)
    target.warm_up(seeds(kind))
    corpus_dir = pathlib.Path(tempfile.mkdtemp(prefix="bslz-atheris-corpus-"))
    for i, blob in enumerate(seeds(kind)):
        (corpus_dir / f"seed{i}").write_bytes(blob)

    def one(data):
        try:
            target(data)
        except Exception:
            keep_regression(data, "." + kind)
            raise

    instrument_python_code()
    if not any(a.startswith("-artifact_prefix=") for a in argv):  # libFuzzer's crash-* files: not in the cwd
        argv = [*argv, f"-artifact_prefix={corpus_dir}/"]
    atheris.Setup([sys.argv[0], *argv, str(corpus_dir)], one)
    atheris.Fuzz()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engine", choices=["atheris", "plain"])
    parser.add_argument("--target", choices=["bslz", "safetensors"], default="bslz")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "little"))
    args, rest = parser.parse_known_args()
    if args.engine == "atheris":
        run_atheris(rest, args.target)
    else:
        print(f"plain mutation loop, target {args.target}, seed {args.seed}", flush=True)
        sys.exit(1 if run_plain(args) else 0)


if __name__ == "__main__":
    main()
