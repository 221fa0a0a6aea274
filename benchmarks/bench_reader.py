"""In-memory decoding of a `.bslz` file with the reader's large-tensor work in pieces side by side
(payload reads and checksums, `READ_PIECE_BYTES` / `CRC_PIECE_BYTES`) or on one thread, in paired
rounds (each round runs both, in alternating order).

    PYTHONPATH=src python3 benchmarks/bench_reader.py FILE.bslz [--rounds 25]

Prints each mode's best and median milliseconds and the median of the per-round ratios.
"""

import argparse
import statistics
import time

from bslz.codec._parallel import map_tensors_in_order
from bslz.formats import checksums, container
from bslz.formats.container import ContainerReader


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    reader = ContainerReader(args.path)
    pieces = checksums.CRC_PIECE_BYTES

    def decode_all():
        decoded = map_tensors_in_order(lambda e: reader.decode_raw(e["name"]), reader.entries, lambda e: e["numel"])
        return sum(raw.size for _, raw in decoded)

    times = {"one thread": [], "pieces": []}
    decode_all()
    for r in range(args.rounds):
        for mode in ("one thread", "pieces") if r % 2 else ("pieces", "one thread"):
            size = 1 << 62 if mode == "one thread" else pieces
            checksums.CRC_PIECE_BYTES = container.READ_PIECE_BYTES = size
            t0 = time.perf_counter()
            decode_all()
            times[mode].append(time.perf_counter() - t0)
    checksums.CRC_PIECE_BYTES = container.READ_PIECE_BYTES = pieces
    for mode, t in times.items():
        print(f"{mode}: best {min(t) * 1e3:.1f} ms, median {statistics.median(t) * 1e3:.1f} ms")
    ratios = [a / b for a, b in zip(times["one thread"], times["pieces"])]
    wins = sum(x > 1 for x in ratios)
    print(
        f"one thread / pieces, per round: median {statistics.median(ratios):.3f},",
        f"pieces faster in {wins} of {len(ratios)}",
    )


if __name__ == "__main__":
    main()
