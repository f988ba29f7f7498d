"""The approximate search (`evoscan search --index ivf`), for millions of windows: a FAISS
inverted-file index with 8-bit scalar-quantised vectors (1 byte per dimension) over the corrected
windows, and one over their decoys.

Each query takes its nearest windows and nearest decoys from the two indexes, and its own
decoys their nearest windows; every window found any of these ways becomes a candidate, and the
pair is scored as the exact search scores it (its score and its 2D decoy scores, from the
quantised vectors), so the selection stays blind to which score is real and the target-decoy
competition stays fair: real and decoy scores are found and computed by the same approximation.
Recall against the exact search is measured in benchmarks/bench_search.py.

The normalisation sums come from a fixed random sample of reference windows and their decoys
(exact vectors) instead of every window; raw cosines from 8-bit codes of the raw vectors. Memory: about
(2 + D) bytes x dimension per window (for 1 M windows of 2,080 dimensions and one decoy: 6.2 GB),
plus FAISS's growth of its inverted lists (up to twice their size; 13.5 GB measured at 1 M) and a
block: beyond the exact search's few GB. Compressed codes (IVF-PQ) or lists on disk are the way
to go further; not done yet.
"""

from __future__ import annotations

import math
from typing import Callable

import h5py
import numpy as np
import pandas as pd

from .errors import EvoscanError
from .windows import WindowSet

REFERENCE_WINDOWS = 2_000  # sample behind the normalisation sums (mean and spread to ~2 %)
QUERY_BLOCK = 256
TRAINING_ROWS = 100_000


def _faiss():
    try:
        import faiss
    except ImportError:
        raise EvoscanError("--index ivf needs FAISS: pip install faiss-cpu (or faiss-gpu)") from None
    return faiss


def _blocks(n: int, block: int = 8192):
    for r0 in range(0, n, block):
        yield r0, min(n, r0 + block)


