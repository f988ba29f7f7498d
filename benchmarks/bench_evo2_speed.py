"""Evo 2 speed-ups side by side: windows/s, MFU and exactness of each against the eager bf16 forward.

One model (random weights, seeded) is built once; each variant wraps the same weights with
`evoscan.backends.evo2_speed.LayerForward` (stop at the embedding layer), embeds the exactness
windows at `--exact-batch` (that run is also the variant's timing at that batch), then times the
other batch sizes. Exactness against eager on the same windows: per-window cosine of the pooled
embeddings (min, 1st percentile, median) and recall@10 of each window's 10 nearest neighbours.

On the GPU machine (benchmarks/gpu_session.sh):
    python3 benchmarks/bench_evo2_speed.py --model evo2_7b --no-flash-attn --windows W.txt --out R.jsonl
Here (CPU, tiny model; kernels, graphs and fp8 fall back, compile runs):
    python benchmarks/bench_evo2_speed.py --tiny --variants eager,compile --batch-sizes 4 --exact-n 64 --exact-batch 8
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_evo2 import H100_BF16_DENSE_TFLOPS, backend_options, random_windows
from evoscan.backends import get_backend
from evoscan.backends.evo2_speed import LayerForward

VARIANTS = {  # name: speed-ups
    "eager": (),
    "conv": ("conv",),
    "kernels": ("kernels",),
    "graphs": ("graphs",),
    "compile": ("compile",),
    "fp8": ("fp8",),
    "conv+kernels": ("conv", "kernels"),
    "conv+graphs": ("conv", "graphs"),
    "compile+graphs": ("compile", "graphs"),
    "all": ("conv", "kernels", "compile", "graphs"),
    "all+fp8": ("conv", "kernels", "compile", "graphs", "fp8"),
}
# NAME@B embeds the exactness windows at batch B instead (eager@16 against eager@32: whether the
# plain path itself depends on the batch)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def exactness(reference: np.ndarray, other: np.ndarray, k: int = 10) -> dict:
    """Per-window cosine between two embeddings of the same windows, and recall@k of neighbours."""
    a = torch.from_numpy(reference).double()
    b = torch.from_numpy(other).double()
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    cos = (a * b).sum(1).numpy()

    def neighbours(x):
        sim = x @ x.T
        sim.fill_diagonal_(-2)
        return sim.topk(k, dim=1).indices.numpy()

    na, nb = neighbours(a), neighbours(b)
    recall = np.mean([len(np.intersect1d(na[i], nb[i])) / k for i in range(len(na))])
    return {"identical": bool(np.array_equal(reference, other)),
            "max_abs_diff": float(np.abs(reference - other).max()),
            "cos_min": round(float(cos.min()), 6), "cos_p01": round(float(np.quantile(cos, 0.01)), 6),
            "cos_median": round(float(np.median(cos)), 6), "recall_at_10": round(float(recall), 4),
            "finite": bool(np.isfinite(other).all())}


def load_windows(source: str, n: int) -> list[str]:
    """The first n full 512-bp windows of the demo loci (as `evoscan run` cuts them), or others."""
    if source == "random":
        return random_windows(n, 512, seed=1)
    if source == "demo":
        from evoscan.io.fasta import read_fasta
        from evoscan.windows import WindowParams, windows_from_loci

        fasta = Path(__file__).resolve().parents[1] / "assets/test_data/loci/grch38_loci.softmasked.fa"
        seqs = [s.decode() for s in windows_from_loci(read_fasta(fasta), WindowParams()).seqs]
    else:
        seqs = Path(source).read_text().split()
    return [s for s in seqs if len(s) == 512][:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="evo2_7b")
    ap.add_argument("--layer", default=None)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--batch-sizes", default="16,32,64", help="timed besides the exactness run's batch")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--windows", default="demo",
                    help="demo (the 512-bp windows of the demo's 25 real loci), random, or a file of one sequence a line")
    ap.add_argument("--exact-n", type=int, default=2016)
    ap.add_argument("--exact-batch", type=int, default=32)
    ap.add_argument("--budget", type=float, default=1e9, help="seconds; later variants are skipped past it")
    ap.add_argument("--profile", default="", help="profile one batch of this variant at --exact-batch")
    ap.add_argument("--fp32-reference", type=int, default=0, metavar="N",
                    help="last, the model in fp32 (eager) on the first N windows: each variant's distance to it, "
                         "beside eager bf16's own (is a speed-up further from the fp32 model than bf16 is?)")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--no-flash-attn", action="store_true")
    ap.add_argument("--torch-rotary", action="store_true")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    start = time.perf_counter()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    for name in ("cache_size_limit", "recompile_limit"):  # one compile per block kind and batch shape
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)

    options, attention = backend_options(a)
    torch.manual_seed(0)
    backend = get_backend("evo2", **options, speedups=())
    backend.forward.undo()
    model = backend.evo2.model
    counted = sum(p.numel() for b in model.blocks[:backend.block + 1] for p in b.parameters())
    flops_per_window = 2 * counted * 512
    windows = load_windows(a.windows, a.exact_n)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"# {device}; {a.model if not a.tiny else 'tiny'} to {backend.layer}; attention {attention}; "
          f"{len(windows)} windows; model built in {time.perf_counter() - start:.0f} s", flush=True)

    def record(row):
        row = {"device": device, "model": a.model if not a.tiny else "tiny", "layer": backend.layer, **row}
        print(json.dumps(row), flush=True)
        if a.out:
            with open(a.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        return row

    reference, rows, kept = None, [], {}
    for name in a.variants.split(","):
        if time.perf_counter() - start > a.budget:
            rows.append(record({"variant": name, "skipped": "time budget"}))
            continue
        base, _, exact_batch = name.partition("@")
        exact_batch = int(exact_batch or a.exact_batch)
        speedups = VARIANTS[base]
        t0 = time.perf_counter()
        try:
            backend.forward = LayerForward(model, backend.block, backend._module, speedups)
            backend.batch_size = exact_batch
            backend.embed(windows[:exact_batch])  # warm-up: compile, capture, autotune
            sync()
            warm = time.perf_counter() - t0
            t = time.perf_counter()
            vectors = backend.embed(windows)
            sync()
            rate = {exact_batch: len(windows) / (time.perf_counter() - t)}
            for bs in (int(x) for x in a.batch_sizes.split(",") if x and int(x) != exact_batch):
                backend.batch_size = bs
                batch = windows[:bs]
                backend.embed(batch)
                sync()
                t = time.perf_counter()
                for _ in range(a.repeats):
                    backend.embed(batch)
                sync()
                rate[bs] = bs * a.repeats / (time.perf_counter() - t)
            if reference is None and name == "eager":
                reference = vectors
            if a.fp32_reference:
                kept[name] = vectors[:a.fp32_reference]
            row = {"variant": name, "used": backend.forward.used,
                   "fallbacks": backend.forward.fallbacks, "warmup_s": round(warm, 1),
                   "windows_per_s": {str(b): round(r, 2) for b, r in sorted(rate.items())},
                   "mfu": {str(b): round(r * flops_per_window / (a.peak_tflops * 1e12), 3)
                           for b, r in sorted(rate.items())},
                   "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if torch.cuda.is_available() else None}
            if reference is not None:
                row.update(exactness(reference, vectors))
            if name == a.profile and torch.cuda.is_available():
                from bench_evo2 import print_profile
                print_profile(backend, windows[:a.exact_batch], a.out)
            rows.append(record(row))
        except Exception as err:  # one variant failing must not cost the others
            rows.append(record({"variant": name, "failed": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}))
        finally:
            if backend.forward is not None:
                backend.forward.undo()
            backend.forward = None
            if hasattr(torch, "_dynamo"):
                torch._dynamo.reset()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()

    if kept:  # the same weights in fp32, eager, TF32 off: the yardstick bf16 itself is measured against
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        model.float()
        backend.forward = LayerForward(model, backend.block, backend._module)
        backend.batch_size = a.exact_batch
        fp32 = backend.embed(windows[:a.fp32_reference])
        for name, vectors in kept.items():
            row = next(r for r in rows if r.get("variant") == name)
            row["to_fp32"] = {k: v for k, v in exactness(fp32, vectors).items() if k != "identical"}
            record({"variant": name, "to_fp32": row["to_fp32"], "windows": a.fp32_reference})

    eager = next((r["windows_per_s"] for r in rows if r.get("variant") == "eager" and "windows_per_s" in r), {})
    print(f"\n{'variant':<15} {'windows/s by batch':<34} {'x eager':<18} {'MFU':<18} cos min/median  recall@10")
    for r in rows:
        if "windows_per_s" not in r:
            print(f"{r['variant']:<15} {r.get('failed') or r.get('skipped')}")
            continue
        w = r["windows_per_s"]
        ratio = " ".join(f"{w[b] / eager[b]:.2f}" if b in eager else "-" for b in w)
        print(f"{r['variant']:<15} {' '.join(f'{b}:{v}' for b, v in w.items()):<34} {ratio:<18} "
              f"{' '.join(str(v) for v in r['mfu'].values()):<18} {r.get('cos_min', '-')}/{r.get('cos_median', '-')}"
              f"  {r.get('recall_at_10', '-')}  {'fallbacks: ' + '; '.join(r['fallbacks']) if r['fallbacks'] else ''}")
        if "to_fp32" in r:
            f = r["to_fp32"]
            print(f"{'':<15} to the fp32 model: cos min/median {f['cos_min']}/{f['cos_median']}  recall@10 {f['recall_at_10']}")
    print(f"# total {time.perf_counter() - start:.0f} s")
    sys.exit(1 if any("failed" in r for r in rows) else 0)


if __name__ == "__main__":
    main()
