import gzip

import numpy as np
import pytest

from conftest import random_dna, write_fasta
from evoscan.errors import EvoscanError
from evoscan.io.fasta import read_fasta
from evoscan.io.gtf import gene_models, read_gtf
from evoscan.windows import (WindowParams, classify_regions, make_windows, read_windows,
                             reverse_complement, sequence_stats, tile_starts, write_windows)

P = WindowParams(size=100, stride=50, promoter_upstream=200, promoter_downstream=50)


def test_tile_starts_full_windows_only():
    assert tile_starts(300, 100, 50).tolist() == [0, 50, 100, 150, 200]
    assert tile_starts(349, 100, 50).tolist() == [0, 50, 100, 150, 200]
    assert tile_starts(99, 100, 50).size == 0


def test_sequence_stats_by_hand():
    seqs = np.array([b"ACGTacgtNN", b"CCCCGGGGAA"], dtype="S10")
    s = sequence_stats(seqs)
    # first: 8 called bases, C=2 G=2, CpG=2 (positions 1-2 and 5-6) -> o/e = 2*8/(2*2) = 4
    assert s["gc"][0] == pytest.approx(0.5)
    assert s["cpg_oe"][0] == pytest.approx(4.0)
    assert s["n_frac"][0] == pytest.approx(0.2)
    assert s["softmask_frac"][0] == pytest.approx(0.4)
    # second: C=4 G=4, one CpG, 10 called -> 1*10/16
    assert s["cpg_oe"][1] == pytest.approx(10 / 16)
    assert s["gc"][1] == pytest.approx(0.8)
    assert all(len(v) == 0 for v in sequence_stats(seqs[:0]).values())
    many = np.tile(seqs, 5)  # in blocks of 3 rows: the same values
    for name, values in sequence_stats(many, block=3).items():
        assert np.array_equal(values, np.tile(s[name], 5)), name


def test_loci_header_coordinates_orientation_and_case(tmp_path):
    rng = np.random.default_rng(0)
    seq = random_dna(rng, 400).lower()[:100] + random_dna(rng, 300)
    fa = tmp_path / "loci.fa"
    fa.write_text(f">PLUS chr1:1001-1400 gene_strand=+ tss=1201\n{seq}\n"
                  f">MINUS chr2:2001-2400 gene_strand=-\n{seq}\n")
    ws = make_windows(P, fasta=fa)
    plus = ws.table[ws.table.gene == "PLUS"]
    minus = ws.table[ws.table.gene == "MINUS"]
    assert plus.start.tolist() == [1000, 1050, 1100, 1150, 1200, 1250, 1300]
    assert (plus.chrom == "chr1").all() and (plus.end - plus.start == 100).all()
    # minus-strand gene: tiled from its 5' end (the right end), sequence reverse-complemented
    assert minus.start.tolist() == [2300, 2250, 2200, 2150, 2100, 2050, 2000]
    first_minus = ws.seqs[minus.index[0]].decode()
    assert first_minus == reverse_complement(seq[300:400])
    assert ws.seqs[plus.index[0]].decode() == seq[:100]  # case kept
    assert plus.softmask_frac.iloc[0] == pytest.approx(1.0)
    # TSS at 0-based 1200 (+): promoter = [1000, 1250); centres 1050..1350 step 50
    assert plus.region.tolist() == ["promoter"] * 4 + ["unannotated"] * 3
    assert (minus.region == "unannotated").all()


def test_gzipped_and_any_line_width_give_identical_windows(tmp_path):
    rng = np.random.default_rng(1)
    records = {"A": random_dna(rng, 1000), "B": random_dna(rng, 800)}
    plain = write_fasta(tmp_path / "a.fa", records, width=60)
    one_line = write_fasta(tmp_path / "b.fa", records, width=10_000)
    gz = tmp_path / "c.fa.gz"
    gz.write_bytes(gzip.compress(one_line.read_bytes()))
    digests = {make_windows(P, fasta=f).digest for f in (plain, one_line, gz)}
    assert len(digests) == 1


def test_windows_with_too_many_n_are_dropped_and_counted(tmp_path):
    rng = np.random.default_rng(2)
    seq = random_dna(rng, 300) + "N" * 200 + random_dna(rng, 300)
    ws = make_windows(P, fasta=write_fasta(tmp_path / "n.fa", {"G": seq}))
    assert ws.n_dropped_n > 0
    assert (ws.table.n_frac <= P.max_n_frac).all()
    assert len(ws) + ws.n_dropped_n == len(tile_starts(800, 100, 50))


def test_hdf5_round_trip_keeps_everything(tmp_path):
    rng = np.random.default_rng(3)
    fa = write_fasta(tmp_path / "r.fa", {"A": random_dna(rng, 700), "B": random_dna(rng, 500).lower()})
    ws = make_windows(P, fasta=fa)
    write_windows(tmp_path / "w.h5", ws)
    back = read_windows(tmp_path / "w.h5")
    assert back.digest == ws.digest
    assert back.table.equals(ws.table)
    assert back.params == P


