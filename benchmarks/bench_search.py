"""Search throughput and memory: `evoscan search` (exact, streamed from HDF5) against a plain torch
matmul of the same shape, and the approximate index's recall@10 against the exact search.

The baseline multiplies the same normalised vectors, all in memory: N queries against N windows
and N * D decoys, and the N * D decoys against the N windows (what the search must compute),
with no exclusions, top-k, sums or reading from disk. Both run in this process on the same random embeddings (genes of
~80 windows, overlapping tiling); peak memory is measured in a fresh child process per method.

    python benchmarks/bench_search.py [--n 20000] [--dim 2080] [--decoys 1] [--precision fp32]
    python benchmarks/bench_search.py --n 200000 --skip-matmul --approximate   # recall of the index
    python benchmarks/bench_search.py --real W.windows.h5 W.embeddings.h5 --skip-matmul --approximate
        # the same on a real window set and its embeddings (`evoscan windows` / `evoscan embed`)
    python benchmarks/bench_search.py --n 1000000 --dim 4096 --precision fp16 --device cuda --memory 100000 \
        --chunk 1/8 --skip-peak   # one scattered task's share of a 1 M search on a GPU, against the
                                  # plain products of the same rows (the whole matmul cannot be held)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

import evoscan
from evoscan.search import PRECISIONS, SearchParams, block_rows, chunk_rows, embedding_stats, search
from evoscan.windows import WindowParams, WindowSet, read_windows


def window_set(n: int) -> WindowSet:
    """N windows: genes of 80 windows, tiled at stride 256 (neighbours overlap), 800 per chromosome."""
    genes = np.repeat(np.arange(n // 80 + 1), 80)[:n].astype(str)
    chrom = np.repeat(np.arange(n // 800 + 1), 800)[:n].astype(str)
    start = (np.arange(n) % 800) * 256
    table = pd.DataFrame({"id": [f"w{i}" for i in range(n)], "gene": genes, "chrom": chrom, "start": start,
                          "end": start + 512, "strand": "+", "region": "intron", "gc": 0.5, "cpg_oe": 0.2,
                          "n_frac": 0.0, "softmask_frac": 0.0})
    return WindowSet(table, np.array([b"A"] * n), WindowParams())


def write_embeddings(path: Path, n: int, dim: int, n_decoys: int, seed: int = 0, device: str = "cpu") -> None:
    """Random embeddings with a shared offset (as pooled LM embeddings have), written in blocks
    (drawn on the GPU when the benchmark runs there: a million rows of 4,096 in seconds)."""
    if device == "cpu":
        rng = np.random.default_rng(seed)
        normal = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    else:
        import torch

        gen = torch.Generator(device).manual_seed(seed)
        normal = lambda *shape: torch.randn(shape, generator=gen, device=device).cpu().numpy()  # noqa: E731
    offset = normal(dim)
    with h5py.File(path, "w") as f:
        emb = f.create_dataset("embeddings", (n, dim), np.float32, chunks=(min(n, 1024), dim))
        dec = f.create_dataset("decoys", (n, n_decoys, dim), np.float32, chunks=(min(n, 1024), n_decoys, dim))
        for r0 in range(0, n, 8192):
            r1 = min(n, r0 + 8192)
            emb[r0:r1] = normal(r1 - r0, dim) + offset
            dec[r0:r1] = normal(r1 - r0, n_decoys, dim) + offset


def run_matmul(path: Path, precision: str, device: str = "cpu"):
    import torch

    with h5py.File(path) as f:
        emb, dec = f["embeddings"][()], f["decoys"][()]
    dtype = getattr(torch, PRECISIONS[precision])
    x = torch.nn.functional.normalize(torch.from_numpy(emb), dim=1).to(device, dtype)
    y = torch.nn.functional.normalize(torch.from_numpy(dec.reshape(-1, emb.shape[1])), dim=1).to(device, dtype)
    with torch.inference_mode():  # windows with windows and decoys, decoys with windows
        out = x @ torch.cat([x, y]).T, y @ x.T
        if device != "cpu":
            torch.cuda.synchronize()
        return out


def run_matmul_rows(path: Path, precision: str, device: str, rows: tuple[int, int], block: int = 4096) -> None:
    """The plain products of a search chunk (query rows `rows` and their decoys against every
    window and decoy), when the whole matmul is too large to hold: the database read and
    normalised in blocks, then the query rows multiplied a block at a time, the results dropped."""
    import torch

    dtype = getattr(torch, PRECISIONS[precision])
    normalised = lambda a: torch.nn.functional.normalize(  # noqa: E731
        torch.from_numpy(a).to(device).reshape(-1, a.shape[-1]), dim=1).to(dtype)
    with h5py.File(path) as f, torch.inference_mode():
        emb, dec = f["embeddings"], f["decoys"]
        x = torch.cat([normalised(emb[r:r + block]) for r in range(0, emb.shape[0], block)])
        y = torch.cat([normalised(dec[r:r + block]) for r in range(0, emb.shape[0], block)])
        both, n_decoys = torch.cat([x, y]), dec.shape[1]
        for q0 in range(rows[0], rows[1], block):
            q1 = min(rows[1], q0 + block)
            _ = x[q0:q1] @ both.T, y[q0 * n_decoys:q1 * n_decoys] @ x.T  # computed, then dropped
        if device != "cpu":
            torch.cuda.synchronize()


def run_search(path: Path, windows: int | str, precision: str, memory_mb: int, index: str = "exact",
               device: str = "cpu", nprobe: int = 0, chunk: tuple[int, int] | None = None):
    """`windows`: N for the synthetic window set, or the path of a real one."""
    ws = window_set(windows) if isinstance(windows, int) else read_windows(windows)
    with h5py.File(path) as f:
        return search(f, ws, SearchParams(precision=precision, memory_mb=memory_mb, index=index,
                                          device=device, nprobe=nprobe), chunk=chunk)


def gpu_start(device: str) -> None:
    """Free what earlier methods left in torch's cache (the next may need the whole card)."""
    if device != "cpu":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def gpu_end(device: str) -> float:
    """Peak GPU memory (GiB) since gpu_start, with the work finished."""
    if device == "cpu":
        return 0.0
    import torch

    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.empty_cache()
    return peak


