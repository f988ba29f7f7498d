"""The space both searches compare windows in, and the grid they walk: pairs excluded for
overlapping in the genome, the anisotropy correction (mean and scale over windows and decoys),
the transform of a block of rows into it, and the query rows of a chunk."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pandas as pd

from ..errors import EvoscanError
from ..windows import WindowSet


def overlapping_pairs(chrom: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j) of windows on the same chromosome whose intervals overlap, each once."""
    codes = pd.factorize(chrom)[0].astype(np.int64)
    span = int(max(end.max(), 1)) + 1
    key = codes * span + start
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    reach = np.searchsorted(key_sorted, codes[order] * span + end[order], "left")  # first that starts after
    counts = np.maximum(reach - np.arange(len(order)) - 1, 0)
    first = np.repeat(np.arange(len(order)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return order[first], order[first + 1 + offset]


def cross_group_overlaps(ws: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping windows of different groups, both directions, sorted by the first."""
    t = ws.table
    i, j = overlapping_pairs(t["chrom"].to_numpy(), t["start"].to_numpy(), t["end"].to_numpy())
    gene = t["gene"].to_numpy()
    cross = gene[i] != gene[j]
    rows, cols = np.concatenate([i[cross], j[cross]]), np.concatenate([j[cross], i[cross]])
    order = np.lexsort((cols, rows))
    return rows[order], cols[order]


def block_moments(block: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is each row finite, column sums, column sums of squares) of a block of rows (one row per
    window: [rows, dim] or [rows, decoys, dim]), sums in float64. numpy on CPU (faster there than
    torch on a few cores); torch on a GPU, where the pass would otherwise cost more than the search."""
    dim = block.shape[-1]
    if device == "cpu":
        finite = np.isfinite(block.reshape(len(block), -1)).all(1)
        flat = block.reshape(-1, dim).astype(np.float64)
        return finite, flat.sum(0), (flat ** 2).sum(0)
    import torch

    x = torch.from_numpy(np.ascontiguousarray(block)).to(device)
    finite = torch.isfinite(x.reshape(len(block), -1)).all(1)
    flat = x.reshape(-1, dim).double()
    return finite.cpu().numpy(), flat.sum(0).cpu().numpy(), (flat * flat).sum(0).cpu().numpy()


def embedding_stats(emb: h5py.Dataset, decoys: h5py.Dataset, correction: str, rows: int = 4096,
                    device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of the correction, over windows and decoys together (one streaming pass):
    one transformation for both, so that neither is favoured by it. (It does not make windows
    as similar to decoys as to windows; the normalisation in `check` measures each score against
    its own cohort for that.)"""
    dim = emb.shape[1]
    total, total_sq, count = np.zeros(dim), np.zeros(dim), 0
    for r0 in range(0, emb.shape[0], rows):  # the pass also refuses NaN/inf, whatever the correction
        for name, block in (("embedding", emb[r0:r0 + rows]), ("decoy embedding", decoys[r0:r0 + rows])):
            finite, sums, squares = block_moments(block, device)
            if not finite.all():
                raise EvoscanError(f"{emb.file.filename}: the {name} of window {r0 + int(np.argmin(finite)) + 1} "
                                   "(1-based) holds NaN or infinite values; the file is damaged or the backend "
                                   "failed: rerun `evoscan embed`")
            total += sums
            total_sq += squares
            count += block.size // dim
    if correction == "none":
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    mean = total / count
    scale = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0)) + 1e-6 if correction == "standardize" else 1.0
    return mean.astype(np.float32), (np.ones(dim) * scale).astype(np.float32)


def chunk_rows(chunk: tuple[int, int] | None, n: int, query_rows: int) -> tuple[int, int]:
    """Rows of chunk (I, N) of the query-block grid (whole blocks; may be empty), or all rows."""
    if chunk is None:
        return 0, n
    i, parts = chunk
    blocks = math.ceil(n / query_rows)
    first, last = blocks * (i - 1) // parts, blocks * i // parts
    return min(n, first * query_rows), min(n, last * query_rows)


class Transform:
    """Rows of embeddings -> (raw L2-normalised, corrected L2-normalised) torch tensors on a device."""

    def __init__(self, mean, scale, device, dtype):
        import torch

        self.torch = torch
        self.mean = torch.from_numpy(mean).to(device)
        self.scale = torch.from_numpy(scale).to(device)
        self.device, self.dtype = device, dtype

    def __call__(self, block: np.ndarray, raw: bool = True):
        F = self.torch.nn.functional
        x = self.torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(self.device)
        corrected = F.normalize((x - self.mean) / self.scale, dim=1).to(self.dtype)
        return (F.normalize(x, dim=1) if raw else None), corrected
