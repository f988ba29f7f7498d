"""Trust: the shuffle, the statistics, calibration on windows without signal, and power on
planted regulatory content (kmer backend; real GRCh38 windows as the composition source)."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import subset_fasta
from evoscan import trust
from evoscan.backends.kmer import KmerBackend
from evoscan.homology import gumbel_sf, sw_significance
from evoscan.nulls import bh_qvalues, dinucleotide_shuffle, predictive_pvalue, shuffles
from evoscan.score import ScoreParams, composition_features, score_pairs
from evoscan.windows import WindowParams, WindowSet, make_windows, reverse_complement

EMPTY_HITS = pd.DataFrame(columns=["window_a", "window_b", "evalue", "bitscore", "pident", "length"])


def dinucleotides(s):
    return Counter(s[i:i + 2] for i in range(len(s) - 1))


def test_dinucleotide_shuffle_keeps_composition_and_is_seeded():
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGTN"), 512, p=[0.3, 0.2, 0.2, 0.27, 0.03]))
    a = dinucleotide_shuffle(seq, np.random.default_rng([1, 2, 3]))
    assert a != seq and dinucleotides(a) == dinucleotides(seq) and (a[0], a[-1]) == (seq[0], seq[-1])
    assert a == dinucleotide_shuffle(seq, np.random.default_rng([1, 2, 3]))
    # chunk-independent: window 5's shuffles do not depend on which other windows are shuffled with it
    assert shuffles(["ACGT" * 30, seq], range(4, 6), 3, 9)[3:] == shuffles([seq], range(5, 6), 3, 9)


def test_predictive_pvalue_and_bh():
    rng = np.random.default_rng(1)
    null = rng.normal(size=(20000, 16))
    p = predictive_pvalue(rng.normal(size=20000), null)  # observed drawn like the null
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert predictive_pvalue(np.array([10.0]), null[:1])[0] < 1e-4
    q = bh_qvalues(np.array([0.001, 0.01, 0.02, 0.9]), m=10)
    assert np.allclose(q, [0.01, 0.05, 0.0666667, 1.0])


def test_smith_waterman_sees_diverged_homology_blast_settings_might_miss():
    rng = np.random.default_rng(2)
    r = lambda n: "".join(rng.choice(list("ACGT"), n))  # noqa: E731
    core = list(r(150))
    copy = core.copy()
    for pos in rng.choice(150, 45, replace=False):  # 70 % identity
        copy[pos] = "ACGT"[("ACGT".index(copy[pos]) + 1 + rng.integers(3)) % 4]
    a = r(200) + "".join(core) + r(162)
    b = r(100) + reverse_complement("".join(copy)) + r(262)
    score, z, p = sw_significance(a, b, 40, seed=1)
    assert z > 5 and p < 1e-4
    _, z0, p0 = sw_significance(r(512), r(512), 40, seed=1)
    assert z0 < 3 and p0 > 1e-3
    assert gumbel_sf(0, np.array([10.0, 12, 14, 11])) > 0.99


@pytest.fixture(scope="module")
def shuffled_windows(loci_fasta, tmp_path_factory):
    """Real windows of 8 loci, each replaced by a dinucleotide shuffle of itself: real composition,
    no shared structure beyond it."""
    fa = subset_fasta(loci_fasta, ["DES", "ACTC1", "TNNC1", "MYL2", "PLN", "SOD1", "TTR", "AVP"],
                      tmp_path_factory.mktemp("calib") / "eight.fa")
    ws = make_windows(WindowParams(), fasta=fa)
    seqs = np.array([dinucleotide_shuffle(s.decode().upper(), np.random.default_rng([42, i])).encode()
                     for i, s in enumerate(ws.seqs)])
    return WindowSet(ws.table, seqs, ws.params)


def kmer_with_nulls(ws, n_shuffles=8):
    backend = KmerBackend(k=6)
    seqs = [s.decode() for s in ws.seqs]
    emb = backend.embed(seqs)
    nulls = backend.embed(shuffles(seqs, range(len(seqs)), n_shuffles, 1)).reshape(len(seqs), n_shuffles, -1)
    return emb, nulls


def test_calibration_pvalues_uniform_without_signal(shuffled_windows):
    """On shuffled windows, p-values of random cross-gene pairs are uniform, for each null and combined."""
    ws = shuffled_windows
    emb, nulls = kmer_with_nulls(ws)
    gene = ws.table.gene.to_numpy()
    corrected, null_corrected = trust.correct(emb, "standardize", nulls)
    background = trust.matched_background(composition_features(ws, np.zeros(len(ws))), gene, 50)
    rng = np.random.default_rng(3)
    a, b = rng.integers(len(ws), size=(2, 6000))
    keep = gene[a] != gene[b]
    p_shuffle, p_background, p = trust.null_pvalues(corrected, null_corrected, background, gene,
                                                    a[keep], b[keep], 50)
    # the shuffle null is calibrated: uniform p-values
    assert stats.kstest(p_shuffle, "uniform").statistic < 0.03
    assert 0.035 < (p_shuffle < 0.05).mean() < 0.065 and 0.005 < (p_shuffle < 0.01).mean() < 0.016
    # the matched-background null is valid but conservative (the nearest matches of a composition
    # outlier lie towards typical composition): never more small p-values than their level
    for level in (0.01, 0.05, 0.1, 0.25):
        assert (p_background < level).mean() <= level * 1.15, level
        assert (p < level).mean() <= level * 1.15, level  # the larger of the two p-values
    print(f"calibration: P(p_shuffle < 0.05) = {(p_shuffle < 0.05).mean():.3f}, "
          f"P(p_background < 0.05) = {(p_background < 0.05).mean():.3f}, P(p < 0.05) = {(p < 0.05).mean():.3f}, "
          f"KS D(shuffle) = {stats.kstest(p_shuffle, 'uniform').statistic:.3f}, n = {len(p)}")


def test_calibration_no_candidates_without_signal(shuffled_windows):
    ws = shuffled_windows
    emb, nulls = kmer_with_nulls(ws)
    pairs, funnel, _ = score_pairs(ws, emb, np.zeros(len(ws), np.float32), EMPTY_HITS, ScoreParams(), nulls=nulls)
    assert funnel["scored"] > 2000
    assert funnel["significant"] <= 1 and funnel["candidates"] <= 1


def plant_motifs(data_dir, ws: WindowSet, n_pairs: int, n_motifs: int, seed: int):
    """The same set of JASPAR motif instances (each sampled anew from its matrix, at random
    positions and strands) planted into pairs of windows of different genes."""
    from Bio import motifs

    with open(data_dir / "motifs" / "JASPAR2024_CORE_vertebrates_latest.jaspar") as fh:
        matrices = [m for m in motifs.parse(fh, "jaspar") if 8 <= m.length <= 14]
    rng = np.random.default_rng(seed)
    gene = ws.table.gene.to_numpy()
    seqs = [s.decode().upper() for s in ws.seqs]
    planted = []
    order = rng.permutation(len(ws))
    used = set()
    for i in order:
        if len(planted) == n_pairs:
            break
        partners = [j for j in order if gene[j] != gene[i] and j not in used and i not in used and j != i]
        if not partners:
            continue
        j = partners[0]
        chosen = rng.choice(len(matrices), n_motifs, replace=False)
        for w in (i, j):
            seq = list(seqs[w])
            slots = rng.choice(np.arange(0, len(seq) - 16, 16), n_motifs, replace=False)
            for slot, m in zip(slots, (matrices[c] for c in chosen)):
                pwm = np.array([m.counts.normalize()[base] for base in "ACGT"]).T
                site = "".join("ACGT"[rng.choice(4, p=row / row.sum())] for row in pwm)
                site = reverse_complement(site) if rng.random() < 0.5 else site
                seq[slot:slot + len(site)] = site
            seqs[w] = "".join(seq)
        used |= {i, j}
        planted.append((min(i, j), max(i, j)))
    return WindowSet(ws.table, np.array([s.encode() for s in seqs]), ws.params), planted


def recovery(ws, planted, n_shuffles, params=ScoreParams()):
    """Score planted windows; (fraction of planted pairs significant, significant pairs involving a
    window without planted content, all significant pairs)."""
    emb, nulls = kmer_with_nulls(ws, n_shuffles)
    pairs, _, _ = score_pairs(ws, emb, np.zeros(len(ws), np.float32), EMPTY_HITS, params, nulls=nulls)
    significant = set(zip(pairs.window_a[pairs.significant], pairs.window_b[pairs.significant]))
    carriers = {w for pair in planted for w in pair}
    false = [p for p in significant if p[0] not in carriers or p[1] not in carriers]
    return len(significant & set(planted)) / len(planted), len(false), len(significant)


@pytest.mark.slow
def test_power_planted_regulatory_content(shuffled_windows, data_dir):
    """The same 30 motif instances (sampled anew per window, no alignable similarity) planted in 20
    pairs of windows of different genes: most pairs are recovered at q <= 0.05 with the kmer
    backend, and significant pairs involving a window without planted content stay within the FDR.
    (Pairs of two carriers from different plantings may truly share motifs: not counted as false.)"""
    ws, planted = plant_motifs(data_dir, shuffled_windows, n_pairs=20, n_motifs=30, seed=5)
    rate, false, total = recovery(ws, planted, n_shuffles=32)
    print(f"power: {rate:.0%} of {len(planted)} planted pairs at q <= 0.05; {false} of {total} significant "
          "pairs involve a window without planted content")
    assert rate >= 0.4
    assert false <= 0.1 * total
