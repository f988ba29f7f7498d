"""The JASPAR motif scan, the motifs backend, and motif evidence: scores equal Biopython's,
thresholds hold their p-value on random sequence, planted sites are found, and shared motif sets
are seen where composition is blind."""

import itertools

import numpy as np
import pandas as pd
import pytest
from Bio import motifs as bio_motifs
from Bio.Seq import Seq
from Bio.motifs.jaspar import calculate_pseudocounts

from conftest import random_dna, subset_fasta
from evoscan import motifs
from evoscan.backends.motifs import MotifBackend
from evoscan.errors import EvoscanError
from evoscan.io.fasta import read_fasta
from evoscan.windows import WindowParams, make_windows, reverse_complement
from synthetic import kmer_search, plant_motifs, shuffled_loci


@pytest.fixture(scope="module")
def jaspar_file(data_dir):
    return data_dir / "motifs" / "JASPAR2024_CORE_vertebrates_latest.jaspar"


@pytest.fixture(scope="module")
def found(jaspar_file):
    with open(jaspar_file) as fh:
        return list(bio_motifs.parse(fh, "jaspar"))


@pytest.fixture(scope="module")
def scanner():
    return motifs.load_scanner()  # pyjaspar JASPAR2024, the default


def biopython_pssm(m):
    m.background = {b: 0.25 for b in "ACGT"}
    return m.counts.normalize(pseudocounts=calculate_pseudocounts(m)).log_odds()


def test_scan_scores_equal_biopython(found, scanner):
    """Every matrix, both strands, every position, on random sequences of two lengths; positions
    where a matrix would run past the end score -inf."""
    rng = np.random.default_rng(0)
    seqs = [random_dna(rng, 300), random_dna(rng, 157, gc=0.6)]
    by_id = {m.matrix_id: m for m in found}
    assert set(by_id) == set(scanner.mats.ids)  # the shipped file is the pyjaspar release
    worst = 0.0
    for members, s, _ in scanner.torch_scan.scan(seqs):
        s = s.numpy()
        for col, m_index in enumerate(members):
            pssm = biopython_pssm(by_id[scanner.mats.ids[m_index]])
            for b, seq in enumerate(seqs):
                fwd = pssm.calculate(Seq(seq))
                rev = pssm.reverse_complement().calculate(Seq(seq))
                n = len(fwd)
                worst = max(worst, np.abs(s[b, :n, 0, col] - fwd).max(), np.abs(s[b, :n, 1, col] - rev).max())
                assert np.isneginf(s[b, n:, :, col]).all()
    assert worst < 1e-4


def test_thresholds_match_biopython_score_distribution(found, scanner):
    """Within the grid's rounding allowance (half a 0.01-bit step per column, added to stay on the
    safe side); matrices of <= 6 bp, whose best word alone is likelier than 1e-4, have none."""
    ids = list(scanner.mats.ids)
    unreachable = np.isinf(scanner.thresholds)
    assert 50 < unreachable.sum() < 150 and scanner.mats.lengths[unreachable].max() <= 6
    for m in found[::60]:
        ours = scanner.thresholds[ids.index(m.matrix_id)]
        if np.isinf(ours):
            continue
        theirs = biopython_pssm(m).distribution(precision=10 ** 3).threshold_fpr(motifs.DEFAULT_PVALUE)
        assert abs(ours - theirs) < 0.1 + m.length * motifs.GRID / 2, (m.matrix_id, ours, theirs)


