"""Inputs at scale: `--genes all` (optionally `--gene-type`) and `--regions` BED over a genome FASTA.

The "genome" here is real: three GRCh38 loci written as chromosomes chr7 (ACTB), chr10 (ANKRD1) and
chr20 (AVP), each after 1 kb of N, with the real LRG-derived GTF shifted to match; the GTF's other
chromosomes are absent from this genome, as scaffolds and patches are from a real one.
"""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

from conftest import evoscan
from evoscan.errors import EvoscanError
from evoscan.io.bed import read_bed
from evoscan.io.fasta import parse_locus_header, read_fasta
from evoscan.io.gtf import all_gene_models, read_gtf
from evoscan.windows import WindowParams, make_windows, read_windows, reverse_complement

P = WindowParams(size=256, stride=128, promoter_upstream=1000, promoter_downstream=200)
CLI_P = ["--window-size", "256", "--stride", "128", "--promoter-upstream", "1000",
         "--promoter-downstream", "200"]
LOCI = {"ACTB": "chr7", "ANKRD1": "chr10", "AVP": "chr20"}
PAD = 1000


def gtf_genes(path) -> dict[str, str]:
    """gene_name -> chromosome of every gene record, read with a plain regex (not the code under test)."""
    genes = {}
    for line in open(path):
        fields = line.split("\t")
        if len(fields) == 9 and fields[2] == "gene":
            genes[re.search(r'gene_name "([^"]+)"', fields[8])[1]] = fields[0]
    return genes


@pytest.fixture(scope="module")
def small_genome(loci_fasta, gtf, data_dir, tmp_path_factory):
    """Genome FASTA (chr7, chr10, chr20), the shifted GTF, and the same GTF with GENCODE gene types."""
    out = tmp_path_factory.mktemp("genome")
    shift, seqs = {}, {}
    for rec in read_fasta(loci_fasta):
        if rec.name in LOCI:
            header = parse_locus_header(rec)
            assert header.chrom == LOCI[rec.name]
            shift[header.chrom] = header.start - PAD
            seqs[header.chrom] = "N" * PAD + rec.seq
    genome = out / "genome.fa"
    genome.write_text("".join(f">{chrom}\n{seq}\n" for chrom, seq in seqs.items()))
    gencode = data_dir / "annotation" / "gencode_subset_grch38.tsv"
    types = {f[6]: f[7] for f in (line.rstrip("\n").split("\t") for line in open(gencode)) if f[2] == "gene"}
    lines = [line for line in open(gtf) if not line.startswith("#")]
    shifted, typed = [], {"gene_type": [], "gene_biotype": []}
    for line in lines:
        f = line.rstrip("\n").split("\t")
        if f[0] in shift:
            f[3], f[4] = str(int(f[3]) - shift[f[0]]), str(int(f[4]) - shift[f[0]])
        shifted.append("\t".join(f) + "\n")
        name = re.search(r'gene_name "([^"]+)"', f[8])[1]
        for key in typed:
            extra = f' {key} "{types[name]}";' if name in types else ""
            typed[key].append("\t".join(f[:8] + [f[8] + extra]) + "\n")
    paths = {"genome": genome, "seqs": seqs, "gtf": out / "shifted.gtf"}
    paths["gtf"].write_text("".join(shifted))
    for key, rows in typed.items():
        paths[key] = out / f"{key}.gtf"
        paths[key].write_text("".join(rows))
    paths["types"] = types
    return paths


def assert_windows_are_genome_slices(ws, seqs):
    for row, seq in zip(ws.table.itertuples(), ws.seqs):
        expected = seqs[row.chrom][row.start:row.end]
        if row.strand == "-":
            expected = reverse_complement(expected)
        assert seq.decode() == expected, row.id


# ---- --genes all ------------------------------------------------------------------------------

