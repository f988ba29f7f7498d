"""The exact search: every similarity computed (torch matmul, CPU or GPU, fp32 or an fp16/bf16
option) and a running top-k kept per query, block by block within the memory budget (see the
package docstring for what a slot holds and what is summed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pandas as pd

from ..errors import EvoscanError
from ..windows import WindowSet
from .neighbours import BLOCK_COLUMNS, PRECISIONS, Neighbours, SearchParams, block_store, run_query_blocks
from .space import Exclusions, Transform, chunk_rows, embedding_stats

MIN_QUERY_ROWS = 512  # below this a database pass costs more than it computes


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


def exact_search(f: h5py.File, ws: WindowSet, params: SearchParams, chunk: tuple[int, int] | None = None,
           progress: Callable[[int], None] | None = None, resume_dir: Path | None = None) -> Neighbours:
    """The k slots of every query window of `chunk` (default all), every similarity computed;
    finished query blocks kept in `resume_dir` (if given) for a killed search to continue from."""
    import torch

    emb, decoys = f["embeddings"], f["decoys"]
    n, dim = emb.shape
    n_decoys = decoys.shape[1]
    if len(pd.unique(ws.table["gene"])) < 2:
        raise EvoscanError("all windows belong to one gene or region; the search needs at least two")
    device = torch.device(params.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvoscanError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    dtype = getattr(torch, PRECISIONS[params.precision])
    exclusions = Exclusions(ws, device)
    q_rows, c_rows = block_rows(n, dim, n_decoys, params.memory_mb, params.top_k)
    lo, hi = chunk_rows(chunk, n, q_rows)
    k = min(params.top_k, n)

    # the database, transformed once and held if it fits half the budget, else re-read for every
    # query block; held, it is read from the file once: the statistics pass hands over what it reads
    cache_fits = n * dim * 4 * (2 + n_decoys) <= params.memory_mb * 2**20 // 2 and lo < hi
    read: dict[int, tuple] = {}  # first row -> (windows, decoys) as read
    mean, scale = embedding_stats(emb, decoys, params.correction, device=params.device,
                                  keep=(lambda r0, *rows: read.update({r0: rows})) if cache_fits else None)
    transform = Transform(mean, scale, device, dtype)

    def transformed(windows, window_decoys) -> tuple:
        """(raw, corrected, corrected decoys as rows) of a block of windows and their decoys."""
        return (*transform(windows), transform(window_decoys.reshape(-1, dim), raw=False)[1])

    cache: dict[int, tuple] = {}
    for c0 in range(0, n, c_rows) if cache_fits else ():
        c1 = min(n, c0 + c_rows)
        block = (torch.empty((c1 - c0, dim), device=device), torch.empty((c1 - c0, dim), dtype=dtype, device=device),
                 torch.empty(((c1 - c0) * n_decoys, dim), dtype=dtype, device=device))
        for r0, (windows, window_decoys) in list(read.items()):  # transformed a read at a time, into place
            a, b = max(c0, r0), min(c1, r0 + len(windows))
            if a < b:
                for into, part, m in zip(block, transformed(windows[a - r0:b - r0], window_decoys[a - r0:b - r0]),
                                         (1, 1, n_decoys)):
                    into[(a - c0) * m:(b - c0) * m] = part
            if r0 + len(windows) <= c1:
                del read[r0]  # wholly used
        cache[c0] = (c1, *block)
    if cache and device.type == "cuda":
        torch.cuda.empty_cache()  # the reads' memory, reserved in their size, back for the similarity blocks

    def database_block(c0: int):
        if c0 in cache:
            return cache[c0]
        c1 = min(n, c0 + c_rows)
        return (c1, *transformed(emb[c0:c1], decoys[c0:c1]))

    def query_rows(q0: int, q1: int) -> tuple:
        """(raw, corrected, corrected decoys) of query rows q0..q1: from the held database, or read."""
        if not cache:
            return transformed(emb[q0:q1], decoys[q0:q1])
        held = [(cache[c0], max(q0, c0) - c0, min(q1, cache[c0][0]) - c0)
                for c0 in range(q0 // c_rows * c_rows, q1, c_rows)]
        parts = [[block[i][a * m:b * m] for block, a, b in held] for i, m in ((1, 1), (2, 1), (3, n_decoys))]
        return tuple(p[0] if len(p) == 1 else torch.cat(p) for p in parts)

    def query_block(q0: int, q1: int) -> dict[str, np.ndarray]:
        """The slots and sums of query rows q0..q1, against every database block."""
        qb = q1 - q0
        q_raw, q_corrected, q_decoys = query_rows(q0, q1)
        best = torch.full((qb, 0), -torch.inf, device=device)
        no_decoys = torch.full((qb, 0, 2 * n_decoys), -torch.inf, device=device)
        carried = [torch.zeros((qb, 0), dtype=torch.int64, device=device), best, best, no_decoys]
        row_sums = torch.zeros((qb, 3), dtype=torch.float64, device=device)
        row_decoy_sums = torch.zeros((qb, 3), dtype=torch.float64, device=device)
        decoy_row_sums = torch.zeros((qb, n_decoys, 3), dtype=torch.float64, device=device)
        for c0 in range(0, n, c_rows):
            c1, c_raw, c_corrected, c_decoys = database_block(c0)
            cb = c1 - c0
            excluded = exclusions.block(q0, q1, c0, c1)
            allowed = excluded.allowed()  # pairs each query may form in this block
            # the similarities stay in the search's precision: maxima and top-k are exact in it
            target = q_corrected @ c_corrected.T
            # the pair's decoys: the query against the window's decoys, the query's decoys
            # against the window; both ends of a pair see the same 1 + 2D scores
            their = (q_corrected @ c_decoys.T).view(qb, cb, n_decoys)
            ours = (q_decoys @ c_corrected.T).view(qb, n_decoys, cb)
            # excluded pairs set to 0: out of the sums, and -inf in the slots below
            excluded.fill(target, 0)
            excluded.fill(their, 0, decoys_at=2)
            excluded.fill(ours, 0, decoys_at=1)
            row_sums += _moments(target, allowed, dim=(1,))
            row_decoy_sums += _moments(their, allowed * n_decoys, dim=(1, 2))
            decoy_row_sums += _moments(ours, allowed[:, None], dim=(2,))
            # a slot is a pair ranked by the best of its 1 + 2D scores: a selection blind to
            # which one is real, so under the null they stay exchangeable
            slot = torch.maximum(their.amax(2), ours.amax(1)) if n_decoys > 1 else \
                torch.maximum(their[:, :, 0], ours[:, 0, :])
            slot = torch.maximum(slot, target, out=slot)
            excluded.fill(slot, -torch.inf)
            vals, idx = torch.topk(slot, min(k, cb), dim=1)
            decoys_of = torch.cat([torch.gather(their, 1, idx[:, :, None].expand(-1, -1, n_decoys)),
                                   torch.gather(ours, 2, idx[:, None, :].expand(-1, n_decoys, -1)).transpose(1, 2)],
                                  2).float()
            new = [idx + c0, torch.gather(target, 1, idx).float(), torch.einsum("qd,qkd->qk", q_raw, c_raw[idx]),
                   decoys_of]
            best, carried = _merge_topk(torch, best, carried, vals.float(), new, k)
        keep = torch.isfinite(best).cpu().numpy()
        query = np.broadcast_to(np.arange(q0, q1)[:, None], keep.shape)
        columns = [query[keep], *(c.cpu().numpy()[keep] for c in carried)]
        return {**dict(zip(BLOCK_COLUMNS, columns)), "window_sums": row_sums.cpu().numpy(),
                "window_decoy_sums": row_decoy_sums.cpu().numpy(), "decoy_sums": decoy_row_sums.cpu().numpy()}

    store = block_store(resume_dir, f, ws, params, (lo, hi), q_rows)
    with torch.inference_mode():
        return run_query_blocks(query_block, (lo, hi), q_rows, n, n_decoys, store, progress)


def _moments(sims, count, dim: tuple[int, ...]):
    """(sum, sum of squares, count) of similarities over `dim` (the excluded pairs already 0), with
    `count` the pairs allowed, stacked last: float32 within a block, float64 across blocks. On a GPU
    the fp16/bf16 similarities are summed in float32 as they are read (no float32 copy); a CPU
    converts them first, so there they are converted once for both sums."""
    import torch

    if sims.device.type == "cpu":
        sims = sims.float()
    total = sims.sum(dim, dtype=torch.float32)
    squares = torch.linalg.vector_norm(sims, dim=dim, dtype=torch.float32) ** 2
    return torch.stack([total.double(), squares.double(), count.expand_as(total).double()], -1)
