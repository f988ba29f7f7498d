"""The approximate search (`evoscan search --index ivf|ivfpq`), for millions of windows: a FAISS
inverted-file index over the corrected windows, and one over their decoys, with 8-bit
scalar-quantised vectors (`ivf`: 1 byte per dimension) or product-quantised ones (`ivfpq`: 1 byte
per PQ_DIMS dimensions, lists a quarter the size, for what 8-bit codes cannot hold; less exact).

Each query takes its nearest windows and nearest decoys from the two indexes, and its own
decoys their nearest windows; every window found any of these ways becomes a candidate, and the
pair is scored as the exact search scores it (its score and its 2D decoy scores, from the
quantised vectors), so the selection stays blind to which score is real and the target-decoy
competition stays fair: real and decoy scores are found and computed by the same approximation.
Recall against the exact search is measured in benchmarks/bench_search.py. Finished query blocks
are kept as the exact search keeps them (`neighbours.run_query_blocks`): a killed search continues.

The normalisation sums come from a fixed random sample of reference windows and their decoys
(exact vectors) instead of every window. The raw `cosine` of each final neighbour is exact: its
row is read back from the embeddings file (k rows per query; no raw codes are kept).

Memory: the indexes hold (1 + D) bytes x dimension per window, in inverted lists of exactly that
size: every vector is assigned to its list in a first pass over the file, each list is sized
once, and a second pass writes the codes in place (FAISS's own `add` grows each list by
doubling, up to twice the codes). Training uses a sample drawn at the size k-means uses (at most
256 rows per list, so FAISS uses it in place) and takes the 8-bit ranges from the residuals of
ENCODER_ROWS of it (`trained_index`), so training does not peak above the query loop. 6-bit
codes would cut the lists by a quarter, `ivfpq` (one byte per PQ_DIMS dimensions) to a quarter,
each at a lower recall. The measured peaks (6.6 GB for the whole search of 1,015,500 windows of
2,080 dimensions, ~5.8 GB more per million windows), the build and query times, and the recall of
each code size are in docs/scaling.md; lists on disk are not done.
"""

from __future__ import annotations

import math
from typing import Callable

import h5py
import numpy as np
import pandas as pd

from .. import heap
from ..errors import EvoscanError
from ..windows import WindowSet
from .neighbours import BLOCK_COLUMNS, block_store, run_query_blocks
from .space import Transform, chunk_rows, cross_group_overlaps, embedding_stats

REFERENCE_WINDOWS = 2_000  # sample behind the normalisation sums (mean and spread to ~2 %)
QUERY_BLOCK = 256
SCORE_ROWS = 32  # queries whose candidates are reconstructed at once
TRAINING_ROWS = 100_000  # windows (and as many decoys) at most in the k-means sample
KMEANS_ROWS_PER_LIST = 256  # FAISS's own cap (ClusteringParameters.max_points_per_centroid)
ENCODER_ROWS = 32_768  # residuals behind the 8-bit ranges (per-dimension min and max) or PQ codebooks
PQ_DIMS = 4  # ivfpq: dimensions per 1-byte sub-quantiser code (more where the dimension does not divide)
PQ_ITERATIONS = 10  # k-means passes per sub-quantiser (FAISS: 25; one codebook per 4 dimensions adds up)
PQ_CODES_MIN_ROWS = 256  # a 1-byte code has 256 centroids: at least one training row each
CODES = "QT_8bit"  # FAISS scalar quantiser of both indexes: 1 byte per dimension (see above)


def _faiss():
    try:
        import faiss
    except ImportError:
        raise EvoscanError("--index ivf and ivfpq need FAISS: pip install faiss-cpu (or faiss-gpu)") from None
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


def reserve(index, lists: np.ndarray) -> np.ndarray:
    """Size each inverted list of an empty index once, to the number of vectors `lists` assigns
    to it; returns the per-list fill counters for `place`."""
    sizes = np.bincount(lists, minlength=index.nlist)
    for i in np.flatnonzero(sizes):
        index.invlists.resize(int(i), int(sizes[i]))
    index.ntotal = len(lists)
    return np.zeros(index.nlist, np.int64)