def vm_hwm_mib() -> float:
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmHWM:")).split()[1]) / 1024


def peak_child(call: str) -> float:
    """Peak resident memory (MiB) of a fresh process running `call`, above its start-up."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import bench_search as b; "
            "from pathlib import Path; "
            f"base = b.vm_hwm_mib(); {call}; print(b.vm_hwm_mib() - base)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def recall_at(exact, approx, k: int = 10) -> float:
    """Fraction of each query's exact top-k slots that the approximate search also found (over the
    queries both searched: a chunk's rows follow each search's own query blocks)."""
    both = set(exact.entries["query"]) & set(approx.entries["query"])
    key = lambda nb: {(q, m) for q, m in zip(nb.entries["query"], nb.entries["neighbour"]) if q in both}  # noqa: E731
    return len(key(exact) & key(approx)) / max(1, len(key(exact)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=2080, help="2080 = kmer k=6; 4096 = Evo 2 7B")
    ap.add_argument("--decoys", type=int, default=1)
    ap.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    ap.add_argument("--memory", type=int, default=2048, help="search memory budget (MB)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the GPU figures of docs/benchmarks.md)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-matmul", action="store_true", help="no baseline (it needs N x N(1+D) floats)")
    ap.add_argument("--approximate", action="store_true", help="also the approximate index, with recall@10")
    ap.add_argument("--approximate-index", default="ivf", choices=["ivf", "ivfpq"], help="which approximate index")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--nprobe", type=int, default=0, help="ivf lists searched per query (0: the default)")
    ap.add_argument("--chunk", default=None, metavar="I/N",
                    help="time chunk I of N of the search's query grid (as one scattered task runs it), "
                         "against the plain products of the same rows")
    ap.add_argument("--skip-fp32-check", action="store_true", help="no fp32 reference search")
    ap.add_argument("--phases", action="store_true",
                    help="also time the search's passes over the file alone: the correction's statistics, a plain read")
    ap.add_argument("--skip-peak", action="store_true", help="no peak host memory (a second run in a child)")
    ap.add_argument("--embeddings-file", type=Path, default=None,
                    help="keep the random embeddings here, and reuse them if there (runs of two trees on one file)")
    ap.add_argument("--real", nargs=2, metavar=("WINDOWS", "EMBEDDINGS"), default=None,
                    help="a real window set and its embeddings instead of random ones")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        if a.real:
            windows, path = str(Path(a.real[0]).resolve()), Path(a.real[1]).resolve()
            with h5py.File(path) as f:
                a.n, a.dim = f["embeddings"].shape
                a.decoys = f["decoys"].shape[1]
        else:
            windows, path = a.n, a.embeddings_file or Path(tmp) / "emb.h5"
            if path.exists():
                with h5py.File(path) as f:
                    if f["decoys"].shape != (a.n, a.decoys, a.dim):
                        sys.exit(f"{path} holds {f['decoys'].shape[0]} windows x {f['decoys'].shape[2]} dimensions "
                                 f"with {f['decoys'].shape[1]} decoys, not --n {a.n} --dim {a.dim} --decoys {a.decoys}")
            else:  # complete or absent: a killed run leaves no file to be reused
                write_embeddings(path.with_name(path.name + ".part"), a.n, a.dim, a.decoys, device=a.device)
                path.with_name(path.name + ".part").replace(path)
        chunk = tuple(int(x) for x in a.chunk.split("/")) if a.chunk else None
        rows = chunk_rows(chunk, a.n, block_rows(a.n, a.dim, a.decoys, a.memory)[0])
        result = {"evoscan": str(Path(evoscan.__file__).parent), "n": a.n, "dim": a.dim, "approximate_index": a.approximate_index if a.approximate else None, "decoys": a.decoys, "precision": a.precision, "memory_mb": a.memory,
                  "device": a.device, "nprobe": a.nprobe, "embeddings": str(a.real[1]) if a.real else "random",
                  "embeddings_gib_on_disk": round(path.stat().st_size / 2**30, 2), "chunk": a.chunk,
                  "query_rows": rows[1] - rows[0]}
        matmul = ((lambda: run_matmul_rows(path, a.precision, a.device, rows)) if chunk
                  else (lambda: run_matmul(path, a.precision, a.device)))
        times, gpu_peak = {"matmul": [], "search": []}, {"matmul": 0.0, "search": 0.0}
        for _ in range(a.repeats):  # interleaved, so drift in machine load hits both alike
            if not a.skip_matmul:
                t = time.perf_counter(); gpu_start(a.device); matmul()
                times["matmul"].append(time.perf_counter() - t)
                gpu_peak["matmul"] = max(gpu_peak["matmul"], gpu_end(a.device))
            t = time.perf_counter(); gpu_start(a.device)
            exact = run_search(path, windows, a.precision, a.memory, "exact", a.device, chunk=chunk)
            times["search"].append(time.perf_counter() - t)
            gpu_peak["search"] = max(gpu_peak["search"], gpu_end(a.device))
        if a.device != "cpu":
            result.update({f"gpu_peak_gib_{m}": round(v, 2) for m, v in gpu_peak.items() if times[m]})
        result["search_s"] = round(statistics.median(times["search"]), 2)
        if not a.skip_peak:
            result["peak_mib_search"] = round(peak_child(
                f"b.run_search(Path('{path}'), {windows!r}, '{a.precision}', {a.memory}, 'exact', '{a.device}', "
                f"chunk={chunk})"))
        if not a.skip_matmul:
            result["matmul_s"] = round(statistics.median(times["matmul"]), 2)
            result["throughput_ratio"] = round(result["matmul_s"] / result["search_s"], 3)
            if not a.skip_peak and not chunk:
                result["peak_mib_matmul"] = round(peak_child(f"b.run_matmul(Path('{path}'), '{a.precision}', '{a.device}')"))
        if a.precision != "fp32" and not a.skip_fp32_check:  # agreement of reduced precision with fp32
            reference = run_search(path, windows, "fp32", a.memory, "exact", a.device, chunk=chunk)
            both = reference.entries.merge(exact.entries, on=["query", "neighbour"])
            result["recall_at_10_vs_fp32"] = round(recall_at(reference, exact), 4)
            result["max_abs_score_diff_vs_fp32"] = round(float((both["score_x"] - both["score_y"]).abs().max()), 4)
        if a.phases:  # what the search spends before any similarity: its statistics pass, and reading
            with h5py.File(path) as f:
                t = time.perf_counter(); embedding_stats(f["embeddings"], f["decoys"], "standardize", device=a.device)
                result["stats_pass_s"] = round(time.perf_counter() - t, 2)
                t = time.perf_counter(); f["embeddings"][()], f["decoys"][()]
                result["read_s"] = round(time.perf_counter() - t, 2)
        if a.approximate:
            t = time.perf_counter()
            approx = run_search(path, windows, a.precision, a.memory, a.approximate_index, nprobe=a.nprobe, chunk=chunk)
            result["approximate_s"] = round(time.perf_counter() - t, 2)
            result["recall_at_10"] = round(recall_at(exact, approx), 4)
            result["peak_mib_approximate"] = round(peak_child(
                f"b.run_search(Path('{path}'), {windows!r}, '{a.precision}', {a.memory}, '{a.approximate_index}', "
                f"nprobe={a.nprobe}, "
                f"chunk={chunk})"))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
