"""The default backend judged as a user meets it: `evoscan run --fasta` with no backend flag, on
held-out copies of the demo's 25 real loci (docs/validation.md, "The default backend").

- Signal-free: each copy has every locus dinucleotide-shuffled as a whole (real composition,
  overlapping windows as in the real loci, no signal); a call there is false. Reported: the calls
  of each copy, and how many copies had any.
- Planted: a shuffled copy in which 20 pairs of 512-bp regions (each pair in two different loci)
  are given the same 30 JASPAR 2024 matrices, each instance sampled anew from its matrix at a
  random 16-bp slot and strand. A call is "recovered" when it joins windows that cover the two
  regions of one pair (each by at least half a window); "false" when a window of it covers no
  planted region at all; "cross-pair" when it joins carriers of two different pairs (they share
  matrices of one pool: neither planted together nor null). `--compare kmer` runs the same
  planted copies with `--backend kmer` too.

    python benchmarks/validation_default.py [--nulls 20] [--planted 3] [--compare kmer]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from evoscan.io.fasta import read_fasta  # noqa: E402
from evoscan.pipeline import find_shared_data  # noqa: E402
from evoscan.windows import read_windows, reverse_complement  # noqa: E402
from synthetic import shuffled_loci  # noqa: E402

LOCI = REPO / "assets" / "test_data" / "loci" / "grch38_loci.softmasked.fa"
REGION, SLOT = 512, 16


def plant(fasta: Path, dest: Path, motif_file: Path, pairs: int, per_pair: int, seed: int) -> list:
    """Plant `pairs` pairs of regions into the records of `fasta`; returns each pair's two regions
    as (record, genome start, genome end), genome start from the record's header (chrom:start-end)."""
    from Bio import motifs

    with open(motif_file) as fh:
        matrices = [m for m in motifs.parse(fh, "jaspar") if 8 <= m.length <= 14]
    records = list(read_fasta(fasta))
    seqs = [list(r.seq) for r in records]
    rng = np.random.default_rng(seed)
    taken = {i: [] for i in range(len(records))}
    planted = []
    while len(planted) < pairs:
        a, b = rng.choice(len(records), 2, replace=False)
        chosen = rng.choice(len(matrices), per_pair, replace=False)
        regions = []
        for rec in (a, b):
            while True:  # a region that does not touch another planted one
                start = int(rng.integers(0, len(seqs[rec]) - REGION))
                if all(abs(start - s) >= 2 * REGION for s in taken[rec]):
                    break
            taken[rec].append(start)
            slots = rng.choice(np.arange(0, REGION - SLOT, SLOT), per_pair, replace=False)
            for slot, m in zip(slots, (matrices[c] for c in chosen)):
                pwm = np.array([m.counts.normalize()[base] for base in "ACGT"]).T
                site = "".join("ACGT"[rng.choice(4, p=row / row.sum())] for row in pwm)
                site = reverse_complement(site) if rng.random() < 0.5 else site
                seqs[rec][start + slot:start + slot + len(site)] = site
            header = records[rec].description.split()[1]  # chrom:start-end, 1-based
            chrom, span = header.split(":")
            genome_start = int(span.split("-")[0]) - 1 + start
            regions.append((chrom, genome_start, genome_start + REGION))
        planted.append(tuple(regions))
    with open(dest, "w") as out:
        for rec, seq in zip(records, seqs):
            out.write(f">{rec.description}\n{''.join(seq)}\n")
    return planted


def run(fasta: Path, outdir: Path, *options: str) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "evoscan.cli", "run", "--fasta", fasta, "--threads", "2", *options,
                           "--outdir", outdir], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"evoscan run failed: {proc.stderr[-2000:]}")
    calls = pd.read_csv(outdir / "candidates.tsv", sep="\t")
    return calls, read_windows(outdir / "windows.h5").table, time.perf_counter() - t


def judge(calls: pd.DataFrame, windows: pd.DataFrame, planted: list) -> dict:
    """Recovered planted pairs, false and cross-pair calls (see the module docstring)."""
    windows = windows.set_index("id")

    def carried(window_id: str, min_overlap: int) -> set:
        w = windows.loc[window_id]
        return {(p, side) for p, regions in enumerate(planted) for side, (chrom, s, e) in enumerate(regions)
                if chrom == w.chrom and min(e, w.end) - max(s, w.start) >= min_overlap}

    recovered, false, cross = set(), 0, 0
    for a, b in zip(calls.window_a, calls.window_b):
        if not carried(a, 1) or not carried(b, 1):
            false += 1
            continue
        half = REGION // 2
        joined = {p for p, side in carried(a, half) for q, other in carried(b, half) if p == q and side != other}
        recovered |= joined
        cross += not joined
    return {"recovered": len(recovered), "calls": len(calls), "false": false, "cross_pair": cross}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nulls", type=int, default=20)
    ap.add_argument("--planted", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--motifs-per-pair", type=int, default=30)
    ap.add_argument("--compare", nargs="*", default=[], help="other backends run on the planted copies")
    a = ap.parse_args()
    motif_file = find_shared_data(REPO) / "motifs" / "JASPAR2024_CORE_vertebrates_latest.jaspar"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in range(a.planted):
            fasta = tmp / "planted.fa"
            planted = plant(shuffled_loci(LOCI, tmp / "s.fa", 1000 + seed), fasta, motif_file, a.pairs,
                            a.motifs_per_pair, seed)
            for backend in [None, *a.compare]:
                options = ["--backend", backend] if backend else []
                calls, windows, seconds = run(fasta, tmp / f"planted{seed}{backend or ''}", *options)
                print(json.dumps({"planted": {"copy": 1000 + seed, "backend": backend or "default", "pairs": a.pairs,
                                              **judge(calls, windows, planted), "seconds": round(seconds)}}), flush=True)
        for seed in range(a.nulls):
            calls, _, seconds = run(shuffled_loci(LOCI, tmp / "s.fa", seed), tmp / f"null{seed}")
            print(json.dumps({"signal_free": {"copy": seed, "calls": len(calls), "seconds": round(seconds)}}), flush=True)


if __name__ == "__main__":
    main()
