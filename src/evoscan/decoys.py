"""Decoys and target-decoy significance.

A window's decoy is a dinucleotide shuffle of it (same mono- and dinucleotide counts, first and
last letter; the Altschul-Erickson doublet shuffle, a random Eulerian walk through the
dinucleotide graph, Kandel et al. 1996). Decoys are embedded by the same backend and searched in
the same corrected space as the real windows, so a decoy's similarity to a window is what that
window's similarity to an unrelated window of the same composition looks like.

Tiled decoys. Windows that overlap (stride < size) share sequence, so their similarities to
anything are correlated, and high-scoring target pairs come in clumps. Decoys must clump alike
or the target tail is heavier than the decoy tail. So a window is cut into segments of
gcd(size, stride) bases (each segment keyed by its genomic position), every segment is shuffled
on its own, and the decoy of a window is the concatenation of its segments' shuffles: two
overlapping windows share the shuffles of their shared segments exactly as they share sequence.
As each shuffle keeps its segment's first and last letter, the junctions keep their
dinucleotides and the decoy has exactly the window's dinucleotide counts. Segments shorter than
MIN_SEGMENT would keep too little room to shuffle: then each window is shuffled whole.

Significance: target-decoy competition, as proteomics search engines estimate their FDR and as
the knockoff filter controls it (Barber and Candes 2015; with D decoys, Gimenez and Zou 2019).
A pair (a, b) competes with its decoys: the scores of a with b's D decoys and of a's D decoys
with b. Under the null that a and b share nothing beyond composition, the pair's score and its
2D decoy scores are exchangeable, so each of the 1 + 2D wins with equal chance, and the winning
score (a symmetric function of the 1 + 2D: the competition statistic) is distributed alike
whoever wins. So among competitions won with a score of at least t, the false target wins are
estimated by the decoy wins / 2D, and

    FDR(t) = (decoy wins(>= t) + 1) / (2D * target wins(>= t)),   q(t) = min over t' <= t of FDR(t').

The +1 keeps the estimate conservative in the far tail where calls are made (knockoff+): with no
decoy win above t, a call still needs 1 / (2D * q) target wins above it (10 pairs at q = 0.05
with one decoy per window, 3 with four). The competition is pair-specific: two windows of the
same unusual composition are as similar to each other's shuffles as to each other, and their
decoys win as often as they do. The statistic is the winning score itself, not its lead over the
runner-up (the lead is valid as well, but on planted motif sets it calls 0-9 of 20 pairs where
the winning score calls 13-20, because a lead is eaten by the runner-up's noise;
benchmarks/calibration.py, docs/validation.md).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

MIN_SEGMENT = 64


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


def segment_length(size: int, stride: int) -> int:
    """Length of the shared segments of a tiling, or `size` (whole-window shuffles) if too short."""
    g = math.gcd(size, stride)
    return g if g >= MIN_SEGMENT else size


def _chrom_code(chrom: str) -> int:
    """A 63-bit seed part from the whole chromosome (or record) name."""
    return int.from_bytes(hashlib.blake2b(chrom.encode(), digest_size=8).digest(), "little") >> 1


def decoy_sequences(seqs: list[str], chrom: list[str], start: list[int], strand: list[str],
                    n_decoys: int, seed: int, segment: int) -> list[str]:
    """`n_decoys` tiled decoys of each window, window-major ([w0 d0, w0 d1, ..., w1 d0, ...]).

    `seqs` are in gene orientation; `start` is each window's genomic start; every segment's
    shuffle is seeded by (seed, copy, chromosome, genomic segment start, strand), so any chunk of
    windows gets the decoys a whole run would, and overlapping windows share segment shuffles.
    """
    out = []
    for seq, c, s0, st in zip(seqs, chrom, start, strand):
        seq = seq.upper()
        n_seg = len(seq) // segment
        # segment m in gene orientation covers genomic [s0 + off, s0 + off + segment)
        offsets = [m * segment for m in range(n_seg)]
        if st == "-":
            offsets = [len(seq) - segment - o for o in offsets]
        code = _chrom_code(c)
        for d in range(n_decoys):
            parts = [dinucleotide_shuffle(seq[m * segment:(m + 1) * segment],
                                          np.random.default_rng([seed, d, code, int(s0) + o, st == "-"]))
                     for m, o in enumerate(offsets)]
            out.append("".join(parts) + seq[n_seg * segment:])
    return out


def compete(target: np.ndarray, decoys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(target wins, winning score) of competitions between `target` [pairs] and their `decoys`
    [pairs, m]."""
    best_decoy = decoys.max(1)
    return target > best_decoy, np.maximum(target, best_decoy)


def competition_qvalues(target: np.ndarray, decoys: np.ndarray) -> np.ndarray:
    """q-values of target-decoy competitions (1 where a decoy wins); see the module docstring."""
    wins, winning = compete(target, decoys)
    q = np.ones(len(target))
    q[wins], _ = target_decoy_qvalues(winning[wins], winning[~wins], decoys.shape[1])
    return q


def target_decoy_qvalues(target_scores: np.ndarray, decoy_scores: np.ndarray, n_decoys: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(q-value, decoys at or above) of each target entry's score; see the module docstring."""
    target_scores = np.asarray(target_scores, np.float64)
    decoy_sorted = np.sort(np.asarray(decoy_scores, np.float64))
    order = np.argsort(-target_scores, kind="stable")
    ranked = target_scores[order]
    targets_above = np.searchsorted(-ranked, -ranked, side="right")  # ties count together
    decoys_above = len(decoy_sorted) - np.searchsorted(decoy_sorted, ranked, side="left")
    fdr = (decoys_above + 1) / (max(n_decoys, 1) * targets_above)
    q_ranked = np.minimum(np.minimum.accumulate(fdr[::-1])[::-1], 1.0)
    q = np.empty_like(q_ranked)
    q[order] = q_ranked
    above = np.empty(len(order), dtype=np.int64)
    above[order] = decoys_above
    return q, above
