"""Run every CPU benchmark and print one JSON line each (figures go to docs/benchmarks.md)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
for script in ("calibration.py", "bench_motifs.py", "bench_search.py", "gather_peak.py", "bench_blast_nominated.py",
               "bench_blast.py"):
    print(f"# {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True)
