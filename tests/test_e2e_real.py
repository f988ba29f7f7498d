"""End to end on the 25 real GRCh38 loci (shared/data), kmer backend, real BLAST and masking tools."""

import gzip
import re

import numpy as np
import pandas as pd
import pytest

from conftest import evoscan, subset_fasta
from evoscan.blast import read_blast
from evoscan.mask import read_repeat_frac
from evoscan.windows import read_windows

pytestmark = pytest.mark.slow

REQUIRED = ["window_a", "window_b", "gene_a", "gene_b", "chrom_a", "start_a", "end_a", "chrom_b",
            "start_b", "end_b", "region_a", "region_b", "cosine", "repeat_frac_a", "repeat_frac_b",
            "blast_evalue", "blast_bitscore"]
# MYH7's locus ends inside MYH6's: chr14:23410738-23413277 (1-based) is in both.
SHARED = ("chr14", 23410737, 23413277)


@pytest.fixture(scope="module")
def demo(demo_run):
    return demo_run


def test_all_25_loci_windowed_with_regions(demo):
    table = demo["windows"].table
    assert table.gene.nunique() == 25
    assert len(table) > 2000
    assert set(table.region) == {"promoter", "5'UTR", "exon", "intron", "3'UTR", "flank"}
    des_promoter = table[(table.gene == "DES") & (table.region == "promoter")]
    # the anecdote's DES promoter window, TSS-2000..TSS+500 = chr2:219416376-219418877
    assert ((des_promoter.start < 219418877) & (des_promoter.end > 219416376)).all()
    assert len(des_promoter) >= 9


def test_myh6_myh7_shared_segment_and_paralogy_are_blast_hits(demo):
    ws = read_windows(demo["outdir"] / "windows.h5")
    hits, _ = read_blast(demo["outdir"] / "blast.h5", ws)
    t = ws.table
    gene = t.gene.to_numpy()
    a, b = hits.window_a.to_numpy(), hits.window_b.to_numpy()
    myh = ((gene[a] == "MYH6") & (gene[b] == "MYH7")) | ((gene[a] == "MYH7") & (gene[b] == "MYH6"))
    in_shared = ((t.chrom == SHARED[0]) & (t.start >= SHARED[1]) & (t.end <= SHARED[2])).to_numpy()
    # windows lying in the shared segment: found by BLAST as identical across the two loci
    identical = hits[myh & in_shared[a] & in_shared[b] & (hits.pident == 100) & (hits.length >= 500)]
    assert len(identical) >= 4
    # paralogy beyond the shared segment: strong hits between windows outside it
    paralog = hits[myh & ~in_shared[a] & ~in_shared[b] & (hits.evalue < 1e-10)]
    assert len(paralog) >= 20
    # and none of those pairs can be a candidate
    pairs = demo["pairs"]
    strong = set(zip(paralog.window_a, paralog.window_b)) | set(zip(identical.window_a, identical.window_b))
    scored = pairs.set_index(["window_a", "window_b"])
    listed = [p for p in strong if p in scored.index]
    assert listed, "some MYH6/MYH7 paralogous windows should be nearest neighbours"
    assert not scored.loc[listed, "candidate"].any()


def test_candidates_are_repeat_free_and_blast_free(demo):
    pairs = demo["pairs"]
    cand = pairs[pairs.repeat_free & ~pairs.blast_hit]  # past the repeat and BLAST filters
    assert len(cand) > 1000
    assert (cand.repeat_frac_a <= 0.1).all() and (cand.repeat_frac_b <= 0.1).all()
    assert cand.blast_evalue.isna().all()
    final = pairs[pairs.candidate]  # candidates passed those and the statistics
    assert set(final.index) <= set(cand.index)
    assert (final.qvalue <= 0.05).all() and not final.sw_homology.any()
    # repeat-rich windows (RepeatMasker-derived soft-masking) appear among neighbours but never as candidates
    ws = demo["windows"]
    rich = np.flatnonzero(ws.table.softmask_frac.to_numpy() > 0.5)
    assert len(rich) > 100
    assert np.isin(pairs.window_a, rich).any()
    assert not np.isin(cand.window_a, rich).any() and not np.isin(cand.window_b, rich).any()
    # the union mask is at least the soft-mask
    frac = read_repeat_frac(demo["outdir"] / "masks.h5", ws)
    assert (frac["repeat_frac"] >= frac["softmask_frac"] - 1e-6).all()
    assert (frac["repeat_frac"] > frac["softmask_frac"] + 0.05).sum() > 10  # dust/trf add to it


