"""CPU time of the SSE decoder on one long line read in small pieces.

    python scripts/sse_bench.py [--megabytes 8] [--read-kib 16] [--repeat 3]

The shape of a Gemini image part: one ``data:`` line of several megabytes,
arriving in socket-sized reads. Prints the best of ``--repeat`` runs for the
decoder at several sizes; time growing in step with the size is linear, time
growing with its square is what review finding 9 measured (1.0-1.9 s for
8 MB in 16 KiB reads, before the decoder kept a list of pieces).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feathergate.sse import SSEDecoder


def decode_seconds(size: int, read: int) -> float:
    data = b"data: " + b"A" * size + b"\n\n"
    pieces = [data[i : i + read] for i in range(0, len(data), read)]
    decoder = SSEDecoder()
    started = time.process_time()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    elapsed = time.process_time() - started
    assert [len(event.data) for event in events] == [size]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=8)
    parser.add_argument("--read-kib", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    read = args.read_kib * 1024
    for megabytes in (max(args.megabytes // 4, 1), max(args.megabytes // 2, 1), args.megabytes):
        size = megabytes * 1024 * 1024
        best = min(decode_seconds(size, read) for _ in range(args.repeat))
        print(f"{megabytes:4d} MB line in {args.read_kib} KiB reads: {best * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
