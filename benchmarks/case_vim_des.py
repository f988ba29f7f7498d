"""The VIM-DES case study (docs/case_study_vim_des.md): what evoscan's CPU backends, its statistics
and the motif evidence say about the pair behind the original finding.

The real VIM core promoter (401 bp, -302..+98 around its TSS; the whole VIM locus is not in the
shared data) is added to the 25 real loci, windows of 400 bp (stride 200) so that VIM is one
window, and `evoscan run` runs with the kmer and the motifs backend (no GTF: the shared GTF lacks
VIM; DES promoter windows are the six that start at or before +200 and end after -500 of its TSS). For each: where DES windows
rank among the VIM window's neighbours in the corrected space, whether a VIM-DES pair is nominated
and called, and the motif evidence of VIM against the DES promoter windows.

    python benchmarks/case_vim_des.py [--outdir results/case_vim_des]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np
from rich.console import Console

from evoscan import motifs
from evoscan.io.fasta import read_fasta
from evoscan.pipeline import RunConfig, find_shared_data, run_pipeline
from evoscan.windows import WindowParams

REPO = Path(__file__).resolve().parents[1]


def corrected_cosines(embeddings: Path, query: int) -> np.ndarray:
    """Cosine of the query window with every window after the search's standardisation."""
    with h5py.File(embeddings) as f:
        e = f["embeddings"][()].astype(np.float64)
        d = f["decoys"][()].reshape(-1, e.shape[1]).astype(np.float64)
    both = np.concatenate([e, d])
    z = (e - both.mean(0)) / (both.std(0) + 1e-6)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z @ z[query]


DES_TSS = 219418377  # LRG_380 t1 (GRCh38, 1-based), the DES locus header's lrg_t1_tss


def study(fasta: Path, outdir: Path, backend: str) -> tuple:
    # no GTF: the shared LRG-derived GTF has no VIM; the DES promoter is located by its TSS instead
    cfg = RunConfig(outdir=outdir / backend, fasta=fasta, backend=backend, threads=2,
                    window=WindowParams(size=400, stride=200))
    result = run_pipeline(cfg, Console(file=open(outdir / f"{backend}.log", "w"), width=100))
    ws, pairs = result["windows"], result["pairs"]
    t = ws.table
    vim = int(np.flatnonzero(t["gene"] == "VIM")[0])
    cos = corrected_cosines(outdir / backend / "embeddings.h5", vim)
    other = (t["gene"] != "VIM").to_numpy()
    order = np.argsort(-np.where(other, cos, -np.inf))
    rank = {int(w): r + 1 for r, w in enumerate(order[:other.sum()])}
    des = np.flatnonzero((t["gene"] == "DES").to_numpy())
    # DES promoter windows: starting before +200 and ending after -500 (0-based, TSS at DES_TSS - 1)
    tss = DES_TSS - 1
    des_promoter = [int(w) for w in des if t["start"].iat[w] <= tss + 200 and t["end"].iat[w] > tss - 500]
    best_des = min(des, key=lambda w: rank[int(w)])
    involving = pairs[(pairs["window_a"] == vim) | (pairs["window_b"] == vim)]
    with_des = involving[np.isin(np.where(involving["window_a"] == vim, involving["window_b"], involving["window_a"]), des)]
    return {
        "backend": backend, "windows": len(ws), "vim_window": t["id"].iat[vim],
        "best_des_window": t["id"].iat[best_des],
        "best_des_window_centre_to_tss": int(t["start"].iat[best_des] + 200 - (DES_TSS - 1)),
        "best_des_rank_among_other_genes": rank[int(best_des)], "other_gene_windows": int(other.sum()),
        "best_des_corrected_cosine": round(float(cos[best_des]), 3),
        "des_promoter_windows": {t["id"].iat[w]: {"rank": rank[w], "corrected_cosine": round(float(cos[w]), 3)}
                                 for w in des_promoter},
        "vim_top5": [t["id"].iat[w] for w in order[:5]],
        "vim_des_pairs_nominated": with_des[["score_z", "qvalue", "qvalue_all", "kmer_cosine", "motif_cosine",
                                             "blast_evalue", "candidate"]].round(3).to_dict("records"),
        "candidates": int(pairs["candidate"].sum()),
        "vim_candidates": int(involving["candidate"].sum()),
    }, ws, des_promoter, vim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outdir", type=Path, default=REPO / "results" / "case_vim_des")
    a = ap.parse_args()
    data = find_shared_data(REPO)
    a.outdir.mkdir(parents=True, exist_ok=True)
    fasta = a.outdir / "loci_with_vim_promoter.fa"
    with open(fasta, "w") as out:
        for path in (data / "anecdote" / "vim_promoter_core.softmasked.fa", data / "loci" / "grch38_loci.softmasked.fa"):
            for rec in read_fasta(path):
                out.write(f">{rec.description}\n{rec.seq}\n")
    results = {}
    for backend in ("kmer", "motifs"):
        results[backend], ws, des_promoter, vim = study(fasta, a.outdir, backend)
        print(json.dumps(results[backend]), flush=True)
    profiler = motifs.MotifProfiler()
    seqs = [(ws.seqs[vim].decode().upper(), ws.seqs[w].decode().upper()) for w in des_promoter]
    summary, sites = profiler.evidence(seqs, 200, seed=1, keys=[(vim, w) for w in des_promoter])
    summary.insert(0, "des_window", [ws.table["id"].iat[w] for w in des_promoter])
    print(json.dumps({"motif_evidence_vim_vs_des_promoter": summary.round(3).to_dict("records")}), flush=True)
    sites.to_csv(a.outdir / "vim_des_promoter_sites.tsv", sep="\t", index=False)


if __name__ == "__main__":
    sys.exit(main())
