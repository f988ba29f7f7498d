"""The checks on nominated pairs: one competition per pair, filters and funnel, family flags."""

import numpy as np
import pandas as pd
import pytest

from evoscan.check import CheckParams, check_pairs, nominated_pairs, read_families
from evoscan.errors import EvoscanError
from evoscan.search import Neighbours
from evoscan.windows import WindowParams, WindowSet

NO_HITS = pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                        zip(["window_a", "window_b", "evalue", "bitscore", "pident", "length"],
                            ["i8", "i8", "f8", "f4", "f4", "i8"])})


def four_windows():
    rng = np.random.default_rng(4)
    table = pd.DataFrame({"id": [f"w{i}" for i in range(4)], "gene": list("ABCD"), "chrom": "c1",
                          "start": [0, 1000, 2000, 3000], "end": [512, 1512, 2512, 3512], "strand": "+",
                          "region": "intron", "gc": 0.5, "cpg_oe": 0.2, "n_frac": 0.0, "softmask_frac": 0.0})
    seqs = np.array(["".join(rng.choice(list("ACGT"), 512)).encode() for _ in range(4)])
    return WindowSet(table, seqs, WindowParams())


def neighbours(query, neighbour, score, decoys):
    """Neighbours with every window's and decoy's similarity distribution N(0, 0.1)."""
    sums = lambda shape: np.stack([np.zeros(shape), np.full(shape, 0.01 * 100), np.full(shape, 100)], -1)  # noqa: E731
    entries = pd.DataFrame({"query": query, "neighbour": neighbour, "score": np.float32(score),
                            "cosine": np.float32(score)})
    return Neighbours(entries, np.asarray(decoys, np.float32), 1, (0, 4), sums((4,)), sums((4,)), sums((4, 1)))


def test_a_pair_found_from_both_ends_competes_once():
    # pair (0,1) from both ends: the same three scores, decoy halves swapped
    nb = neighbours([0, 1, 2], [1, 0, 3], [0.5, 0.5, 0.1], [[0.1, 0.2], [0.2, 0.1], [0.3, 0.0]])
    pairs = nominated_pairs(nb)
    assert pairs[["window_a", "window_b"]].values.tolist() == [[0, 1], [2, 3]]
    assert pairs["score_z"].tolist() == pytest.approx([5.0, 1.0])  # (0.5 - 0) / 0.1
    assert pairs["margin"].tolist() == pytest.approx([3.0, -2.0])  # against the best decoy, 0.2 / 0.3
    assert pairs["qvalue"].iloc[1] == 1.0  # a decoy won
    # decoy halves in the documented order whichever end held the pair: window_a with window_b's
    # decoys, then window_a's decoys with window_b (the entry of window 1 had them the other way)
    assert pairs.attrs["decoy_z"][0].tolist() == pytest.approx([1.0, 2.0])
    from_b = nominated_pairs(neighbours([1, 2], [0, 3], [0.5, 0.1], [[0.2, 0.1], [0.3, 0.0]]))
    assert from_b.attrs["decoy_z"][0].tolist() == pytest.approx([1.0, 2.0])


