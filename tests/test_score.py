import numpy as np
import pandas as pd
import pytest
import torch

from evoscan.score import ScoreParams, blocked_topk, overlapping_pairs, score_pairs, unordered_pairs
from evoscan.windows import WindowParams, WindowSet


def random_layout(rng, n):
    """Windows of 5 genes on 2 chromosomes, shuffled, some overlapping across genes."""
    gene = rng.choice(list("ABCDE"), size=n)
    chrom = np.where(np.isin(gene, ["A", "B", "C"]), "chr1", "chr2")
    start = rng.integers(0, 20_000, size=n)
    return gene, chrom, start, start + 512


def brute_force(emb, gene, chrom, start, end, k):
    sims = emb @ emb.T
    excluded = (gene[:, None] == gene[None, :]) | (
        (chrom[:, None] == chrom[None, :]) & (start[:, None] < end[None, :]) & (start[None, :] < end[:, None]))
    sims[excluded] = -np.inf
    out = set()
    for i in range(len(emb)):
        for j in np.argsort(-sims[i], kind="stable")[:k]:
            if np.isfinite(sims[i, j]):
                out.add((i, int(j)))
    return out, sims


def test_overlapping_pairs_match_brute_force():
    rng = np.random.default_rng(1)
    gene, chrom, start, end = random_layout(rng, 300)
    i, j = overlapping_pairs(chrom, start, end)
    got = {(min(a, b), max(a, b)) for a, b in zip(i, j)}
    want = {(a, b) for a in range(300) for b in range(a + 1, 300)
            if chrom[a] == chrom[b] and start[a] < end[b] and start[b] < end[a]}
    assert got == want and len(i) == len(want)


@pytest.mark.parametrize("block_rows", [1, 7, 64, 0])
def test_blocked_topk_equals_brute_force(block_rows):
    rng = np.random.default_rng(2)
    n, d, k = 257, 16, 5
    gene, chrom, start, end = random_layout(rng, n)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ov_i, ov_j = overlapping_pairs(chrom, start, end)
    cross = gene[ov_i] != gene[ov_j]
    rows, cols, vals = blocked_topk(torch.from_numpy(emb), gene, k, (ov_i[cross], ov_j[cross]), block_rows)
    want, sims = brute_force(emb, gene, chrom, start, end, k)
    assert set(zip(rows.tolist(), cols.tolist())) == want
    assert np.allclose(vals, sims[rows, cols], atol=1e-5)
    assert not (gene[rows] == gene[cols]).any()


def make_ws(gene, chrom, start, size=512):
    rng = np.random.default_rng(len(gene))
    table = pd.DataFrame({"id": [f"w{i}" for i in range(len(gene))], "gene": gene, "chrom": chrom,
                          "start": start, "end": start + size, "strand": "+", "region": "intron",
                          "gc": rng.uniform(0.4, 0.6, len(gene)), "cpg_oe": 0.2, "n_frac": 0.0,
                          "softmask_frac": 0.0})
    seqs = np.array(["".join(rng.choice(list("ACGT"), size)).encode() for _ in gene])
    return WindowSet(table, seqs, WindowParams(size=size))


# The filter logic alone: no correction, every pair counted significant.
FILTERS_ONLY = dict(correction="none", max_qvalue=1.0, background=2, sw_shuffles=5)


