"""What the kmer backend's false clump on planted copy 1002 is (docs/validation.md, "The default
backend"): the copy is made and run exactly as `validation_default.py --compare kmer` does, then

- each false call's similarity in the corrected space is split by 6-mer: the words that carry it,
  and how their spread across windows compares with the median dimension's (what standardisation
  divides by);
- windows and their decoys are counted for a (CG)3 run, on this copy and on `--nulls` signal-free
  copies (is the competition biased, or was this copy unlucky?).

    python benchmarks/kmer_clump.py [--nulls 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validation_default as v  # noqa: E402  (puts tests/ on the path for `synthetic`)
from evoscan.backends.kmer import canonical_columns  # noqa: E402
from evoscan.decoys import decoy_sequences  # noqa: E402
from evoscan.pipeline import find_shared_data  # noqa: E402
from evoscan.search import embedding_stats  # noqa: E402
from evoscan.windows import read_windows  # noqa: E402
from synthetic import shuffled_loci  # noqa: E402

COPY = 2  # the third planted copy, 1002


def cg_runs(windows_h5: Path) -> tuple[int, int]:
    """(windows, decoys) holding a CGCGCG run; the decoys as `evoscan embed` makes them (seed 1)."""
    ws = read_windows(windows_h5)
    t, seqs = ws.table, [s.decode("ascii").upper() for s in ws.seqs]
    decoys = decoy_sequences(seqs, t.chrom.tolist(), t.start.tolist(), t.strand.tolist(), 1, 1, 256)
    return sum("CGCGCG" in s for s in seqs), sum("CGCGCG" in s.upper() for s in decoys)


def words_of(calls, run: Path, planted: list) -> list[dict]:
    """Each false call: its corrected similarity and the 6-mers carrying most of it."""
    ws = read_windows(run / "windows.h5")
    row = {w: i for i, w in enumerate(ws.table.id)}
    with h5py.File(run / "embeddings.h5") as f:
        emb = f["embeddings"][()]
        mean, scale = embedding_stats(f["embeddings"], f["decoys"], "standardize")
    z = (emb - mean) / scale
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    columns, _ = canonical_columns(6)
    word = {int(c): "".join("ACGT"[(code >> 2 * (5 - p)) & 3] for p in range(6))
            for code, c in reversed(list(enumerate(columns)))}  # the column's lexicographically first word
    out = []
    for a, b in zip(calls.window_a, calls.window_b):
        if v.judge(calls[(calls.window_a == a) & (calls.window_b == b)], ws.table, planted)["false"]:
            share = z[row[a]] * z[row[b]]
            top = np.argsort(-share)[:5]
            out.append({"pair": f"{a} x {b}", "similarity": round(float(share.sum()), 3),
                        "top5_share": round(float(share[top].sum() / share.sum()), 2),
                        "words": [word[int(d)] for d in top],
                        "spread_vs_median": [round(float(scale[d] / np.median(scale)), 2) for d in top]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nulls", type=int, default=8)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    motif_file = find_shared_data(v.REPO) / "motifs" / "JASPAR2024_CORE_vertebrates_latest.jaspar"
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        tmp = Path(tmp)
        planted = v.plant(shuffled_loci(v.LOCI, tmp / "s.fa", 1000 + COPY), tmp / "planted.fa", motif_file,
                          20, 30, COPY)
        calls, windows, _ = v.run(tmp / "planted.fa", tmp / "kmer", "--backend", "kmer")
        print(json.dumps({"copy": 1000 + COPY, **v.judge(calls, windows, planted),
                          "cg_run_windows_decoys": cg_runs(tmp / "kmer" / "windows.h5")}), flush=True)
        for call in words_of(calls, tmp / "kmer", planted):
            print(json.dumps({"false_call": call}), flush=True)
        for seed in range(a.nulls):
            fasta = shuffled_loci(v.LOCI, tmp / "null.fa", seed)
            subprocess.run([sys.executable, "-m", "evoscan.cli", "windows", "--fasta", fasta, "-o", tmp / "null.h5"],
                           check=True, capture_output=True)
            print(json.dumps({"signal_free": seed, "cg_run_windows_decoys": cg_runs(tmp / "null.h5")}), flush=True)


if __name__ == "__main__":
    main()
