"""Time, peak memory and disk of every step at growing numbers of windows (docs/scaling.md).

Window sets: `demo` (the 25 real loci, 2,031 windows), `regions` (the 8,283 real 401-bp chr10
regions of shared/data/scale, one 401-bp window each), and `copies:C` (C dinucleotide-shuffled
copies of the 25 loci: real composition, synthetic sequence, 2,031 windows per copy). Each step
runs as the `evoscan` command, under /usr/bin/time for its wall time and peak resident memory.

    python benchmarks/scaling.py demo regions copies:10 [--search exact|ivf|both] [--precision bf16]
    python benchmarks/scaling.py copies:500 --steps windows,mask,embed --search-chunk 1/64   # 1 M: part of a search
    python benchmarks/scaling.py copies:250 --search ivf --nprobe 1 --precision bf16   # 500 k: the check and report
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from evoscan.decoys import dinucleotide_shuffle  # noqa: E402
from evoscan.io.fasta import read_fasta  # noqa: E402
from evoscan.pipeline import find_shared_data  # noqa: E402

import numpy as np  # noqa: E402


def make_input(spec: str, data: Path, tmp: Path) -> list[str]:
    """The `evoscan windows` input options of a window set."""
    loci = data / "loci" / "grch38_loci.softmasked.fa"
    if spec == "demo":
        return ["--fasta", str(loci), "--gtf", str(data / "annotation" / "lrg_derived_grch38.gtf")]
    if spec == "regions":
        return ["--fasta", str(data / "scale" / "chr10_exon_starts_401bp.fa.gz"), "--window-size", "401",
                "--stride", "401"]
    copies = int(spec.split(":")[1])
    path = tmp / f"copies{copies}.fa"
    records = list(read_fasta(loci))
    with open(path, "w") as out:
        for c in range(copies):
            for i, rec in enumerate(records):
                seq = dinucleotide_shuffle(rec.seq.upper(), np.random.default_rng([c, i]))
                # each copy of a locus on a sequence of its own: windows of different loci do not overlap
                out.write(f">{rec.name}_c{c} copy{c}_{rec.name}:1-{len(seq)}\n{seq}\n")
    return ["--fasta", str(path)]


class StepFailed(Exception):
    pass


def timed(args: list[str]) -> dict:
    """Run `evoscan ARGS` under /usr/bin/time; wall seconds and peak resident MiB."""
    proc = subprocess.run(["/usr/bin/time", "-v", str(Path(sys.executable).parent / "evoscan"), *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise StepFailed(f"evoscan {args[0]} failed: {proc.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    h, m, s = (float(x) if x else 0.0 for x in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return {"seconds": round(h * 3600 + m * 60 + s, 1), "peak_mib": round(rss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="+", help="demo | regions | copies:C")
    ap.add_argument("--steps", default="windows,mask,embed,search,check,report")
    ap.add_argument("--search", default="exact", choices=["exact", "ivf", "both"])
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--nprobe", type=int, default=0,
                    help="ivf lists searched per query (0: the default); 1 gives a cheap, complete "
                         "neighbours file for timing the check at sizes where a search takes hours")
    ap.add_argument("--search-chunk", help="search only this query chunk I/N (a part of a large search)")
    ap.add_argument("--exact-chunk-only", action="store_true",
                    help="with --search both: only the exact search takes --search-chunk (ivf searches all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="kmer", help="embedding backend (docs/scaling.md measured kmer)")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep each set's files (in --workdir) for a later look")
    a = ap.parse_args()
    data = find_shared_data(REPO)
    steps = a.steps.split(",")
    for spec in a.sets:
        with (contextlib.nullcontext(tempfile.mkdtemp(dir=a.workdir)) if a.keep
              else tempfile.TemporaryDirectory(dir=a.workdir)) as tmp:
            row = {"set": spec}
            try:
                run_set(spec, Path(tmp), data, steps, a, row)
            except StepFailed as err:  # keep what was measured
                row["failed"] = str(err)[:300]
            print(json.dumps(row | ({"workdir": tmp} if a.keep else {})), flush=True)


def run_set(spec: str, tmp: Path, data: Path, steps: list[str], a, row: dict) -> None:
    """Run the steps of one window set, filling `row` (each step's figures, as soon as measured)."""
    def step(name: str, args: list) -> None:
        row[name] = timed([str(x) for x in args])
        print(f"# {row['set']} {name}: {row[name]}", file=sys.stderr, flush=True)

    t = time.perf_counter()
    source = make_input(spec, data, tmp)
    row["make_input_s"] = round(time.perf_counter() - t, 1)
    f = {name: tmp / f"{name}.h5" for name in ("windows", "masks", "embeddings", "neighbours", "scores")}
    plan = {
        "windows": ["windows", *source, "-o", f["windows"]],
        "mask": ["mask", "--windows", f["windows"], "-o", f["masks"]],
        "embed": ["embed", "--windows", f["windows"], "--backend", a.backend, "-o", f["embeddings"]],
    }
    for name in ("windows", "mask", "embed"):
        if name in steps:
            step(name, plan[name])
    if "windows" in steps:
        import h5py

        with h5py.File(f["windows"]) as w:
            row["windows_n"] = int(w.attrs["n_windows"])
    # the last index searched is the one `check` reads
    for index in ((["exact", "ivf"] if a.search == "both" else [a.search]) if "search" in steps else []):
        out = tmp / f"neighbours.{index}.h5"
        args = ["search", "--windows", f["windows"], "--embeddings", f["embeddings"], "--index", index,
                "--precision", a.precision, "-o", out] + (["--nprobe", a.nprobe] if index == "ivf" and a.nprobe else [])
        chunk = a.search_chunk if index == "exact" or not a.exact_chunk_only else None
        step(f"search_{index}", args + (["--chunk", chunk] if chunk else []))
        row[f"search_{index}"]["mib_on_disk"] = round(out.stat().st_size / 2**20, 1)
        if not chunk:
            out.replace(f["neighbours"])
    if "check" in steps and f["neighbours"].exists():
        step("check", ["check", "--windows", f["windows"], "--masks", f["masks"], "--neighbours",
                       f["neighbours"], "--threads", a.threads, "-o", f["scores"]])
    if "report" in steps and f["scores"].exists():
        step("report", ["report", "--windows", f["windows"], "--scores", f["scores"], "--outdir", tmp / "report"])
    row["mib_on_disk"] = {name: round(p.stat().st_size / 2**20, 1) for name, p in f.items() if p.exists()}
    if (tmp / "report").exists():
        row["mib_on_disk"]["report"] = round(sum(p.stat().st_size for p in (tmp / "report").rglob("*")) / 2**20, 1)


if __name__ == "__main__":
    main()
