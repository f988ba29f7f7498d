"""Null models: composition-preserving shuffles, per-pair p-values, and BH q-values.

A pair's similarity is compared with the similarities of each window to dinucleotide shuffles of
the other (same mono- and dinucleotide composition, no other structure): the null a composition
effect cannot pass. The null samples of a pair give a mean and spread; the p-value is the upper
tail of the predictive Student-t distribution for one more null draw, which keeps resolution far
below 1/(number of shuffles) as multiple testing over all cross-gene pairs needs.

The shuffle is the Altschul-Erickson doublet shuffle (a random Eulerian walk through the
dinucleotide graph, Kandel et al. 1996), written here because the PyPI uShuffle binding no
longer builds on current Python. Seeds are derived from (seed, window, shuffle), so any chunk
of windows gets the same shuffles as a whole run.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def dinucleotide_shuffle(seq: str, rng: np.random.Generator) -> str:
    """A random sequence with exactly the dinucleotide counts (and first and last letter) of `seq`."""
    if len(seq) < 3:
        return seq
    edges: dict[str, list[str]] = {}
    for a, b in zip(seq, seq[1:]):
        edges.setdefault(a, []).append(b)
    last = seq[-1]
    while True:  # last exit edges of every other vertex must form a tree into `last`
        exit_edge = {v: int(rng.integers(len(out))) for v, out in edges.items() if v != last}
        if all(_reaches(v, last, {u: edges[u][i] for u, i in exit_edge.items()}) for v in exit_edge):
            break
    order = {}
    for v, out in edges.items():
        rest = list(out)
        keep = rest.pop(exit_edge[v]) if v in exit_edge else None
        rng.shuffle(rest)
        order[v] = rest + ([keep] if keep is not None else [])
    walk, pos = [seq[0]], {v: 0 for v in order}
    for _ in range(len(seq) - 1):
        v = walk[-1]
        walk.append(order[v][pos[v]])
        pos[v] += 1
    return "".join(walk)


def _reaches(v: str, target: str, step: dict[str, str]) -> bool:
    seen = set()
    while v != target:
        if v in seen:
            return False
        seen.add(v)
        v = step[v]
    return True


def shuffles(seqs: list[str], rows: range, n: int, seed: int) -> list[str]:
    """`n` seeded doublet shuffles of each sequence (upper-cased), window-major: [w0 s0, w0 s1, ...]."""
    out = []
    for seq, row in zip(seqs, rows):
        for k in range(n):
            out.append(dinucleotide_shuffle(seq.upper(), np.random.default_rng([seed, row, k])))
    return out


def predictive_pvalue(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """P(one more null draw >= observed), per row: `null` [pairs, n] -> Student-t predictive tail."""
    n = null.shape[1]
    mean, sd = null.mean(1), null.std(1, ddof=1)
    sd = np.maximum(sd, 1e-6)
    t = (observed - mean) / (sd * np.sqrt(1 + 1 / n))
    return stats.t.sf(t, df=n - 1)


def bh_qvalues(p: np.ndarray, m: int | None = None) -> np.ndarray:
    """Benjamini-Hochberg q-values of `p` among `m` >= len(p) tests (the untested ones count as p = 1)."""
    m = max(m or len(p), len(p))
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out
