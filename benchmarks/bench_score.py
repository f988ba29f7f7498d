"""Scoring throughput: evoscan's blocked top-k against a plain torch matmul of the same shape.

Both run in this process on the same random embeddings (genes, overlapping windows and all), so
the ratio says what the exclusions, top-k and blocking cost on top of the similarity itself. Peak
memory is measured in a fresh child process per method (max RSS above the loaded-data baseline).

    python benchmarks/bench_score.py [--n 20000] [--dim 2080] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from evoscan.score import blocked_topk, overlapping_pairs


def data(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    genes = np.repeat(np.arange(n // 80 + 1), 80)[:n].astype(str)  # ~80 windows per gene
    chrom = np.repeat(np.arange(n // 800 + 1), 800)[:n].astype(str)
    start = (np.arange(n) % 800) * 256  # stride 256, size 512: neighbours overlap
    emb = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(n, dim)).astype(np.float32)), dim=1)
    ov_i, ov_j = overlapping_pairs(chrom, start, start + 512)
    cross = genes[ov_i] != genes[ov_j]
    return emb, genes, (ov_i[cross], ov_j[cross])


def run_matmul(emb):
    with torch.inference_mode():
        return emb @ emb.T


def run_blocked(emb, genes, exclude, k):
    return blocked_topk(emb, genes, k, exclude)


def vm_hwm_mib() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as fh:
        line = next(l for l in fh if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def peak_rss_child(method: str, n: int, dim: int, k: int) -> float:
    """MiB of resident memory the method adds, measured in a fresh process."""
    args = "emb, g, ex, %d" % k if method == "blocked" else "emb"
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import bench_score as b; "
        f"emb, g, ex = b.data({n}, {dim}); base = b.vm_hwm_mib(); "
        f"b.run_{method}({args}); print(b.vm_hwm_mib() - base)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=2080, help="2080 = kmer k=6; 4096 = Evo 2 7B")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    emb, genes, exclude = data(a.n, a.dim)
    run_matmul(emb)  # warm-up
    times = {"matmul": [], "blocked": []}
    for _ in range(a.repeats):  # interleaved, so drift in machine load hits both alike
        t = time.perf_counter(); run_matmul(emb); times["matmul"].append(time.perf_counter() - t)
        t = time.perf_counter(); run_blocked(emb, genes, exclude, a.k); times["blocked"].append(time.perf_counter() - t)
    med = {m: statistics.median(v) for m, v in times.items()}
    result = {
        "n": a.n, "dim": a.dim, "k": a.k, "threads": torch.get_num_threads(),
        "matmul_s": round(med["matmul"], 3), "blocked_s": round(med["blocked"], 3),
        "throughput_ratio": round(med["matmul"] / med["blocked"], 3),
        "pairs_per_s_blocked": round(a.n * a.n / med["blocked"]),
        "peak_mib_matmul": round(peak_rss_child("matmul", a.n, a.dim, a.k)),
        "peak_mib_blocked": round(peak_rss_child("blocked", a.n, a.dim, a.k)),
        "n_squared_mib": round(a.n * a.n * 4 / 2**20),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
