"""The `kmer` backend: strand-symmetric k-mer composition, L2-normalised (numpy, CPU).

Each k-mer is counted together with its reverse complement (canonical k-mers), so a sequence
and its reverse complement get the same vector. k-mers containing N are skipped. It is the
default when no GPU or weights are at hand, and the composition control for every other backend.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from . import register

_CODE = np.full(256, -1, dtype=np.int64)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _CODE[_b + 32] = _i  # upper and lower case alike


def canonical_columns(k: int) -> tuple[np.ndarray, int]:
    """Column of every k-mer index (its canonical form's column) and the number of columns."""
    idx = np.arange(4 ** k)
    digits = (idx[:, None] // 4 ** np.arange(k - 1, -1, -1)) % 4
    rc = ((3 - digits) * 4 ** np.arange(k)).sum(1)  # complement, reversed
    canonical = np.minimum(idx, rc)
    uniques, columns = np.unique(canonical, return_inverse=True)
    return columns, len(uniques)


def kmer_counts(seqs: list[str], k: int, columns: np.ndarray, dim: int) -> np.ndarray:
    """Canonical k-mer counts `[len(seqs), dim]`; sequences may differ in length."""
    length = max(len(s) for s in seqs)
    raw = np.frombuffer(b"".join(s.encode("ascii").ljust(length, b"N") for s in seqs),
                        dtype=np.uint8).reshape(len(seqs), length)
    codes = _CODE[raw]
    n = length - k + 1
    if n < 1:
        return np.zeros((len(seqs), dim), dtype=np.float32)
    index = np.zeros((len(seqs), n), dtype=np.int64)
    valid = np.ones((len(seqs), n), dtype=bool)
    for j in range(k):
        part = codes[:, j:j + n]
        index = index * 4 + np.maximum(part, 0)
        valid &= part >= 0
    rows = np.broadcast_to(np.arange(len(seqs))[:, None], index.shape)
    flat = rows[valid] * dim + columns[index[valid]]
    return np.bincount(flat, minlength=len(seqs) * dim).reshape(len(seqs), dim).astype(np.float32)


class KmerBackend:
    name = "kmer"

    def __init__(self, k: int = 6, batch_size: int = 1024):
        if not 1 <= k <= 12:
            raise UsageError(f"--k must lie between 1 and 12 (got {k})")
        self.k, self.batch_size = k, batch_size
        self._columns, self.dim = canonical_columns(k)

    def embed(self, seqs: list[str]) -> np.ndarray:
        counts = kmer_counts(seqs, self.k, self._columns, self.dim)
        norms = np.linalg.norm(counts, axis=1, keepdims=True)
        return np.divide(counts, norms, out=np.zeros_like(counts), where=norms > 0)

    def provenance(self) -> dict:
        return {"backend": self.name, "k": self.k, "canonical": True, "normalisation": "l2"}

    identity = provenance  # nothing to load

    def close(self) -> None:
        pass  # nothing held


@register("kmer")
def make(k: int = 6, batch_size: int = 1024) -> KmerBackend:
    return KmerBackend(k=k, batch_size=batch_size)
