"""Bad input through the real CLI: a one-line error naming the problem, non-zero exit, nothing left behind."""

import numpy as np
import pytest

from conftest import evoscan, random_dna, write_fasta
from test_windows import GTF


def assert_refused(proc, message):
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert message in err, err


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """Windows, masks, blast, embeddings and neighbours for two different window sets."""
    rng = np.random.default_rng(3)
    tmp = tmp_path_factory.mktemp("sets")
    for name in ("one", "two"):
        fa = write_fasta(tmp / f"{name}.fa", {f"{name}{i}": random_dna(rng, 1200) for i in range(3)})
        windows = tmp / f"{name}.windows.h5"
        for kind, args in (("windows", ["windows", "--fasta", fa, "--window-size", "256"]),
                           ("masks", ["mask", "--windows", windows]),
                           ("blast", ["blast", "--windows", windows]),
                           ("embeddings", ["embed", "--windows", windows, "--k", "4"]),
                           ("neighbours", ["search", "--windows", windows, "--embeddings",
                                           tmp / f"{name}.embeddings.h5"])):
            proc = evoscan(*args, "-o", tmp / f"{name}.{kind}.h5")
            assert proc.returncode == 0, proc.stderr
    return tmp


@pytest.mark.parametrize("content,message", [
    ("", "file is empty"),
    ("id\tvalue\n1\t2\n", "not FASTA"),
    (">a\nACGTACGT\n>a\nACGTACGT\n", "duplicate sequence id 'a'"),
    (">a\nACGTACGTQACGT\n", "has 'Q' at position 9"),
])
def test_bad_fasta(tmp_path, content, message):
    fa = tmp_path / "in.fa"
    fa.write_text(content)
    out = tmp_path / "w.h5"
    assert_refused(evoscan("windows", "--fasta", fa, "-o", out), message)
    assert list(tmp_path.iterdir()) == [fa]


def test_gene_not_in_gtf(tmp_path):
    (tmp_path / "a.gtf").write_text(GTF)
    genome = write_fasta(tmp_path / "g.fa", {"chrT": "ACGT" * 2000})
    proc = evoscan("windows", "--genome", genome, "--gtf", tmp_path / "a.gtf", "--genes", "GENE1,VIMM",
                   "-o", tmp_path / "w.h5")
    assert_refused(proc, "gene(s) not found (by gene_name or gene_id): VIMM")
    assert not (tmp_path / "w.h5").exists()


def test_window_longer_than_every_sequence(tmp_path):
    fa = write_fasta(tmp_path / "s.fa", {"a": "ACGT" * 50})
    assert_refused(evoscan("windows", "--fasta", fa, "-o", tmp_path / "w.h5"),
                   "window size 512 is longer than every sequence (longest: 200 bp)")
    assert not (tmp_path / "w.h5").exists()


def test_mismatched_intermediates_are_refused(two_sets, tmp_path):
    s = two_sets
    out = tmp_path / "scores.h5"
    proc = evoscan("check", "--windows", s / "one.windows.h5", "--masks", s / "two.masks.h5",
                   "--neighbours", s / "one.neighbours.h5", "-o", out)
    assert_refused(proc, "two.masks.h5 was made from a different window set")
    proc = evoscan("search", "--windows", s / "one.windows.h5", "--embeddings", s / "two.embeddings.h5", "-o", out)
    assert_refused(proc, "two.embeddings.h5 was made from a different window set than the windows file given; "
                         "rerun `evoscan embed`")
    assert not out.exists()


def test_wrong_kind_of_file_is_refused(two_sets, tmp_path):
    s = two_sets
    proc = evoscan("check", "--windows", s / "one.windows.h5", "--masks", s / "one.masks.h5",
                   "--neighbours", s / "one.embeddings.h5", "-o", tmp_path / "scores.h5")
    assert_refused(proc, "expected an evoscan neighbours file (evoscan.neighbours/1), "
                         "found schema 'evoscan.embeddings/2'")
    proc = evoscan("check", "--windows", s / "one.windows.h5", "--masks", s / "one.masks.h5",
                   "--neighbours", s / "one.neighbours.h5", "--blast-hits", s / "one.masks.h5",
                   "-o", tmp_path / "scores.h5")
    assert_refused(proc, "expected an evoscan blast file (evoscan.blast/1), found schema 'evoscan.masks/1'")
    not_h5 = tmp_path / "x.h5"
    not_h5.write_text("hello")
    assert_refused(evoscan("mask", "--windows", not_h5, "-o", tmp_path / "m.h5"), "not an HDF5 file")


def test_matching_intermediates_check_and_report(two_sets, tmp_path):
    s = two_sets
    for extra in ([], ["--blast-hits", s / "one.blast.h5"]):  # nominated pairs, or all-vs-all hits
        proc = evoscan("check", "--windows", s / "one.windows.h5", "--masks", s / "one.masks.h5",
                       "--neighbours", s / "one.neighbours.h5", *extra, "-o", tmp_path / "scores.h5")
        assert proc.returncode == 0, proc.stderr
    proc = evoscan("report", "--windows", s / "one.windows.h5", "--scores", tmp_path / "scores.h5",
                   "--outdir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Filter funnel" in proc.stdout
    assert (tmp_path / "candidates.tsv").exists() and (tmp_path / "pairs.tsv.gz").exists()


def test_failed_run_leaves_no_output_directory(tmp_path):
    fa = tmp_path / "in.fa"
    fa.write_text(">a\nACGT\n>a\nACGT\n")
    outdir = tmp_path / "results"
    assert_refused(evoscan("run", "--fasta", fa, "--outdir", outdir), "duplicate sequence id")
    assert not outdir.exists()


def test_missing_output_directory(tmp_path):
    fa = write_fasta(tmp_path / "s.fa", {"a": "ACGT" * 300})
    assert_refused(evoscan("windows", "--fasta", fa, "-o", tmp_path / "nope" / "w.h5"),
                   "output directory")


def test_neighbours_of_another_version_are_refused(two_sets, tmp_path):
    import shutil

    import h5py

    s = two_sets
    old = tmp_path / "old.neighbours.h5"
    shutil.copy(s / "one.neighbours.h5", old)
    with h5py.File(old, "a") as f:
        del f["window_decoy_sums"]
    proc = evoscan("check", "--windows", s / "one.windows.h5", "--masks", s / "one.masks.h5", "--neighbours", old,
                   "-o", tmp_path / "scores.h5")
    assert_refused(proc, "lacks window_decoy_sums: made by another evoscan version or damaged")
    assert not (tmp_path / "scores.h5").exists()


@pytest.mark.parametrize("source,message", [
    ("missing.jaspar", "no such file; give a JASPAR/MEME file or a release such as JASPAR2024"),
    ("notes.txt", "not a JASPAR or MEME motif file"),
    ("JASPAR1999", "--motifs JASPAR1999: pyjaspar has JASPAR2026, JASPAR2024"),
])
def test_bad_motifs_refused_by_embed_and_check(two_sets, tmp_path, source, message):
    (tmp_path / "notes.txt").write_text("hello\n")
    source = tmp_path / source if source.endswith((".jaspar", ".txt")) else source
    d = two_sets
    proc = evoscan("embed", "--windows", d / "one.windows.h5", "--backend", "motifs", "--motifs", source,
                   "-o", tmp_path / "e.h5")
    assert_refused(proc, message)
    proc = evoscan("check", "--windows", d / "one.windows.h5", "--masks", d / "one.masks.h5", "--neighbours",
                   d / "one.neighbours.h5", "--motifs", source, "-o", tmp_path / "s.h5")
    assert_refused(proc, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
