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
from . import trust
from .backends.kmer import KmerBackend
from .homology import sw_significance
from .nulls import bh_qvalues
from .windows import WindowSet

if TYPE_CHECKING:
    import torch

FUNNEL = [
    ("window_pairs", "window pairs"),
    ("cross_gene", "cross-gene, non-overlapping"),
    ("scored", "top-k neighbour pairs scored"),
    ("repeat_free", "both windows repeat-free"),
    ("no_blast_hit", "no BLAST hit"),
    ("significant", "beats both nulls (q <= max q)"),
    ("no_sw_homology", "no Smith-Waterman homology"),
    ("candidates", "candidates"),
]
PAIR_COLUMNS = ["window_a", "window_b", "score", "cosine", "csls", "kmer_cosine", "composition_residual",
                "pvalue_shuffle", "pvalue_background", "pvalue", "qvalue", "repeat_frac_a", "repeat_frac_b",
                "blast_evalue", "blast_bitscore", "blast_pident", "sw_score", "sw_zscore", "sw_pvalue",
                "same_family", "repeat_free", "blast_hit", "significant", "sw_homology", "candidate"]
BLOCK_BYTES = 256 * 2**20  # similarity block held in memory at once


@dataclass(frozen=True)
class ScoreParams:
    top_k: int = 10
    max_repeat_frac: float = 0.1
    max_blast_evalue: float = 10.0
    min_cosine: float = -1.0
    block_rows: int = 0  # 0: as many rows as fit BLOCK_BYTES
    correction: str = "standardize"
    max_qvalue: float = 0.05
    background: int = 50  # composition-matched background windows per window
    sw_shuffles: int = 50
    min_sw_pvalue: float = 0.01
    seed: int = 1

    def __post_init__(self):
        if self.top_k < 1:
            raise EvoscanError("--top-k must be at least 1")
        if not 0 <= self.max_repeat_frac <= 1:
            raise EvoscanError("--max-repeat-frac must lie between 0 and 1")
        if self.correction not in trust.CORRECTIONS:
            raise EvoscanError(f"--correction must be one of {', '.join(trust.CORRECTIONS)}")
        if self.sw_shuffles < 2 or self.background < 2:
            raise EvoscanError("--sw-shuffles and --background need at least 2")


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


def cross_gene_pairs(ws: WindowSet, n_overlap_cross: int) -> int:
    """Window pairs of different genes that do not overlap in the genome: the family of tests."""
    n = len(ws)
    genes = ws.table["gene"].value_counts().to_numpy()
    return n * (n - 1) // 2 - int((genes * (genes - 1) // 2).sum()) - n_overlap_cross


def funnel_counts(ws: WindowSet, n_overlap_cross: int, pairs: pd.DataFrame) -> dict[str, int]:
    n = len(ws)
    stage = pairs["repeat_free"] & ~pairs["blast_hit"]
    return {
        "window_pairs": n * (n - 1) // 2,
        "cross_gene": cross_gene_pairs(ws, n_overlap_cross),
        "scored": len(pairs),
        "repeat_free": int(pairs["repeat_free"].sum()),
        "no_blast_hit": int(stage.sum()),
        "significant": int((stage & pairs["significant"]).sum()),
        "no_sw_homology": int((stage & pairs["significant"] & ~pairs["sw_homology"]).sum()),
        "candidates": int(pairs["candidate"].sum()),
    }


