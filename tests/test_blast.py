import numpy as np
import pandas as pd
import pytest

from conftest import random_dna, write_fasta
from evoscan import blast
from evoscan.errors import EvoscanError
from evoscan.windows import WindowParams, make_windows, reverse_complement

P = WindowParams(size=512, stride=512)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Six random windows; a 120-bp segment is shared by A and B, and by A and C reverse-complemented,
    and a diverged (85 % identity) 200-bp copy links D and E."""
    rng = np.random.default_rng(11)
    shared = random_dna(rng, 120)
    diverged = random_dna(rng, 200)
    mutated = list(diverged)
    for pos in rng.choice(200, size=30, replace=False):
        mutated[pos] = "ACGT"[("ACGT".index(mutated[pos]) + 1) % 4]
    seqs = {
        "A": random_dna(rng, 100) + shared + random_dna(rng, 292),
        "B": random_dna(rng, 300) + shared + random_dna(rng, 92),
        "C": random_dna(rng, 200) + reverse_complement(shared) + random_dna(rng, 192),
        "D": random_dna(rng, 150) + diverged + random_dna(rng, 162),
        "E": random_dna(rng, 250) + "".join(mutated) + random_dna(rng, 62),
        "F": random_dna(rng, 512),
    }
    ws = make_windows(P, fasta=write_fasta(tmp_path_factory.mktemp("blast") / "p.fa", seqs))
    hits, info = blast.run_blast(ws, threads=2)
    return ws, hits, info


def hit(hits, a, b):
    row = hits[(hits.window_a == min(a, b)) & (hits.window_b == max(a, b))]
    return row.iloc[0] if len(row) else None


def test_shared_segment_found_on_both_strands(planted):
    ws, hits, _ = planted
    ab, ac = hit(hits, 0, 1), hit(hits, 0, 2)
    assert ab is not None and ab.evalue < 1e-40 and ab.pident == 100 and ab.length >= 120
    assert ac is not None and ac.evalue < 1e-40 and ac.length >= 120  # reverse complement


def test_diverged_copy_found_with_sensitive_settings(planted):
    ws, hits, _ = planted
    de = hit(hits, 3, 4)
    assert de is not None and de.evalue < 1e-10 and 75 <= de.pident <= 95


def test_one_row_per_unordered_pair_no_self_hits(planted):
    _, hits, info = planted
    assert (hits.window_a < hits.window_b).all()
    assert not hits.duplicated(["window_a", "window_b"]).any()
    assert "-word_size 7" in info["blastn_args"] and "-dust no" in info["blastn_args"]
    assert "-max_target_seqs 6" in info["blastn_args"]


def test_best_per_pair_takes_min_evalue_and_top_hsp():
    hsps = pd.DataFrame({
        "query": [0, 1, 0, 2, 2], "subject": [1, 0, 1, 2, 0],
        "pident": [90.0, 99.0, 80.0, 100.0, 70.0], "length": [100, 40, 300, 512, 20],
        "evalue": [1e-20, 1e-5, 1e-30, 0.0, 5.0], "bitscore": [90.0, 60.0, 120.0, 900.0, 20.0],
    })
    best = blast.best_per_pair(hsps)
    assert best[["window_a", "window_b"]].values.tolist() == [[0, 1], [0, 2]]
    first = best.iloc[0]
    assert first.evalue == 1e-30 and first.bitscore == 120 and first.pident == 80 and first.length == 300


def test_blocks_reduced_as_they_finish_give_the_same_best_hits(planted, tmp_path):
    """Real HSPs (every planted window against every other), cut into blocks in any order and
    each reduced to its pair extremes: the best hits are those of all HSPs together."""
    ws = planted[0]
    n = len(ws)
    partners = {q: np.array([s for s in range(n) if s != q]) for q in range(n)}
    hsps = blast._search_block(np.arange(n), partners, ws, blast.blastn_args(blast.DEFAULT_ARGS, n), 10**7, tmp_path)
    unordered = {(min(q, t), max(q, t)) for q, t in zip(hsps["query"], hsps["subject"])}
    assert len(hsps) > 2 * len(unordered)  # several HSPs per pair (both directions, more than one): work to reduce
    whole = blast.best_per_pair(hsps)
    rng = np.random.default_rng(0)
    for _ in range(5):
        shuffled = hsps.iloc[rng.permutation(len(hsps))]
        blocks = [shuffled.iloc[rows] for rows in np.array_split(np.arange(len(shuffled)), 4)]
        reduced = pd.concat([blast.pair_extremes(b) for b in blocks], ignore_index=True)
        assert len(reduced) < len(hsps)
        pd.testing.assert_frame_equal(blast.best_per_pair(reduced), blast.best_per_pair(shuffled))
    pd.testing.assert_frame_equal(blast.best_per_pair(shuffled), whole)
    # a block whose least e-value is not its top-scoring HSP (e-values of either direction differ)
    block1 = pd.DataFrame({"query": [0, 1], "subject": [1, 0], "pident": [90.0, 95.0], "length": [200, 150],
                           "evalue": [1e-30, 1e-40], "bitscore": [120.0, 100.0]})
    block2 = pd.DataFrame({"query": [0], "subject": [1], "pident": [99.0], "length": [220],
                           "evalue": [1e-35], "bitscore": [130.0]})
    reduced = pd.concat([blast.pair_extremes(block1), blast.pair_extremes(block2)], ignore_index=True)
    best = blast.best_per_pair(reduced)
    pd.testing.assert_frame_equal(best, blast.best_per_pair(pd.concat([block1, block2], ignore_index=True)))
    assert best.iloc[0].evalue == 1e-40 and best.iloc[0].bitscore == 130


def test_user_may_not_override_what_evoscan_sets():
    with pytest.raises(EvoscanError, match="must not set -outfmt"):
        blast.blastn_args("-task blastn -outfmt 5", 10)
    assert blast.blastn_args("-task megablast -max_target_seqs 5", 10)[-1] == "5"
