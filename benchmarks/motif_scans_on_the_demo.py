"""The demo run with the CPU's block-table motif scan against the same run with the torch scan it
replaced (docs/benchmarks.md, "Same numbers"): how far the embeddings are apart, whether the
nominated pairs are the same, and which outputs for people are byte-identical.

    python benchmarks/motif_scans_on_the_demo.py [--outdir /tmp/motif_scans]
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
from rich.console import Console

from evoscan import motifs
from evoscan.pipeline import demo_config, find_demo_data, run_pipeline

PEOPLE = ["candidates.tsv", "candidates.bedpe", "candidates.interact.bed", "motif_sites.tsv", "pairs.tsv.gz"]


def demo_with(engine: str, outdir: Path) -> Path:
    """`evoscan demo` (motifs backend) into `outdir`, every Scanner made with `engine`."""
    made = motifs.Scanner.__init__
    motifs.Scanner.__init__ = functools.partialmethod(made, engine=engine)
    motifs._profiler.cache_clear()  # (a profiler is kept per process)
    try:
        shutil.rmtree(outdir, ignore_errors=True)
        run_pipeline(demo_config(find_demo_data(), outdir, threads=2), Console(quiet=True))
    finally:
        motifs.Scanner.__init__ = made
        motifs._profiler.cache_clear()
    return outdir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outdir", type=Path, default=Path("/tmp/motif_scans"))
    a = ap.parse_args()
    runs = {engine: demo_with(engine, a.outdir / engine) for engine in ("torch", "tables")}
    with h5py.File(runs["torch"] / "embeddings.h5") as t, h5py.File(runs["tables"] / "embeddings.h5") as b:
        apart = {name: float(np.abs(t[name][()] - b[name][()]).max()) for name in ("embeddings", "decoys")}
    pairs = {}
    for engine, folder in runs.items():
        with h5py.File(folder / "scores.h5") as f:
            pairs[engine] = set(zip(f["window_a"][()].tolist(), f["window_b"][()].tolist()))
    print(json.dumps({
        "embeddings_max_abs_difference": apart,
        "nominated_pairs": {engine: len(p) for engine, p in pairs.items()},
        "nominated_pairs_in_both": len(pairs["torch"] & pairs["tables"]),
        "byte_identical": {name: (runs["torch"] / name).read_bytes() == (runs["tables"] / name).read_bytes()
                           for name in PEOPLE},
    }, indent=1))


if __name__ == "__main__":
    main()
