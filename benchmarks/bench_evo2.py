"""Evo 2 extraction throughput: windows/s and model FLOP utilisation for 512-bp windows.

Builds the real architecture of a model (default evo2_7b) with random weights through evoscan's
evo2 backend (`weights="random"`: no download), then times `backend.embed` over batch sizes, with
the forward pass stopped at the embedding layer (evoscan's default) and with the full forward
(every block, final norm and logits, as `Evo2.forward` does). FLOPs per window are counted as
2 x parameters that run x tokens (matmuls; the FFT convolutions and attention add a little on top).

On a GPU node:   python benchmarks/bench_evo2.py --model evo2_7b --batch-sizes 1,2,4,8,16,32,64
Without flash-attn (--no-flash-attn: a stand-in for its CUDA module, which Vortex imports
unguarded, and torch attention; add --torch-rotary if Vortex's Triton rotary kernel fails)
Smoke test here: python benchmarks/bench_evo2.py --tiny   (CPU, the tiny test model of tests/)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from evoscan.backends import get_backend

H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM spec sheet


def random_windows(n: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=length)) for _ in range(n)]


def time_embed(backend, seqs: list[str], repeats: int) -> float:
    backend.embed(seqs)  # warm-up (kernels, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        backend.embed(seqs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def print_profile(backend, seqs: list[str], out: Path | None) -> None:
    """Where the GPU time of one batch goes: self CUDA time by operator, the top 25."""
    from torch.profiler import ProfilerActivity, profile

    backend.batch_size = len(seqs)
    backend.embed(seqs)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        backend.embed(seqs)
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=60)
    header = f"== profile: {'full' if backend.full_forward else 'stop at ' + backend.layer}, batch {len(seqs)}"
    print(header, table, sep="\n", flush=True)
    if out:
        with open(out.with_suffix(".profile.txt"), "a") as fh:
            fh.write(f"{header}\n{table}\n")


def backend_options(a) -> tuple[dict, str]:
    """The evo2 backend's options for a benchmark run (random weights), and how attention runs:
    --tiny (the CPU test model), --no-flash-attn (torch attention), --torch-rotary (the test shims)."""
    import yaml

    from evoscan.backends.evo2 import read_config

    options = {"model": a.model, "weights": "random", "layer": a.layer}
    attention = "flash-attn"
    if a.tiny or a.torch_rotary:  # the test shims: flash-attn stand-in, torch rotary, no-op torch.cuda.device
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        import evo2_cpu

        evo2_cpu.install()
    if a.tiny:  # CPU: the tiny config
        config = Path(tempfile.mkdtemp()) / "tiny.yml"
        config.write_text(yaml.safe_dump(evo2_cpu.tiny_config()))
        options.update(config=config, layer=a.layer or "blocks.22.mlp.l3")
        attention = "torch"
    elif a.no_flash_attn:  # the packaged config with torch attention
        try:
            import flash_attn_2_cuda  # noqa: F401
        except ImportError:  # Vortex imports it unguarded; with use_flash_attn off it is never called
            sys.modules["flash_attn_2_cuda"] = types.ModuleType("flash_attn_2_cuda")
        config = Path(tempfile.mkdtemp()) / f"{a.model}.yml"
        config.write_text(yaml.safe_dump({**read_config(a.model), "use_flash_attn": False}))
        options.update(config=config)
        attention = "torch (no flash-attn)"
    return options, attention


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="evo2_7b")
    ap.add_argument("--layer", default=None, help="default: the backend's default for the model")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test with the tiny model of tests/evo2_cpu.py")
    ap.add_argument("--no-flash-attn", action="store_true",
                    help="flash-attn is not installed: torch attention, a stand-in for its CUDA module")
    ap.add_argument("--torch-rotary", action="store_true",
                    help="Vortex's torch rotary embedding instead of its Triton kernel (the CPU test shims)")
    ap.add_argument("--profile", type=int, default=0, metavar="BATCH",
                    help="GPU: also profile one batch of this size (torch.profiler, CUDA time by operator)")
    ap.add_argument("--out", type=Path, default=None, help="also write the results here (JSON lines)")
    a = ap.parse_args()

    options, attention = backend_options(a)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    results = []
    for full in (False, True):
        backend = get_backend("evo2", **options, full_forward=full)
        model = backend.evo2.model
        params = sum(p.numel() for p in model.parameters())
        # matmul FLOPs of what runs: every weight (the tied embedding as the logits' unembedding),
        # or the blocks up to the layer (the embedding is a lookup); FFT convolutions and attention
        # scores come on top and are not counted, as usual for MFU
        counted = params if full else sum(p.numel() for b in model.blocks[:backend.block + 1] for p in b.parameters())
        flops_per_window = 2 * counted * a.length
        for bs in (int(x) for x in a.batch_sizes.split(",")):
            backend.batch_size = bs
            seqs = random_windows(bs, a.length)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            seconds = time_embed(backend, seqs, a.repeats)
            rate = bs / seconds
            results.append({
                "device": device, "model": a.model if not a.tiny else "tiny", "layer": backend.layer,
                "forward": "full" if full else "stop_at_layer", "attention": attention,
                "rotary": "torch" if a.tiny or a.torch_rotary else "triton", "batch": bs, "windows_per_s": round(rate, 2),
                "model_tflops": round(rate * flops_per_window / 1e12, 2),
                "mfu": round(rate * flops_per_window / (a.peak_tflops * 1e12), 3),
                "params": params, "tflop_per_window": round(flops_per_window / 1e12, 3), "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
                if torch.cuda.is_available() else None,
            })
            print(json.dumps(results[-1]), flush=True)
            if a.out:
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(results[-1]) + "\n")
        if a.profile and torch.cuda.is_available():
            print_profile(backend, random_windows(a.profile, a.length), a.out)
        del backend, model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    stop = {r["batch"]: r["windows_per_s"] for r in results if r["forward"] == "stop_at_layer"}
    full = {r["batch"]: r["windows_per_s"] for r in results if r["forward"] == "full"}
    print(json.dumps({"speedup_stop_at_layer": {b: round(stop[b] / full[b], 3) for b in stop}}))


if __name__ == "__main__":
    main()
