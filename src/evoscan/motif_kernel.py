"""The motif scan on a CPU: every matrix on both strands at every position, reduced as it goes.

A matrix of width w scores position p as the sum of its columns' log-odds of the letters there;
its odds, 2^score, is the product of the odds of its blocks of Q = 4 columns. Each block's odds of
every 4-letter word (A C G T and N, base 5: 625 words) is a table, made once, so a position costs
ceil(w / 4) lookups and products, not w. A word with an N in a block's columns has odds 0: such a
position is not scored (as in the torch scan, where it is -inf). Each position is added to the sum
of odds (the binding potential), compared with the maximum (the best score) and counted, in
float64, and never stored: the torch scan wrote and read back [batch, positions, 2, matrices]
float32 scores, and that traffic, not the arithmetic, was its cost. One matrix per thread at a
time (numba prange), so its tables stay in the core's cache while it runs over every sequence.
The loops are compiled once per process (~2 s), not cached on disk: numba's cache needs a
writable folder beside the package or in $HOME, which a container run as another user lacks.
"""

from __future__ import annotations

import contextlib
import os

import numba
import numpy as np

Q = 4  # letters per table lookup
WORDS = 5 ** Q  # A C G T N
_CODE5 = np.full(256, 4, dtype=np.uint8)  # anything not ACGT reads as N
for _i, _b in enumerate(b"ACGT"):
    _CODE5[_b] = _CODE5[_b + 32] = _i


