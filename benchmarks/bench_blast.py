"""BLAST step wall time: `evoscan blast` against the bare makeblastdb + blastn commands it wraps.

Same windows (real GRCh38 loci from shared/data), same blastn options and threads, runs
interleaved. The evoscan side is the whole CLI call: Python start-up, reading windows.h5,
writing the FASTA, the search, best-hit-per-pair reduction and writing blast.h5.

    python benchmarks/bench_blast.py [--genes DES,ACTC1,...] [--threads 2] [--repeats 2]
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

from evoscan.blast import DEFAULT_ARGS, OUTFMT, blastn_args
from evoscan.io.fasta import read_fasta, write_fasta_upper
from evoscan.pipeline import find_shared_data
from evoscan.windows import WindowParams, read_windows, windows_from_loci, write_windows

GENES = "DES,LMNA,MYH7,MYH6,ACTC1,TNNC1,MYL2,PLN"


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genes", default=GENES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    data = find_shared_data()
    genes = a.genes.split(",")
    records = [r for r in read_fasta(data / "loci" / "grch38_loci.softmasked.fa") if r.name in genes]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_windows(tmp / "windows.h5", windows_from_loci(records, WindowParams()))
        ws = read_windows(tmp / "windows.h5")
        write_fasta_upper(tmp / "windows.fa", ws.seqs)
        words = blastn_args(DEFAULT_ARGS, len(ws))
        bare = [["makeblastdb", "-in", str(tmp / "windows.fa"), "-dbtype", "nucl", "-out", str(tmp / "db")],
                ["blastn", "-query", str(tmp / "windows.fa"), "-db", str(tmp / "db"), "-outfmt", OUTFMT,
                 "-num_threads", str(a.threads), "-out", str(tmp / "hits.tsv"), *words]]
        wrapped = [sys.executable, "-m", "evoscan.cli", "blast", "--windows", str(tmp / "windows.h5"),
                   "--threads", str(a.threads), "-o", str(tmp / "blast.h5")]
        times = {"bare": [], "evoscan": []}
        for _ in range(a.repeats):
            times["bare"].append(sum(timed(cmd) for cmd in bare))
            times["evoscan"].append(timed(wrapped))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"genes": len(genes), "windows": len(ws), "threads": a.threads,
                      "bare_s": round(med["bare"], 2), "evoscan_s": round(med["evoscan"], 2),
                      "ratio": round(med["evoscan"] / med["bare"], 3)}))


if __name__ == "__main__":
    main()