def test_site_rate_on_random_sequence_holds_the_pvalue(scanner):
    """Uniform random sequence is the model behind the thresholds: sites occur at (at most) the
    p-value per position, strand and matrix, overall and for short and long matrices alike."""
    seqs = motifs.random_sequences(120, 1000, seed=3)
    hits = np.zeros(len(scanner.mats))
    trials = np.zeros(len(scanner.mats))
    for members, s, _ in scanner.torch_scan.scan(seqs):
        ok = np.isfinite(s.numpy())
        hits[members] += (s.numpy() >= scanner.thresholds[members]).sum((0, 1, 2))
        trials[members] += ok.sum((0, 1, 2))
    rate = hits.sum() / trials.sum()
    assert 0.6e-4 < rate <= 1.05e-4, rate
    for short in (scanner.mats.lengths <= 10, scanner.mats.lengths > 15):
        assert hits[short].sum() / trials[short].sum() <= 1.15e-4
    # and matrix by matrix: none far above its p-value (a binomial upper bound at ~5 expected)
    assert (hits <= trials * 1e-4 + 5 * np.sqrt(trials * 1e-4) + 3).all(), np.flatnonzero(
        hits > trials * 1e-4 + 5 * np.sqrt(trials * 1e-4) + 3)


def test_planted_instances_are_found(found, scanner):
    """Instances sampled from a matrix and planted at known places are reported there, on that
    strand, whenever their score reaches the threshold; most instances (70 %+) of matrices of more
    than 12 bits do."""
    rng = np.random.default_rng(5)
    ids = list(scanner.mats.ids)
    reached = found_at = informative = informative_found = 0
    for m in found[::20]:
        i = ids.index(m.matrix_id)
        pwm = np.array([m.counts.normalize()[b] for b in "ACGT"]).T
        site = "".join("ACGT"[rng.choice(4, p=row / row.sum())] for row in pwm)
        strand = "+" if rng.random() < 0.5 else "-"
        pos = int(rng.integers(0, 400))
        seq = random_dna(rng, 512)
        seq = seq[:pos] + (site if strand == "+" else reverse_complement(site)) + seq[pos + len(site):]
        score = biopython_pssm(m).calculate(Seq(site))
        sites = scanner.sites(seq)
        hit = ((sites["matrix"] == i) & (sites["start"] == pos) & (sites["strand"] == strand)).any()
        if score >= scanner.thresholds[i]:
            reached += 1
            found_at += hit
        else:
            assert not hit
        if (np.exp2(scanner.mats.log_odds[i]) / 4 * scanner.mats.log_odds[i]).sum() > 12:  # > 12 bits
            informative += 1
            informative_found += hit
    assert reached > 20 and found_at == reached
    assert informative_found >= 0.7 * informative


@pytest.mark.parametrize("buckets", [(10, 16, 24), (3,)])  # one length bucket, or one per matrix
def test_expected_potential_is_exact_for_a_markov_chain(buckets):
    """The dinucleotide expectation equals brute force over all words of a short matrix."""
    rng = np.random.default_rng(1)
    lo = rng.normal(0, 1.5, (2, 4, 4)).astype(np.float32)
    lo[1, :, 3] = 0  # the second matrix has length 3
    mats = motifs.Matrices(("m1", "m2"), ("m1", "m2"), lo, np.array([4, 3]), {"motifs": "test"})
    scanner = motifs.Scanner(mats, buckets=buckets)
    assert len(scanner.torch_scan.buckets) == (1 if buckets[0] > 4 else 2)
    seq = random_dna(rng, 200, gc=0.65) + "CGCGCGTATA" * 5
    expected = scanner.torch_scan.expected([seq])[0]
    assert np.abs(scanner.tables.expected([seq], 1)[0] - expected).max() < 1e-6  # the CPU's compiled loop
    code = {b: i for i, b in enumerate("ACGT")}
    counts = np.ones((4, 4))
    for x, y in zip(seq, seq[1:]):
        counts[code[x], code[y]] += 1
    start, step = counts.sum(1) / counts.sum(), counts / counts.sum(1, keepdims=True)
    for m, n in enumerate((4, 3)):
        fwd = lo[m, :, :n]
        rc = fwd[::-1, ::-1]
        total = 0.0
        for word in itertools.product(range(4), repeat=n):
            p = start[word[0]] * np.prod([step[a, b] for a, b in zip(word, word[1:])])
            total += p * (np.exp2(sum(fwd[w, j] for j, w in enumerate(word)))
                          + np.exp2(sum(rc[w, j] for j, w in enumerate(word)))) / 2
        assert expected[m] == pytest.approx(np.log2(total), abs=1e-4)


