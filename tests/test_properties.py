"""Properties of the readers (FASTA, GTF, BED) and the window cutter over random, often malformed,
inputs: a valid result or the documented EvoscanError, never another exception; every window's
coordinates inside its sequence, and its bases those of the sequence there.

Hypothesis, derandomized (the same examples every run) and without deadlines."""

import gzip
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from evoscan.errors import EvoscanError
from evoscan.io.bed import read_bed
from evoscan.io.fasta import read_fasta
from evoscan.io.gtf import gene_models, read_gtf
from evoscan.windows import WindowParams, make_windows, reverse_complement, tile_starts

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DNA = "ACGTNacgtn"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


def write(path, text: str, how: str):
    """The text as a file: plain, CRLF, gzipped, or a gzip cut short."""
    data = text.replace("\n", "\r\n").encode() if how == "crlf" else text.encode()
    if how in ("gzip", "cut gzip"):
        data = gzip.compress(data, mtime=0)
        data = data[:max(1, len(data) // 2)] if how == "cut gzip" else data
    path.write_bytes(data)
    return path


HOW = st.sampled_from(["plain", "crlf", "gzip", "cut gzip"])
NAMES = st.text(string.ascii_letters + string.digits + "_.|", min_size=1, max_size=8)


def dna(length: int, seed: int, n_runs: int, soft_runs: int) -> str:
    """Random DNA with runs of N (hard-masked) and of lowercase (soft-masked) bases."""
    rng = np.random.default_rng(seed)
    bases = rng.choice(list("ACGT"), length)
    for runs, change in ((soft_runs, str.lower), (n_runs, lambda b: "N")):
        for _ in range(runs):
            at, n = rng.integers(0, length), rng.integers(1, 80)
            bases[at:at + n] = [change(b) for b in bases[at:at + n]]
    return "".join(bases)


SEQ = st.builds(dna, st.integers(1, 1500), st.integers(0, 2**16), st.integers(0, 4), st.integers(0, 3))
RECORDS = st.lists(st.tuples(NAMES, SEQ), max_size=4, unique_by=lambda r: r[0])
NOISE = st.text(DNA + "RYKMQ-*> \t\n\ré0", max_size=300)


def fasta_text(records: list[tuple[str, str]], width: int) -> str:
    return "".join(f">{name}\n" + "".join(seq[i:i + width] + "\n" for i in range(0, len(seq), width))
                   for name, seq in records)


# (text, the records it holds when well formed, else None)
FASTA = st.one_of(
    st.builds(lambda records, width: (fasta_text(records, width), records), RECORDS, st.integers(1, 80)),
    st.builds(lambda a, b: (a + b, None), st.builds(fasta_text, RECORDS, st.integers(1, 80)), NOISE),  # damaged
    NOISE.map(lambda text: (text, None)),
)


@SETTINGS
@given(case=FASTA, how=HOW, ambiguous=st.booleans())
def test_fasta_reader_gives_clean_records_or_the_documented_error(scratch, case, how, ambiguous):
    text, written = case
    path = write(scratch / "in.fa", text, how)
    well_formed = bool(written) and how != "cut gzip"
    try:
        records = list(read_fasta(path, ambiguous_as_n=ambiguous))
    except EvoscanError as err:
        assert not well_formed, f"well-formed FASTA refused: {err}"
        assert str(path) in str(err) and "\n" not in str(err)
        return event("refused: " + str(err).split(": ", 1)[-1][:25])
    event("read")
    if well_formed:
        assert [(r.name, r.seq) for r in records] == written
    names = [r.name for r in records]
    assert records and all(names) and len(set(names)) == len(names)
    assert all(r.seq and set(r.seq) <= set(DNA) for r in records)


def gtf_line(chrom, feature, start, end, strand, gene) -> str:
    return f'{chrom}\tt\t{feature}\t{start}\t{end}\t.\t{strand}\t.\tgene_id "{gene}"; gene_name "{gene}";\n'


def good_gtf_line(chrom, start, length, strand, gene, feature="exon") -> str:
    return gtf_line(chrom, feature, start, start + length, strand, gene)


GOOD_GTF_LINE = st.builds(good_gtf_line, st.sampled_from(["chr1", "chr2"]), st.integers(1, 2000),
                          st.integers(0, 1000), st.sampled_from("+-"), st.sampled_from(["A", "B", "C"]),
                          st.sampled_from(["gene", "exon", "CDS"]))
BAD_GTF_LINE = st.one_of(
    st.builds(gtf_line, st.just("chr1"), st.just("exon"), st.integers(-5, 3000), st.integers(-5, 3000),
              st.sampled_from("+-."), st.just("A")),  # start > end, or not 1-based
    st.text(string.printable, max_size=60).map(lambda s: s.replace("\n", " ") + "\n"),
)
GTF = st.one_of(st.lists(GOOD_GTF_LINE, min_size=1, max_size=8).map(lambda lines: (lines, True)),
                st.builds(lambda good, bad: (good + [bad], False), st.lists(GOOD_GTF_LINE, max_size=6), BAD_GTF_LINE))


@SETTINGS
@given(case=GTF, how=HOW, data=st.data())
def test_gtf_reader_gives_valid_intervals_or_the_documented_error(scratch, case, how, data):
    lines, good = case
    path = write(scratch / "in.gtf", "".join(lines), how)
    if good and how != "cut gzip":  # well formed: every line read, none refused
        assert len(read_gtf(path)) == len(lines)
    try:
        table = read_gtf(path)
        present = sorted(set(table["gene_name"].dropna()))
        models = gene_models(table, data.draw(st.lists(st.sampled_from([*present, "Z"]), min_size=1)), path)
    except EvoscanError as err:
        assert "\n" not in str(err)
        return event("refused: " + str(err).split(": ", 1)[-1][:25])
    event("read")
    assert (table["start"] >= 0).all() and (table["start"] < table["end"]).all()
    for model in models.values():
        assert 0 <= model.start < model.end and model.start <= model.tss < model.end


GOOD_BED_LINE = st.one_of(
    st.builds(lambda c, s, n, name, strand: f"{c}\t{s}\t{s + n}\t{name}\t0\t{strand}\n",
              st.sampled_from(["chr1", "chr2"]), st.integers(0, 2000), st.integers(1, 1000),
              st.sampled_from([".", "r1", "r2"]), st.sampled_from("+-.")),
    st.builds(lambda c, s, n: f"{c} {s} {s + n}\n", st.sampled_from(["chr1", "chr2"]), st.integers(0, 2000),
              st.integers(1, 1000)),  # BED3, space-separated
    st.sampled_from(["# comment\n", "track name=x\n", "\n"]),
)
BAD_BED_LINE = st.one_of(
    st.builds(lambda s, e, strand: f"chr1\t{s}\t{e}\tr\t0\t{strand}\n", st.integers(-5, 3000),
              st.integers(-5, 3000), st.sampled_from("+-.x")),
    st.text(string.printable, max_size=40).map(lambda s: s.replace("\n", " ") + "\n"),
)
BED = st.one_of(st.lists(GOOD_BED_LINE, max_size=8).map(lambda lines: (lines, True)),
                st.builds(lambda good, bad: (good + [bad], False), st.lists(GOOD_BED_LINE, max_size=6), BAD_BED_LINE))


@SETTINGS
@given(case=BED, how=HOW)
def test_bed_reader_gives_valid_regions_or_the_documented_error(scratch, case, how):
    lines, good = case
    path = write(scratch / "in.bed", "".join(lines), how)
    regions_written = sum(1 for line in lines if line.startswith("chr"))
    well_formed = good and regions_written and how != "cut gzip"
    try:
        regions = read_bed(path)
    except EvoscanError as err:
        assert not well_formed, f"well-formed BED refused: {err}"
        assert "\n" not in str(err)
        return event("refused: " + str(err).split(": ", 1)[-1][:25])
    event("read")
    assert len(regions) and (regions["start"] >= 0).all() and (regions["start"] < regions["end"]).all()
    if well_formed:
        assert len(regions) == regions_written
    assert set(regions["strand"]) <= {"+", "-"}


@given(length=st.integers(0, 3000), size=st.integers(1, 600), stride=st.integers(1, 600))
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_tile_starts_are_every_full_window_inside_the_sequence(length, size, stride):
    starts = tile_starts(length, size, stride)
    assert ((starts >= 0) & (starts + size <= length)).all()
    assert np.array_equal(np.diff(starts), np.full(max(len(starts) - 1, 0), stride))
    assert len(starts) == (0 if length < size else (length - size) // stride + 1)


# size, stride, promoter upstream and downstream, max N fraction; a few invalid (a UsageError)
PARAMS = st.one_of(
    st.tuples(st.integers(16, 300), st.integers(1, 300), st.integers(0, 500), st.integers(0, 500),
              st.sampled_from([0.0, 0.1, 0.5, 1.0])),
    st.tuples(st.integers(-4, 20), st.integers(-2, 2), st.just(0), st.just(0), st.sampled_from([0.1, -0.1, 1.5])),
)


def check_windows(ws, sequences: dict[str, tuple[int, str]]) -> None:
    """Every window lies inside its sequence, is `size` long, and holds the bases found there
    (reverse-complemented on the minus strand)."""
    size = ws.params.size
    assert len(ws) == len(ws.seqs) > 0 and ws.table["id"].is_unique
    for row, seq in zip(ws.table.itertuples(), ws.seqs):
        offset, bases = sequences[row.chrom]
        assert offset <= row.start and row.end <= offset + len(bases) and row.end - row.start == size
        expected = bases[row.start - offset:row.end - offset]
        assert seq.decode() == (reverse_complement(expected) if row.strand == "-" else expected)
        assert row.n_frac <= ws.params.max_n_frac and row.n_frac < 1


@SETTINGS
@given(records=st.lists(st.tuples(NAMES, SEQ, st.integers(0, 10_000), st.sampled_from("+-")), min_size=1,
                        max_size=4, unique_by=lambda r: r[0]),
       params=st.one_of(PARAMS, st.just((64, 32, 2000, 500, 0.1))), how=HOW)
def test_windows_of_loci_lie_inside_their_sequence(scratch, records, params, how):
    text = "".join(f">{name} c{i}:{start + 1}-{start + len(seq)} gene_strand={strand}\n{seq}\n"
                   for i, (name, seq, start, strand) in enumerate(records))
    path = write(scratch / "loci.fa", text, how)
    try:
        ws = make_windows(WindowParams(*params), fasta=path)
    except EvoscanError as err:
        assert "\n" not in str(err)
        return event("refused: " + str(err).split(": ", 1)[-1][:25])
    event("windows")
    check_windows(ws, {f"c{i}": (start, seq) for i, (_, seq, start, _) in enumerate(records)})


@SETTINGS
@given(chroms=st.lists(SEQ, min_size=1, max_size=3), data=st.data())
def test_windows_of_genes_and_regions_lie_inside_the_genome(scratch, chroms, data):
    genome = {f"chr{i + 1}": seq for i, seq in enumerate(chroms)}
    write(scratch / "genome.fa", "".join(f">{c}\n{s}\n" for c, s in genome.items()), "plain")
    chrom = st.sampled_from([*genome, "chrX"])
    genes = data.draw(st.lists(st.tuples(chrom, st.integers(1, 1200), st.integers(0, 600), st.sampled_from("+-"),
                                         st.sampled_from(["A", "B", "C"])), min_size=1, max_size=6))
    lines = [good_gtf_line(*gene) for gene in genes]
    bed = data.draw(st.lists(st.builds(lambda c, s, n: f"{c}\t{s}\t{s + n}\n", chrom, st.integers(0, 1200),
                                       st.integers(1, 600)), min_size=1, max_size=4))
    params = data.draw(PARAMS)
    write(scratch / "genes.gtf", "".join(lines), "plain")
    write(scratch / "regions.bed", "".join(bed), "plain")
    sequences = {c: (0, s) for c, s in genome.items()}
    named = sorted({gene[-1] for gene in genes})
    for inputs in ({"gtf": scratch / "genes.gtf", "genes": named}, {"gtf": scratch / "genes.gtf", "genes": ["all"]},
                   {"regions": scratch / "regions.bed"}):
        try:
            ws = make_windows(WindowParams(*params), genome=scratch / "genome.fa", **inputs)
        except EvoscanError as err:
            assert "\n" not in str(err)
            event("refused: " + str(err).split(": ", 1)[-1][:25])
            continue
        event("windows")
        check_windows(ws, sequences)
