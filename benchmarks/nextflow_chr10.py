"""A chromosome-scale run through Nextflow (docs/scaling.md): the 8,283 real chr10 exon-start regions
of shared/data/scale (one group per region, 400-bp windows) with the motifs backend, 4 embed and 4
search chunks, the local executor, as one `nextflow run` of the Nextflow `make nextflow` resolves.
Prints the wall time, each task's realtime, CPU time and peak RSS from the trace, and the number of
candidates at q <= 0.05.

    python benchmarks/nextflow_chr10.py [--outdir DIR] [--cpus 2] [--memory-gb 8]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from evoscan.pipeline import find_shared_data  # noqa: E402

UNITS = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}


def seconds(text: str) -> float:
    """A trace duration ('1m 2s', '850ms', '3.4s', '1h 2m') in seconds."""
    scale = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * scale[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h|d)", text))


def mib(text: str) -> float:
    number, unit = text.split()
    return float(number) * UNITS[unit] / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outdir", type=Path, help="launch folder (default: a temporary one, kept)")
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs a task may use (resourceLimits)")
    ap.add_argument("--memory-gb", type=int, default=8, help="memory a task may use (resourceLimits)")
    a = ap.parse_args()
    launch = a.outdir or Path(tempfile.mkdtemp(prefix="nf_chr10_"))
    launch.mkdir(parents=True, exist_ok=True)
    regions = find_shared_data(REPO) / "scale" / "chr10_exon_starts_401bp.fa.gz"
    (launch / "chr10.csv").write_text(f"sample,fasta\nchr10_exon_starts,{regions}\n")
    (launch / "limits.config").write_text(
        f"process.resourceLimits = [cpus: {a.cpus}, memory: {a.memory_gb}.GB, time: 12.h]\n")
    command = [str(REPO / "tools" / "nextflow" / "nextflow"), "run", str(REPO), "-ansi-log", "false",
               "-c", "limits.config", "--input", "chr10.csv", "--outdir", "results", "--backend", "motifs",
               "--window_size", "400", "--stride", "400", "--embed_chunks", "4", "--search_chunks", "4"]
    env = {**os.environ, "NXF_OFFLINE": "true", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    print("$ cd", launch, "&&", " ".join(command[:2]), ". " + " ".join(command[3:]), flush=True)
    t = time.perf_counter()
    proc = subprocess.run(command, cwd=launch, env=env)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"nextflow failed ({proc.returncode}); see {launch}/.nextflow.log")
    (trace,) = (launch / "results" / "pipeline_info").glob("execution_trace_*.txt")
    rows = list(csv.DictReader(open(trace), delimiter="\t"))
    print(f"\nwall {wall:.0f} s, {len(rows)} tasks; trace {trace}\n")
    print("| task | realtime (s) | CPU time (s) | peak RSS (MiB) |\n|---|---|---|---|")
    for r in rows:
        real = seconds(r["realtime"])
        cpu = real * float(r["%cpu"].rstrip("%") or 0) / 100
        print(f"| {r['name'].split(':')[-1]} | {real:.1f} | {cpu:.1f} | {mib(r['peak_rss']):,.0f} |")
    total_cpu = sum(seconds(r["realtime"]) * float(r["%cpu"].rstrip("%") or 0) / 100 for r in rows)
    print(f"| all tasks | {sum(seconds(r['realtime']) for r in rows):.1f} | {total_cpu:.1f} | "
          f"{max(mib(r['peak_rss']) for r in rows):,.0f} (largest) |")
    candidates = launch / "results" / "chr10_exon_starts" / "candidates.tsv"
    called = sum(1 for _ in open(candidates)) - 1
    print(f"\ncandidates at q <= 0.05: {called}")
    print((launch / "results" / "chr10_exon_starts" / "summary.txt").read_text())


if __name__ == "__main__":
    main()
