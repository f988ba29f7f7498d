"""`evoscan run` of a revision against this tree's, side by side: per-step times and whether every
output is the same.

The two take turns (REPEATS runs each, per backend) on the demo's 25 real loci, so machine load
hits both alike; each side runs its own source tree (a git worktree of REV) with this tree's
virtual environment. Outputs are compared file by file: text byte for byte, HDF5 dataset by
dataset and attribute by attribute (but `created`, the time of writing).

    python benchmarks/ab_run.py REV [--backends kmer,motifs] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "assets" / "test_data"


def run(src: Path, backend: str, outdir: Path, threads: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "evoscan.cli", "run", "--fasta", DATA / "loci" / "grch38_loci.softmasked.fa",
           "--gtf", DATA / "annotation" / "lrg_derived_grch38.gtf", "--threads", str(threads),
           "--backend", backend, "--outdir", outdir]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin",
                                                                      "COLUMNS": "200"})
    if proc.returncode:
        raise SystemExit(f"{src}: evoscan run failed: {proc.stderr[-2000:]}")
    steps = re.search(r"steps \(s\): (.*)", proc.stdout).group(1)
    return {name: float(t) for name, t in re.findall(r"([a-z][a-z ()-]*?) ([\d.]+)", steps)}


def differences(a: Path, b: Path) -> list[str]:
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return ["different files"]
    found = []
    for name in names:
        if not name.endswith(".h5"):
            found += [name] if (a / name).read_bytes() != (b / name).read_bytes() else []
            continue
        with h5py.File(a / name) as fa, h5py.File(b / name) as fb:
            keys_a, keys_b = [], []
            fa.visit(keys_a.append)
            fb.visit(keys_b.append)
            if keys_a != keys_b:
                found.append(f"{name}: datasets")
                continue
            for key in keys_a:
                if isinstance(fa[key], h5py.Dataset):
                    x, y = fa[key][()], fb[key][()]
                    same = (x.dtype, x.shape) == (y.dtype, y.shape) and np.array_equal(
                        x, y, equal_nan=x.dtype.kind == "f")
                    found += [] if same else [f"{name}:{key}"]
            for attr in (set(fa.attrs) | set(fb.attrs)) - {"created"}:
                found += [] if str(fa.attrs.get(attr)) == str(fb.attrs.get(attr)) else [f"{name}@{attr}"]
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev")
    ap.add_argument("--backends", default="kmer,motifs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "rev"
        subprocess.run(["git", "-C", REPO, "worktree", "add", "-q", "--detach", old, a.rev], check=True)
        try:
            sides = {a.rev: old / "src", "this": REPO / "src"}
            result = {}
            for backend in a.backends.split(","):
                times = {side: [] for side in sides}
                for rep in range(a.repeats):
                    for side, src in sides.items():
                        times[side].append(run(src, backend, Path(tmp) / f"{backend}-{side}", a.threads))
                steps = list(times["this"][0])
                median = {side: {s: statistics.median(t[s] for t in runs) for s in steps} for side, runs in times.items()}
                result[backend] = {"median_s": median,
                                   "ratio_this_to_rev": {s: round(median["this"][s] / median[a.rev][s], 2)
                                                         for s in steps if median[a.rev][s] > 0},
                                   "outputs_differ": differences(*(Path(tmp) / f"{backend}-{side}" for side in sides))}
                print(json.dumps({backend: result[backend]}), flush=True)
        finally:
            subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", old], check=True)


if __name__ == "__main__":
    main()
