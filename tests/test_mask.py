
import numpy as np
import pytest

from conftest import random_dna, write_fasta
from evoscan import mask
from evoscan.errors import EvoscanError
from evoscan.windows import WindowParams, make_windows

P = WindowParams(size=500, stride=500)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Four 500-bp windows: a (CA)n tandem repeat, a poly-A run, soft-masked bases, clean sequence."""
    rng = np.random.default_rng(7)
    tmp = tmp_path_factory.mktemp("mask")
    tandem = random_dna(rng, 150) + "ACGTTGCATC" * 20 + random_dna(rng, 150)  # bases 150..350
    low = random_dna(rng, 300) + "A" * 80 + random_dna(rng, 120)  # bases 300..380
    soft = random_dna(rng, 100) + random_dna(rng, 100).lower() + random_dna(rng, 300)  # bases 100..200
    clean = random_dna(rng, 500)
    fa = write_fasta(tmp / "p.fa", {"TANDEM": tandem, "LOW": low, "SOFT": soft, "CLEAN": clean})
    ws = make_windows(P, fasta=fa)
    found, versions = mask.compute_masks(ws)
    return ws, found, versions, mask.mask_fractions(found, len(ws), 500)


def test_trf_finds_the_planted_tandem_repeat(planted):
    ws, found, versions, frac = planted
    trf = found["trf"][found["trf"].window == 0]
    assert len(trf) >= 1
    assert trf.start.min() <= 155 and trf.end.max() >= 345
    assert frac["trf_frac"][0] == pytest.approx(0.4, abs=0.03)
    assert frac["trf_frac"][3] == 0
    assert "Version 4.09" in versions["trf"]


def test_dustmasker_finds_the_poly_a_run(planted):
    ws, found, _, frac = planted
    dust = found["dust"][found["dust"].window == 1]
    assert len(dust) == 1
    assert dust.start.iloc[0] <= 302 and dust.end.iloc[0] >= 378
    assert frac["dust_frac"][1] >= 0.15
    assert frac["dust_frac"][3] == 0


def test_softmask_and_union(planted):
    ws, found, _, frac = planted
    assert frac["softmask_frac"].tolist() == pytest.approx([0, 0, 0.2, 0])
    assert frac["repeat_frac"][3] == 0  # clean window flagged by nothing
    for i in range(3):  # the union is at least every source and at most their sum
        parts = [frac[f"{s}_frac"][i] for s in ("softmask", "dust", "trf")]
        assert max(parts) <= frac["repeat_frac"][i] <= sum(parts) + 1e-6


def test_coverage_counts_overlaps_once():
    iv = mask.intervals_frame([0, 0, 0, 1], [0, 50, 400, 10], [100, 150, 600, 20])
    frac = mask.coverage(iv, 3, 500, chunk=2)  # chunking must not change the answer
    assert frac.tolist() == pytest.approx([(150 + 100) / 500, 10 / 500, 0])


def test_repeatmasker_out_maps_to_window_coordinates(tmp_path):
    rng = np.random.default_rng(8)
    seq = random_dna(rng, 1000)
    fa = tmp_path / "g.fa"
    fa.write_text(f">PLUS chr9:10001-11000 gene_strand=+\n{seq}\n>MINUS chr8:1-1000 gene_strand=-\n{seq}\n")
    ws = make_windows(P, fasta=fa)
    out = tmp_path / "rm.out"
    out.write_text(
        "   SW   perc perc perc  query      position in query           matching       repeat              position in  repeat\n"
        "score   div. del. ins.  sequence    begin     end    (left)    repeat         class/family         begin  end (left)   ID\n"
        "\n"
        " 1234   11.2  0.0  0.0  chr9        10101    10200 (100)   +  AluY           SINE/Alu               1  100  (211)   1\n"
        "  345   20.0  1.0  1.0  chr8          901     1000 (0)     C  L2             LINE/L2            (10)  300   200   2\n"
    )
    iv = mask.genome_to_window_intervals(mask.read_repeat_intervals(out), ws)
    by_id = dict(zip(ws.table.id, range(len(ws))))
    plus = iv[iv.window == by_id["PLUS_w1"]]
    assert plus[["start", "end"]].values.tolist() == [[100, 200]]  # genome 10100..10200 (0-based)
    # chr8 minus-strand gene: its first window is genome [500, 1000), reverse-complemented,
    # so genome 900..1000 is window 0..100
    minus = iv[iv.window == by_id["MINUS_w1"]]
    assert minus[["start", "end"]].values.tolist() == [[0, 100]]


def test_bed_repeats_are_read_too(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t10\t20\nchr1\t30\t45\tAluY\n")
    assert mask.read_repeat_intervals(bed).values.tolist() == [["chr1", 10, 20], ["chr1", 30, 45]]
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\tten\ttwenty\n")
    with pytest.raises(EvoscanError, match="not a RepeatMasker .out or BED"):
        mask.read_repeat_intervals(bad)


def test_missing_tool_names_the_package(planted, monkeypatch):
    ws = planted[0]
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EvoscanError, match="trf not found on PATH; install the trf package"):
        mask.compute_masks(ws, ("softmask", "trf"))
    with pytest.raises(EvoscanError, match="dustmasker not found.*ncbi-blast\\+"):
        mask.compute_masks(ws, ("dust",))


def test_real_softmasking_is_rmsk_derived(loci_fasta, data_dir, tmp_path):
    """On a real locus, soft-masking and the RepeatMasker intervals it came from agree."""
    from conftest import subset_fasta

    fa = subset_fasta(loci_fasta, ["DES"], tmp_path / "des.fa")
    ws = make_windows(WindowParams(), fasta=fa)
    found, _ = mask.compute_masks(ws, ("softmask",), rmsk=data_dir / "repeats" / "hg38_repeat_intervals.loci.bed")
    frac = mask.mask_fractions(found, len(ws), 512)
    assert np.allclose(frac["softmask_frac"], frac["rmsk_frac"], atol=1e-6)
    assert frac["repeat_frac"].max() > 0.5 and (frac["repeat_frac"] == 0).any()
