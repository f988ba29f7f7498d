"""BLAST where the neighbours point vs all-vs-all, on the demo's 2,031 windows (25 real loci).

The nominated pairs are those the demo's search nominates (kmer backend, top-10). Three runs,
same blastn options and 2 threads: all-vs-all (`blast.run_blast`, the previous default), every
nominated pair (`blast.nominated_hits`), and the nominated repeat-free pairs `evoscan check`
searches by default. Wall time of each, and for the nominated runs whether they agree exactly
with all-vs-all on their pairs.

    python benchmarks/bench_blast_nominated.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console

from evoscan import blast
from evoscan.pipeline import demo_config, find_demo_data, run_pipeline


def agrees(nominated, whole, pairs) -> bool:
    want = whole.merge(pairs[["window_a", "window_b"]], on=["window_a", "window_b"])
    cols = ["window_a", "window_b", "evalue", "bitscore", "pident", "length"]
    return nominated[cols].sort_values(cols[:2], ignore_index=True).equals(want[cols].sort_values(cols[:2], ignore_index=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = run_pipeline(demo_config(find_demo_data(), Path(tmp) / "demo", a.threads), Console(file=open("/dev/null", "w")))
    ws, pairs = run["windows"], run["pairs"]
    t = time.perf_counter()
    whole, _ = blast.run_blast(ws, threads=a.threads)
    all_vs_all = time.perf_counter() - t
    out = {"windows": len(ws), "all_pairs": len(ws) * (len(ws) - 1) // 2, "all_vs_all_s": round(all_vs_all, 1)}
    for name, subset in (("nominated", pairs), ("nominated_repeat_free", pairs[pairs.repeat_free])):
        t = time.perf_counter()
        hits, _ = blast.nominated_hits(ws, subset.window_a.to_numpy(), subset.window_b.to_numpy(), threads=a.threads)
        seconds = time.perf_counter() - t
        out[name] = {"pairs": len(subset), "seconds": round(seconds, 1), "speedup": round(all_vs_all / seconds, 1),
                     "equal_to_all_vs_all": agrees(hits, whole, subset)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
