"""Calibration and power of the target-decoy q-values (figures of docs/validation.md).

Calibration: the 25 real loci, each dinucleotide-shuffled as a whole (real composition,
overlapping windows, no signal), one copy per seed; kmer or motifs backend, 1 decoy per window. Reports per
seed the pairs at q <= 0.05 (overall and in each GC tertile of the pair's mean GC), the target and
decoy wins, and the target wins with a score of at least the 20th/60th/200th best decoy win's (the
decoys' estimate of the false target wins there, with 2 decoy scores per pair: 10, 30, 100).

Power: 8 shuffled loci with 20 planted pairs: a shared vocabulary of 40 random 8-mers (positive
control) and shared sets of 12/20/30 JASPAR motifs (each instance sampled anew), 1 and 4 decoys,
kmer and motifs backends side by side on the same planted windows; a call is "false" when one
window carries no planted content, "cross_set" when it joins carriers of two different sets.

    python benchmarks/calibration.py [--seeds 20] [--backend kmer|motifs] [--skip-power]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import subset_fasta  # noqa: E402
from evoscan.backends.motifs import MotifBackend  # noqa: E402
from evoscan.decoys import compete, target_decoy_qvalues  # noqa: E402
from evoscan.pipeline import find_shared_data  # noqa: E402
from evoscan.windows import WindowParams, make_windows  # noqa: E402
from synthetic import kmer_search, plant_motifs, plant_words, shuffled_loci  # noqa: E402

LOCI = ["DES", "ACTC1", "TNNC1", "MYL2", "PLN", "SOD1", "TTR", "AVP"]


def calibration(loci: Path, tmp: Path, seed: int, backend=None) -> dict:
    ws = make_windows(WindowParams(), fasta=shuffled_loci(loci, tmp / "s.fa", seed))
    pairs, nb = kmer_search(ws, tmp, seed=seed, backend=backend)
    wins, winning = compete(pairs["score_z"].to_numpy(), pairs.attrs["decoy_z"])
    gc = ws.table["gc"].to_numpy()
    tertile = np.digitize((gc[pairs.window_a] + gc[pairs.window_b]) / 2, np.quantile(gc, [1 / 3, 2 / 3]))
    called = pairs["qvalue"].to_numpy() <= 0.05
    decoy_best = np.sort(winning[~wins])
    # the decoys' estimate of the false target wins at a score >= the r-th best decoy win's: r / 2D
    return {"seed": seed, "windows": len(ws), "pairs": len(pairs), "called_q05": int(called.sum()),
            "called_by_gc_tertile": [int((called & (tertile == t)).sum()) for t in range(3)],
            "min_q": round(float(pairs["qvalue"].min()), 3),
            "target_wins": int(wins.sum()), "decoy_wins": int((~wins).sum()),
            "target_wins_at_decoy_rank": {r: int((winning[wins] >= decoy_best[-r]).sum()) for r in (20, 60, 200)}}


def lead_qvalues(target: np.ndarray, decoys: np.ndarray) -> np.ndarray:
    """q-values with the previous release's statistic, the winner's lead over the runner-up (also
    valid), for the side-by-side comparison with the winning score that evoscan uses."""
    scores = np.sort(np.column_stack([target, decoys]), axis=1)
    wins, lead = target > decoys.max(1), scores[:, -1] - scores[:, -2]
    q = np.ones(len(target))
    q[wins], _ = target_decoy_qvalues(lead[wins], lead[~wins], decoys.shape[1])
    return q


def power(base, data: Path, tmp: Path, kind: str, load: int, n_decoys: int, seed: int, backend=None) -> dict:
    if kind == "words":
        ws, planted = plant_words(base, 20, load, seed)
    else:
        ws, planted = plant_motifs(data / "motifs" / "JASPAR2024_CORE_vertebrates_latest.jaspar", base, 20, load, seed)
    pairs, _ = kmer_search(ws, tmp, n_decoys=n_decoys, backend=backend)
    called = set(zip(pairs.window_a[pairs.qvalue <= 0.05], pairs.window_b[pairs.qvalue <= 0.05]))
    carriers = {w for p in planted for w in p}
    # false: a call involving a window without planted content (a true null); cross_set: a call
    # between carriers of two different planted sets, which share content from one matrix pool
    false = {p for p in called if p[0] not in carriers or p[1] not in carriers}
    cross_set = called - set(planted) - false
    nominated = set(zip(pairs.window_a, pairs.window_b)) & set(planted)
    by_lead = lead_qvalues(pairs["score_z"].to_numpy(), pairs.attrs["decoy_z"]) <= 0.05
    called_by_lead = set(zip(pairs.window_a[by_lead], pairs.window_b[by_lead]))
    return {"backend": backend.name if backend else "kmer", "planted": kind, "load": load, "decoys": n_decoys,
            "seed": seed, "nominated": len(nominated), "recovered_q05": len(called & set(planted)),
            "called": len(called), "false": len(false), "cross_set": len(cross_set),
            "recovered_q05_lead_statistic": len(called_by_lead & set(planted)),
            "called_lead_statistic": len(called_by_lead)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--backend", default="kmer", choices=["kmer", "motifs"], help="backend of the calibration runs")
    ap.add_argument("--skip-power", action="store_true")
    a = ap.parse_args()
    motif_backend = MotifBackend() if a.backend == "motifs" or not a.skip_power else None
    data = find_shared_data(REPO)
    loci = data / "loci" / "grch38_loci.softmasked.fa"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in range(a.seeds):
            t = time.perf_counter()
            row = calibration(loci, tmp, seed, motif_backend if a.backend == "motifs" else None)
            print(json.dumps({"calibration": {"backend": a.backend, **row, "seconds": round(time.perf_counter() - t, 1)}}), flush=True)
        if a.skip_power:
            return
        base = make_windows(WindowParams(), fasta=shuffled_loci(subset_fasta(loci, LOCI, tmp / "8.fa"), tmp / "8s.fa", 42))
        for kind, loads in (("words", (20, 40)), ("motifs", (12, 20, 30))):
            for load in loads:
                for n_decoys in (1, 4):
                    for seed in (5, 6, 7):
                        for backend in (None, motif_backend):
                            row = power(base, data, tmp, kind, load, n_decoys, seed, backend)
                            print(json.dumps({"power": row}), flush=True)


if __name__ == "__main__":
    main()
