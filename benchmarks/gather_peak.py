"""Memory of gathering a search's query blocks into its result table, at the shape of the 1 M
search (3,967 blocks of 256 queries, 10 slots, 1 decoy; synthetic values): resident memory a
fresh process adds, `evoscan.search.neighbours.run_query_blocks` against the plain way (every column joined
while the blocks are held, then a table that copies them), each in its own process.

    python benchmarks/gather_peak.py [--windows 1015500]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import numpy as np
import pandas as pd

from evoscan.search.neighbours import BLOCK_COLUMNS, ENTRY_COLUMNS, run_query_blocks

GRID, SLOTS, DECOYS = 256, 10, 1


def resident_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def query_block(q0: int, q1: int) -> dict:
    m = (q1 - q0) * SLOTS
    return {"query": np.repeat(np.arange(q0, q1), SLOTS), "neighbour": np.arange(m, dtype=np.int64),
            "score": np.ones(m, np.float32), "cosine": np.ones(m, np.float32),
            "decoy_scores": np.ones((m, 2 * DECOYS), np.float32), "window_sums": np.ones((q1 - q0, 3)),
            "window_decoy_sums": np.ones((q1 - q0, 3)), "decoy_sums": np.ones((q1 - q0, DECOYS, 3))}


def plain(n: int) -> int:
    blocks = [query_block(q0, min(n, q0 + GRID)) for q0 in range(0, n, GRID)]
    columns = [np.concatenate([b[c] for b in blocks]) for c in BLOCK_COLUMNS]
    entries = pd.DataFrame({c: col.astype(t) for (c, t), col in zip(ENTRY_COLUMNS.items(), columns)})
    return len(entries)


def gathered(n: int) -> int:
    return len(run_query_blocks(query_block, (0, n), GRID, n, DECOYS).entries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=1_015_500)
    ap.add_argument("--one", choices=["plain", "evoscan"], help=argparse.SUPPRESS)  # the child process
    a = ap.parse_args()
    if a.one:
        start = resident_mib()
        entries = (plain if a.one == "plain" else gathered)(a.windows)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"entries": entries, "peak_added_mib": round(peak - start)}))
        return
    results = {}
    for way in ("plain", "evoscan"):
        out = subprocess.run([sys.executable, __file__, "--windows", str(a.windows), "--one", way],
                             capture_output=True, text=True, check=True)
        results[way] = json.loads(out.stdout)
    results["ratio"] = round(results["evoscan"]["peak_added_mib"] / results["plain"]["peak_added_mib"], 2)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