def test_genes_all_windows_every_gene_on_the_genome_and_counts_the_rest(small_genome):
    ws = make_windows(P, genome=small_genome["genome"], gtf=small_genome["gtf"], genes=["all"])
    genes = gtf_genes(small_genome["gtf"])
    present = {g for g, chrom in genes.items() if chrom in LOCI.values()}
    assert present >= {"ACTB", "AC006483.1", "ANKRD1", "RNU6-740P", "AVP"}
    # two gene ids per name (RefSeq + Ensembl records) are still one gene, named plainly
    assert set(ws.table.gene) == present
    assert ws.n_genes_skipped == len(genes) - len(present) > 0
    assert set(ws.table.chrom) == set(LOCI.values())
    assert_windows_are_genome_slices(ws, small_genome["seqs"])
    # the same windows as naming the gene explicitly
    one = make_windows(P, genome=small_genome["genome"], gtf=small_genome["gtf"], genes=["ANKRD1"])
    mine = ws.table[ws.table.gene == "ANKRD1"]
    assert mine.reset_index(drop=True).equals(one.table)
    assert (ws.seqs[mine.index] == one.seqs).all()


def test_explicit_gene_list_on_a_missing_chromosome_is_still_an_error(small_genome):
    with pytest.raises(EvoscanError, match="chr2 named in the GTF are not in the genome FASTA"):
        make_windows(P, genome=small_genome["genome"], gtf=small_genome["gtf"], genes=["ANKRD1", "DES"])


@pytest.mark.parametrize("attribute", ["gene_type", "gene_biotype"])
def test_gene_type_keeps_only_genes_of_that_type(small_genome, attribute):
    ws = make_windows(P, genome=small_genome["genome"], gtf=small_genome[attribute], genes=["all"],
                      gene_type="protein_coding")
    assert set(ws.table.gene) == {"ACTB", "ANKRD1", "AVP"}  # the GENCODE protein-coding genes there
    everything = make_windows(P, genome=small_genome["genome"], gtf=small_genome[attribute], genes=["all"])
    assert set(everything.table.gene) - set(ws.table.gene) == {"AC006483.1", "RNU6-740P"}


def test_gene_type_on_loci_fasta_with_gtf(loci_fasta, small_genome, tmp_path):
    from conftest import subset_fasta

    fa = subset_fasta(loci_fasta, ["DES", "MSTN"], tmp_path / "two.fa")
    gtf = small_genome["gene_type"]  # chr2 rows are unshifted, so the loci headers still match
    default = make_windows(WindowParams(), fasta=fa, gtf=gtf)
    every = make_windows(WindowParams(), fasta=fa, gtf=gtf, genes=["all"], gene_type="protein_coding")
    assert set(every.table.gene) == {"DES", "MSTN"}
    assert every.digest == default.digest


def test_gene_type_without_the_attribute_is_one_line_error(small_genome):
    r = evoscan("windows", "--genome", small_genome["genome"], "--gtf", small_genome["gtf"], "--genes", "all",
                "--gene-type", "protein_coding")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "gene_type or gene_biotype" in r.stderr


def test_gene_type_needs_all_genes(small_genome):
    with pytest.raises(EvoscanError, match="--gene-type needs --genes all and --gtf"):
        make_windows(P, genome=small_genome["genome"], gtf=small_genome["gene_type"], genes=["ACTB"],
                     gene_type="protein_coding")


def test_chromosome_naming_mismatch_is_one_line_error(small_genome, tmp_path):
    genome = tmp_path / "ensembl_names.fa"
    genome.write_text("".join(f">{chrom[3:]}\n{seq}\n" for chrom, seq in small_genome["seqs"].items()))
    r = evoscan("windows", "--genome", genome, "--gtf", small_genome["gtf"], "--genes", "all", *CLI_P)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "names differ" in r.stderr and "'chr10'" in r.stderr and "'10'" in r.stderr


