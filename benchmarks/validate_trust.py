"""Figures of docs/validation.md: calibration without signal, power on planted regulatory content,
and the cost of the nulls (kmer backend; real GRCh38 windows of 8 loci as composition source).

    python benchmarks/validate_trust.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import test_trust as T  # noqa: E402  (the test suite's fixtures, so the document and the tests agree)
from conftest import subset_fasta  # noqa: E402
from evoscan import trust  # noqa: E402
from evoscan.nulls import dinucleotide_shuffle  # noqa: E402
from evoscan.pipeline import find_demo_data  # noqa: E402
from evoscan.score import ScoreParams, composition_features, score_pairs  # noqa: E402
from evoscan.windows import WindowParams, WindowSet, make_windows  # noqa: E402

LOCI = ["DES", "ACTC1", "TNNC1", "MYL2", "PLN", "SOD1", "TTR", "AVP"]


def shuffled_windows(data: Path, tmp: Path) -> WindowSet:
    ws = make_windows(WindowParams(), fasta=subset_fasta(data / "loci" / "grch38_loci.softmasked.fa", LOCI,
                                                         tmp / "eight.fa"))
    seqs = np.array([dinucleotide_shuffle(s.decode().upper(), np.random.default_rng([42, i])).encode()
                     for i, s in enumerate(ws.seqs)])
    return WindowSet(ws.table, seqs, ws.params)


def calibration(ws: WindowSet, n_shuffles: int) -> dict:
    emb, nulls = T.kmer_with_nulls(ws, n_shuffles)
    gene = ws.table.gene.to_numpy()
    corrected, null_corrected = trust.correct(emb, "standardize", nulls)
    background = trust.matched_background(composition_features(ws, np.zeros(len(ws))), gene, 50)
    a, b = np.random.default_rng(3).integers(len(ws), size=(2, 6000))
    keep = gene[a] != gene[b]
    p_s, p_b, p = trust.null_pvalues(corrected, null_corrected, background, gene, a[keep], b[keep], 50)
    pairs, funnel, _ = score_pairs(ws, emb, np.zeros(len(ws), np.float32), T.EMPTY_HITS, ScoreParams(),
                                   nulls=nulls)
    out = {"windows": len(ws), "random_pairs": int(keep.sum()), "shuffles": n_shuffles,
           "ks_D_shuffle": round(stats.kstest(p_s, "uniform").statistic, 4),
           "ks_D_background": round(stats.kstest(p_b, "uniform").statistic, 4),
           "scored_pairs": funnel["scored"], "significant_q05": funnel["significant"]}
    for name, values in (("shuffle", p_s), ("background", p_b), ("combined", p)):
        for level in (0.01, 0.05, 0.1):
            out[f"P({name}<{level})"] = round(float((values < level).mean()), 4)
    return out


def main() -> None:
    data = find_demo_data(REPO)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ws = shuffled_windows(data, Path(tmp))
    print(json.dumps({"calibration": calibration(ws, 32)}))
    for n_motifs in (12, 20, 30):
        for n_shuffles in (8, 16, 32):
            planted_ws, planted = T.plant_motifs(data, ws, n_pairs=20, n_motifs=n_motifs, seed=5)
            t = time.perf_counter()
            rate, false, total = T.recovery(planted_ws, planted, n_shuffles)
            print(json.dumps({"power": {"motifs_per_window": n_motifs, "shuffles": n_shuffles,
                                        "planted_pairs": len(planted), "recovered_q05": rate,
                                        "significant": total, "involving_window_without_motifs": false,
                                        "seconds": round(time.perf_counter() - t, 1)}}), flush=True)
    # evidence for the default correction: the same planted data, each correction, 16 shuffles
    planted_ws, planted = T.plant_motifs(data, ws, n_pairs=20, n_motifs=30, seed=5)
    for correction in ("none", "center", "standardize"):
        rate, false, total = T.recovery(planted_ws, planted, 16, ScoreParams(correction=correction))
        print(json.dumps({"correction": {"correction": correction, "recovered_q05": rate, "significant": total,
                                         "involving_window_without_motifs": false}}), flush=True)


if __name__ == "__main__":
    main()