def place(faiss, index, x: np.ndarray, ids: np.ndarray, lists: np.ndarray, filled: np.ndarray) -> None:
    """Encode vectors `x` for their lists (residuals to the list centroid, as `add` does) and write
    them after the entries already there; one call per list touched."""
    x, lists = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(lists, np.int64)
    codes = np.empty((len(x), index.code_size), np.uint8)
    index.encode_vectors(len(x), faiss.swig_ptr(x), faiss.swig_ptr(lists), faiss.swig_ptr(codes))
    order = np.argsort(lists, kind="stable")  # row order within a list, as `add` would keep it
    ids, lists, codes = np.ascontiguousarray(ids[order], np.int64), lists[order], codes[order]
    starts = np.flatnonzero(np.r_[True, lists[1:] != lists[:-1]]) if len(lists) else np.empty(0, int)
    for s, e in zip(starts, np.r_[starts[1:], len(lists)]):
        i = int(lists[s])
        index.invlists.update_entries(i, int(filled[i]), int(e - s), faiss.swig_ptr(ids[s:e]),
                                      faiss.swig_ptr(codes[s:e]))
        filled[i] += e - s


def pq_subquantizers(dim: int) -> int:
    """Sub-quantisers of an `ivfpq` code: the most that divide `dim` with at least PQ_DIMS
    dimensions each (2,080 -> 520 bytes per vector; 4,096 -> 1,024)."""
    return max(m for m in range(1, max(1, dim // PQ_DIMS) + 1) if dim % m == 0)


def empty_index(faiss, dim: int, nlist: int, kind: str = "ivf"):
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivfpq":
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_subquantizers(dim), 8, faiss.METRIC_INNER_PRODUCT)
        index.pq.cp.niter = PQ_ITERATIONS
        index.pq.cp.min_points_per_centroid = 1  # only FAISS's warning threshold: one line per codebook
        return index
    return faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, getattr(faiss.ScalarQuantizer, CODES),
                                         faiss.METRIC_INNER_PRODUCT)


def trained_index(faiss, sample: np.ndarray, nlist: int, kind: str = "ivf", encoder_rows: int = ENCODER_ROWS):
    """An empty IVF index, trained as FAISS's `train` trains it (spherical k-means for the lists,
    then the codes, 8-bit ranges or PQ codebooks, on residuals to the list centroids), with the
    codes from `encoder_rows` spread rows of the sample instead of FAISS's copy of up to 100 k rows
    and their residuals (1.7 GB at 2,080 dimensions). `sample` is used in place: keep it within
    KMEANS_ROWS_PER_LIST x nlist rows, or k-means copies a subsample of it; it may be overwritten
    (the residuals are made in place when every row is used)."""
    dim = sample.shape[1]
    index = empty_index(faiss, dim, nlist, kind)
    index.train_q1(len(sample), faiss.swig_ptr(sample), False, faiss.METRIC_INNER_PRODUCT)
    residuals = np.ascontiguousarray(sample[::max(1, len(sample) // encoder_rows)])
    lists = index.quantizer.search(residuals, 1)[1][:, 0].astype(np.int64)
    residuals -= index.quantizer.reconstruct_n(0, nlist)[lists]
    index.train_encoder(len(residuals), faiss.swig_ptr(residuals), faiss.swig_ptr(lists))
    index.is_trained = True
    return index


def require_enough_windows(index: str, n: int) -> None:
    """An index that cannot be trained on `n` windows is refused (by `evoscan run` before it embeds)."""
    if index == "ivfpq" and n < 2 * PQ_CODES_MIN_ROWS:
        raise EvoscanError(f"--index ivfpq needs at least {2 * PQ_CODES_MIN_ROWS} windows to train its codebooks "
                           f"({n} here); use --index exact or ivf")


def approximate_search(f: h5py.File, ws: WindowSet, params, chunk=None,
                       progress: Callable[[int], None] | None = None, resume_dir=None):
    """The k slots of every query window of `chunk` (default all), from the two indexes. With
    `resume_dir`, every finished query block is kept there, and a search killed and started again
    builds the indexes again (seeded: the same lists and codes with the same FAISS and threads)
    and continues from them; if every block was finished, nothing is built."""
    faiss = _faiss()
    emb, decoys = f["embeddings"], f["decoys"]
    n, dim = emb.shape
    if pd.factorize(ws.table["gene"])[0].max(initial=0) < 1:
        raise EvoscanError("all windows belong to one gene or region; the search needs at least two")
    if params.index == "ivfpq" and dim // pq_subquantizers(dim) > 2 * PQ_DIMS:
        raise EvoscanError(f"--index ivfpq cannot split {dim} dimensions into codes of about {PQ_DIMS} (its "
                           f"nearest split has {dim // pq_subquantizers(dim)} per code); use --index ivf")
    require_enough_windows(params.index, n)
    q_rows = max(1, math.ceil(n / 16)) if n < 16 * QUERY_BLOCK else QUERY_BLOCK
    rows = chunk_rows(chunk, n, q_rows)
    searcher = None

    def query_block(q0: int, q1: int) -> dict:
        nonlocal searcher
        if searcher is None:  # built at the first block not kept by a killed run
            searcher = _IndexedWindows(f, ws, params)
        return searcher.query_block(q0, q1)

    # blocks of another FAISS or thread count could come from other lists: not mixed with these
    store = block_store(resume_dir, f, ws, params, rows, q_rows, faiss=faiss.__version__,
                        threads=faiss.omp_get_max_threads())
    return run_query_blocks(query_block, rows, q_rows, n, decoys.shape[1], store, progress)


class _IndexedWindows:
    """The windows and their decoys in two IVF indexes, and the reference sample behind the
    normalisation sums; `query_block` finds and scores the neighbours of a block of queries."""

    def __init__(self, f: h5py.File, ws: WindowSet, params):
        import torch

        faiss = _faiss()
        heap.hand_back_freed_memory()
        self.emb, self.decoys = emb, decoys = f["embeddings"], f["decoys"]
        n = emb.shape[0]
        self.group = pd.factorize(ws.table["gene"])[0].astype(np.int64)
        # overlapping windows of other groups as sorted keys row x n + col, made before the index exists:
        # (49 M pairs in a million-window benchmark whose loci overlapped: 1.9 GB while found, 0.4 GB kept)
        overlap_keys, ov_cols = cross_group_overlaps(ws)
        overlap_keys *= n
        overlap_keys += ov_cols
        del ov_cols
        overlap_keys.sort()
        self.overlap_keys = overlap_keys
        transform = Transform(*embedding_stats(emb, decoys, params.correction), torch.device("cpu"), torch.float32)
        self.corrected = corrected = lambda x: transform(x, raw=False)[1].numpy()  # noqa: E731
        self.raw_unit = lambda x: transform(x)[0].numpy()  # noqa: E731
        self.k = min(params.top_k, n)
        self.reference = np.sort(np.random.default_rng(0).choice(n, min(n, REFERENCE_WINDOWS), replace=False))
        self.windows_index, self.decoys_index, self.ref_vectors, self.ref_decoys = _filled_indexes(
            faiss, emb, decoys, corrected, params, self.reference)

    def _overlapping(self, keys: np.ndarray) -> np.ndarray:
        overlap_keys = self.overlap_keys
        pos = np.minimum(np.searchsorted(overlap_keys, keys), max(len(overlap_keys) - 1, 0))
        return overlap_keys[pos] == keys if len(overlap_keys) else np.zeros(keys.shape, bool)

    def query_block(self, q0: int, q1: int) -> dict:
        """BLOCK_COLUMNS of query rows q0..q1 and their sums against the reference sample."""
        emb, decoys, group, k = self.emb, self.decoys, self.group, self.k
        n, dim = emb.shape
        n_decoys = decoys.shape[1]
        rows = np.arange(q0, q1)
        block = emb[q0:q1]
        query, query_raw = self.corrected(block), self.raw_unit(block)
        query_decoys = self.corrected(decoys[q0:q1].reshape(-1, dim))
        # reference pairs that count: other groups (the rare overlapping pairs of other groups are
        # kept; they barely move a mean over thousands)
        ok_ref = group[rows][:, None] != group[self.reference][None, :]
        window_sums = _moments(query @ self.ref_vectors.T, ok_ref)
        window_decoy_sums = _moments(query @ self.ref_decoys.T, np.repeat(ok_ref, n_decoys, 1))
        decoy_sums = _moments(query_decoys @ self.ref_vectors.T, np.repeat(ok_ref, n_decoys, 0)
                              ).reshape(q1 - q0, n_decoys, 3)
        # candidates: windows near the query, windows whose decoys are near it, windows near its
        # decoys; found alike for a pair's real score and each of its decoy scores
        searched = max(4 * k, k + 64)  # same-group and overlapping windows are found too
        _, by_window = self.windows_index.search(query, min(searched, n))
        _, by_decoy = self.decoys_index.search(query, min(searched * n_decoys, n * n_decoys))
        _, by_own_decoys = self.windows_index.search(query_decoys, min(searched, n))
        candidates = np.concatenate([by_window, np.where(by_decoy >= 0, by_decoy // n_decoys, -1),
                                     by_own_decoys.reshape(q1 - q0, -1)], 1)
        candidates = np.sort(candidates, 1)
        candidates[:, 1:][candidates[:, 1:] == candidates[:, :-1]] = -1  # each window once
        valid = candidates >= 0
        safe = np.where(valid, candidates, 0)
        ok = valid & (group[safe] != group[rows][:, None]) & ~self._overlapping(rows[:, None] * n + safe)
        # each pair's score and 2D decoy scores from the quantised vectors, reconstructed for
        # SCORE_ROWS queries at a time (all 256 at once: 1.5 GB of float copies at a million)
        target, decoy = np.empty(safe.shape, np.float32), np.empty((*safe.shape, 2 * n_decoys), np.float32)
        own_decoys = query_decoys.reshape(q1 - q0, n_decoys, dim)
        for s0 in range(0, q1 - q0, SCORE_ROWS):
            s1 = min(q1 - q0, s0 + SCORE_ROWS)
            ids = safe[s0:s1]
            windows = self.windows_index.reconstruct_batch(ids.ravel()).reshape(*ids.shape, dim)
            target[s0:s1] = _rowwise(query[s0:s1], windows)
            their_decoys = self.decoys_index.reconstruct_batch(
                (ids[:, :, None] * n_decoys + np.arange(n_decoys)).ravel())
            # the query against the window's decoys, then the query's decoys against the window
            decoy[s0:s1, :, :n_decoys] = _rowwise(query[s0:s1], their_decoys.reshape(s1 - s0, -1, dim)).reshape(
                *ids.shape, n_decoys)
            decoy[s0:s1, :, n_decoys:] = _rowwise(own_decoys[s0:s1], windows).transpose(0, 2, 1)
        slot = np.where(ok, np.maximum(target, decoy.max(2)), -np.inf)
        top = np.argsort(-slot, axis=1, kind="stable")[:, :k]
        keep = np.isfinite(np.take_along_axis(slot, top, 1))
        neighbour = np.take_along_axis(safe, top, 1)
        # the raw cosine exactly, from the neighbours' own rows (h5py wants them sorted and unique)
        needed = np.unique(neighbour)
        raw = self.raw_unit(emb[needed])[np.searchsorted(needed, neighbour)]
        cosine = _rowwise(query_raw, raw)
        columns = [np.broadcast_to(rows[:, None], top.shape)[keep], neighbour[keep],
                   np.take_along_axis(target, top, 1)[keep], cosine[keep],
                   np.take_along_axis(decoy, top[:, :, None], 1)[keep]]
        return {**dict(zip(BLOCK_COLUMNS, columns)), "window_sums": window_sums,
                "window_decoy_sums": window_decoy_sums, "decoy_sums": decoy_sums}


def _filled_indexes(faiss, emb: h5py.Dataset, decoys: h5py.Dataset, corrected: Callable, params,
                    reference: np.ndarray) -> tuple:
    """(windows index, decoys index, reference windows, their decoys): both indexes trained on the
    same sample and filled with every corrected window and decoy; the reference rows as read."""
    n, dim = emb.shape
    n_decoys = decoys.shape[1]
    nlist = max(1, min(int(math.sqrt(n)), n // 39))  # training k-means costs nlist x sample x dim per pass

    # train on a spread sample of windows and decoys together (the 8-bit ranges must fit both
    # alike), of the size k-means uses; filled in place, not concatenated from parts
    step = max(1, math.ceil(n / min(TRAINING_ROWS, KMEANS_ROWS_PER_LIST * nlist // 2)))
    per_block = [(r0, r1, len(range(r0, r1, step))) for r0, r1 in _blocks(n)]
    sample = np.empty((2 * sum(m for _, _, m in per_block), dim), np.float32)
    at = 0
    for r0, r1, m in per_block:  # only the sampled rows are read
        sample[at:at + m], sample[at + m:at + 2 * m] = corrected(emb[r0:r1:step]), corrected(decoys[r0:r1:step, 0])
        at += 2 * m
    windows_index = trained_index(faiss, sample, nlist, params.index)
    del sample
    decoys_index = faiss.clone_index(windows_index)  # the same lists (centroids) and codes

    # FAISS's `add` appends to std::vector lists, which grow by doubling: up to twice the codes
    # (11.2-13.5 GB peak at a million windows). Instead: pass 1 assigns every window and decoy to
    # its list, each list is sized once to its final length, pass 2 encodes and writes the codes
    # in place. Ids are row numbers (decoys: row x n_decoys + j), as `add` in row order gives them.
    quantizer = windows_index.quantizer
    assign = lambda x: quantizer.search(x, 1)[1][:, 0].astype(np.int64)  # noqa: E731
    window_lists, decoy_lists = np.empty(n, np.int64), np.empty(n * n_decoys, np.int64)
    for r0, r1 in _blocks(n):
        window_lists[r0:r1] = assign(corrected(emb[r0:r1]))
        decoy_lists[r0 * n_decoys:r1 * n_decoys] = assign(corrected(decoys[r0:r1].reshape(-1, dim)))
    filled = [reserve(windows_index, window_lists), reserve(decoys_index, decoy_lists)]
    ref_parts, ref_decoy_parts = [], []
    for r0, r1 in _blocks(n):
        block, decoy_block = corrected(emb[r0:r1]), corrected(decoys[r0:r1].reshape(-1, dim))
        d0, d1 = r0 * n_decoys, r1 * n_decoys
        place(faiss, windows_index, block, np.arange(r0, r1), window_lists[r0:r1], filled[0])
        place(faiss, decoys_index, decoy_block, np.arange(d0, d1), decoy_lists[d0:d1], filled[1])
        picked = reference[(reference >= r0) & (reference < r1)] - r0
        ref_parts.append(block[picked])
        ref_decoy_parts.append(decoy_block.reshape(r1 - r0, n_decoys, dim)[picked].reshape(-1, dim))
    del window_lists, decoy_lists
    for index, lists_filled in zip((windows_index, decoys_index), filled):
        assert all(lists_filled == [index.invlists.list_size(i) for i in range(nlist)]), "a list was not filled"
        index.make_direct_map(True)
        index.nprobe = params.nprobe or max(1, min(nlist // 8, 64))
    return windows_index, decoys_index, np.concatenate(ref_parts), np.concatenate(ref_decoy_parts)


def _moments(sims: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(sum, sum of squares, count) per row of the similarities where `ok`, in float64."""
    kept = np.where(ok, sims, 0.0).astype(np.float64)
    return np.stack([kept.sum(1), (kept ** 2).sum(1), ok.sum(1)], -1)