def test_funnel_narrows_and_is_printed(demo):
    funnel = list(demo["funnel"].values())
    assert all(x >= y for x, y in zip(funnel, funnel[1:]))
    out = demo["stdout"]
    for label in ("window pairs", "cross-gene", "repeat-free", "no BLAST hit", "beats both nulls",
                  "no Smith-Waterman homology", "candidates", "Composition (6-mer cosine) explains"):
        assert label in out
    assert re.search(r"Top \d+ candidates", out)


def test_tsv_outputs(demo):
    outdir = demo["outdir"]
    cand = pd.read_csv(outdir / "candidates.tsv", sep="\t", keep_default_na=False)
    assert list(cand.columns[:len(REQUIRED)]) == REQUIRED
    assert (cand.blast_evalue == "").all()  # empty when there is no hit
    with gzip.open(outdir / "pairs.tsv.gz", "rt") as fh:
        pairs = pd.read_csv(fh, sep="\t")
    assert set(REQUIRED) <= set(pairs.columns) and len(pairs) == demo["funnel"]["scored"]
    assert (pairs.gene_a != pairs.gene_b).all()
    for _, group in pairs.groupby("candidate"):  # candidates first, each part by corrected score
        assert group.score.is_monotonic_decreasing
    assert pairs.candidate.is_monotonic_decreasing
    bedpe = pd.read_csv(outdir / "candidates.bedpe", sep="\t", header=None)
    assert len(bedpe) == len(cand) and bedpe.shape[1] == 8


def test_step_by_step_cli_equals_run(loci_fasta, gtf, tmp_path):
    fa = subset_fasta(loci_fasta, ["DES", "ACTC1", "TNNC1", "MYL2"], tmp_path / "four.fa")
    steps = [
        ["windows", "--fasta", fa, "--gtf", gtf, "-o", tmp_path / "windows.h5"],
        ["mask", "--windows", tmp_path / "windows.h5", "-o", tmp_path / "masks.h5"],
        ["blast", "--windows", tmp_path / "windows.h5", "--threads", "2", "-o", tmp_path / "blast.h5"],
        ["embed", "--windows", tmp_path / "windows.h5", "-o", tmp_path / "embeddings.h5"],
        ["score", "--windows", tmp_path / "windows.h5", "--masks", tmp_path / "masks.h5",
         "--blast", tmp_path / "blast.h5", "--embeddings", tmp_path / "embeddings.h5",
         "-o", tmp_path / "scores.h5"],
        ["report", "--windows", tmp_path / "windows.h5", "--scores", tmp_path / "scores.h5",
         "--outdir", tmp_path / "steps"],
    ]
    for args in steps:
        proc = evoscan(*args)
        assert proc.returncode == 0, proc.stderr
    proc = evoscan("run", "--fasta", fa, "--gtf", gtf, "--threads", "2", "--outdir", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    for name in ("candidates.tsv", "pairs.tsv.gz"):  # every scored pair, p- and q-values included
        by_steps = gzip.open(tmp_path / "steps" / name, "rt").read() if name.endswith(".gz") else (
            tmp_path / "steps" / name).read_text()
        by_run = gzip.open(tmp_path / "run" / name, "rt").read() if name.endswith(".gz") else (
            tmp_path / "run" / name).read_text()
        assert by_steps == by_run and by_run.count("\n") >= 1
    assert by_run.count("\n") > 500
