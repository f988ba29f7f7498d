"""What makes a scored pair believable: corrected similarity, null models, composition control,
strict non-homology. Pure functions on arrays; `score.score_pairs` puts them together.

- Correction (anisotropy): pooled language-model embeddings share a large common direction, so
  raw cosine is high for almost any pair. `center` removes the mean embedding, `standardize`
  also scales each dimension to unit variance (both estimated on the real windows and applied
  alike to the null embeddings). `csls` (cross-domain similarity local scaling) additionally
  discounts hubs: 2 cos(a, b) - r_a - r_b, r = mean similarity to the top-k neighbours.
- Nulls: `pvalue_shuffle` against each window's similarity to dinucleotide shuffles of the
  partner; `pvalue_background` against its similarity to real windows of other genes matched
  for GC, CpG o/e and repeat fraction; `pvalue` is the larger (a pair must beat both); `qvalue`
  is Benjamini-Hochberg over every cross-gene pair (pairs never scored count as p = 1).
- Composition: `kmer_cosine` (6-mer composition) of every pair; `composition_residual` is what
  is left of `score` after a linear fit on `kmer_cosine` over the scored pairs, whose R^2 says how
  much of the model's similarity composition explains.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .errors import EvoscanError
from .nulls import predictive_pvalue

CORRECTIONS = ("none", "center", "standardize")


def correct(emb: np.ndarray, how: str, *others: np.ndarray) -> list[np.ndarray]:
    """`emb` and `others` (same last dimension) centred / scaled by the statistics of all of them
    together, rows L2-normalised. Pooling matters: statistics of the real windows alone would
    pull real-real similarities below real-null ones (each real vector is in its own mean) and
    bias the null test."""
    if how not in CORRECTIONS:
        raise EvoscanError(f"unknown correction {how!r}; choose from {', '.join(CORRECTIONS)}")
    pooled = np.concatenate([np.asarray(x, np.float32).reshape(-1, emb.shape[-1]) for x in (emb, *others)])
    mean = pooled.mean(0) if how != "none" else 0.0
    scale = pooled.std(0) + 1e-6 if how == "standardize" else 1.0
    out = []
    for x in (emb, *others):
        y = (np.asarray(x, np.float32) - mean) / scale
        out.append((y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)).astype(np.float32))
    return out


def pair_dots(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 65536) -> np.ndarray:
    """Row-wise dot products x[a[p]] . y[b[p]], in blocks."""
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), block):
        out[s:s + block] = np.einsum("pd,pd->p", x[a[s:s + block]], y[b[s:s + block]])
    return out


def csls(score: np.ndarray, rows: np.ndarray, vals: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Hubness-corrected score of pairs (a, b) from each window's top-k neighbour similarities."""
    r = np.bincount(rows, weights=vals, minlength=n) / np.maximum(np.bincount(rows, minlength=n), 1)
    return 2 * score - r[a] - r[b]


def shuffle_pvalues(emb: np.ndarray, nulls: np.ndarray, a: np.ndarray, b: np.ndarray,
                    observed: np.ndarray) -> np.ndarray:
    """p of each pair against a-vs-shuffles(b) and shuffles(a)-vs-b similarities (corrected space)."""
    out = np.empty(len(a))
    for s in range(0, len(a), 8192):
        sa, sb = a[s:s + 8192], b[s:s + 8192]
        null = np.concatenate([np.einsum("pd,pkd->pk", emb[sa], nulls[sb]),
                               np.einsum("pkd,pd->pk", nulls[sa], emb[sb])], axis=1)
        out[s:s + 8192] = predictive_pvalue(observed[s:s + 8192], null)
    return out


def matched_background(features: np.ndarray, gene: np.ndarray, n_background: int) -> np.ndarray:
    """For each window, indices of windows of other genes nearest in composition ([N, 3*M]; -1 pads).

    Features (GC, CpG o/e, repeat fraction) are scaled to unit variance first. Three times the
    wanted number is kept, so that a pair can also drop its partner's gene.
    """
    scaled = features / np.maximum(features.std(0), 1e-6)
    want = min(len(gene), 4 * n_background)
    _, idx = cKDTree(scaled).query(scaled, k=want)
    idx = np.atleast_2d(idx)
    idx = np.where(gene[idx] != gene[:, None], idx, -1)
    out = np.full((len(gene), 3 * n_background), -1, dtype=np.int64)
    for i, row in enumerate(idx):
        keep = row[row >= 0][:3 * n_background]
        out[i, :len(keep)] = keep
    return out


def background_pvalues(emb: np.ndarray, background: np.ndarray, gene: np.ndarray, a: np.ndarray,
                       b: np.ndarray, observed: np.ndarray, n_background: int) -> np.ndarray:
    """p of each pair against a's similarity to b's matched windows and b's to a's (partner genes excluded)."""
    out = np.full(len(a), np.nan)
    for p, (i, j) in enumerate(zip(a, b)):
        bg_j = background[j][(background[j] >= 0) & (gene[background[j]] != gene[i])][:n_background]
        bg_i = background[i][(background[i] >= 0) & (gene[background[i]] != gene[j])][:n_background]
        null = np.concatenate([emb[bg_j] @ emb[i], emb[bg_i] @ emb[j]])
        if len(null) >= 3:
            out[p] = predictive_pvalue(np.array([observed[p]]), null[None, :])[0]
    return out


def composition_fit(score: np.ndarray, kmer_cosine: np.ndarray) -> tuple[np.ndarray, float]:
    """Residual of `score` after a least-squares line on `kmer_cosine`, and that line's R^2."""
    if len(score) < 3 or np.ptp(kmer_cosine) == 0:
        return score - score.mean() if len(score) else score, 0.0
    slope, intercept = np.polyfit(kmer_cosine, score, 1)
    residual = score - (slope * kmer_cosine + intercept)
    total = ((score - score.mean()) ** 2).sum()
    return residual, float(1 - (residual ** 2).sum() / total) if total > 0 else 0.0


def null_pvalues(emb: np.ndarray, nulls: np.ndarray | None, background: np.ndarray, gene: np.ndarray,
                 a: np.ndarray, b: np.ndarray, n_background: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_shuffle, p_background, p) of pairs (a, b) in corrected space; p is the larger of the two
    (a pair must beat both nulls); without shuffles p_shuffle is NaN and p = p_background."""
    observed = pair_dots(emb, emb, a, b)
    p_shuffle = shuffle_pvalues(emb, nulls, a, b, observed) if nulls is not None else np.full(len(a), np.nan)
    p_background = background_pvalues(emb, background, gene, a, b, observed, n_background)
    p = np.fmax(p_shuffle, p_background)
    return p_shuffle, p_background, np.where(np.isnan(p), 1.0, p)