def test_genes_with_the_same_name_at_separate_loci_stay_separate(tmp_path):
    gtf = tmp_path / "dups.gtf"
    rows = [("g1", "GENE", 1001, 3000), ("g2", "GENE", 1101, 3000),  # one gene, two sources
            ("y1", "Y_RNA", 5001, 5100), ("y2", "Y_RNA", 90001, 90100)]  # one name, two loci
    gtf.write_text("".join(f'chrT\tt\tgene\t{s}\t{e}\t.\t+\t.\tgene_id "{i}"; gene_name "{n}";\n'
                           for i, n, s, e in rows))
    models = all_gene_models(read_gtf(gtf))
    assert list(models) == ["GENE", "Y_RNA|chrT:5001-5100", "Y_RNA|chrT:90001-90100"]
    assert (models["GENE"].start, models["GENE"].end) == (1000, 3000)
    assert (models["Y_RNA|chrT:90001-90100"].start, models["Y_RNA|chrT:90001-90100"].end) == (90000, 90100)


# ---- --regions --------------------------------------------------------------------------------

def write_bed(path, lines: list[str]):
    text = "".join(line + "\n" for line in lines)
    if str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_regions_tiled_centred_and_reverse_complemented(small_genome, tmp_path):
    end20 = len(small_genome["seqs"]["chr20"])
    bed = write_bed(tmp_path / "regions.bed.gz", [
        "track name=peaks", "browser position chr10:1-100", "# a comment",
        "chr10\t3000\t3700\tenh1\t0\t+",  # 700 bp: four full windows from the start
        "chr10\t5000\t5600\tpeak_minus\t0\t-",  # tiled from the right end, reverse-complemented
        "chr7\t4000\t4100",  # shorter than a window, no name
        f"chr20\t{end20 - 40}\t{end20 - 10}\tedge",  # short, at the chromosome's end
        "chr7\t6000\t6300\tdup", "chr7\t7000\t7300\tdup",  # a repeated name
        "chr2\t100\t900\tgone",  # chromosome not in the genome
    ])
    ws = make_windows(P, genome=small_genome["genome"], regions=bed)
    t = ws.table
    assert ws.n_genes_skipped == 1
    assert list(dict.fromkeys(t.gene)) == ["enh1", "peak_minus", "chr7:4001-4100", "edge",
                                           "dup|chr7:6001-6300", "dup|chr7:7001-7300"]
    assert (t.region == "region").all()
    enh = t[t.gene == "enh1"]
    assert enh.start.tolist() == [3000, 3128, 3256, 3384]
    assert enh.id.tolist() == ["enh1_w1", "enh1_w2", "enh1_w3", "enh1_w4"]
    minus = t[t.gene == "peak_minus"]
    assert minus.start.tolist() == [5344, 5216, 5088] and (minus.strand == "-").all()
    first = ws.seqs[minus.index[0]].decode()
    assert first == reverse_complement(small_genome["seqs"]["chr10"][5344:5600])
    short = t[t.gene == "chr7:4001-4100"]
    assert short[["start", "end"]].values.tolist() == [[4050 - 128, 4050 + 128]]
    edge = t[t.gene == "edge"]
    assert edge[["start", "end"]].values.tolist() == [[end20 - 256, end20]]
    assert_windows_are_genome_slices(ws, small_genome["seqs"])


def test_regions_through_the_cli(small_genome, tmp_path):
    bed = write_bed(tmp_path / "r.bed", ["chr10\t3000\t3700\tenh1", "chr2\t100\t900"])
    out = tmp_path / "w.h5"
    r = evoscan("windows", "--genome", small_genome["genome"], "--regions", bed, "-o", out, *CLI_P)
    assert r.returncode == 0, r.stderr
    assert "4 windows of 1 regions" in r.stderr and "1 regions skipped" in r.stderr
    assert read_windows(out).table.id.tolist() == ["enh1_w1", "enh1_w2", "enh1_w3", "enh1_w4"]


