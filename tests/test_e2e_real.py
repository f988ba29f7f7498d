"""End to end on the 25 real GRCh38 loci (shared/data), kmer backend, real BLAST and masking tools."""

import gzip
import re

import numpy as np
import pandas as pd
import pytest

from conftest import evoscan, subset_fasta
from evoscan import blast
from evoscan.mask import read_repeat_frac
from evoscan.windows import WindowSet

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


def test_myh6_myh7_paralogs_are_significant_and_stopped_by_blast(demo):
    """MYH6/MYH7 (paralogs, with a shared identical segment) are the strongest signal the
    statistics see on the real loci (among all nominated pairs), and BLAST on the nominated pairs
    stops them; the q-values that decide calls are computed without them."""
    pairs, ws = demo["pairs"], demo["windows"]
    gene = ws.table.gene.to_numpy()
    myh = ((gene[pairs.window_a] == "MYH7") & (gene[pairs.window_b] == "MYH6")) | (
        (gene[pairs.window_a] == "MYH6") & (gene[pairs.window_b] == "MYH7"))
    significant = pairs[pairs.qvalue_all <= 0.05]
    assert len(significant) >= 10 and myh[significant.index].mean() > 0.3
    assert pairs.qvalue[pairs.blast_hit | ~pairs.repeat_free].isna().all()
    searched = pairs[myh & pairs.blast_searched]
    assert (searched.blast_evalue < 1e-10).sum() >= 10  # strong paralog hits found on the nominated pairs
    assert not pairs[myh].candidate.any()


@pytest.mark.slow
def test_nominated_blast_equals_all_vs_all(demo):
    """BLAST of the nominated pairs, each window against its partners with the all-vs-all search
    space, gives the e-values (to BLAST's printed precision) and bitscores of an all-vs-all search,
    for every nominated pair, repeat-rich ones included: on the demo windows of 8 loci (the
    MYH6/MYH7 paralogs, repeat-rich CSRP3, MSTN and MYBPC3 among them; 693 windows: all-vs-all of
    all 2,031 takes minutes) and the demo's nominated pairs among them."""
    ws, pairs = demo["windows"], demo["pairs"]
    keep = np.flatnonzero(ws.table.gene.isin(["MYH6", "MYH7", "CSRP3", "MSTN", "MYBPC3", "DES", "SOX2", "PPIB"]))
    sub = WindowSet(ws.table.iloc[keep].reset_index(drop=True), ws.seqs[keep], ws.params)
    new_index = np.full(len(ws), -1)
    new_index[keep] = np.arange(len(keep))
    a, b = new_index[pairs.window_a.to_numpy()], new_index[pairs.window_b.to_numpy()]
    inside = (a >= 0) & (b >= 0)
    a, b = a[inside], b[inside]
    nominated, info = blast.nominated_hits(sub, a, b, threads=2)
    whole, _ = blast.run_blast(sub, threads=2)
    whole = whole.merge(pd.DataFrame({"window_a": a, "window_b": b}), on=["window_a", "window_b"])
    assert len(whole) > 300 and info["pairs_searched"] == len(a) > 1500
    got = nominated.set_index(["window_a", "window_b"]).sort_index()
    want = whole.set_index(["window_a", "window_b"]).sort_index()
    assert got.index.equals(want.index)
    for column in ("evalue", "bitscore", "pident", "length"):
        assert np.array_equal(got[column].to_numpy(), want[column].to_numpy()), column


def test_candidates_are_repeat_free_and_blast_free(demo):
    pairs = demo["pairs"]
    cand = pairs[pairs.repeat_free & ~pairs.blast_hit]  # past the repeat and BLAST filters
    assert len(cand) > 1000 and cand.blast_searched.all() and not pairs[~pairs.repeat_free].blast_searched.any()
    assert (cand.repeat_frac_a <= 0.1).all() and (cand.repeat_frac_b <= 0.1).all()
    assert cand.blast_evalue.isna().all()
    # the composition-only kmer backend calls nothing on the real loci (README); what a call must
    # pass is tested where there are calls (test_report.py)
    assert not pairs.candidate.any()
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
    for label in ("window pairs", "cross-group", "nominated by the search", "repeat-free", "no BLAST hit",
                  "target-decoy q",
                  "no Smith-Waterman homology", "candidates", "Composition", "Motif control"):
        assert label in out
    # the best pairs with their motif evidence, candidates or (as on the demo) the best uncalled
    assert re.search(r"Top \d+ candidates|No candidates. The 10 best", out)