def block_tables(log_odds: np.ndarray, width: int) -> np.ndarray:
    """Odds of every 4-letter word for each block of Q columns of one matrix [4, width] (bits):
    [ceil(width / Q), WORDS] float64; the letters of a word past the matrix's end do not count,
    and a word with an N among the block's own columns has odds 0."""
    words = np.arange(WORDS)
    letters = np.stack([(words // 5 ** i) % 5 for i in range(Q)])  # [Q, WORDS]: the word's i-th letter
    tables = np.empty(((width + Q - 1) // Q, WORDS))
    for b in range(len(tables)):
        score = np.zeros(WORDS)
        has_n = np.zeros(WORDS, dtype=bool)
        for i in range(min(Q, width - b * Q)):
            column = np.append(log_odds[:, b * Q + i].astype(np.float64), 0.0)  # N: 0, and flagged
            score += column[letters[i]]
            has_n |= letters[i] == 4
        tables[b] = np.where(has_n, 0.0, np.exp2(score))
    return tables


def word_codes(seqs: list[str], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sequence's 4-letter words [B, longest + pad] (base 5, the word starting at each
    position, N past the end) as uint16, and the sequences' lengths."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    width = int(lengths.max()) + pad + Q
    raw = np.frombuffer(b"".join(s.encode("ascii").ljust(width, b"N") for s in seqs), dtype=np.uint8)
    letters = _CODE5[raw].reshape(len(seqs), width).astype(np.uint16)
    words = letters[:, :width - Q + 1].copy()
    for i in range(1, Q):
        words += letters[:, i:width - Q + 1 + i] * np.uint16(5 ** i)
    return words, lengths


@numba.njit(parallel=True)
def _scan(words, lengths, tables, table_start, n_blocks, widths, matrices, total, best, scored):
    """For matrix matrices[t] (both strands: tables from table_start[2t] and [2t + 1]) and each
    sequence b: total[b, t] = sum of odds, best[b, t] = largest odds, scored[b, t] = positions x
    strands with odds > 0. (The common block counts are spelled out: their lookups unrolled and
    offsets constant, about twice as fast as the general loop.)"""
    for t in numba.prange(len(matrices)):
        k = matrices[t]
        w = widths[k]
        nb = n_blocks[k]
        for b in range(words.shape[0]):
            row = words[b]
            s = 0.0
            top = 0.0
            n = 0
            for strand in range(2):
                T = tables[table_start[2 * k + strand]:]
                for p in range(lengths[b] - w + 1):
                    if nb == 2:
                        odds = T[row[p]] * T[625 + row[p + 4]]
                    elif nb == 3:
                        odds = T[row[p]] * T[625 + row[p + 4]] * T[1250 + row[p + 8]]
                    elif nb == 4:
                        odds = T[row[p]] * T[625 + row[p + 4]] * T[1250 + row[p + 8]] * T[1875 + row[p + 12]]
                    elif nb == 5:
                        odds = (T[row[p]] * T[625 + row[p + 4]] * T[1250 + row[p + 8]] * T[1875 + row[p + 12]]
                                * T[2500 + row[p + 16]])
                    else:
                        odds = T[row[p]]
                        for j in range(1, nb):
                            odds *= T[j * 625 + row[p + j * 4]]
                    s += odds
                    if odds > top:
                        top = odds
                    if odds > 0.0:
                        n += 1
            total[b, t] = s
            best[b, t] = top
            scored[b, t] = n


@numba.njit(parallel=True)
def _expected(start, step, odds, odds_start, widths, out):
    """out[b, k] = log2 of matrix k's mean odds per position and strand in the first-order Markov
    chain of sequence b (start [B, 4], step [B, 4, 4] = P(next | this)); odds [4, width] per
    matrix and strand from odds_start[2k], [2k + 1]."""
    for k in numba.prange(len(widths)):
        w = widths[k]
        for b in range(start.shape[0]):
            expected = 0.0
            for strand in range(2):
                o = odds[odds_start[2 * k + strand]:]
                v = np.empty(4)
                for i in range(4):
                    v[i] = start[b, i] * o[i * w]
                for j in range(1, w):
                    v0 = v[0] * step[b, 0, 0] + v[1] * step[b, 1, 0] + v[2] * step[b, 2, 0] + v[3] * step[b, 3, 0]
                    v1 = v[0] * step[b, 0, 1] + v[1] * step[b, 1, 1] + v[2] * step[b, 2, 1] + v[3] * step[b, 3, 1]
                    v2 = v[0] * step[b, 0, 2] + v[1] * step[b, 1, 2] + v[2] * step[b, 2, 2] + v[3] * step[b, 3, 2]
                    v3 = v[0] * step[b, 0, 3] + v[1] * step[b, 1, 3] + v[2] * step[b, 2, 3] + v[3] * step[b, 3, 3]
                    v[0], v[1], v[2], v[3] = v0 * o[j], v1 * o[w + j], v2 * o[2 * w + j], v3 * o[3 * w + j]
                expected += (v[0] + v[1] + v[2] + v[3]) / 2
            out[b, k] = np.log2(expected)


def dinucleotide_chain(seqs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each sequence's first-order Markov chain from its dinucleotide counts (pseudocount 1):
    the first letter's distribution [B, 4] and P(next | this) [B, 4, 4]."""
    counts = np.ones((len(seqs), 16))
    for i, seq in enumerate(seqs):
        codes = _CODE5[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)].astype(np.int64)
        ok = (codes[:-1] < 4) & (codes[1:] < 4)
        counts[i] += np.bincount(codes[:-1][ok] * 4 + codes[1:][ok], minlength=16)
    counts = counts.reshape(len(seqs), 4, 4)
    return counts.sum(2) / counts.sum((1, 2))[:, None], counts / counts.sum(2, keepdims=True)


class TableScan:
    """The block tables of every matrix and its reverse complement, and the scan over them."""

    def __init__(self, log_odds: np.ndarray, rc_log_odds: np.ndarray, lengths: np.ndarray):
        parts, starts, offset = [], [], 0
        odds, odds_starts = [], []
        for m, width in enumerate(lengths):
            for matrix in (log_odds[m], rc_log_odds[m]):
                tables = block_tables(matrix[:, :width], int(width))
                parts.append(tables.ravel())
                starts.append(offset)
                offset += tables.size
                odds_starts.append(sum(len(o) for o in odds))
                odds.append(np.exp2(matrix[:, :width].astype(np.float64)).ravel())
        self.tables = np.concatenate(parts)
        self.table_start = np.array(starts, dtype=np.int64)
        self.odds, self.odds_start = np.concatenate(odds), np.array(odds_starts, dtype=np.int64)
        self.widths = np.asarray(lengths, dtype=np.int64)
        self.n_blocks = (self.widths + Q - 1) // Q
        self.longest = int(self.widths.max())

    def expected(self, seqs: list[str], threads: int) -> np.ndarray:
        """log2 of each matrix's mean odds per position and strand [B, M] (float32) in a first-order
        Markov sequence with each sequence's dinucleotide frequencies."""
        start, step = dinucleotide_chain(seqs)
        out = np.empty((len(seqs), len(self.widths)))
        with _threads(threads):
            _expected(start, step, self.odds, self.odds_start, self.widths, out)
        return out.astype(np.float32)

    def scan(self, seqs: list[str], matrices: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sum of odds, largest odds (float64) and positions x strands scored (int64), [B, len(matrices)]."""
        shape = (len(seqs), len(matrices))
        if not len(seqs):
            return np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64)
        words, lengths = word_codes(seqs, self.longest)
        total, best, scored = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64)
        with _threads(threads):
            _scan(words, lengths, self.tables, self.table_start, self.n_blocks, self.widths,
                  np.asarray(matrices, dtype=np.int64), total, best, scored)
        return total, best, scored


@contextlib.contextmanager
def _threads(n: int):
    """numba's threads for one call: as many as torch uses, at most the CPUs this process may run on
    (a SLURM or Nextflow task's share of a node) and numba's own limit."""
    before = numba.get_num_threads()
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else n
    numba.set_num_threads(max(1, min(n, allowed, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