def _rowwise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per query q: x[q] ([d] or [r, d]) against each row of y[q] ([c, d]) -> [c] or [r, c] (batched BLAS)."""
    import torch

    x, y = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    out = torch.bmm(x[:, None, :] if x.dim() == 2 else x, y.transpose(1, 2))
    return (out[:, 0] if x.dim() == 2 else out).numpy()


def approximate_search(f: h5py.File, ws: WindowSet, params, chunk=None,
                       progress: Callable[[int], None] | None = None):
    import torch

    from .search import _neighbours, _Transform, chunk_rows, cross_group_overlaps, embedding_stats

    faiss = _faiss()
    emb, decoys = f["embeddings"], f["decoys"]
    n, dim = emb.shape
    n_decoys = decoys.shape[1]
    group = pd.factorize(ws.table["gene"])[0].astype(np.int64)
    if len(np.unique(group)) < 2:
        raise EvoscanError("all windows belong to one gene or region; the search needs at least two")
    transform = _Transform(*embedding_stats(emb, decoys, params.correction), torch.device("cpu"), torch.float32)
    corrected = lambda x: transform(x, raw=False)[1].numpy()  # noqa: E731
    raw_unit = lambda x: transform(x)[0].numpy()  # noqa: E731
    k = min(params.top_k, n)
    nlist = max(1, min(int(math.sqrt(n)), n // 39))  # training k-means costs nlist x sample x dim per pass
    rng = np.random.default_rng(0)

    # train on a spread sample of windows and decoys together (the 8-bit ranges must fit both
    # alike), then add windows and decoys in row order (ids = insertion order)
    step = max(1, n // TRAINING_ROWS)
    sample = np.concatenate([corrected(x) for r0, r1 in _blocks(n)
                             for x in (emb[r0:r1][::step], decoys[r0:r1][::step, 0])])
    windows_index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist,
                                                  faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    windows_index.train(sample)
    del sample  # up to 1.7 GB at a million windows
    decoys_index = faiss.clone_index(windows_index)
    raw_codes = faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit)
    raw_codes.train(np.concatenate([raw_unit(emb[r0:r1][::step]) for r0, r1 in _blocks(n)]))
    codes = np.empty((n, raw_codes.code_size), dtype=np.uint8)
    reference = np.sort(rng.choice(n, min(n, REFERENCE_WINDOWS), replace=False))
    ref_parts, ref_decoy_parts = [], []
    for r0, r1 in _blocks(n):
        block, decoy_block = corrected(emb[r0:r1]), corrected(decoys[r0:r1].reshape(-1, dim))
        windows_index.add(block)
        decoys_index.add(decoy_block)
        codes[r0:r1] = raw_codes.compute_codes(raw_unit(emb[r0:r1]))
        picked = reference[(reference >= r0) & (reference < r1)] - r0
        ref_parts.append(block[picked])
        ref_decoy_parts.append(decoy_block.reshape(r1 - r0, n_decoys, dim)[picked].reshape(-1, dim))
    ref_vectors, ref_decoys = np.concatenate(ref_parts), np.concatenate(ref_decoy_parts)
    for index in (windows_index, decoys_index):
        index.make_direct_map(True)
        index.nprobe = params.nprobe or max(1, min(nlist // 8, 64))

    ov_rows, ov_cols = cross_group_overlaps(ws)
    overlap_keys = np.sort(ov_rows * n + ov_cols)

    def overlapping(keys: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(overlap_keys, keys), max(len(overlap_keys) - 1, 0))
        return overlap_keys[pos] == keys if len(overlap_keys) else np.zeros(keys.shape, bool)

    def allowed(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Reference pairs that count: other groups (the rare overlapping pairs of other groups
        are kept; they barely move a mean over thousands)."""
        return group[rows][:, None] != group[cols][None, :]

    def moments(sims: np.ndarray, ok: np.ndarray) -> np.ndarray:
        kept = np.where(ok, sims, 0.0).astype(np.float64)
        return np.stack([kept.sum(1), (kept ** 2).sum(1), ok.sum(1)], -1)

    q_rows = max(1, math.ceil(n / 16)) if n < 16 * QUERY_BLOCK else QUERY_BLOCK
    lo, hi = chunk_rows(chunk, n, q_rows)
    window_sums, window_decoy_sums = np.zeros((n, 3)), np.zeros((n, 3))
    decoy_sums = np.zeros((n, n_decoys, 3))
    found, searched = [], max(4 * k, k + 64)  # same-group and overlapping windows are found too
    for q0 in range(lo, hi, q_rows):
        q1 = min(hi, q0 + q_rows)
        rows = np.arange(q0, q1)
        block = emb[q0:q1]
        query, query_raw = corrected(block), raw_unit(block)
        query_decoys = corrected(decoys[q0:q1].reshape(-1, dim))
        ok_ref = allowed(rows, reference)
        window_sums[q0:q1] = moments(query @ ref_vectors.T, ok_ref)
        window_decoy_sums[q0:q1] = moments(query @ ref_decoys.T, np.repeat(ok_ref, n_decoys, 1))
        decoy_sums[q0:q1] = moments(query_decoys @ ref_vectors.T, np.repeat(ok_ref, n_decoys, 0)
                                    ).reshape(q1 - q0, n_decoys, 3)
        # candidates: windows near the query, windows whose decoys are near it, windows near its
        # decoys; found alike for a pair's real score and each of its decoy scores
        _, by_window = windows_index.search(query, min(searched, n))
        _, by_decoy = decoys_index.search(query, min(searched * n_decoys, n * n_decoys))
        _, by_own_decoys = windows_index.search(query_decoys, min(searched, n))
        candidates = np.concatenate([by_window, np.where(by_decoy >= 0, by_decoy // n_decoys, -1),
                                     by_own_decoys.reshape(q1 - q0, -1)], 1)
        candidates = np.sort(candidates, 1)
        candidates[:, 1:][candidates[:, 1:] == candidates[:, :-1]] = -1  # each window once
        valid = candidates >= 0
        safe = np.where(valid, candidates, 0)
        ok = valid & (group[safe] != group[rows][:, None]) & ~overlapping(rows[:, None] * n + safe)
        windows = windows_index.reconstruct_batch(safe.ravel()).reshape(*safe.shape, dim)
        target = _rowwise(query, windows)
        decoy_ids = (safe[:, :, None] * n_decoys + np.arange(n_decoys)).ravel()
        decoy = np.concatenate([
            _rowwise(query, decoys_index.reconstruct_batch(decoy_ids).reshape(q1 - q0, -1, dim)).reshape(
                *safe.shape, n_decoys),
            _rowwise(query_decoys.reshape(q1 - q0, n_decoys, dim), windows).transpose(0, 2, 1)], 2)
        slot = np.where(ok, np.maximum(target, decoy.max(2)), -np.inf)
        top = np.argsort(-slot, axis=1, kind="stable")[:, :k]
        keep = np.isfinite(np.take_along_axis(slot, top, 1))
        neighbour = np.take_along_axis(safe, top, 1)
        cosine = _rowwise(query_raw, raw_codes.decode(codes[neighbour.ravel()]).reshape(*neighbour.shape, dim))
        found.append([np.broadcast_to(rows[:, None], top.shape)[keep], neighbour[keep],
                      np.take_along_axis(target, top, 1)[keep], cosine[keep],
                      np.take_along_axis(decoy, top[:, :, None], 1)[keep]])
        if progress:
            progress(q1 - q0)
    return _neighbours(found, n_decoys, (lo, hi), window_sums, window_decoy_sums, decoy_sums)
