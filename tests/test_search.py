"""The streamed exact search: equal to brute force for windows and decoys, whatever the memory
budget; exclusions; chunks merged equal the whole search; reduced precision agrees with fp32."""

import math

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from evoscan.errors import EvoscanError
from evoscan.search import (SearchParams, block_moments, block_rows, chunk_rows, exact, overlapping_pairs, search,
                            space, write_neighbours, merge_neighbours, read_neighbours)
from evoscan.search.space import Exclusions
from evoscan.windows import WindowParams, WindowSet


def random_layout(rng, n, genes=5):
    """Windows of `genes` genes on 2 chromosomes, shuffled, some overlapping across genes."""
    names = list("ABCDE") if genes == 5 else [f"G{i}" for i in range(genes)]
    gene = rng.choice(names, size=n)
    chrom = np.where(np.isin(gene, names[:3 * genes // 5]), "chr1", "chr2")
    start = rng.integers(0, 20_000, size=n)
    return gene, chrom, start, start + 512


def make_ws(gene, chrom, start, size=512):
    rng = np.random.default_rng(len(gene))
    table = pd.DataFrame({"id": [f"w{i}" for i in range(len(gene))], "gene": gene, "chrom": chrom,
                          "start": start, "end": start + size, "strand": "+", "region": "intron",
                          "gc": rng.uniform(0.4, 0.6, len(gene)), "cpg_oe": 0.2, "n_frac": 0.0,
                          "softmask_frac": 0.0})
    seqs = np.array(["".join(rng.choice(list("ACGT"), size)).encode() for _ in gene])
    return WindowSet(table, seqs, WindowParams(size=size))


def random_embeddings(path, dim, n=700, n_decoys=2, genes=5):
    rng = np.random.default_rng(2)
    gene, chrom, start, end = random_layout(rng, n, genes)
    emb = rng.normal(size=(n, dim)).astype(np.float32) + 0.5  # off-centre, as pooled LM embeddings are
    decoys = rng.normal(size=(n, n_decoys, dim)).astype(np.float32) + 0.5
    with h5py.File(path, "w") as f:
        f["embeddings"], f["decoys"] = emb, decoys
    return make_ws(gene, chrom, start), emb, decoys, path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return random_embeddings(tmp_path_factory.mktemp("search") / "emb.h5", 16)


@pytest.fixture(scope="module")
def wide_data(tmp_path_factory):
    """Wide enough that 64 MB splits the windows into database blocks as well as query blocks."""
    return random_embeddings(tmp_path_factory.mktemp("search") / "wide.h5", 1024)


@pytest.fixture(scope="module")
def many_genes_data(tmp_path_factory):
    """60 genes: a block's excluded pairs are few, and given as indices rather than a mask."""
    return random_embeddings(tmp_path_factory.mktemp("search") / "many.h5", 16, genes=60)


@pytest.fixture(scope="module")
def wider_data(tmp_path_factory):
    """Too wide for 64 MB to hold the transformed database: it is read again for every query block."""
    return random_embeddings(tmp_path_factory.mktemp("search") / "wider.h5", 4096)


def brute_force(ws, emb, decoys, k, correction):
    """Slots by the best of a pair's 1 + 2D scores: (slots {(query, window): (score, decoy scores)}, raw,
    excluded, the sums of every allowed similarity {window_sums, window_decoy_sums, decoy_sums})."""
    pooled = np.concatenate([emb, decoys.reshape(-1, emb.shape[1])]).astype(np.float64)
    mean = pooled.mean(0) if correction != "none" else 0
    scale = pooled.std(0) + 1e-6 if correction == "standardize" else 1
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    e, d = unit((emb - mean) / scale), unit((decoys - mean) / scale)
    t = ws.table
    gene, chrom, start, end = (t[c].to_numpy() for c in ("gene", "chrom", "start", "end"))
    excluded = (gene[:, None] == gene[None, :]) | (
        (chrom[:, None] == chrom[None, :]) & (start[:, None] < end[None, :]) & (start[None, :] < end[:, None]))
    sims = e @ e.T
    dsims = np.concatenate([np.einsum("id,jcd->ijc", e, d),  # i with j's decoys, i's decoys with j
                            np.einsum("icd,jd->ijc", d, e)], 2)
    slot = np.maximum(sims, dsims.max(2))
    slot[excluded] = -np.inf
    slots = {(i, int(j)): (sims[i, j], dsims[i, j]) for i in range(len(e)) for j in np.argsort(-slot[i])[:k]}
    allowed = ~excluded
    their, ours = dsims[:, :, :decoys.shape[1]], dsims[:, :, decoys.shape[1]:]
    moments = lambda x, ok, axes: np.stack([(x * ok).sum(axes), (x * x * ok).sum(axes)], -1)  # noqa: E731
    sums = {"window_sums": moments(sims, allowed, 1), "window_decoy_sums": moments(their, allowed[:, :, None], (1, 2)),
            "decoy_sums": moments(ours, allowed[:, :, None], 1)}
    return slots, unit(emb), excluded, sums


def assert_brute_force(nb, ws, emb, decoys, correction):
    slots, raw, excluded, sums = brute_force(ws, emb, decoys, 5, correction)
    e = nb.entries
    keys = list(zip(e["query"], e["neighbour"]))
    assert set(keys) == set(slots) and len(keys) == 700 * 5
    assert np.allclose(e["score"], [slots[x][0] for x in keys], atol=1e-5)
    assert np.allclose(nb.decoy_scores, [slots[x][1] for x in keys], atol=1e-5)
    assert np.allclose(e["cosine"], np.einsum("pd,pd->p", raw[e["query"]], raw[e["neighbour"]]), atol=1e-5)
    gene = ws.table["gene"].to_numpy()
    assert not (gene[e["query"]] == gene[e["neighbour"]]).any()
    # the running sums behind the normalisation: every allowed similarity of each window, once
    assert np.array_equal(nb.window_sums[:, 2], (~excluded).sum(1))
    for name, want in sums.items():
        np.testing.assert_allclose(getattr(nb, name)[..., :2], want, rtol=1e-5, atol=1e-3, err_msg=name)


@pytest.mark.parametrize("correction,memory_mb,dataset,split", [
    ("none", 2048, "data", False), ("standardize", 64, "data", False), ("center", 2048, "data", False),
    ("standardize", 64, "wide_data", True), ("standardize", 64, "wider_data", True),
    ("standardize", 2048, "many_genes_data", False)])
def test_search_equals_brute_force(request, correction, memory_mb, dataset, split):
    ws, emb, decoys, path = request.getfixturevalue(dataset)
    query_rows, db_rows = block_rows(len(ws), emb.shape[1], decoys.shape[1], memory_mb)
    assert (db_rows < len(ws)) == split and query_rows < len(ws)  # top-k and sums merged across blocks
    with h5py.File(path) as f:
        nb = search(f, ws, SearchParams(top_k=5, correction=correction, memory_mb=memory_mb))
    assert_brute_force(nb, ws, emb, decoys, correction)


def test_a_database_held_from_many_reads_equals_brute_force(wide_data, monkeypatch):
    """The held database is put together from the statistics pass's reads: here 8 reads of 96
    rows, and database blocks that begin and end inside them."""
    ws, emb, decoys, path = wide_data
    monkeypatch.setattr(space, "STATS_ROWS", 96)
    assert block_rows(len(ws), emb.shape[1], decoys.shape[1], 64)[1] % 96
    read = []
    stats = space.embedding_stats
    monkeypatch.setattr(exact, "embedding_stats", lambda *a, keep=None, **kw: stats(
        *a, keep=keep and (lambda r0, *rows: (read.append(r0), keep(r0, *rows))), **kw))
    with h5py.File(path) as f:
        nb = search(f, ws, SearchParams(top_k=5, correction="standardize", memory_mb=64))
    assert read == list(range(0, 700, 96))
    assert_brute_force(nb, ws, emb, decoys, "standardize")


@pytest.mark.parametrize("genes", [5, 60])
def test_exclusions_of_a_block_are_its_same_group_and_overlapping_pairs(genes):
    """The excluded pairs of any block are those of the dense rule (one gene, or overlapping across
    genes), each once, with the genes' windows interleaved in row order: as indices where they are
    few (60 genes), as a mask where they are many (5 genes)."""
    rng = np.random.default_rng(3)
    gene, chrom, start, end = random_layout(rng, 400, genes)
    ws = make_ws(gene, chrom, start)
    dense = (gene[:, None] == gene[None, :]) | (
        (chrom[:, None] == chrom[None, :]) & (start[:, None] < end[None, :]) & (start[None, :] < end[:, None]))
    exclusions = Exclusions(ws, "cpu")
    for q0, q1, c0, c1 in [(0, 400, 0, 400), (0, 1, 0, 400), (37, 150, 210, 399), (399, 400, 0, 1), (5, 90, 90, 91)]:
        want = torch.from_numpy(dense[q0:q1, c0:c1])
        excluded = exclusions.block(q0, q1, c0, c1)
        if (q1 - q0) * (c1 - c0) > 1000:
            assert (excluded.mask is None) == (genes == 60)
        if excluded.mask is None:  # each pair once: the counts below would not show a pair given twice
            assert len(excluded.rows) == want.sum()
        assert torch.equal(excluded.allowed(), (~want).sum(1))
        for shape, at, wanted in [((q1 - q0, c1 - c0), None, want), ((q1 - q0, c1 - c0, 2), 2, want[:, :, None]),
                                  ((q1 - q0, 2, c1 - c0), 1, want[:, None, :])]:
            x = torch.zeros(shape)
            excluded.fill(x, 1.0, decoys_at=at)
            assert torch.equal(x.bool(), wanted.expand(shape))


@pytest.mark.parametrize("memory_mb,reads", [(2048, 1), (64, None)])
def test_a_held_database_is_read_from_the_file_once(wide_data, wider_data, monkeypatch, memory_mb, reads):
    """Where the transformed database fits half the budget, the statistics pass keeps the rows it
    reads and nothing is read again (queries included); where it does not, it is re-read for every
    query block."""
    ws, emb, decoys, path = wide_data if reads else wider_data
    read = {"embeddings": 0, "decoys": 0}
    get = h5py.Dataset.__getitem__

    def counted(self, key):
        rows = get(self, key)
        read[self.name.strip("/")] += len(rows)
        return rows

    monkeypatch.setattr(h5py.Dataset, "__getitem__", counted)
    with h5py.File(path) as f:
        search(f, ws, SearchParams(top_k=3, memory_mb=memory_mb), chunk=(2, 3))
    q_rows = block_rows(len(ws), emb.shape[1], decoys.shape[1], memory_mb, top_k=3)[0]
    lo, hi = chunk_rows((2, 3), len(ws), q_rows)
    # the statistics pass; then, streamed, every query block's rows and the whole database again
    want = len(ws) if reads else len(ws) + (hi - lo) + len(ws) * math.ceil((hi - lo) / q_rows)
    assert read == {"embeddings": want, "decoys": want}


def test_small_budget_streams_many_blocks(data):
    ws, *_ = data
    q, c = block_rows(len(ws), 1024, 2, 64)
    assert q < len(ws) and c < len(ws)
    q, c = block_rows(1_000_000, 2080, 1, 2048)  # a million windows in 2 GB: blocks, never N x N
    assert q * c * 2 * 4 * 3 <= 1024 * 2**20 and c * 2080 * 4 * 6 <= 512 * 2**20 and q >= 64


def test_same_gene_and_overlapping_windows_are_never_paired(tmp_path):
    ws = make_ws(np.array(["A", "A", "B", "C"]), np.array(["c1", "c1", "c1", "c2"]), np.array([0, 600, 300, 0]))
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["embeddings"], f["decoys"] = np.ones((4, 3), np.float32), np.ones((4, 1, 3), np.float32)
    with h5py.File(tmp_path / "e.h5") as f:
        nb = search(f, ws, SearchParams(top_k=3, correction="none"))
    # (0,1) same gene; (0,2) and (1,2) overlap on c1: only pairs with window 3 remain
    pairs = {tuple(sorted(p)) for p in zip(nb.entries["query"], nb.entries["neighbour"])}
    assert pairs == {(0, 3), (1, 3), (2, 3)}
    assert nb.window_sums[:, 2].tolist() == [1, 1, 1, 3]  # the windows each may pair with
    one = make_ws(np.array(["A", "A"]), np.array(["c1", "c1"]), np.array([0, 600]))
    with h5py.File(tmp_path / "e.h5") as f, pytest.raises(EvoscanError, match="at least two"):
        search(f, one, SearchParams())


def test_chunks_merge_to_the_whole_search(data, tmp_path):
    ws, emb, decoys, path = data
    params = SearchParams(top_k=4, memory_mb=64)
    q_rows, _ = block_rows(len(ws), 16, 2, 64)
    assert chunk_rows((3, 3), len(ws), q_rows)[1] == len(ws)
    with h5py.File(path) as f:
        whole = search(f, ws, params)
        parts = []
        for i in (2, 1, 3):
            nb = search(f, ws, params, chunk=(i, 3))
            write_neighbours(tmp_path / f"n{i}.h5", ws, nb, params, {"backend": "test"})
            parts.append(tmp_path / f"n{i}.h5")
    merge_neighbours(parts, ws, tmp_path / "merged.h5")
    merged, meta = read_neighbours(tmp_path / "merged.h5", ws)
    pd.testing.assert_frame_equal(merged.entries, whole.entries)
    for name in ("decoy_scores", "window_sums", "decoy_sums"):
        assert np.array_equal(getattr(merged, name), getattr(whole, name)), name
    assert meta["params"]["top_k"] == 4
    with pytest.raises(EvoscanError, match="join the chunks"):
        read_neighbours(parts[0], ws)
    with pytest.raises(EvoscanError, match="search chunks cover"):
        merge_neighbours(parts[:2], ws, tmp_path / "gap.h5")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_agrees_with_fp32(data, precision):
    """Reduced precision changes scores by rounding only: near-identical neighbour lists."""
    ws, *_, path = data
    with h5py.File(path) as f:
        exact = search(f, ws, SearchParams(top_k=10))
        low = search(f, ws, SearchParams(top_k=10, precision=precision))
    ex = set(zip(exact.entries["query"], exact.entries["neighbour"]))
    lo = set(zip(low.entries["query"], low.entries["neighbour"]))
    assert len(ex & lo) / len(ex) >= 0.95
    both = exact.entries.merge(low.entries, on=["query", "neighbour"])
    tol = 0.02 if precision == "bf16" else 0.002
    assert (both["score_x"] - both["score_y"]).abs().max() < tol


@pytest.mark.parametrize("shape", [(50, 16), (50, 3, 16)])
def test_statistics_pass_is_the_same_in_numpy_and_torch(shape):
    """The correction's sums on CPU (numpy) and on a GPU (torch; run here as torch on "cpu:0") are
    the float64 sums, and both find the same rows not finite (a decoy row counts for its window)."""
    block = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    flat = block.reshape(-1, shape[-1]).astype(np.float64)
    as_given = {"cpu": lambda b: b, "cpu:0": torch.from_numpy}  # (a tensor on the device, as the pass uploads)
    for device in ("cpu", "cpu:0"):
        finite, sums, squares = block_moments(as_given[device](block), device)
        assert finite.all()
        np.testing.assert_allclose(sums, flat.sum(0), rtol=1e-12)
        np.testing.assert_allclose(squares, (flat ** 2).sum(0), rtol=1e-12)
    block[7].flat[5], block[31].flat[-1] = np.nan, -np.inf
    for device in ("cpu", "cpu:0"):
        assert np.flatnonzero(~block_moments(as_given[device](block), device)[0]).tolist() == [7, 31]


def test_overlapping_pairs_match_brute_force():
    rng = np.random.default_rng(1)
    gene, chrom, start, end = random_layout(rng, 300)
    i, j = overlapping_pairs(chrom, start, end)
    got = {(min(a, b), max(a, b)) for a, b in zip(i, j)}
    want = {(a, b) for a in range(300) for b in range(a + 1, 300)
            if chrom[a] == chrom[b] and start[a] < end[b] and start[b] < end[a]}
    assert got == want and len(i) == len(want)


def test_approximate_index_finds_the_exact_slots(data):
    """The FAISS index (8-bit vectors), searching every list: the exact slots up to quantisation,
    and the raw cosine of each pair exactly (read back from the file); with the default lists
    searched, never a same-gene or overlapping pair, and sums for every row."""
    ws, emb, decoys, path = data
    with h5py.File(path) as f:
        exact = search(f, ws, SearchParams(top_k=5))
        every_list = search(f, ws, SearchParams(top_k=5, index="ivf", nprobe=10_000))
        default = search(f, ws, SearchParams(top_k=5, index="ivf"))
    key = lambda nb: set(zip(nb.entries["query"], nb.entries["neighbour"]))  # noqa: E731
    assert len(key(exact) & key(every_list)) / len(key(exact)) >= 0.9
    both = exact.entries.merge(every_list.entries, on=["query", "neighbour"])
    assert (both["score_x"] - both["score_y"]).abs().max() < 0.02
    assert len(both) > 0 and (both["cosine_x"] - both["cosine_y"]).abs().max() < 1e-5
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)  # also where the exact search has no such pair
    e = default.entries
    assert np.abs(e["cosine"] - (unit[e["query"]] * unit[e["neighbour"]]).sum(1)).max() < 1e-5
    gene = ws.table["gene"].to_numpy()
    assert len(e) == 700 * 5 and not (gene[e["query"]] == gene[e["neighbour"]]).any()
    assert (default.window_sums[:, 2] > 0).all() and (default.decoy_sums[:, :, 2] > 0).all()
    assert default.decoy_scores.shape == (700 * 5, 4)


def test_product_quantised_index_scores_like_the_exact_search(data, tmp_path):
    """ivfpq (1-byte codes of 4 dimensions each): the exact raw cosine, never a same-gene
    pair, sums for every row, and scores within the quantisation's reach of the exact ones;
    too few windows to train its codebooks is a one-line error."""
    ws, emb, decoys, path = data
    with h5py.File(path) as f:
        exact = search(f, ws, SearchParams(top_k=5))
        pq = search(f, ws, SearchParams(top_k=5, index="ivfpq", nprobe=10_000))
    few = make_ws(*(c[:400] for c in random_layout(np.random.default_rng(2), 700)[:3]))
    with h5py.File(tmp_path / "few.h5", "w") as f:
        f["embeddings"], f["decoys"] = emb[:400], decoys[:400]
        with pytest.raises(EvoscanError, match="ivfpq needs at least 512 windows"):
            search(f, few, SearchParams(index="ivfpq"))
    with h5py.File(tmp_path / "prime.h5", "w") as f:  # 17 dimensions: one code of 17 or none
        f["embeddings"], f["decoys"] = np.ones((400, 17), np.float32), np.ones((400, 2, 17), np.float32)
        with pytest.raises(EvoscanError, match="cannot split 17 dimensions"):
            search(f, few, SearchParams(index="ivfpq"))
    e = pq.entries
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert len(e) == 700 * 5 and np.abs(e["cosine"] - (unit[e["query"]] * unit[e["neighbour"]]).sum(1)).max() < 1e-5
    gene = ws.table["gene"].to_numpy()
    assert not (gene[e["query"]] == gene[e["neighbour"]]).any()
    assert (pq.window_sums[:, 2] > 0).all() and pq.decoy_scores.shape == (700 * 5, 4)
    both = exact.entries.merge(e, on=["query", "neighbour"])
    key = lambda nb: set(zip(nb.entries["query"], nb.entries["neighbour"]))  # noqa: E731
    recall = len(key(exact) & key(pq)) / len(key(exact))
    assert 0.2 < recall < 0.99 and (both["score_x"] - both["score_y"]).abs().median() < 0.1  # chance: ~0.01


def test_product_quantised_index_trained_in_place_is_faiss_training():
    import faiss
    from evoscan.search.approximate import empty_index, pq_subquantizers, trained_index

    assert (pq_subquantizers(2080), pq_subquantizers(4096), pq_subquantizers(462), pq_subquantizers(4)) == (
        520, 1024, 77, 1)
    x = clustered_points(7, 3000, 32)
    own = empty_index(faiss, 32, 8, "ivfpq")
    own.train(x)
    mine = trained_index(faiss, x.copy(), 8, "ivfpq", encoder_rows=len(x))
    assert mine.is_trained and mine.pq.M == own.pq.M == 8
    assert (faiss.vector_to_array(mine.pq.centroids) == faiss.vector_to_array(own.pq.centroids)).all()
    assert (mine.quantizer.reconstruct_n(0, 8) == own.quantizer.reconstruct_n(0, 8)).all()
    part = trained_index(faiss, x.copy(), 8, "ivfpq", encoder_rows=600)  # codebooks from a fifth
    codebooks = [faiss.vector_to_array(ix.pq.centroids) for ix in (own, part)]
    assert (part.quantizer.reconstruct_n(0, 8) == own.quantizer.reconstruct_n(0, 8)).all()
    assert not np.array_equal(*codebooks) and np.abs(codebooks[1]).max() < 2 * np.abs(codebooks[0]).max()


def clustered_points(seed: int, n: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, dim)) + rng.normal(size=(8, dim))[rng.integers(0, 8, n)]).astype(np.float32)


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_index_lists_sized_once_hold_what_faiss_add_gives(kind):
    """The index filled list by list (every vector assigned first, each list sized once, then
    filled block by block) holds the same lists, ids and codes as FAISS's own `add` in row
    order, and searches alike: with 8-bit and with product-quantised codes."""
    import faiss
    from evoscan.search.approximate import empty_index, place, reserve

    x = clustered_points(5, 3000, 24)
    index = empty_index(faiss, 24, 16, kind)
    index.train(x)
    added = faiss.clone_index(index)
    added.add(x)
    lists = index.quantizer.search(x, 1)[1][:, 0].astype(np.int64)
    filled = reserve(index, lists)
    for r0, r1 in ((0, 1100), (1100, 1101), (1101, 3000)):  # blocks of uneven size, one of a single row
        place(faiss, index, x[r0:r1], np.arange(r0, r1), lists[r0:r1], filled)
    assert index.ntotal == added.ntotal == 3000 and filled.sum() == 3000
    for i in range(16):
        size = index.invlists.list_size(i)
        assert size == added.invlists.list_size(i) == filled[i]
        ids = [faiss.rev_swig_ptr(ix.invlists.get_ids(i), size).copy() for ix in (index, added)]
        codes = [faiss.rev_swig_ptr(ix.invlists.get_codes(i), size * index.code_size).copy() for ix in (index, added)]
        assert (ids[0] == ids[1]).all() and (codes[0] == codes[1]).all()
    index.nprobe = added.nprobe = 4
    assert (index.search(x[:200], 10)[1] == added.search(x[:200], 10)[1]).all()