GTF = """\
chrT\tt\tgene\t1001\t3000\t.\t+\t.\tgene_id "g1"; gene_name "GENE1";
chrT\tt\ttranscript\t1001\t3000\t.\t+\t.\tgene_id "g1"; gene_name "GENE1"; transcript_id "t1";
chrT\tt\texon\t1001\t1400\t.\t+\t.\tgene_id "g1"; gene_name "GENE1"; transcript_id "t1";
chrT\tt\texon\t2001\t2200\t.\t+\t.\tgene_id "g1"; gene_name "GENE1"; transcript_id "t1";
chrT\tt\texon\t2801\t3000\t.\t+\t.\tgene_id "g1"; gene_name "GENE1"; transcript_id "t1";
chrT\tt\tCDS\t1301\t1400\t.\t+\t0\tgene_id "g1"; gene_name "GENE1"; transcript_id "t1";
chrT\tt\tCDS\t2001\t2200\t.\t+\t0\tgene_id "g1"; gene_name "GENE1"; transcript_id "t1";
chrT\tt\tCDS\t2801\t2850\t.\t+\t0\tgene_id "g1"; gene_name "GENE1"; transcript_id "t1";
chrT\tt\tgene\t5001\t6000\t.\t-\t.\tgene_id "g2"; gene_name "GENE2";
chrT\tt\ttranscript\t5001\t6000\t.\t-\t.\tgene_id "g2"; gene_name "GENE2"; transcript_id "t2";
chrT\tt\texon\t5001\t6000\t.\t-\t.\tgene_id "g2"; gene_name "GENE2"; transcript_id "t2";
"""


def test_region_classes_from_gtf(tmp_path):
    (tmp_path / "a.gtf").write_text(GTF)
    model = gene_models(read_gtf(tmp_path / "a.gtf"), ["GENE1"])["GENE1"]
    assert (model.start, model.end, model.tss) == (1000, 3000, 1000)
    centres = np.array([700, 1000, 1250, 1350, 1700, 2100, 2820, 2950, 3500])
    regions = classify_regions(centres, "+", P, model)
    # promoter [800, 1050); 5'UTR before CDS start 1300; CDS ends at 2850 -> 3'UTR after
    assert regions.tolist() == ["flank", "promoter", "5'UTR", "exon", "intron", "exon", "exon",
                                "3'UTR", "flank"]


def test_genome_mode_cuts_gene_body_plus_promoter(tmp_path):
    rng = np.random.default_rng(4)
    genome = write_fasta(tmp_path / "g.fa", {"chrT": random_dna(rng, 8000), "chrU": random_dna(rng, 500)})
    (tmp_path / "a.gtf").write_text(GTF)
    ws = make_windows(P, genome=genome, gtf=tmp_path / "a.gtf", genes=["GENE2", "GENE1"])
    assert ws.table.gene.unique().tolist() == ["GENE2", "GENE1"]  # the user's order
    g1 = ws.table[ws.table.gene == "GENE1"]
    assert g1.start.min() == 800 and g1.end.max() <= 3000  # TSS-200 .. gene end
    g2 = ws.table[ws.table.gene == "GENE2"]
    # minus strand, TSS at 5999: promoter [5950, 6200); region [5000, 6200), tiled from the right
    assert g2.end.iloc[0] == 6200 and g2.start.min() >= 5000
    genome_seq = next(read_fasta(genome)).seq
    row = g2.iloc[0]
    assert ws.seqs[g2.index[0]].decode() == reverse_complement(genome_seq[row.start:row.end])


def test_loci_with_gtf_classifies_the_real_des_promoter(loci_fasta, gtf, tmp_path):
    from conftest import subset_fasta

    fa = subset_fasta(loci_fasta, ["DES"], tmp_path / "des.fa")
    ws = make_windows(WindowParams(), fasta=fa, gtf=gtf)
    des = ws.table
    # DES TSS chr2:219418377 (1-based) -> promoter [219416376, 219418876)
    promoter = des[des.region == "promoter"]
    centres = promoter.start + 256
    assert len(promoter) >= 9
    assert centres.min() >= 219416376 and centres.max() < 219418876
    assert set(des.region) >= {"promoter", "exon", "intron", "flank", "3'UTR"}


@pytest.mark.parametrize("content,message", [
    ("", "file is empty"),
    ("hello world\nnot a fasta\n", "not FASTA"),
    (">a\nACGT\n>a\nACGT\n", "duplicate sequence id 'a'"),
    (">a\nACGTXACGT\n", "has 'X' at position 5"),
    (">a\nACGTRACGT\n", "--ambiguous-as-n"),
    (">a\n\n>b\nACGT\n", "record 'a' has no sequence"),
])
def test_bad_fasta_is_refused_with_a_reason(tmp_path, content, message):
    fa = tmp_path / "bad.fa"
    fa.write_text(content)
    with pytest.raises(EvoscanError, match=message):
        list(read_fasta(fa))


def test_ambiguity_codes_become_n_when_asked(tmp_path):
    fa = tmp_path / "iupac.fa"
    fa.write_text(">a\nACGTRYacgtry\n")
    assert next(read_fasta(fa, ambiguous_as_n=True)).seq == "ACGTNNacgtnn"


def test_window_longer_than_every_sequence(tmp_path):
    fa = write_fasta(tmp_path / "short.fa", {"a": "ACGT" * 10, "b": "ACGT" * 20})
    with pytest.raises(EvoscanError, match="longer than every sequence"):
        make_windows(P, fasta=fa)


def test_gene_missing_from_gtf(tmp_path):
    (tmp_path / "a.gtf").write_text(GTF)
    fa = write_fasta(tmp_path / "g.fa", {"chrT": "ACGT" * 2000})
    with pytest.raises(EvoscanError, match="gene\\(s\\) not found.*NOPE"):
        make_windows(P, genome=fa, gtf=tmp_path / "a.gtf", genes=["GENE1", "NOPE"])