def test_motif_files_jaspar_and_meme_read_alike(jaspar_file, found, tmp_path):
    """The shipped JASPAR file gives the pyjaspar release's log-odds; a MEME file of the same
    matrices (probabilities and site counts) gives the same log-odds."""
    from_file = motifs.log_odds_matrices(*motifs.read_motifs(jaspar_file))
    from_release = motifs.log_odds_matrices(*motifs.read_motifs("JASPAR2024"))
    order = [from_release.ids.index(i) for i in from_file.ids]
    assert np.allclose(from_file.log_odds, from_release.log_odds[order], atol=1e-5)
    assert from_file.source["sha256"] and from_release.source["motifs"] == "JASPAR2024"
    meme = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", "",
            "Background letter frequencies", "A 0.25 C 0.25 G 0.25 T 0.25", ""]
    for m in found[:5]:
        total = sum(m.counts[b][0] for b in "ACGT")
        meme += [f"MOTIF {m.matrix_id} {m.name}",
                 f"letter-probability matrix: alength= 4 w= {m.length} nsites= {total:g} E= 0"]
        meme += [" ".join(f"{m.counts[b][j] / total:.8f}" for b in "ACGT") for j in range(m.length)]
        meme.append("")
    (tmp_path / "five.meme").write_text("\n".join(meme))
    from_meme = motifs.log_odds_matrices(*motifs.read_motifs(tmp_path / "five.meme"))
    assert from_meme.ids == from_file.ids[:5] and from_meme.source["format"] == "minimal"
    assert np.allclose(from_meme.log_odds, from_file.log_odds[:5, :, :from_meme.log_odds.shape[2]], atol=1e-3)


def test_bad_motif_sources_are_one_line_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\nworld\n")
    for source, message in ((tmp_path / "missing.jaspar", "no such file"), (tmp_path / "notes.txt", "motif file"),
                            ("JASPAR1999", "pyjaspar has")):
        with pytest.raises(EvoscanError, match=message):
            motifs.read_motifs(source)


def test_backend_profiles_are_strand_symmetric_and_composition_corrected():
    """A window and its reverse complement get (nearly) the same profile; sequences of very
    different composition but no motif content average near zero on every cluster."""
    backend = MotifBackend()
    rng = np.random.default_rng(2)
    seqs = [random_dna(rng, 512, gc=gc) for gc in (0.35, 0.5, 0.65) for _ in range(40)]
    v = backend.embed(seqs)
    rc = backend.embed([reverse_complement(s) for s in seqs])
    assert v.shape == (120, backend.dim) and 300 < backend.dim < 700
    assert np.corrcoef(v.ravel(), rc.ravel())[0, 1] > 0.98
    for block in np.split(v, 3):  # each composition alone
        assert np.abs(block.mean(0)).mean() < 0.35
    assert backend.provenance()["motifs"] == "JASPAR2024" and backend.provenance()["log_odds_digest"]


def test_evidence_counts_shared_clusters_against_shuffles():
    """Two windows carrying instances of the same ten strong motifs share them, beyond what
    shuffles share (small p); two random windows do not."""
    profiler = MotifBackend().profiler
    rng = np.random.default_rng(4)
    mats = profiler.scanner.mats
    strong = [i for i in np.argsort(-(np.exp2(mats.log_odds) / 4 * mats.log_odds).sum((1, 2)))
              if 10 <= mats.lengths[i] <= 14][:10]
    consensus = ["".join("ACGT"[k] for k in mats.log_odds[i, :, :mats.lengths[i]].argmax(0)) for i in strong]

    def carrier():
        seq = list(random_dna(rng, 512))
        for slot, site in zip(rng.choice(np.arange(0, 490, 24), len(consensus), replace=False), consensus):
            seq[slot:slot + len(site)] = site
        return "".join(seq)

    summary, sites = profiler.evidence([(carrier(), carrier()), (random_dna(rng, 512), random_dna(rng, 512))], 50, 1)
    assert summary["motifs_shared"][0] >= 10 and summary["motif_pvalue"][0] <= 0.02
    assert summary["motif_pvalue"][1] > 0.05
    names = set(summary["shared_motifs"][0].split(","))
    assert len(names) == summary["motifs_shared"][0]
    assert set(sites["pair"]) <= {0, 1} and (sites["score"] >= profiler.scanner.thresholds[sites["matrix"]]).all()


