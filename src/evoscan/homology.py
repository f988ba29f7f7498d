"""Strict non-homology check for candidate pairs: Smith-Waterman with shuffle statistics.

BLAST's seeds can miss diverged homology; a full local alignment (parasail, striped SIMD, both
strands, EDNAFULL +5/-4, gap open 10 / extend 1) cannot. Its score is compared with the scores of
the same window against dinucleotide shuffles of the partner: `sw_zscore`, and `sw_pvalue` from a
Gumbel (extreme value) distribution fitted to the shuffled scores by moments.
"""

from __future__ import annotations

import numpy as np

from .decoys import dinucleotide_shuffle
from .windows import reverse_complement

GAP_OPEN, GAP_EXTEND = 10, 1
EULER_GAMMA = 0.5772156649


def sw_score(a: str, b: str) -> int:
    """Best local alignment score of `a` against `b` on either strand."""
    import parasail

    forward = parasail.sw_striped_16(a, b, GAP_OPEN, GAP_EXTEND, parasail.dnafull).score
    reverse = parasail.sw_striped_16(a, reverse_complement(b), GAP_OPEN, GAP_EXTEND, parasail.dnafull).score
    return max(forward, reverse)


def gumbel_sf(score: float, null: np.ndarray) -> float:
    """Upper tail of a Gumbel fitted to `null` by moments (local alignment scores follow an EVD)."""
    sd = max(float(null.std(ddof=1)), 1e-9)
    lam = np.pi / (sd * np.sqrt(6))
    mu = float(null.mean()) - EULER_GAMMA / lam
    return float(-np.expm1(-np.exp(-lam * (score - mu))))


def sw_significance(a: str, b: str, n_shuffles: int, seed: int) -> tuple[int, float, float]:
    """(score, z-score, EVD p-value) of a vs b against a vs dinucleotide shuffles of b."""
    a, b = a.upper(), b.upper()
    score = sw_score(a, b)
    rng = np.random.default_rng(seed)
    null = np.array([sw_score(a, dinucleotide_shuffle(b, rng)) for _ in range(n_shuffles)], dtype=float)
    z = (score - null.mean()) / max(null.std(ddof=1), 1e-9)
    return score, float(z), gumbel_sf(score, null)