def test_index_trained_in_place_is_faiss_training():
    """`_trained_index` gives FAISS's own `train` (lists and 8-bit ranges) when its range sample is
    the whole sample; with a spread part of it, the same lists and ranges that cover nearly all
    of the data."""
    import faiss
    from evoscan.search.approximate import empty_index, trained_index

    x = clustered_points(6, 4000, 24)
    own = empty_index(faiss, 24, 16)
    own.train(x)
    ranges = lambda ix: faiss.vector_to_array(ix.sq.trained)  # noqa: E731  per-dimension min, then span
    centroids = own.quantizer.reconstruct_n(0, 16)
    whole = trained_index(faiss, x.copy(), 16, encoder_rows=len(x))
    assert whole.is_trained and (whole.quantizer.reconstruct_n(0, 16) == centroids).all()
    assert (ranges(whole) == ranges(own)).all()
    part = trained_index(faiss, x.copy(), 16, encoder_rows=500)
    assert (part.quantizer.reconstruct_n(0, 16) == centroids).all()
    lo, span = ranges(part).reshape(2, 24)
    residuals = x - centroids[own.quantizer.search(x, 1)[1][:, 0]]
    inside = (residuals >= lo) & (residuals <= lo + span)
    assert 0.98 < inside.mean() < 1 and (ranges(part) != ranges(own)).any()