LOCI = ["DES", "ACTC1", "TNNC1", "MYL2", "PLN", "SOD1", "TTR", "AVP"]


def test_power_motifs_backend_sees_shared_grammar_kmer_does_not(data_dir, jaspar_file, loci_fasta, tmp_path):
    """20 pairs of windows of 8 shuffled loci given the same 30 JASPAR motifs (each instance sampled
    anew, no alignable similarity): the motifs backend calls most at q <= 0.05, with false calls
    within the FDR; the kmer backend calls few. (docs/validation.md has loads 12/20/30.)"""
    base = make_windows(WindowParams(), fasta=shuffled_loci(subset_fasta(loci_fasta, LOCI, tmp_path / "8.fa"),
                                                           tmp_path / "s.fa", 42))
    ws, planted = plant_motifs(jaspar_file, base, 20, 30, seed=5)
    result = {}
    for name, backend in (("motifs", MotifBackend()), ("kmer", None)):
        pairs, _ = kmer_search(ws, tmp_path, backend=backend)
        called = set(zip(pairs.window_a[pairs.qvalue <= 0.05], pairs.window_b[pairs.qvalue <= 0.05]))
        false = called - set(planted)  # carriers of two different sets included
        result[name] = (len(called & set(planted)), len(false), len(called))
    print(result)
    assert result["motifs"][0] >= 14 and result["motifs"][1] <= 1 + 0.1 * result["motifs"][2]
    assert result["kmer"][0] <= result["motifs"][0] - 8


def test_demo_sites_map_to_the_genome(demo_run, loci_fasta, found):
    """motif_sites.tsv: each site's genome interval holds the motif the scan saw in the window
    (reverse-complemented for minus-strand windows), so a browser track shows it in place."""
    sites = pd.read_csv(demo_run["outdir"] / "motif_sites.tsv", sep="\t")
    assert len(sites) > 50 and {"window_a", "window_b", "matrix_id", "strand", "score"} <= set(sites.columns)
    loci = {}
    for rec in read_fasta(loci_fasta):
        chrom, span = rec.description.split()[1].split(":")
        loci[rec.name] = (chrom, int(span.split("-")[0]) - 1, rec.seq.upper())
    table = demo_run["windows"].table.set_index("id")
    seqs = dict(zip(demo_run["windows"].table["id"], demo_run["windows"].seqs))
    by_id = {m.matrix_id: m for m in found}
    for row in sites.sample(40, random_state=1).itertuples():
        chrom, offset, locus = loci[row.gene]
        genomic = locus[row.start - offset:row.end - offset]
        window_strand = table.loc[row.window, "strand"]
        in_window = seqs[row.window].decode().upper()[row.offset:row.offset + row.end - row.start]
        assert (genomic if window_strand == "+" else reverse_complement(genomic)) == in_window
        # and the motif, read on its strand of the genome, scores what the table says
        motif_seq = genomic if row.strand == "+" else reverse_complement(genomic)
        assert np.atleast_1d(biopython_pssm(by_id[row.matrix_id]).calculate(Seq(motif_seq)))[0] == pytest.approx(
            row.score, abs=1e-3)


