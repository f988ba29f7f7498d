"""The space both searches compare windows in, and the grid they walk: pairs excluded for
overlapping in the genome, the anisotropy correction (mean and scale over windows and decoys),
the transform of a block of rows into it, and the query rows of a chunk."""

from __future__ import annotations

import math
from typing import Callable

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


class Exclusions:
    """The pairs a block of the grid never forms: windows of one group, or overlapping in the genome
    across groups (see `BlockExclusions` for how they are given)."""

    def __init__(self, ws: WindowSet, device):
        import torch

        self.torch, self.device = torch, device
        group = pd.factorize(ws.table["gene"])[0].astype(np.int64)
        self.n = len(group)
        by_group = np.argsort(group, kind="stable")  # rows by (group, row)
        self.group = torch.from_numpy(group).to(device)
        self.by_group = torch.from_numpy(by_group).to(device)
        self.keys = torch.from_numpy(group[by_group] * self.n + by_group).to(device)  # ascending
        self.ov_rows, self.ov_cols = cross_group_overlaps(ws)

    def block(self, q0: int, q1: int, c0: int, c1: int) -> BlockExclusions:
        """The excluded pairs of query rows q0..q1 against database rows c0..c1."""
        torch = self.torch
        first = self.group[q0:q1] * self.n
        lo, hi = torch.searchsorted(self.keys, first + c0), torch.searchsorted(self.keys, first + c1)
        counts = hi - lo  # each query row's own-group rows in c0..c1
        a, b = np.searchsorted(self.ov_rows, [q0, q1])
        in_block = (self.ov_cols[a:b] >= c0) & (self.ov_cols[a:b] < c1)
        ov_rows = torch.from_numpy(self.ov_rows[a:b][in_block] - q0).to(self.device)
        ov_cols = torch.from_numpy(self.ov_cols[a:b][in_block] - c0).to(self.device)
        if (int(counts.sum()) + len(ov_rows)) * 16 > (q1 - q0) * (c1 - c0):  # indices would outweigh a mask
            mask = self.group[q0:q1, None] == self.group[None, c0:c1]
            mask[ov_rows, ov_cols] = True
            return BlockExclusions(mask=mask)
        rows = torch.repeat_interleave(torch.arange(q1 - q0, device=self.device), counts)
        before = torch.cumsum(counts, 0) - counts
        at = torch.repeat_interleave(lo - before, counts) + torch.arange(len(rows), device=self.device)
        return BlockExclusions(rows=torch.cat([rows, ov_rows]), cols=torch.cat([self.by_group[at] - c0, ov_cols]),
                               shape=(q1 - q0, c1 - c0))


class BlockExclusions:
    """The excluded pairs of one block, each once: as (query, database) row indices where they are
    few (a group's own windows and its overlaps, as a rule), so that excluding them is a write per
    pair, not a pass over every similarity; as a mask of every pair where they are many (a few
    large groups), which costs 1 byte a pair where indices cost 16 and more while they are made."""

    def __init__(self, rows=None, cols=None, shape: tuple[int, int] | None = None, mask=None):
        self.rows, self.cols, self.mask = rows, cols, mask
        self.shape = tuple(mask.shape) if mask is not None else shape

    def allowed(self):
        """The pairs each query row may form in the block."""
        import torch

        if self.mask is not None:
            return (~self.mask).sum(1)
        return self.shape[1] - torch.bincount(self.rows, minlength=self.shape[0])

    def fill(self, x, value, decoys_at: int | None = None) -> None:
        """Set the excluded pairs of x ([query, window], or with a decoy axis at 1 or 2) to value."""
        if self.mask is not None:
            x.masked_fill_(self.mask if decoys_at is None else self.mask.unsqueeze(decoys_at), value)
        elif decoys_at == 1:
            x[self.rows, :, self.cols] = value
        else:
            x[self.rows, self.cols] = value


STATS_ROWS = 4096  # rows per read of the statistics pass (its float64 sums are added in this grouping)


def block_moments(block, device: str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is each row finite, column sums, column sums of squares) of a block of rows (one row per
    window: [rows, dim] or [rows, decoys, dim]), sums in float64. numpy on CPU (faster there than
    torch on a few cores); on a GPU a tensor already there, where the pass would otherwise cost more
    than the search."""
    dim = block.shape[-1]
    if device == "cpu":
        finite = np.isfinite(block.reshape(len(block), -1)).all(1)
        flat = block.reshape(-1, dim).astype(np.float64)
        return finite, flat.sum(0), (flat ** 2).sum(0)
    import torch

    finite = torch.isfinite(block.reshape(len(block), -1)).all(1)
    flat = block.reshape(-1, dim).double()
    return finite.cpu().numpy(), flat.sum(0).cpu().numpy(), (flat * flat).sum(0).cpu().numpy()


def embedding_stats(emb: h5py.Dataset, decoys: h5py.Dataset, correction: str, *, device: str = "cpu",
                    keep: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of the correction, over windows and decoys together (one streaming pass):
    one transformation for both, so that neither is favoured by it. (It does not make windows
    as similar to decoys as to windows; the normalisation in `check` measures each score against
    its own cohort for that.) `keep(first_row, windows, decoys)`, if given, receives every block of
    rows as read (on the device), so that a caller holding them reads the file once."""
    dim = emb.shape[1]
    total, total_sq, count = np.zeros(dim), np.zeros(dim), 0
    for r0 in range(0, emb.shape[0], STATS_ROWS):  # the pass also refuses NaN/inf, whatever the correction
        blocks = emb[r0:r0 + STATS_ROWS], decoys[r0:r0 + STATS_ROWS]
        if device != "cpu":  # uploaded once, for the sums and for the caller
            import torch

            blocks = tuple(torch.from_numpy(np.ascontiguousarray(b)).to(device) for b in blocks)
        for name, block in zip(("embedding", "decoy embedding"), blocks):
            finite, sums, squares = block_moments(block, device)
            if not finite.all():
                raise EvoscanError(f"{emb.file.filename}: the {name} of window {r0 + int(np.argmin(finite)) + 1} "
                                   "(1-based) holds NaN or infinite values; the file is damaged or the backend "
                                   "failed: rerun `evoscan embed`")
            total += sums
            total_sq += squares
            count += math.prod(block.shape) // dim
        if keep is not None:
            keep(r0, *blocks)
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

    def __call__(self, block, raw: bool = True):
        """`block`: rows as a numpy array or a tensor (on the device or not)."""
        torch, F = self.torch, self.torch.nn.functional
        x = block if torch.is_tensor(block) else torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
        x = x.to(self.device, torch.float32)
        corrected = F.normalize((x - self.mean) / self.scale, dim=1).to(self.dtype)
        return (F.normalize(x, dim=1) if raw else None), corrected
