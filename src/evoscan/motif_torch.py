"""The motif scan as matrix products (torch): the GPU's scan, and on any device the one that gives
every position's score (the sites of a few windows).

Per bucket of matrices of similar length (so short ones do not pay for the longest), the unfolded
one-hot sequence [B * L, 4 * width] times the zero-padded matrices and their reverse complements
[4 * width, 2m]: one product gives every score [B, L, 2, m] in float32. A position whose span holds
an N (or any non-ACGT letter, or runs past the sequence's end) is not scored: -inf. Built from the
same arguments as motif_kernel.TableScan, the CPU's scan, whose numbers it gives within 1e-4 bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

_ONE_HOT = np.zeros((256, 4), dtype=np.float32)
_CODE = np.full(256, -1, dtype=np.int64)
for _i, _b in enumerate(b"ACGT"):
    _ONE_HOT[_b, _i] = _ONE_HOT[_b + 32, _i] = 1.0
    _CODE[_b] = _CODE[_b + 32] = _i


def one_hot(seqs: list[str], length: int) -> np.ndarray:
    """[B, 4, length] float32, sequences padded with N (all zeros)."""
    raw = np.frombuffer(b"".join(s.encode("ascii").ljust(length, b"N")[:length] for s in seqs),
                        dtype=np.uint8).reshape(len(seqs), length)
    return np.ascontiguousarray(_ONE_HOT[raw].transpose(0, 2, 1))


class TorchScan:
    """The matrices [M, 4, width] and their reverse complements as per-bucket weights on `device`."""

    def __init__(self, log_odds: np.ndarray, rc_log_odds: np.ndarray, lengths: np.ndarray, device: str = "cpu",
                 buckets: tuple[int, ...] = (10, 16, 24)):
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.n_matrices, self.longest = len(lengths), int(lengths.max())
        self.buckets = []
        lower = 0
        for edge in sorted({*(b for b in buckets if b < self.longest), self.longest}):
            members = np.flatnonzero((lengths > lower) & (lengths <= edge))
            lower = edge
            if len(members) == 0:
                continue
            width = int(lengths[members].max())
            both = np.concatenate([log_odds[members, :, :width], rc_log_odds[members, :, :width]])
            # [4 * width, 2m] for the matmul with unfolded sequence (position-major, then base)
            weight = both.transpose(0, 2, 1).reshape(2 * len(members), -1).T
            self.buckets.append((members, width, torch.from_numpy(np.ascontiguousarray(weight)).to(self.device),
                                 torch.from_numpy(lengths[members]).to(self.device)))
        # odds (2^log-odds) of every matrix and its reverse complement, 1 beyond each length, per
        # length bucket up to its width (the steps past a matrix's end leave its expectation as it is)
        odds = [np.exp2(x.astype(np.float64)) for x in (log_odds, rc_log_odds)]
        self.odds = [(members, [torch.from_numpy(np.ascontiguousarray(x[members, :, :width])).to(self.device)
                                for x in odds]) for members, width, _, _ in self.buckets]

    def scan(self, seqs: list[str], only: np.ndarray | None = None) -> Iterator[tuple]:
        """Per length bucket: (matrix indices [m], scores [B, L, 2, m] float32, positions x strands
        scored [B, m]), of the matrices in `only` (a mask [M]; default all). Position = leftmost base
        on either strand."""
        torch = self.torch
        length = max(len(s) for s in seqs)
        x = torch.from_numpy(one_hot(seqs, length + self.longest - 1)).to(self.device)
        is_n = x.sum(1) == 0  # [B, padded length]; the padding is N too
        # the common case (windows of one length without N): only the end cuts positions off
        plain = len({len(s) for s in seqs}) == 1 and not bool(is_n[:, :length].any())
        n_before = torch.nn.functional.pad(is_n.int().cumsum(1), (1, 0))  # Ns in [0, p)
        positions = torch.arange(length, device=self.device)
        with torch.no_grad():
            for members, width, weight, mlen in self.buckets:
                if only is not None:  # the bucket's columns of the chosen matrices, both strands
                    keep = np.flatnonzero(only[members])
                    if len(keep) == 0:
                        continue
                    if len(keep) < len(members):
                        cols = torch.from_numpy(np.concatenate([keep, keep + len(members)])).to(self.device)
                        members, weight, mlen = members[keep], weight[:, cols], mlen[keep]
                windows = x[:, :, :length + width - 1].unfold(2, width, 1)  # [B, 4, L, width]
                windows = windows.permute(0, 2, 3, 1).reshape(len(seqs) * length, width * 4)
                s = (windows @ weight).view(len(seqs), length, 2, len(members))
                if plain:  # only the last width - 1 positions can run past the end: mask just those
                    tail = max(0, length - width + 1)
                    has_n = (positions[tail:, None] + mlen[None, :] > length)[None]  # [1, L - tail, m]
                    s[:, tail:].masked_fill_(has_n[:, :, None, :], -torch.inf)
                    scored = 2 * (length - has_n[0].sum(0)).expand(len(seqs), -1)
                else:
                    span_end = positions[:, None] + mlen[None, :]  # [L, m]
                    has_n = n_before[:, span_end] > n_before[:, positions][:, :, None]  # [B, L, m]
                    s.masked_fill_(has_n[:, :, None, :], -torch.inf)
                    scored = 2 * (~has_n).sum(1)
                yield members, s, scored

    def reduce(self, seqs: list[str], reduce: Callable, only: np.ndarray | None = None,
               fill: float = 0.0) -> np.ndarray:
        """`reduce(scores, scored)` of each bucket, gathered into [B, M] float32 (`fill` elsewhere)."""
        out = np.full((len(seqs), self.n_matrices), fill, dtype=np.float32)
        for members, s, scored in self.scan(seqs, only):
            out[:, members] = reduce(s, scored).cpu().numpy()
        return out

    def best(self, seqs: list[str], only: np.ndarray | None = None) -> np.ndarray:
        """Best score [B, M] over positions and strands (-inf: none scored, or not in `only`)."""
        return self.reduce(seqs, lambda s, scored: s.amax((1, 2)), only, fill=-np.inf)

    def log2_mean_odds(self, seqs: list[str]) -> np.ndarray:
        """log2 of the mean of 2^score over the scored positions and strands [B, M] (nan: none scored)."""
        torch = self.torch

        def reduce(s, scored):
            # scores stay below ~40 bits, so the sum cannot overflow; where every term is tiny
            # (low-complexity sequence) it is taken shifted by its maximum, which cannot underflow
            # (per window and matrix: a window's value does not depend on the others in its batch)
            top = s.amax((1, 2))
            if bool((top >= -100).all()):  # no sum can be tiny: 2^score in place (~0.6 GB a batch)
                log_total = torch.log2(s.exp2_().sum((1, 2)))
            else:
                total = torch.exp2(s).sum((1, 2))
                top = top.clamp_min(-1e30)
                shifted = top + torch.log2(torch.exp2(s - top[:, None, None, :]).sum((1, 2)))
                log_total = torch.where(total < 2.0 ** -100, shifted, torch.log2(total))
            return torch.where(scored > 0, log_total - torch.log2(scored.clamp_min(1).float()),
                               torch.tensor(torch.nan, device=self.device))

        return self.reduce(seqs, reduce)

    def expected(self, seqs: list[str]) -> np.ndarray:
        """log2 of each matrix's mean odds per position and strand [B, M] in a first-order Markov
        sequence with each sequence's dinucleotide frequencies (pseudocount 1)."""
        torch = self.torch
        counts = np.ones((len(seqs), 4, 4))
        for i, seq in enumerate(seqs):
            codes = _CODE[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
            ok = (codes[:-1] >= 0) & (codes[1:] >= 0)
            np.add.at(counts[i], (codes[:-1][ok], codes[1:][ok]), 1)
        start = torch.from_numpy(counts.sum(2) / counts.sum((1, 2))[:, None]).to(self.device)  # [B, 4]
        step = torch.from_numpy(counts / counts.sum(2, keepdims=True)).to(self.device)  # P(next | this)
        out = np.empty((len(seqs), self.n_matrices), dtype=np.float32)
        for members, both in self.odds:  # per bucket: forward, then reverse-complement matrices [m, 4, width]
            expected = 0
            for odds in both:
                v = start[:, None, :] * odds[None, :, :, 0]  # [B, m, 4]
                for j in range(1, odds.shape[2]):
                    v = torch.bmm(v, step) * odds[None, :, :, j]
                expected = expected + v.sum(2) / 2
            out[:, members] = torch.log2(expected).float().cpu().numpy()
        return out