def test_n_is_never_scored(scanner):
    """No position whose span holds an N is scored or reported as a site, and a block of N does
    not raise a window's binding potential (it counts neither for nor against)."""
    rng = np.random.default_rng(8)
    seq = random_dna(rng, 512)
    with_n = seq[:200] + "N" * 50 + seq[250:]
    for members, s, scored in scanner.torch_scan.scan([with_n]):
        s = s.numpy()[0]
        for col, m in enumerate(members):
            n = scanner.mats.lengths[m]
            spans_n = np.array([("N" in with_n[p:p + n]) or p + n > len(with_n) for p in range(len(with_n))])
            assert np.isneginf(s[spans_n, :, col]).all() and np.isfinite(s[~spans_n, :, col]).all()
            assert scored[0, col] == 2 * (~spans_n).sum()
    sites = scanner.sites(with_n)
    assert all("N" not in with_n[a:b] for a, b in zip(sites["start"], sites["end"]))
    replaced = seq[:200] + random_dna(rng, 50) + seq[250:]
    diff = scanner.profiles([with_n])[0] - scanner.profiles([replaced])[0]
    assert np.abs(np.median(diff)) < 0.2


def test_a_profile_does_not_depend_on_its_batch(scanner):
    """A window with tiny sums of 2^score (here none: an N every 5 bp leaves the longer matrices
    no position), taken shifted against underflow, does not change the profiles of the windows
    beside it in a batch, to the last bit."""
    rng = np.random.default_rng(9)
    seqs = [random_dna(rng, 500) for _ in range(6)]
    alone = scanner.profiles(seqs)
    mixed = scanner.profiles([*seqs[:3], "ACGTN" * 100, *seqs[3:]])
    assert np.array_equal(np.delete(mixed, 3, 0), alone)
    assert np.array_equal(mixed[3], scanner.profiles(["ACGTN" * 100])[0])


def test_windows_without_n_mask_only_their_ends_and_a_subset_scans_as_the_whole(scanner):
    """Windows of one length without N (the fast path) leave unscored exactly the positions that
    run past their end; a scan with a subset of the matrices gives those matrices' scores of the
    whole scan bit for bit, and no hit for the others."""
    rng = np.random.default_rng(10)
    seqs = [random_dna(rng, 512) for _ in range(4)]
    whole = {}
    for members, s, scored in scanner.torch_scan.scan(seqs):
        s = s.numpy()
        for col, m in enumerate(members):
            past = np.arange(512) + scanner.mats.lengths[m] > 512
            assert np.isneginf(s[:, past, :, col]).all() and np.isfinite(s[:, ~past, :, col]).all()
            assert (scored[:, col].numpy() == 2 * (~past).sum()).all()
            whole[m] = s[..., col]
    only = np.zeros(len(scanner.mats), bool)
    only[rng.choice(len(only), 100, replace=False)] = True
    seen = []
    for members, s, _ in scanner.torch_scan.scan(seqs, only):
        seen += list(members)
        for col, m in enumerate(members):
            assert np.array_equal(s.numpy()[..., col], whole[m])
    assert sorted(seen) == list(np.flatnonzero(only))
    hits = scanner.hits(seqs, only)
    assert np.array_equal(hits[:, only], scanner.hits(seqs)[:, only]) and not hits[:, ~only].any()


def test_evidence_equals_a_scan_of_every_cluster(loci_fasta):
    """Evidence takes each window's clusters from the sites it lists and scans the shuffles only
    with the clusters the fixed window has: the same count, expectation and p-value as hits of
    every cluster in both windows and in every shuffle (as `check` computed them before)."""
    from evoscan.decoys import dinucleotide_shuffle

    profiler = motifs.motif_profiler()
    ws = make_windows(WindowParams(), fasta=loci_fasta)
    pairs = [(0, 700), (300, 1500), (42, 43)]
    seqs = [(ws.seqs[a].decode().upper(), ws.seqs[b].decode().upper()) for a, b in pairs]
    summary, sites = profiler.evidence(seqs, 30, 3, pairs)
    for i, ((a, b), (x, y)) in enumerate(zip(pairs, seqs)):
        rng = np.random.default_rng([3, a, b])
        hits_x, hits_y = profiler.cluster_hits([x, y])
        k = int((hits_x & hits_y).sum())
        null = [(profiler.cluster_hits([dinucleotide_shuffle(other, rng) for _ in range(30)]) & fixed).sum(1)
                for fixed, other in ((hits_x, y), (hits_y, x))]
        assert summary["motifs_shared"][i] == k > 0
        assert summary["motifs_expected"][i] == float(np.concatenate(null).mean())
        assert summary["motif_pvalue"][i] == max((1 + int((n >= k).sum())) / 31 for n in null)
        shared = set(np.flatnonzero(hits_x & hits_y))
        assert set(profiler.clusters[sites[sites["pair"] == i]["matrix"]]) == shared


