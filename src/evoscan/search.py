"""Step 4, `evoscan search`: every window's nearest windows of other groups (genes or regions),
and its nearest decoys, in the corrected embedding space.

Exact and streamed: embeddings and decoys are read from HDF5 one block of rows at a time, every
similarity is computed (torch matmul, CPU or GPU, fp32 or an fp16/bf16 option), and a running
top-k per query is kept. Memory is bounded by `memory_mb` (a query block, a database block of
windows and their decoys, and their similarity blocks), never by N x N or N x decoys x D.

Same-group pairs and pairs of windows that overlap in the genome are excluded, for decoys as for
windows (a decoy stands in for its window). A pair (a, b) has 1 + 2D scores: a with b, a with
b's D decoys, and a's D decoys with b; both ends of the pair see the same ones. Each query keeps
k slots, the pairs whose best of those scores is highest (a selection blind to which score is
the real one), with all their scores: the target-decoy competition of `check`. On the way, the
search sums each query window's similarities to the windows it may pair with and to their
decoys, and each of its decoys' similarities to those windows (sum, sum of squares, count): the
means and spreads behind the normalised scores in `check`, each score measured against the
cohort of its partner's kind (a decoy's partner is a window, a window's partner a window or a
decoy).

Query rows are processed in blocks of a fixed grid that depends only on the data's shape and the
parameters, and `--chunk I/N` takes whole blocks of that grid, so a search scattered over chunks
and merged computes exactly what one whole search does.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pandas as pd

from . import heap
from .errors import EvoscanError, UsageError
from .io import h5
from .io.checkpoint import BlockStore
from .windows import WindowSet, check_tiling

CORRECTIONS = ("none", "center", "standardize")
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
INDEXES = ("exact", "ivf", "ivfpq")  # ivf, ivfpq: approximate (ann.py)
MIN_QUERY_ROWS = 512  # below this a database pass costs more than it computes
ENTRY_COLUMNS = {"query": np.int64, "neighbour": np.int64, "score": np.float32, "cosine": np.float32}
BLOCK_COLUMNS = ["query", "neighbour", "score", "cosine", "decoy_scores"]


@dataclass(frozen=True)
class SearchParams:
    top_k: int = 10
    correction: str = "standardize"
    device: str = "cpu"
    precision: str = "fp32"
    memory_mb: int = 2048
    index: str = "exact"  # or "ivf" / "ivfpq": approximate, FAISS (ann.py)
    nprobe: int = 0  # ivf, ivfpq: lists searched per query (0: 1/8 of them, at most 64)

    def __post_init__(self):
        if self.top_k < 1:
            raise UsageError("--top-k must be at least 1")
        if self.correction not in CORRECTIONS:
            raise UsageError(f"--correction must be one of {', '.join(CORRECTIONS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.memory_mb < 64:
            raise UsageError("--memory must be at least 64 (MB)")
        if self.index not in INDEXES:
            raise UsageError(f"--index must be one of {', '.join(INDEXES)}")
        if self.nprobe < 0:
            raise UsageError(f"--nprobe must be at least 0 (0: chosen from the index; got {self.nprobe})")
        if not re.fullmatch(r"(cpu|cuda|mps|xpu)(:\d+)?", self.device):
            raise UsageError(f"--device must be a torch device: cpu, cuda or cuda:N (or mps, xpu; got {self.device!r})")


@dataclass
class Neighbours:
    """Search results, one entry per (query, slot): the neighbour window, its corrected-space
    `score` and raw `cosine`, and the pair's decoy scores: the query against the neighbour's D
    decoys, then the query's D decoys against the neighbour."""

    entries: pd.DataFrame  # query, neighbour, score, cosine
    decoy_scores: np.ndarray  # [entries, 2D]
    n_decoys: int
    rows: tuple[int, int]
    # sum, sum of squares and count of each query window's similarities to the windows it may pair
    # with [N, 3], to their decoys [N, 3], and of each of its decoys to those windows [N, D, 3]
    # (rows outside this chunk: 0)
    window_sums: np.ndarray
    window_decoy_sums: np.ndarray
    decoy_sums: np.ndarray
    resumed_blocks: int = 0  # query blocks a killed search had finished (not stored)


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