@pytest.mark.parametrize("line,message", [
    ("chr10\t3000", "line 2: a BED line needs at least chrom, start and end"),
    ("chr10\tabc\t3700", "line 2: start and end must be integers"),
    ("chr10\t3700\t3700", "line 2: end 3700 is not after start 3700"),
    ("chr10\t-5\t3700", "line 2: start -5 is negative"),
    ("chr10\t3000\t3700\tx\t0\t*", "line 2: strand (column 6) must be +, - or ."),
])
def test_malformed_bed_is_one_line_error_naming_file_and_line(small_genome, tmp_path, line, message):
    bed = write_bed(tmp_path / "bad.bed", ["chr10\t100\t900\tok", line])
    r = evoscan("windows", "--genome", small_genome["genome"], "--regions", bed, *CLI_P)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert f"{bed}, {message}" in r.stderr


@pytest.mark.parametrize("extra,message", [
    (["--genes", "ACTB"], "--regions needs --genome and takes no --fasta, --gtf or --genes"),
    (["--gtf", "x.gtf"], "--regions needs --genome and takes no --fasta, --gtf or --genes"),
])
def test_regions_exclude_gene_inputs(small_genome, tmp_path, extra, message):
    bed = write_bed(tmp_path / "r.bed", ["chr10\t3000\t3700"])
    r = evoscan("windows", "--genome", small_genome["genome"], "--regions", bed, *extra)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0  # a usage error
    assert message in r.stderr


def test_regions_need_a_genome(loci_fasta, tmp_path):
    bed = write_bed(tmp_path / "r.bed", ["chr2\t219416376\t219418877"])
    r = evoscan("windows", "--fasta", loci_fasta, "--regions", bed)
    assert r.returncode == 2 and "--regions needs --genome" in r.stderr


def test_read_bed_columns_and_empty_file(tmp_path):
    bed = write_bed(tmp_path / "r.bed", ["chr1 10 20", "chr1\t30\t40\t.\t0\t-", "chr1\t50\t60\tname\t0\t."])
    table = read_bed(bed)
    assert table[["chrom", "start", "end", "strand"]].values.tolist() == [
        ["chr1", 10, 20, "+"], ["chr1", 30, 40, "-"], ["chr1", 50, 60, "+"]]
    assert table.name.isna().tolist() == [True, True, False] and table.name.iloc[2] == "name"
    with pytest.raises(EvoscanError, match="no regions"):
        read_bed(write_bed(tmp_path / "empty.bed", ["# nothing", "track x"]))


def test_bed_chromosome_naming_mismatch(small_genome, tmp_path):
    bed = write_bed(tmp_path / "r.bed", ["10\t3000\t3700"])
    with pytest.raises(EvoscanError, match=r"names differ \(BED '10', genome FASTA 'chr10'\)"):
        make_windows(P, genome=small_genome["genome"], regions=bed)


def test_region_on_a_chromosome_shorter_than_a_window_is_dropped(tmp_path):
    rng = np.random.default_rng(0)
    genome = tmp_path / "g.fa"
    genome.write_text(f">tiny\n{''.join(rng.choice(list('ACGT'), 100))}\n"
                      f">big\n{''.join(rng.choice(list('ACGT'), 1000))}\n")
    bed = write_bed(tmp_path / "r.bed", ["tiny\t10\t50\tt", "big\t10\t50\tb"])
    ws = make_windows(P, genome=genome, regions=bed)
    assert ws.table.gene.tolist() == ["b"] and ws.table.start.tolist() == [0]


def test_region_past_the_chromosome_end_is_an_error(small_genome, tmp_path):
    end10 = len(small_genome["seqs"]["chr10"])
    bed = write_bed(tmp_path / "r.bed", [f"chr10\t{end10 - 100}\t{end10 + 1}\tlate"])
    with pytest.raises(EvoscanError, match=f"region late ends past the end of chr10 .*\\({end10} bp\\)"):
        make_windows(P, genome=small_genome["genome"], regions=bed)
