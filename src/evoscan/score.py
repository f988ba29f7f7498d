"""Step 5, `evoscan score`: nearest cross-gene neighbours by cosine, joined with repeats and BLAST.

Similarities are computed block by block (a block of query rows against all windows, torch
matmul), so memory is bounded by the block, never by N x N. Same-gene pairs and pairs of
overlapping windows are excluded before the top-k is taken: genes are contiguous after a stable
sort, so their exclusion is a few slice assignments per block, and overlapping windows of
different genes are a short sparse list.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from .errors import EvoscanError
from .io import h5
from .windows import WindowSet

if TYPE_CHECKING:
    import torch

FUNNEL = [
    ("window_pairs", "window pairs"),
    ("cross_gene", "cross-gene, non-overlapping"),
    ("scored", "top-k neighbour pairs scored"),
    ("repeat_free", "both windows repeat-free"),
    ("no_blast_hit", "no BLAST hit"),
    ("candidates", "candidates"),
]
PAIR_COLUMNS = ["window_a", "window_b", "cosine", "repeat_frac_a", "repeat_frac_b",
                "blast_evalue", "blast_bitscore", "blast_pident", "repeat_free", "blast_hit", "candidate"]
BLOCK_BYTES = 256 * 2**20  # similarity block held in memory at once


@dataclass(frozen=True)
class ScoreParams:
    top_k: int = 10
    max_repeat_frac: float = 0.1
    max_blast_evalue: float = 10.0
    min_cosine: float = -1.0
    block_rows: int = 0  # 0: as many rows as fit BLOCK_BYTES

    def __post_init__(self):
        if self.top_k < 1:
            raise EvoscanError("--top-k must be at least 1")
        if not 0 <= self.max_repeat_frac <= 1:
            raise EvoscanError("--max-repeat-frac must lie between 0 and 1")


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


def blocked_topk(emb: "torch.Tensor", gene: np.ndarray, k: int, exclude: tuple[np.ndarray, np.ndarray],
                 block_rows: int = 0, progress: Callable[[int], None] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row, its k most cosine-similar rows of other genes (excluded pairs skipped).

    `emb` must be L2-normalised. Returns (row, neighbour, cosine) of all finite entries.
    """
    import torch  # imported here: only scoring needs it, and it is slow to import

    n = emb.shape[0]
    k = min(k, n)
    order = np.argsort(pd.factorize(gene)[0], kind="stable")  # genes contiguous
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    codes = pd.factorize(gene[order])[0]
    bounds = np.flatnonzero(np.diff(codes, prepend=-1, append=-1))  # gene g spans bounds[g]..bounds[g+1]
    ex_i, ex_j = rank[exclude[0]], rank[exclude[1]]
    ex_rows, ex_cols = np.concatenate([ex_i, ex_j]), np.concatenate([ex_j, ex_i])
    sort_ex = np.argsort(ex_rows, kind="stable")
    ex_rows, ex_cols = ex_rows[sort_ex], ex_cols[sort_ex]

    emb = emb[torch.from_numpy(order)].contiguous()
    block = block_rows or max(1, min(n, BLOCK_BYTES // (4 * max(n, 1))))
    rows_out, cols_out, vals_out = [], [], []
    with torch.inference_mode():
        for r0 in range(0, n, block):
            r1 = min(n, r0 + block)
            sims = emb[r0:r1] @ emb.T
            g0, g1 = codes[r0], codes[r1 - 1]
            for g in range(g0, g1 + 1):  # same-gene rectangle(s) touching this block
                lo, hi = bounds[g], bounds[g + 1]
                sims[max(lo, r0) - r0:min(hi, r1) - r0, lo:hi] = -torch.inf
            a, b = np.searchsorted(ex_rows, [r0, r1])
            if b > a:
                sims[torch.from_numpy(ex_rows[a:b] - r0), torch.from_numpy(ex_cols[a:b])] = -torch.inf
            vals, idx = torch.topk(sims, k, dim=1)
            rows_out.append(np.repeat(np.arange(r0, r1), k))
            cols_out.append(idx.reshape(-1).numpy())
            vals_out.append(vals.reshape(-1).numpy())
            if progress:
                progress(r1 - r0)
    rows, cols, vals = (np.concatenate(x) for x in (rows_out, cols_out, vals_out))
    finite = np.isfinite(vals)
    return order[rows[finite]], order[cols[finite]], vals[finite]


def unordered_pairs(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> pd.DataFrame:
    """Neighbour lists to unique pairs window_a < window_b."""
    pairs = pd.DataFrame({"window_a": np.minimum(rows, cols), "window_b": np.maximum(rows, cols),
                          "cosine": vals.astype(np.float32)})
    pairs = pairs.sort_values("cosine", ascending=False, kind="stable")
    return pairs.drop_duplicates(["window_a", "window_b"]).reset_index(drop=True)


def funnel_counts(ws: WindowSet, n_overlap_cross: int, pairs: pd.DataFrame) -> dict[str, int]:
    n = len(ws)
    genes = ws.table["gene"].value_counts().to_numpy()
    same_gene = int((genes * (genes - 1) // 2).sum())
    repeat_free = pairs["repeat_free"]
    return {
        "window_pairs": n * (n - 1) // 2,
        "cross_gene": n * (n - 1) // 2 - same_gene - n_overlap_cross,
        "scored": len(pairs),
        "repeat_free": int(repeat_free.sum()),
        "no_blast_hit": int((repeat_free & ~pairs["blast_hit"]).sum()),
        "candidates": int(pairs["candidate"].sum()),
    }


def score_pairs(ws: WindowSet, emb: np.ndarray, repeat_frac: np.ndarray, hits: pd.DataFrame,
                params: ScoreParams, progress: Callable[[int], None] | None = None
                ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Top-k cross-gene pairs with their repeat fractions, best BLAST hit and filter verdicts."""
    if emb.shape[0] != len(ws):
        raise EvoscanError(f"embeddings have {emb.shape[0]} rows but there are {len(ws)} windows")
    gene = ws.table["gene"].to_numpy()
    if len(set(gene)) < 2:
        raise EvoscanError("all windows belong to one gene; cross-gene scoring needs at least two genes")
    ov_i, ov_j = overlapping_pairs(ws.table["chrom"].to_numpy(), ws.table["start"].to_numpy(),
                                   ws.table["end"].to_numpy())
    cross = gene[ov_i] != gene[ov_j]
    import torch

    tensor = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(emb, np.float32)), dim=1)
    rows, cols, vals = blocked_topk(tensor, gene, params.top_k, (ov_i[cross], ov_j[cross]),
                                    params.block_rows, progress)
    pairs = unordered_pairs(rows, cols, vals)
    a, b = pairs["window_a"].to_numpy(), pairs["window_b"].to_numpy()
    pairs["repeat_frac_a"], pairs["repeat_frac_b"] = repeat_frac[a], repeat_frac[b]
    best = hits.rename(columns={"evalue": "blast_evalue", "bitscore": "blast_bitscore", "pident": "blast_pident"})
    pairs = pairs.merge(best[["window_a", "window_b", "blast_evalue", "blast_bitscore", "blast_pident"]],
                        on=["window_a", "window_b"], how="left")
    pairs["repeat_free"] = (pairs["repeat_frac_a"] <= params.max_repeat_frac) & (
        pairs["repeat_frac_b"] <= params.max_repeat_frac)
    pairs["blast_hit"] = pairs["blast_evalue"].le(params.max_blast_evalue)
    pairs["candidate"] = pairs["repeat_free"] & ~pairs["blast_hit"] & (pairs["cosine"] >= params.min_cosine)
    pairs = pairs[PAIR_COLUMNS].sort_values("cosine", ascending=False, kind="stable", ignore_index=True)
    return pairs, funnel_counts(ws, int(cross.sum()), pairs)


def write_scores(path, ws: WindowSet, pairs: pd.DataFrame, funnel: dict, params: ScoreParams,
                 backend: dict, blast_args: str) -> None:
    attrs = h5.provenance("scores", ws.digest, asdict(params))
    attrs.update(funnel=json.dumps(funnel), backend=json.dumps(backend), blastn_args=blast_args)
    h5.write_h5(path, {c: pairs[c].to_numpy() for c in PAIR_COLUMNS}, attrs)


def read_scores(path, ws: WindowSet) -> tuple[pd.DataFrame, dict]:
    with h5.open_checked(path, "scores", ws.digest) as f:
        pairs = pd.DataFrame({c: f[c][()] for c in PAIR_COLUMNS})
        meta = {"funnel": json.loads(f.attrs["funnel"]), "backend": json.loads(f.attrs["backend"]),
                "blastn_args": str(f.attrs["blastn_args"]), "params": h5.params_of(f)}
    return pairs, meta