def score_pairs(ws: WindowSet, emb: np.ndarray, repeat_frac: np.ndarray, hits: pd.DataFrame,
                params: ScoreParams, progress: Callable[[int], None] | None = None,
                nulls: np.ndarray | None = None, families: dict[str, str] | None = None
                ) -> tuple[pd.DataFrame, dict[str, int], dict]:
    """Top-k cross-gene pairs by corrected similarity, with repeats, BLAST, null-model p/q-values,
    composition control and Smith-Waterman verdicts. Returns (pairs, funnel, statistics)."""
    if emb.shape[0] != len(ws):
        raise EvoscanError(f"embeddings have {emb.shape[0]} rows but there are {len(ws)} windows")
    gene = ws.table["gene"].to_numpy()
    if len(set(gene)) < 2:
        raise EvoscanError("all windows belong to one gene; cross-gene scoring needs at least two genes")
    ov_i, ov_j = overlapping_pairs(ws.table["chrom"].to_numpy(), ws.table["start"].to_numpy(),
                                   ws.table["end"].to_numpy())
    cross = gene[ov_i] != gene[ov_j]
    n_cross = cross_gene_pairs(ws, int(cross.sum()))
    import torch

    corrected, *null_corrected = trust.correct(emb, params.correction, *([nulls] if nulls is not None else []))
    rows, cols, vals = blocked_topk(torch.from_numpy(corrected), gene, params.top_k, (ov_i[cross], ov_j[cross]),
                                    params.block_rows, progress)
    pairs = unordered_pairs(rows, cols, vals).rename(columns={"cosine": "score"})
    a, b = pairs["window_a"].to_numpy(), pairs["window_b"].to_numpy()
    raw, = trust.correct(emb, "none")
    pairs["cosine"] = trust.pair_dots(raw, raw, a, b)
    pairs["csls"] = trust.csls(pairs["score"].to_numpy(), rows, vals, a, b, len(ws))
    kmer = KmerBackend(k=6).embed([s.decode("ascii") for s in ws.seqs])
    pairs["kmer_cosine"] = trust.pair_dots(kmer, kmer, a, b)
    pairs["composition_residual"], r2 = trust.composition_fit(pairs["score"].to_numpy(), pairs["kmer_cosine"].to_numpy())

    background = trust.matched_background(composition_features(ws, repeat_frac), gene, params.background)
    pairs["pvalue_shuffle"], pairs["pvalue_background"], pairs["pvalue"] = trust.null_pvalues(
        corrected, null_corrected[0] if null_corrected else None, background, gene, a, b, params.background)
    pairs["qvalue"] = bh_qvalues(pairs["pvalue"].to_numpy(), n_cross)

    pairs["repeat_frac_a"], pairs["repeat_frac_b"] = repeat_frac[a], repeat_frac[b]
    best = hits.rename(columns={"evalue": "blast_evalue", "bitscore": "blast_bitscore", "pident": "blast_pident"})
    pairs = pairs.merge(best[["window_a", "window_b", "blast_evalue", "blast_bitscore", "blast_pident"]],
                        on=["window_a", "window_b"], how="left")
    pairs["repeat_free"] = (pairs["repeat_frac_a"] <= params.max_repeat_frac) & (
        pairs["repeat_frac_b"] <= params.max_repeat_frac)
    pairs["blast_hit"] = pairs["blast_evalue"].le(params.max_blast_evalue)
    pairs["significant"] = pairs["qvalue"].le(params.max_qvalue)
    pairs = _smith_waterman(ws, pairs, pairs["repeat_free"] & ~pairs["blast_hit"] & pairs["significant"], params)
    pairs["sw_homology"] = pairs["sw_pvalue"].lt(params.min_sw_pvalue)
    fam = families or {}
    pairs["same_family"] = [bool(fam.get(x)) and fam.get(x) == fam.get(y)
                            for x, y in zip(gene[pairs["window_a"]], gene[pairs["window_b"]])]
    pairs["candidate"] = (pairs["repeat_free"] & ~pairs["blast_hit"] & pairs["significant"]
                          & ~pairs["sw_homology"] & (pairs["cosine"] >= params.min_cosine))
    pairs = pairs[PAIR_COLUMNS].sort_values(["candidate", "score"], ascending=False, kind="stable", ignore_index=True)
    stats = {"composition_r2": r2, "null_embeddings": 0 if nulls is None else int(nulls.shape[0] * nulls.shape[1]),
             "sw_alignments": int(pairs["sw_score"].notna().sum() * (2 * params.sw_shuffles + 2)),
             "pvalue_tests": n_cross}
    return pairs, funnel_counts(ws, int(cross.sum()), pairs), stats


def _smith_waterman(ws: WindowSet, pairs: pd.DataFrame, which: pd.Series, params: ScoreParams) -> pd.DataFrame:
    """sw_score / sw_zscore / sw_pvalue for the pairs in `which` (the others stay NaN)."""
    results = np.full((len(pairs), 3), np.nan)
    for p in np.flatnonzero(which.to_numpy()):
        a, b = int(pairs["window_a"].iat[p]), int(pairs["window_b"].iat[p])
        results[p] = sw_significance(ws.seqs[a].decode(), ws.seqs[b].decode(), params.sw_shuffles,
                                     seed=params.seed * 1_000_003 + a * 7919 + b)
    return pairs.assign(sw_score=results[:, 0], sw_zscore=results[:, 1], sw_pvalue=results[:, 2])


def composition_features(ws: WindowSet, repeat_frac: np.ndarray) -> np.ndarray:
    """What background windows are matched on: GC, CpG observed/expected, repeat fraction."""
    return np.column_stack([ws.table["gc"].to_numpy(np.float64), ws.table["cpg_oe"].to_numpy(np.float64),
                            repeat_frac.astype(np.float64)])


def read_families(path) -> dict[str, str]:
    """gene -> family from a two-column TSV (gene, family); '#' lines are comments."""
    try:
        table = pd.read_csv(path, sep="\t", comment="#", header=None, usecols=[0, 1], dtype=str)
    except (OSError, ValueError, pd.errors.ParserError):
        raise EvoscanError(f"{path}: expected a two-column TSV of gene and family") from None
    return dict(zip(table[0], table[1]))


def write_scores(path, ws: WindowSet, pairs: pd.DataFrame, funnel: dict, params: ScoreParams,
                 backend: dict, blast_args: str, stats: dict | None = None) -> None:
    attrs = h5.provenance("scores", ws.digest, asdict(params))
    attrs.update(funnel=json.dumps(funnel), backend=json.dumps(backend), blastn_args=blast_args,
                 stats=json.dumps(stats or {}))
    h5.write_h5(path, {c: pairs[c].to_numpy() for c in PAIR_COLUMNS}, attrs)


def read_scores(path, ws: WindowSet) -> tuple[pd.DataFrame, dict]:
    with h5.open_checked(path, "scores", ws.digest) as f:
        pairs = pd.DataFrame({c: f[c][()] for c in PAIR_COLUMNS})
        meta = {"funnel": json.loads(f.attrs["funnel"]), "backend": json.loads(f.attrs["backend"]),
                "blastn_args": str(f.attrs["blastn_args"]), "params": h5.params_of(f),
                "stats": json.loads(f.attrs.get("stats", "{}"))}
    return pairs, meta