def test_filters_and_funnel():
    # 4 windows of 4 genes; emb makes (0,1) and (2,3) the closest pairs
    emb = np.array([[1, 0.1, 0], [1, 0.2, 0], [0, 1, 0.1], [0, 1, 0.2]], dtype=np.float32)
    ws = make_ws(np.array(["A", "B", "C", "D"]), np.array(["c1"] * 4), np.array([0, 1000, 2000, 3000]))
    repeat = np.array([0.0, 0.05, 0.5, 0.0], dtype=np.float32)
    hits = pd.DataFrame({"window_a": [0], "window_b": [1], "evalue": [1e-3], "bitscore": [40.0],
                         "pident": [90.0], "length": [50]})
    pairs, funnel, _ = score_pairs(ws, emb, repeat, hits, ScoreParams(top_k=1, **FILTERS_ONLY))
    by_pair = pairs.set_index(["window_a", "window_b"])
    assert set(by_pair.index) == {(0, 1), (2, 3)}
    assert not by_pair.loc[(0, 1), "candidate"] and by_pair.loc[(0, 1), "blast_hit"]
    assert not by_pair.loc[(2, 3), "candidate"] and not by_pair.loc[(2, 3), "repeat_free"]
    assert funnel == {"window_pairs": 6, "cross_gene": 6, "scored": 2, "repeat_free": 1,
                      "no_blast_hit": 0, "significant": 0, "no_sw_homology": 0, "candidates": 0}
    # relaxing the filters lets both through
    pairs, funnel, _ = score_pairs(ws, emb, repeat, hits, ScoreParams(top_k=1, max_repeat_frac=0.6,
                                                                        max_blast_evalue=1e-6, **FILTERS_ONLY))
    assert pairs["candidate"].all() and funnel["candidates"] == 2
    assert np.isnan(pairs.set_index(["window_a", "window_b"]).loc[(2, 3), "blast_evalue"])


def test_same_gene_and_overlapping_windows_are_never_paired():
    emb = np.ones((4, 3), dtype=np.float32)  # everything identical: only exclusions decide
    ws = make_ws(np.array(["A", "A", "B", "C"]), np.array(["c1", "c1", "c1", "c2"]),
                 np.array([0, 600, 300, 0]))
    pairs, funnel, _ = score_pairs(ws, emb, np.zeros(4, np.float32), pd.DataFrame(
        columns=["window_a", "window_b", "evalue", "bitscore", "pident", "length"]),
        ScoreParams(top_k=3, **FILTERS_ONLY))
    got = set(zip(pairs.window_a, pairs.window_b))
    # (0,1) same gene; (0,2) and (1,2) overlap on c1
    assert got == {(0, 3), (1, 3), (2, 3)}
    assert funnel["cross_gene"] == 6 - 1 - 2


def test_unordered_pairs_keep_one_row_each():
    pairs = unordered_pairs(np.array([0, 1, 2]), np.array([1, 0, 0]), np.array([0.9, 0.9, 0.5]))
    assert pairs[["window_a", "window_b"]].values.tolist() == [[0, 1], [0, 2]]


def test_family_table_flags_paralog_pairs(tmp_path):
    from evoscan.errors import EvoscanError
    from evoscan.score import read_families

    table = tmp_path / "families.tsv"
    table.write_text("# gene\tfamily\nA\tIF_type3\nB\tIF_type3\nC\tmyosin\n")
    families = read_families(table)
    assert families == {"A": "IF_type3", "B": "IF_type3", "C": "myosin"}
    emb = np.array([[1, 0.1, 0], [1, 0.2, 0], [0, 1, 0.1], [0, 1, 0.2]], dtype=np.float32)
    ws = make_ws(np.array(["A", "B", "C", "D"]), np.array(["c1"] * 4), np.array([0, 1000, 2000, 3000]))
    pairs, _, _ = score_pairs(ws, emb, np.zeros(4, np.float32), pd.DataFrame(
        columns=["window_a", "window_b", "evalue", "bitscore", "pident", "length"]),
        ScoreParams(top_k=1, **FILTERS_ONLY), families=families)
    flagged = pairs.set_index(["window_a", "window_b"])["same_family"]
    assert flagged.loc[(0, 1)] and not flagged.loc[(2, 3)]  # C and D: D has no family
    assert pairs.set_index(["window_a", "window_b"]).loc[(0, 1), "candidate"]  # flagged, not dropped
    bad = tmp_path / "bad.tsv"
    bad.write_text("just one column\n")
    with pytest.raises(EvoscanError, match="two-column TSV of gene and family"):
        read_families(bad)