@pytest.mark.parametrize("index", ["exact", "ivf"])
def test_killed_search_resumes_and_ends_identical(loci_fasta, tmp_path, monkeypatch, index):
    """SIGKILL a real `evoscan search` at two moments; each rerun continues from the query blocks
    already finished (kept one file each) and the last ends with the file of an uninterrupted
    search, byte for byte (approximate: the rerun builds the same index again)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from evoscan import embed
    from evoscan.backends.kmer import KmerBackend
    from evoscan.search import read_neighbours
    from evoscan.windows import make_windows, write_windows

    ws = make_windows(WindowParams(), fasta=loci_fasta)
    write_windows(tmp_path / "w.h5", ws)
    embed.embed_windows(ws, KmerBackend(), tmp_path / "e.h5")
    args = [sys.executable, "-m", "evoscan.cli", "search", "--windows", str(tmp_path / "w.h5"),
            "--embeddings", str(tmp_path / "e.h5"), "--memory", "64", "--index", index]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the same `created` in both files
    whole = subprocess.run([*args, "-o", str(tmp_path / "whole.h5")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    out, partial = tmp_path / "n.h5", tmp_path / "n.h5.partial"
    for blocks_before_kill in (1, 3):
        proc = subprocess.Popen([*args, "-o", str(out)], stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while len(list(partial.glob("block*.npz"))) < blocks_before_kill and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not out.exists() and len(list(partial.glob("block*.npz"))) >= blocks_before_kill
    rerun = subprocess.run([*args, "-o", str(out)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    resumed = int(rerun.stderr.split("resumed ")[1].split()[0])
    assert resumed >= 3 and not partial.exists()
    a, _ = read_neighbours(out, ws)
    b, _ = read_neighbours(tmp_path / "whole.h5", ws)
    pd.testing.assert_frame_equal(a.entries, b.entries)
    for name in ("decoy_scores", "window_sums", "window_decoy_sums", "decoy_sums"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert out.read_bytes() == (tmp_path / "whole.h5").read_bytes()


def test_approximate_search_with_every_block_kept_builds_nothing(data, tmp_path, monkeypatch):
    """A search killed after its last query block (before its file was written) is finished
    from the kept blocks alone: the indexes, minutes to build at a million windows, are not."""
    from evoscan.search import approximate

    ws, _, _, path = data
    params = SearchParams(top_k=5, index="ivf")
    with h5py.File(path) as f:
        first = search(f, ws, params, resume_dir=tmp_path / "kept")

        def not_again(*args):
            raise AssertionError("the indexes were built again")

        monkeypatch.setattr(approximate, "_IndexedWindows", not_again)
        again = search(f, ws, params, resume_dir=tmp_path / "kept")
    assert again.resumed_blocks == len(list((tmp_path / "kept").glob("block*.npz"))) > 1
    pd.testing.assert_frame_equal(again.entries, first.entries)
    assert np.array_equal(again.decoy_sums, first.decoy_sums)


def test_heap_settings_do_nothing_where_the_c_library_is_not_glibc(monkeypatch):
    """On musl, macOS or Windows there is no libc.so.6 (or no mallopt / malloc_trim): the heap
    settings are skipped, and the search runs on that allocator as it is."""
    import ctypes

    from evoscan import heap

    def no_glibc(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    heap.hand_back_freed_memory(), heap.trim()  # glibc here: both called for real
    monkeypatch.setattr(ctypes, "CDLL", no_glibc)
    assert heap._libc() is None
    heap.hand_back_freed_memory(), heap.trim()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a C library without them
    heap.hand_back_freed_memory(), heap.trim()