def test_qvalues_among_the_pairs_calls_are_made_from():
    """Pairs stopped by the repeat filter or BLAST do not lend their wins to the rest: `qvalue` is
    computed among repeat-free pairs without a BLAST hit, `qvalue_all` among all."""
    ws = four_windows()
    nb = neighbours([0, 2, 1], [1, 3, 3], [0.9, 0.4, 0.2], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    hits = pd.DataFrame({"window_a": [0], "window_b": [1], "evalue": [1e-30], "bitscore": [200.0],
                         "pident": [99.0], "length": [400]})
    pairs, _, stats = check_pairs(ws, nb, np.zeros(4, np.float32), CheckParams(sw_shuffles=5), hits=hits)
    by_pair = pairs.set_index(["window_a", "window_b"])
    assert np.isnan(by_pair.loc[(0, 1), "qvalue"]) and by_pair.loc[(0, 1), "qvalue_all"] < 1
    assert by_pair["qvalue"].notna().sum() == 2 and stats["population_pairs"] == 2
    assert stats["target_win_fraction"] == 1.0


def test_filters_and_funnel():
    ws = four_windows()
    nb = neighbours([0, 2], [1, 3], [0.5, 0.4], [[0.0, 0.0], [0.0, 0.0]])
    repeat = np.array([0.0, 0.05, 0.5, 0.0], dtype=np.float32)
    hits = pd.DataFrame({"window_a": [0], "window_b": [1], "evalue": [1e-3], "bitscore": [40.0],
                         "pident": [90.0], "length": [50]})
    params = CheckParams(max_qvalue=1.0, sw_shuffles=5)
    pairs, funnel, stats = check_pairs(ws, nb, repeat, params, hits=hits)
    by_pair = pairs.set_index(["window_a", "window_b"])
    assert by_pair.loc[(0, 1), "blast_hit"] and not by_pair.loc[(0, 1), "candidate"]
    assert not by_pair.loc[(2, 3), "repeat_free"] and not by_pair.loc[(2, 3), "candidate"]
    assert funnel == {"window_pairs": 6, "cross_gene": 6, "nominated": 2, "repeat_free": 1,
                      "no_blast_hit": 0, "significant": 0, "no_sw_homology": 0, "candidates": 0}
    assert stats["blast_mode"] == "all-vs-all" and pairs.attrs["decoy_z"].shape == (2, 2)
    # relaxing the filters lets both through, and Smith-Waterman then runs on them
    pairs, funnel, _ = check_pairs(ws, nb, repeat, CheckParams(max_qvalue=1.0, sw_shuffles=5, max_repeat_frac=0.6,
                                                               max_blast_evalue=1e-6), hits=hits)
    assert pairs["candidate"].all() and funnel["candidates"] == 2 and pairs["sw_score"].notna().all()


def test_family_table_flags_paralog_pairs(tmp_path):
    table = tmp_path / "families.tsv"
    table.write_text("# gene\tfamily\nA\tIF_type3\nB\tIF_type3\nC\tmyosin\n")
    families = read_families(table)
    assert families == {"A": "IF_type3", "B": "IF_type3", "C": "myosin"}
    nb = neighbours([0, 2], [1, 3], [0.5, 0.4], [[0.0, 0.0], [0.0, 0.0]])
    pairs, _, _ = check_pairs(four_windows(), nb, np.zeros(4, np.float32), CheckParams(max_qvalue=1.0, sw_shuffles=5),
                              hits=NO_HITS, families=families)
    flagged = pairs.set_index(["window_a", "window_b"])
    assert flagged.loc[(0, 1), "same_family"] and not flagged.loc[(2, 3), "same_family"]  # D has no family
    assert flagged.loc[(0, 1), "candidate"]  # flagged, not dropped
    # two genes without a family are not one family
    pairs, _, _ = check_pairs(four_windows(), nb, np.zeros(4, np.float32), CheckParams(max_qvalue=1.0, sw_shuffles=5),
                              hits=NO_HITS, families={"A": "IF_type3", "B": "IF_type3", "C": ""})
    assert pairs["same_family"].tolist() == [True, False]
    bad = tmp_path / "bad.tsv"
    bad.write_text("just one column\n")
    with pytest.raises(EvoscanError, match="two-column TSV of gene and family"):
        read_families(bad)


def test_kmer_cosine_of_pairs_equals_the_kmer_backend():
    from evoscan.backends.kmer import KmerBackend
    from evoscan.check import kmer_cosine

    rng = np.random.default_rng(1)
    seqs = np.array(["".join(rng.choice(list("ACGT"), 512)).encode() for _ in range(300)])
    ws = WindowSet(pd.DataFrame({"id": range(300)}), seqs, WindowParams())
    a, b = rng.integers(0, 300, 5000), rng.integers(0, 300, 5000)
    vectors = KmerBackend(6).embed([s.decode() for s in seqs])
    assert np.allclose(kmer_cosine(ws, a, b, block=700), np.einsum("pd,pd->p", vectors[a], vectors[b]), atol=1e-6)


def test_motif_cosine_of_pairs_in_blocks_equals_the_profiles_cosine():
    from evoscan.check import motif_cosine
    from evoscan.motifs import MotifProfiler

    rng = np.random.default_rng(2)
    seqs = np.array(["".join(rng.choice(list("ACGT"), 512)).encode() for _ in range(40)])
    ws = WindowSet(pd.DataFrame({"id": range(40)}), seqs, WindowParams())
    a, b = rng.integers(0, 40, 500), rng.integers(0, 40, 500)
    profiler = MotifProfiler()
    vectors = profiler.vectors([s.decode() for s in seqs]).astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = np.einsum("pd,pd->p", vectors[a], vectors[b])
    got, resumed = motif_cosine(ws, a, b, profiler, batch=16, block=37)
    assert got.dtype == np.float32 and np.allclose(got, expected, atol=1e-6)
    assert np.array_equal(got, motif_cosine(ws, a, b, profiler)[0]) and resumed == 0  # blocks change no digit


def test_killed_motif_profiling_resumes_from_its_finished_blocks(tmp_path, monkeypatch):
    """The motif profiles of a check (an hour at a million windows) are kept block by block: a
    run stopped mid-way continues from the finished blocks, profiles only the rest, and ends
    with the profiles an uninterrupted run computes."""
    from evoscan import check
    from evoscan.motifs import MotifProfiler

    monkeypatch.setattr(check, "PROFILE_BLOCK", 8)
    rng = np.random.default_rng(3)
    seqs = np.array(["".join(rng.choice(list("ACGT"), 300)).encode() for _ in range(30)])
    table = pd.DataFrame({"id": [f"w{i}" for i in range(30)], "chrom": "chr1", "start": np.arange(30) * 300,
                          "end": np.arange(1, 31) * 300, "strand": "+"})
    ws = WindowSet(table, seqs, WindowParams())
    rows = np.array([0, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 1, 4, 6, 8, 9, 10, 12, 14])  # 19: 3 blocks
    profiler = MotifProfiler()
    whole, _ = check.motif_profiles(ws, rows, profiler, batch=4)
    real, calls = profiler.vectors, []

    def stopped_on_fourth_call(seqs):
        calls.append(len(seqs))
        if len(calls) == 4:  # the second block's second batch: one block finished
            raise KeyboardInterrupt
        return real(seqs)

    monkeypatch.setattr(profiler, "vectors", stopped_on_fourth_call)
    with pytest.raises(KeyboardInterrupt):
        check.motif_profiles(ws, rows, profiler, tmp_path / "kept", batch=4)
    assert len(list((tmp_path / "kept").glob("block*.npz"))) == 1
    calls.clear()
    monkeypatch.setattr(profiler, "vectors", lambda seqs: calls.append(len(seqs)) or real(seqs))
    resumed, blocks = check.motif_profiles(ws, rows, profiler, tmp_path / "kept", batch=4)
    assert sum(calls) == len(rows) - 8 and blocks == 1  # the finished block was not profiled again
    assert np.array_equal(resumed, whole)
    other, blocks = check.motif_profiles(ws, rows[::-1].copy(), profiler, tmp_path / "kept", batch=4)
    assert blocks == 0
    assert np.array_equal(other, whole[::-1])  # other rows: the kept blocks are not theirs