def block_rows(n: int, dim: int, n_decoys: int, memory_mb: int, top_k: int = 10) -> tuple[int, int]:
    """(query rows, database rows) per block so that one step fits `memory_mb`."""
    budget = memory_mb * 2**20
    per_db_row = dim * 4 * (2 + n_decoys) * 2  # raw and corrected windows, corrected decoys, temporaries
    db = max(64, min(n, budget // 4 // per_db_row))
    # similarities (values, masked copy) of a query row against a database block: 1/2 of the budget
    per_query_row = dim * 4 * (2 + n_decoys + top_k) + db * (1 + 2 * n_decoys) * 4 * 3  # + neighbours' raw rows
    query = max(64, min(n, budget // 2 // per_query_row))
    query = min(query, max(MIN_QUERY_ROWS, math.ceil(n / 16)))  # at least ~16 blocks to scatter
    return query, db


def chunk_rows(chunk: tuple[int, int] | None, n: int, query_rows: int) -> tuple[int, int]:
    """Rows of chunk (I, N) of the query-block grid (whole blocks; may be empty), or all rows."""
    if chunk is None:
        return 0, n
    i, parts = chunk
    blocks = math.ceil(n / query_rows)
    first, last = blocks * (i - 1) // parts, blocks * i // parts
    return min(n, first * query_rows), min(n, last * query_rows)


class _Transform:
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


def _merge_topk(torch, values, others, new_values, new_others, k):
    """Keep the k largest of (running, new) per row, carrying the aligned `others` tensors along."""
    values = torch.cat([values, new_values], 1)
    keep_values, pos = torch.topk(values, min(k, values.shape[1]), dim=1)
    kept = []
    for old, new in zip(others, new_others):
        both = torch.cat([old, new], 1)
        index = pos if both.dim() == 2 else pos[:, :, None].expand(-1, -1, both.shape[2])
        kept.append(torch.gather(both, 1, index))
    return keep_values, kept


def search(f: h5py.File, ws: WindowSet, params: SearchParams, chunk: tuple[int, int] | None = None,
           progress: Callable[[int], None] | None = None, resume_dir: Path | None = None) -> Neighbours:
    """The k slots of every query window of `chunk` (default all): exact, or approximate (ivf, ivfpq).

    With `resume_dir`, every finished query block is kept there, and a search killed and started
    again continues from them."""
    if params.index != "exact":
        from .ann import approximate_search

        return approximate_search(f, ws, params, chunk, progress, resume_dir)
    import torch

    emb, decoys = f["embeddings"], f["decoys"]
    n, dim = emb.shape
    n_decoys = decoys.shape[1]
    group = torch.from_numpy(pd.factorize(ws.table["gene"])[0].astype(np.int64))
    if len(np.unique(group.numpy())) < 2:
        raise EvoscanError("all windows belong to one gene or region; the search needs at least two")
    device = torch.device(params.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvoscanError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    dtype = getattr(torch, PRECISIONS[params.precision])
    group = group.to(device)
    ov_rows, ov_cols = cross_group_overlaps(ws)
    mean, scale = embedding_stats(emb, decoys, params.correction, device=params.device)
    transform = _Transform(mean, scale, device, dtype)
    q_rows, c_rows = block_rows(n, dim, n_decoys, params.memory_mb, params.top_k)
    lo, hi = chunk_rows(chunk, n, q_rows)
    k = min(params.top_k, n)

    # the database, transformed once if it fits half the budget, else re-read for every query block
    cache_fits = n * dim * 4 * (2 + n_decoys) <= params.memory_mb * 2**20 // 2
    cache: dict[int, tuple] = {}

    def database_block(c0: int):
        if c0 in cache:
            return cache[c0]
        c1 = min(n, c0 + c_rows)
        raw, corrected = transform(emb[c0:c1])
        _, decoy_corrected = transform(decoys[c0:c1].reshape(-1, dim), raw=False)
        block = (c1, raw, corrected, decoy_corrected)
        if cache_fits:
            cache[c0] = block
        return block

    def query_block(q0: int, q1: int) -> dict[str, np.ndarray]:
        """The slots and sums of query rows q0..q1, against every database block."""
        qb = q1 - q0
        q_raw, q_corrected = transform(emb[q0:q1])
        _, q_decoys = transform(decoys[q0:q1].reshape(-1, dim), raw=False)
        best = torch.full((qb, 0), -torch.inf, device=device)
        no_decoys = torch.full((qb, 0, 2 * n_decoys), -torch.inf, device=device)
        carried = [torch.zeros((qb, 0), dtype=torch.int64, device=device), best, best, no_decoys]
        a, b = np.searchsorted(ov_rows, [q0, q1])
        row_sums = torch.zeros((qb, 3), dtype=torch.float64, device=device)
        row_decoy_sums = torch.zeros((qb, 3), dtype=torch.float64, device=device)
        decoy_row_sums = torch.zeros((qb, n_decoys, 3), dtype=torch.float64, device=device)
        for c0 in range(0, n, c_rows):
            c1, c_raw, c_corrected, c_decoys = database_block(c0)
            cb = c1 - c0
            excluded = group[q0:q1, None] == group[None, c0:c1]
            in_block = (ov_cols[a:b] >= c0) & (ov_cols[a:b] < c1)
            if in_block.any():
                excluded[torch.from_numpy(ov_rows[a:b][in_block] - q0).to(device),
                         torch.from_numpy(ov_cols[a:b][in_block] - c0).to(device)] = True
            allowed = (~excluded).sum(1)  # pairs each query may form in this block
            target = (q_corrected @ c_corrected.T).float()
            # the pair's decoys: the query against the window's decoys, the query's decoys
            # against the window; both ends of a pair see the same 1 + 2D scores
            their = (q_corrected @ c_decoys.T).float().view(qb, cb, n_decoys)
            ours = (q_decoys @ c_corrected.T).float().view(qb, n_decoys, cb)
            # excluded pairs set to 0 in place: out of the sums, and -inf in the slots below
            target.masked_fill_(excluded, 0)
            their.masked_fill_(excluded[:, :, None], 0)
            ours.masked_fill_(excluded[:, None, :], 0)
            row_sums += _moments(target, allowed, dim=(1,))
            row_decoy_sums += _moments(their, allowed * n_decoys, dim=(1, 2))
            decoy_row_sums += _moments(ours, allowed[:, None], dim=(2,))
            # a slot is a pair ranked by the best of its 1 + 2D scores: a selection blind to
            # which one is real, so under the null they stay exchangeable
            slot = torch.maximum(their.amax(2), ours.amax(1)) if n_decoys > 1 else \
                torch.maximum(their[:, :, 0], ours[:, 0, :])
            slot = torch.maximum(slot, target, out=slot).masked_fill_(excluded, -torch.inf)
            vals, idx = torch.topk(slot, min(k, cb), dim=1)
            decoys_of = torch.cat([torch.gather(their, 1, idx[:, :, None].expand(-1, -1, n_decoys)),
                                   torch.gather(ours, 2, idx[:, None, :].expand(-1, n_decoys, -1)).transpose(1, 2)], 2)
            new = [idx + c0, torch.gather(target, 1, idx), torch.einsum("qd,qkd->qk", q_raw, c_raw[idx]), decoys_of]
            best, carried = _merge_topk(torch, best, carried, vals, new, k)
        keep = torch.isfinite(best).cpu().numpy()
        query = np.broadcast_to(np.arange(q0, q1)[:, None], keep.shape)
        columns = [query[keep], *(c.cpu().numpy()[keep] for c in carried)]
        return {**dict(zip(BLOCK_COLUMNS, columns)), "window_sums": row_sums.cpu().numpy(),
                "window_decoy_sums": row_decoy_sums.cpu().numpy(), "decoy_sums": decoy_row_sums.cpu().numpy()}

    store = block_store(resume_dir, f, ws, params, (lo, hi), q_rows)
    with torch.inference_mode():
        return run_query_blocks(query_block, (lo, hi), q_rows, n, n_decoys, store, progress)


def block_store(resume_dir: Path | None, f: h5py.File, ws: WindowSet, params: SearchParams, rows: tuple[int, int],
                grid: int, **more) -> BlockStore | None:
    """Where the finished query blocks of a search are kept (None: nowhere), for these inputs and
    settings (and `more` of them)."""
    if resume_dir is None:
        return None
    return BlockStore(resume_dir, {"window_digest": ws.digest, "params": asdict(params), "rows": list(rows),
                                   "grid": grid, "embeddings": f.attrs.get("params", ""), **more})


def run_query_blocks(query_block: Callable[[int, int], dict], rows: tuple[int, int], grid: int, n: int,
                     n_decoys: int, store: BlockStore | None = None,
                     progress: Callable[[int], None] | None = None) -> Neighbours:
    """Neighbours of query rows `rows`, `grid` rows per block: each block from `store` if a killed
    run finished it, else from `query_block(q0, q1)` (BLOCK_COLUMNS and the rows' sums) and kept."""
    lo, hi = rows
    results = []
    for q0 in range(lo, hi, grid):
        q1 = min(hi, q0 + grid)
        block = store.load(q0) if store else None
        if block is None:
            block = query_block(q0, q1)
            if store:
                store.save(q0, block)
        results.append((q0, q1, block))
        if progress:
            progress(q1 - q0)
    window_sums, window_decoy_sums = np.zeros((n, 3)), np.zeros((n, 3))
    decoy_sums = np.zeros((n, n_decoys, 3))
    for q0, q1, block in results:
        window_sums[q0:q1], window_decoy_sums[q0:q1] = block.pop("window_sums"), block.pop("window_decoy_sums")
        decoy_sums[q0:q1] = block.pop("decoy_sums")
    # each column gathered with its blocks' parts let go at once: the results are held about once,
    # not three times (blocks, joined columns, the table's copies: +0.8 GB at a million windows)
    def gathered(column: str, dtype, empty_shape) -> np.ndarray:
        heap.trim()  # the parts of the columns gathered before: small, freed inside the heap
        parts = [block.pop(column) for _, _, block in results]
        return np.asarray(np.concatenate(parts) if parts else np.empty(empty_shape), dtype)

    entries = pd.DataFrame({c: gathered(c, dtype, 0) for c, dtype in ENTRY_COLUMNS.items()}, copy=False)
    decoy_scores = gathered("decoy_scores", np.float32, (0, 2 * n_decoys)).reshape(-1, 2 * n_decoys)
    heap.trim()
    nb = Neighbours(entries=entries, decoy_scores=decoy_scores, n_decoys=n_decoys, rows=rows,
                    window_sums=window_sums, window_decoy_sums=window_decoy_sums, decoy_sums=decoy_sums)
    nb.resumed_blocks = store.resumed if store else 0
    return nb


def _moments(sims, count, dim: tuple[int, ...]):
    """(sum, sum of squares, count) of similarities over `dim` (the excluded pairs already 0), with
    `count` the pairs allowed, stacked last: float32 within a block, float64 across blocks."""
    import torch

    total = sims.sum(dim)
    return torch.stack([total.double(), (torch.linalg.vector_norm(sims, dim=dim) ** 2).double(),
                        count.expand_as(total).double()], -1)


# ---- HDF5 I/O --------------------------------------------------------------------------------

def write_neighbours(path, ws: WindowSet, nb: Neighbours, params: SearchParams, embeddings_meta: dict) -> None:
    attrs = h5.provenance("neighbours", ws.digest, asdict(params))
    attrs.update(rows_start=nb.rows[0], rows_end=nb.rows[1], n_decoys=nb.n_decoys,
                 backend=json.dumps(embeddings_meta))
    data = {c: nb.entries[c].to_numpy() for c in ENTRY_COLUMNS}
    data.update(decoy_scores=nb.decoy_scores, window_sums=nb.window_sums, window_decoy_sums=nb.window_decoy_sums,
                decoy_sums=nb.decoy_sums)
    h5.write_h5(path, data, attrs)


def _read_part(path, ws: WindowSet) -> tuple[Neighbours, dict]:
    sums = ("window_sums", "window_decoy_sums", "decoy_sums")
    with h5.open_checked(path, "neighbours", ws.digest, datasets=(*ENTRY_COLUMNS, "decoy_scores", *sums)) as f:
        nb = Neighbours(entries=pd.DataFrame({c: f[c][()] for c in ENTRY_COLUMNS}),
                        decoy_scores=f["decoy_scores"][()], n_decoys=int(f.attrs["n_decoys"]),
                        rows=(int(f.attrs["rows_start"]), int(f.attrs["rows_end"])),
                        **{name: f[name][()] for name in sums})
        return nb, dict(f.attrs)


def read_neighbours(path, ws: WindowSet) -> tuple[Neighbours, dict]:
    """All windows' neighbours, the search parameters and the embeddings' provenance."""
    nb, attrs = _read_part(path, ws)
    if nb.rows != (0, len(ws)):
        raise EvoscanError(f"{path} holds the neighbours of query windows {nb.rows[0]}..{nb.rows[1]} of "
                           f"{len(ws)} only; join the chunks with `evoscan merge` first")
    return nb, {"params": json.loads(attrs["params"]), "backend": json.loads(attrs["backend"])}


def merge_neighbours(parts: list, ws: WindowSet, out_path) -> None:
    """Join query-chunk files (any order); they must tile the windows and share every setting."""
    pieces = sorted((_read_part(p, ws) for p in parts), key=lambda p: p[0].rows)
    if len({(p[1]["params"], p[1]["backend"]) for p in pieces}) != 1:
        raise EvoscanError("search chunks were made with different settings or embeddings; rerun them alike")
    check_tiling([p[0].rows for p in pieces if p[0].rows[0] < p[0].rows[1]], len(ws), "search")  # chunks may be empty
    merged = Neighbours(entries=pd.concat([p[0].entries for p in pieces], ignore_index=True),
                        decoy_scores=np.concatenate([p[0].decoy_scores for p in pieces]),
                        n_decoys=pieces[0][0].n_decoys, rows=(0, len(ws)),
                        # each chunk holds its own rows (zeros elsewhere): adding them is exact
                        window_sums=sum(p[0].window_sums for p in pieces),
                        window_decoy_sums=sum(p[0].window_decoy_sums for p in pieces),
                        decoy_sums=sum(p[0].decoy_sums for p in pieces))
    attrs = pieces[0][1]
    params = SearchParams(**json.loads(attrs["params"]))
    write_neighbours(out_path, ws, merged, params, json.loads(attrs["backend"]))