def test_evidence_counts_a_window_by_the_scan_that_counts_its_shuffles(loci_fasta):
    """A matrix whose threshold lies between the two scans' scores of a window's best site (the block
    tables' float64 and the listed sites' float32 torch scan differ in the last bits): the window's
    shared clusters follow the tables, which count the shuffles too, so the count and its null are
    made by one scan."""
    import copy

    profiler = copy.copy(motifs.motif_profiler())
    profiler.scanner = copy.copy(profiler.scanner)
    scanner = profiler.scanner
    assert scanner.engine == "tables"
    ws = make_windows(WindowParams(), fasta=loci_fasta)
    seqs = [ws.seqs[i].decode().upper() for i in range(0, len(ws), max(1, len(ws) // 64))]
    torch_scanner = motifs.Scanner(scanner.mats, scanner.pvalue, engine="torch")
    # one window a scan, as sites() scans it (a matmul's last bits may depend on its batch)
    tables = np.concatenate([scanner.best([s]) for s in seqs])
    torch_best = np.concatenate([torch_scanner.best([s]) for s in seqs])
    alone = np.bincount(profiler.clusters)[profiler.clusters] == 1  # a cluster of one matrix: no other hides it
    gap = np.where(np.isfinite(tables) & alone[None, :], np.abs(tables - torch_best), 0)
    w, m = np.unravel_index(np.argmax(gap), gap.shape)
    assert gap[w, m] > 0
    scanner.thresholds = scanner.thresholds.copy()
    scanner.thresholds[m] = (float(tables[w, m]) + float(torch_best[w, m])) / 2
    summary, sites = profiler.evidence([(seqs[w], seqs[w])], 5, 1)
    hits = profiler.cluster_hits([seqs[w]])[0]
    assert summary["motifs_shared"][0] == hits.sum()
    assert hits[profiler.clusters[m]] == (tables[w, m] > torch_best[w, m])  # the tables' verdict, not the sites'
    assert (scanner.sites(seqs[w])["matrix"] == m).any() == (torch_best[w, m] > tables[w, m])


def test_one_profiler_per_settings_in_a_process(jaspar_file, tmp_path):
    """The motifs backend and the check of one run share one profiler (its 1,000 reference
    profiles are built once); another motif file, or the same file changed, gets its own."""
    assert motifs.motif_profiler() is motifs.motif_profiler() is MotifBackend().profiler
    few = tmp_path / "few.jaspar"
    few.write_text("".join(">" + block for block in jaspar_file.read_text().split(">")[1:21]))
    first = motifs.motif_profiler(few)
    assert first is motifs.motif_profiler(few) and first is not motifs.motif_profiler()
    assert len(first.scanner.mats) == 20
    few.write_text(few.read_text().rsplit(">", 1)[0])  # the same file, one matrix fewer
    assert len(motifs.motif_profiler(few).scanner.mats) == 19


def test_the_table_scan_gives_the_torch_scans_numbers(scanner, loci_fasta):
    """The CPU's block-table scan (motif_kernel.py, float64) against the torch scan it replaced
    (float32; still the GPU's), all 879 matrices on both strands: on real demo windows (soft-masked,
    as the backend gets them) and random ones of other lengths and with N, the same positions
    scored, each matrix's best score within 1e-4 bits, the same hits at the thresholds, and
    binding potentials within 1e-4 bits; the motif profiler's clusters are the same and its
    vectors (z-scores) agree within 1e-3."""
    before = motifs.Scanner(scanner.mats, scanner.pvalue, engine="torch")
    assert scanner.engine == "tables" and before.engine == "torch"
    ws = make_windows(WindowParams(), fasta=loci_fasta)
    rng = np.random.default_rng(12)
    real = [ws.seqs[i].decode() for i in rng.choice(len(ws), 192, replace=False)]
    other = [random_dna(rng, n) for n in (30, 100, 333, 512, 700)]
    other += [s[:100] + "N" * 7 + s[107:] for s in other[2:]] + ["ACGTN" * 60, "NNNN" + random_dna(rng, 20)]
    for seqs in (real, other):
        scored = before.torch_scan.reduce(seqs, lambda s, n: n.float())
        total, top, counted = scanner.tables.scan(seqs, np.arange(len(scanner.mats)), 2)
        assert np.array_equal(counted, scored)
        best, best_before = scanner.best(seqs), before.best(seqs)
        assert np.array_equal(np.isneginf(best), np.isneginf(best_before))
        finite = np.isfinite(best)
        assert np.abs(best[finite] - best_before[finite]).max() < 1e-4
        assert np.array_equal(scanner.hits(seqs), before.hits(seqs))
        only = rng.random(len(scanner.mats)) < 0.2  # a subset of the matrices (the evidence's shuffles)
        assert np.array_equal(scanner.hits(seqs, only), before.hits(seqs, only))
        assert np.array_equal(np.isneginf(scanner.best(seqs, only)), np.isneginf(before.best(seqs, only)))
        assert np.abs(scanner.profiles(seqs) - before.profiles(seqs)).max() < 1e-4
    assert sum(scanner.hits(real).ravel()) > 1000  # (not trivially equal)

    profiler = motifs.MotifProfiler()
    assert profiler.scanner.engine == "tables"
    reference = motifs.random_sequences(motifs.MotifProfiler.REFERENCE, motifs.MotifProfiler.REFERENCE_LENGTH, seed=7)
    old_profiles = np.concatenate([before.profiles(reference[i:i + 250]) for i in range(0, len(reference), 250)])
    assert np.array_equal(motifs.cluster_matrices(old_profiles, scanner.mats, profiler.cluster_r), profiler.clusters)
    vectors = profiler.vectors(real)
    profiler.scanner = before
    assert np.abs(profiler.vectors(real) - vectors).max() < 1e-3


def test_block_tables_give_every_positions_score(scanner):
    """The tables the compiled loop multiplies (motif_kernel.py) give, at every position and on both
    strands, the torch scan's score of all 879 matrices within 1e-4 bits, 0 odds exactly where a
    matrix's span holds an N or runs past the end, and so the same sites (score >= threshold)."""
    from evoscan import motif_kernel

    rng = np.random.default_rng(13)
    seqs = [random_dna(rng, 300), random_dna(rng, 120, gc=0.3)[:60] + "N" + random_dna(rng, 59).lower()]
    words, lengths = motif_kernel.word_codes(seqs, int(scanner.mats.lengths.max()))
    tables, start = scanner.tables.tables, scanner.tables.table_start
    sites = 0
    for members, s, _ in scanner.torch_scan.scan(seqs):
        s = s.numpy()
        for col, m in enumerate(members):
            for strand in range(2):
                nb = scanner.tables.n_blocks[m]
                block = tables[start[2 * m + strand]:start[2 * m + strand] + nb * motif_kernel.WORDS].reshape(nb, -1)
                for b, n in enumerate(lengths):
                    positions = np.arange(n)
                    odds = np.prod([block[j][words[b, positions + 4 * j]] for j in range(nb)], axis=0)
                    odds[positions + scanner.mats.lengths[m] > n] = 0  # (the loop does not go there)
                    torch_score = s[b, :n, strand, col]
                    assert np.array_equal(odds == 0, np.isneginf(torch_score))
                    with np.errstate(divide="ignore"):
                        assert np.abs(np.log2(odds[odds > 0]) - torch_score[odds > 0]).max(initial=0) < 1e-4
                    threshold = scanner.thresholds[m]
                    assert np.array_equal(odds >= np.exp2(threshold), torch_score >= threshold)
                    sites += int((torch_score >= threshold).sum())
    assert sites > 10
