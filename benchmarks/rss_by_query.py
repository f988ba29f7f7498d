"""Resident memory along an approximate search's query loop: runs `search` on a real window set
and its embeddings, and prints the resident memory (MiB) every 5,120 queries next to what
numpy and Python hold (tracemalloc, with --trace). Growth beyond the traced results is memory
the allocator keeps without use (docs/scaling.md: ~3 KB per query before glibc's mmap
threshold was kept fixed, ~0.4 KB after).

    python benchmarks/rss_by_query.py windows.h5 embeddings.h5 [--index ivf] [--chunk 1/2] [--trace]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import h5py

from evoscan.search import INDEXES, SearchParams, search
from evoscan.windows import read_windows

from peak_by_line import resident_mib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("windows")
    ap.add_argument("embeddings")
    ap.add_argument("--index", default="ivf", choices=[i for i in INDEXES if i != "exact"])
    ap.add_argument("--nprobe", type=int, default=1, help="lists searched per query (1: fast, the memory is the same)")
    ap.add_argument("--chunk", default="1/2", metavar="I/N", help="query chunk searched (default 1/2)")
    ap.add_argument("--trace", action="store_true", help="also what numpy and Python hold (slower)")
    a = ap.parse_args()
    ws = read_windows(a.windows)
    if a.trace:
        tracemalloc.start()
    done, start = [0], time.perf_counter()

    def progress(rows: int) -> None:
        done[0] += rows
        if done[0] % 5120 < rows:
            traced = f" traced {tracemalloc.get_traced_memory()[0] / 2**20:.0f}" if a.trace else ""
            print(f"{done[0]} queries  resident {resident_mib():.0f}{traced}  {time.perf_counter() - start:.0f} s",
                  flush=True)

    with h5py.File(a.embeddings) as f:
        search(f, ws, SearchParams(index=a.index, nprobe=a.nprobe, precision="bf16"),
               chunk=tuple(int(x) for x in a.chunk.split("/")), progress=progress)


if __name__ == "__main__":
    main()
