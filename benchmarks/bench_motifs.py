"""Speed of the JASPAR motif scan beside the best motif scanners (figures of docs/benchmarks.md).

The same windows (`motifs.random_sequences(N, 512, seed=11)`), the same 879 JASPAR 2024 CORE
vertebrate matrices, both strands, p <= 1e-4 site thresholds, one process, in turn:

- evoscan's scan: every matrix's best score on both strands at every position (`Scanner.best`),
  with the CPU's block tables (motif_kernel.py) and with the torch scan it replaced;
- evoscan's `motifs` backend: the whole profile (`MotifBackend.embed`: scan, dinucleotide
  expectation, clusters, z-scores), tables and torch;
- memelite's `fimo` (numba, all threads; sites at p <= 1e-4, found with bounds that skip
  positions that cannot reach the threshold) and MOODS (C++, one thread, its own Scanner), the
  peers: `pip install -e '.[bench]'`.

Ratios are to memelite's fimo.

    python benchmarks/bench_motifs.py [--windows 512] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from evoscan import motif_torch, motifs
from evoscan.backends.motifs import MotifBackend


def rate(fn, items, batch: int, repeats: int = 2) -> float:
    """Best of `repeats` passes over `items` in batches, windows per second (after a warm-up: JIT)."""
    fn(items[:batch])
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(items), batch):
            fn(items[i:i + batch])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return len(items) / best


def peers(mats: motifs.Matrices, seqs: list[str], threads: int) -> dict[str, float]:
    """Windows per second of memelite's fimo and of MOODS on the same windows and matrices."""
    import MOODS.scan
    import MOODS.tools
    import numba
    from memelite import fimo

    numba.set_num_threads(threads)
    pwms = {f"{mats.ids[i]}.{i}": np.exp2(mats.log_odds[i, :, :n].astype(np.float64)) / 4  # (probabilities)
            for i, n in enumerate(mats.lengths)}
    one_hot = motif_torch.one_hot(seqs, len(seqs[0]))
    rows = {"memelite 0.5.0 fimo (numba, all threads)":
            rate(lambda x: fimo(pwms, x, threshold=1e-4), one_hot, len(seqs), repeats=2)}
    matrices = [[list(map(float, row)) for row in mats.log_odds[i, :, :n]] for i, n in enumerate(mats.lengths)]
    matrices += [MOODS.tools.reverse_complement(m) for m in matrices]
    background = [0.25] * 4
    scanner = MOODS.scan.Scanner(7)
    scanner.set_motifs(matrices, background, [MOODS.tools.threshold_from_p(m, background, 1e-4) for m in matrices])
    rows["MOODS 1.9.4.1 (C++, 1 thread)"] = rate(lambda batch: [scanner.scan(s) for s in batch], seqs, 64)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=512)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-peers", action="store_true", help="evoscan only (the peers not installed)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seqs = motifs.random_sequences(a.windows, a.length, seed=11)
    backend = MotifBackend(device=a.device)
    scanner = backend.profiler.scanner
    mats = scanner.mats
    rows = {}
    if scanner.engine == "tables":
        rows["evoscan scan, block tables (best score, every position)"] = rate(scanner.best, seqs, a.batch)
    torch_scanner = motifs.Scanner(mats, scanner.pvalue, a.device, engine="torch")
    rows["evoscan scan, torch (before)"] = rate(torch_scanner.best, seqs, a.batch)
    rows[f"evoscan motifs backend, {scanner.engine} (profile)"] = rate(backend.embed, seqs, a.batch)
    backend.profiler.scanner = torch_scanner  # (the same clusters and reference: only the scan differs)
    rows["evoscan motifs backend, torch (before)"] = rate(backend.embed, seqs, a.batch)
    backend.profiler.scanner = scanner
    if not a.no_peers:
        rows.update(peers(mats, seqs, a.threads))
    base = next((v for k, v in rows.items() if k.startswith("memelite")), None)
    result = {"device": torch.cuda.get_device_name() if a.device.startswith("cuda") else f"cpu x{a.threads}",
              "windows": a.windows, "length": a.length, "matrices": len(mats), "clusters": backend.dim,
              "windows_per_s": {k: round(v, 1) for k, v in rows.items()},
              "ratio_to_memelite_fimo": {k: round(v / base, 2) for k, v in rows.items()} if base else None,
              "hours_per_million_windows_with_1_decoy": round(
                  2e6 / rows[f"evoscan motifs backend, {scanner.engine} (profile)"] / 3600, 2)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
