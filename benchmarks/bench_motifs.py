"""Speed of the JASPAR motif scan (figures of docs/benchmarks.md and docs/scaling.md).

Windows per second of the `motifs` backend (scan, binding potential, dinucleotide expectation,
cluster profile) and of the scan alone (best score per matrix), against the baseline: one plain
torch conv1d of the same shape (one-hot windows [B, 4, L + Lmax - 1] with every matrix and its
reverse complement zero-padded to the longest, [2M, 4, Lmax]), side by side on the same windows.

    python benchmarks/bench_motifs.py [--windows 2048] [--device cpu|cuda]

(fp32 only: bf16, tried during development, gained little on this CPU; docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from evoscan import motifs
from evoscan.backends.motifs import MotifBackend


def rate(fn, seqs: list[str], batch: int, repeats: int = 2) -> float:
    """Best of `repeats` passes over `seqs`, windows per second."""
    fn(seqs[:batch])  # warm-up
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(seqs), batch):
            fn(seqs[i:i + batch])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return len(seqs) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=2048)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    seqs = motifs.random_sequences(a.windows, a.length, seed=11)
    backend = MotifBackend(device=a.device)
    scanner = backend.profiler.scanner
    mats = scanner.mats
    weight = np.concatenate([mats.log_odds, mats.log_odds[:, ::-1, ::-1]])  # same shape as fwd + rc
    weight = torch.from_numpy(np.ascontiguousarray(weight)).to(a.device)
    pad = mats.log_odds.shape[2] - 1

    def plain_conv(batch):
        x = torch.from_numpy(motifs.one_hot(batch, a.length + pad)).to(a.device)
        with torch.no_grad():
            return torch.nn.functional.conv1d(x, weight).float().cpu()

    rows = {"plain conv1d": rate(plain_conv, seqs, a.batch), "scan (best score)": rate(scanner.best, seqs, a.batch),
            "motifs backend (profile)": rate(backend.embed, seqs, a.batch)}
    base = rows["plain conv1d"]
    result = {"device": torch.cuda.get_device_name() if a.device.startswith("cuda") else f"cpu x{torch.get_num_threads()}",
              "windows": a.windows, "length": a.length, "matrices": len(mats),
              "longest": int(mats.lengths.max()), "clusters": backend.dim,
              "windows_per_s": {k: round(v, 1) for k, v in rows.items()},
              "ratio_to_plain_conv1d": {k: round(v / base, 2) for k, v in rows.items()},
              "hours_per_million_windows_with_1_decoy": round(2e6 / rows["motifs backend (profile)"] / 3600, 2)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