def test_tsv_outputs(demo):
    outdir = demo["outdir"]
    cand = pd.read_csv(outdir / "candidates.tsv", sep="\t", keep_default_na=False)
    assert list(cand.columns[:len(REQUIRED)]) == REQUIRED
    assert len(cand) == 0  # nothing called here; calls: tests/test_report.py
    with gzip.open(outdir / "pairs.tsv.gz", "rt") as fh:
        pairs = pd.read_csv(fh, sep="\t", dtype={"shared_motifs": str})
    assert set(REQUIRED) <= set(pairs.columns) and len(pairs) == demo["funnel"]["nominated"]
    assert (pairs.gene_a != pairs.gene_b).all()
    assert pairs.score_z.is_monotonic_decreasing  # by normalised score (after the calls, if any)
    assert (outdir / "candidates.bedpe").read_text() == ""


def test_step_by_step_cli_equals_run(loci_fasta, gtf, tmp_path):
    fa = subset_fasta(loci_fasta, ["DES", "ACTC1", "TNNC1", "MYL2"], tmp_path / "four.fa")
    steps = [
        ["windows", "--fasta", fa, "--gtf", gtf, "-o", tmp_path / "windows.h5"],
        ["mask", "--windows", tmp_path / "windows.h5", "-o", tmp_path / "masks.h5"],
        ["embed", "--windows", tmp_path / "windows.h5", "-o", tmp_path / "embeddings.h5"],
        ["search", "--windows", tmp_path / "windows.h5", "--embeddings", tmp_path / "embeddings.h5",
         "-o", tmp_path / "neighbours.h5"],
        ["check", "--windows", tmp_path / "windows.h5", "--masks", tmp_path / "masks.h5",
         "--neighbours", tmp_path / "neighbours.h5", "--threads", "2", "-o", tmp_path / "scores.h5"],
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


def test_killed_check_resumes_its_blast_and_motif_profiles_and_ends_identical(demo, tmp_path):
    """SIGKILL a real `evoscan check` during BLAST of the nominated pairs, and its rerun during the
    motif profiles (in blocks of 256 here, so the demo has several); the last run continues from
    the finished blocks of both and writes the scores file an uninterrupted check writes, byte for
    byte (but for its `created` time)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import h5py

    d = demo["outdir"]
    small_blocks = "import sys, evoscan.check, evoscan.cli; evoscan.check.PROFILE_BLOCK = 256; sys.exit(evoscan.cli.main())"
    args = [sys.executable, "-c", small_blocks, "check", "--windows", str(d / "windows.h5"), "--masks",
            str(d / "masks.h5"), "--neighbours", str(d / "neighbours.h5"), "--threads", "2"]
    out, partial = tmp_path / "scores.h5", tmp_path / "scores.h5.partial"
    for phase, blocks_before_kill in (("blast", 5), ("motif_profiles", 2)):
        proc = subprocess.Popen([*args, "-o", str(out)], stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 180
        while len(list(partial.glob(f"{phase}/block*.npz"))) < blocks_before_kill and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not out.exists() and len(list(partial.glob(f"{phase}/block*.npz"))) >= blocks_before_kill
    rerun = subprocess.run([*args, "-o", str(out)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "finished BLAST block(s)" in rerun.stderr and "finished motif-profile block(s)" in rerun.stderr
    assert not partial.exists()
    with h5py.File(out) as got, h5py.File(d / "scores.h5") as want:
        names = []
        want.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        assert "motif_sites/matrix" in names
        for name in names:
            a, b = got[name][()], want[name][()]
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
        assert got.attrs["funnel"] == want.attrs["funnel"] and got.attrs["stats"] == want.attrs["stats"]
        when = (got.attrs["created"].encode(), want.attrs["created"].encode())
    assert out.read_bytes().replace(*when) == (d / "scores.h5").read_bytes()
