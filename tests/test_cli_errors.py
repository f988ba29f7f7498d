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
                           ("embeddings", ["embed", "--windows", windows, "--backend", "kmer", "--k", "4"]),
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


def test_an_output_over_an_input_is_refused_and_the_input_kept(two_sets, tmp_path):
    """-o naming an input file (or a folder) is refused before any work; the input is untouched."""
    import shutil

    s = two_sets
    for kind in ("windows", "embeddings", "neighbours"):
        shutil.copy(s / f"one.{kind}.h5", tmp_path / f"{kind}.h5")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    w, e, n = (tmp_path / f"{kind}.h5" for kind in ("windows", "embeddings", "neighbours"))
    assert_refused(evoscan("mask", "--windows", w, "-o", w), "is the file given as --windows")
    assert_refused(evoscan("search", "--windows", w, "--embeddings", e, "-o", tmp_path / "." / "embeddings.h5"),
                   "is the file given as --embeddings")
    assert_refused(evoscan("check", "--windows", w, "--masks", s / "one.masks.h5", "--neighbours", n, "-o", n),
                   "is the file given as --neighbours")
    assert_refused(evoscan("merge", "--windows", w, "-o", e, e), "is the file given as one of the chunk files")
    (tmp_path / "folder").mkdir()
    assert_refused(evoscan("mask", "--windows", w, "-o", tmp_path / "folder"), "is a directory")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("step,args,message", [
    ("embed", ["--decoy-seed", "-1"], "--decoy-seed: must be at least 0"),
    ("search", ["--device", "foo"], "--device must be a torch device: cpu, cuda or cuda:N"),
    ("search", ["--index", "ivf", "--nprobe", "-1"], "--nprobe must be at least 0"),
    ("check", ["--max-blast-evalue", "nan"], "--max-blast-evalue must be 0 or more"),
    ("check", ["--min-sw-pvalue", "2"], "--min-sw-pvalue must lie between 0 and 1"),
    ("check", ["--min-cosine", "5"], "--min-cosine must lie between -1 and 1"),
    ("check", ["--families", "nofile.tsv"], "--families nofile.tsv: no such file"),
    ("check", ["--blast-args", "-outfmt 6"], "goes after '='"),  # argparse reads -o(utfmt) as -o
    ("mask", ["--mask-sources", ""], "--mask-sources: names no source"),
])
def test_out_of_range_options_are_refused_before_any_work(two_sets, tmp_path, step, args, message):
    s = two_sets
    inputs = {"embed": ["--windows", s / "one.windows.h5"], "mask": ["--windows", s / "one.windows.h5"],
              "search": ["--windows", s / "one.windows.h5", "--embeddings", s / "one.embeddings.h5"],
              "check": ["--windows", s / "one.windows.h5", "--masks", s / "one.masks.h5",
                        "--neighbours", s / "one.neighbours.h5"]}[step]
    out = tmp_path / "out.h5"
    proc = evoscan(step, *inputs, *args, "-o", out)
    assert_refused(proc, message)
    assert "internal error" not in proc.stderr and not list(tmp_path.iterdir())  # no .partial either


def test_families_need_two_columns(two_sets, tmp_path):
    s = two_sets
    (tmp_path / "fam.tsv").write_text("one0\tA\none1\n")
    proc = evoscan("check", "--windows", s / "one.windows.h5", "--masks", s / "one.masks.h5", "--neighbours",
                   s / "one.neighbours.h5", "--families", tmp_path / "fam.tsv", "-o", tmp_path / "s.h5")
    assert_refused(proc, "a line without a gene and a family")
    assert not (tmp_path / "s.h5").exists()


def test_a_gene_past_the_end_of_its_chromosome_is_an_error_not_dropped(tmp_path):
    (tmp_path / "a.gtf").write_text(GTF)
    genome = write_fasta(tmp_path / "g.fa", {"chrT": "ACGT" * 1000})  # 4 kb: GENE2 (5,001-6,000) lies past it
    proc = evoscan("windows", "--genome", genome, "--gtf", tmp_path / "a.gtf", "--genes", "GENE1,GENE2",
                   "-o", tmp_path / "w.h5")
    assert_refused(proc, "gene GENE2 (chrT:5001-6000) ends past the end of chrT")
    assert "another assembly" in proc.stderr and not (tmp_path / "w.h5").exists()


def test_an_index_that_cannot_be_trained_is_refused_before_embedding(tmp_path):
    rng = np.random.default_rng(4)
    fa = write_fasta(tmp_path / "s.fa", {f"g{i}": random_dna(rng, 1500) for i in range(3)})
    proc = evoscan("run", "--fasta", fa, "--index", "ivfpq", "--outdir", tmp_path / "r")
    assert_refused(proc, "--index ivfpq needs at least 512 windows")
    assert not (tmp_path / "r").exists()


def test_a_failed_run_keeps_its_finished_steps_and_never_mixes_two_settings(tmp_path, monkeypatch):
    """A run into a folder that holds an earlier run's results, with other windows, failing in the
    check: its finished steps are kept (the same command continues from them, tests/test_resume_run.py)
    and nothing made from the earlier windows is left beside them."""
    import h5py

    from evoscan import check
    from evoscan.pipeline import RunConfig, run_pipeline
    from evoscan.windows import WindowParams, read_windows

    rng = np.random.default_rng(5)
    fa = write_fasta(tmp_path / "s.fa", {f"g{i}": random_dna(rng, 1500) for i in range(3)})
    outdir = tmp_path / "results"
    run_pipeline(RunConfig(outdir=outdir, fasta=fa, mask_sources=("softmask",)))

    def fails(*args, **kwargs):
        raise RuntimeError("failed part-way")

    monkeypatch.setattr(check, "check_pairs", fails)
    with pytest.raises(RuntimeError) as stopped:  # other windows this time: every file would change
        run_pipeline(RunConfig(outdir=outdir, fasta=fa, mask_sources=("softmask",), window=WindowParams(stride=128)))
    assert stopped.value.__notes__ == [f"windows.h5, masks.h5, embeddings.h5, neighbours.h5 of the finished steps "
                                       f"are kept in {outdir}: the same command continues from them"]
    kept = sorted(p.name for p in outdir.iterdir())
    assert kept == [".evoscan-run.json", "embeddings.h5", "masks.h5", "neighbours.h5", "windows.h5"]
    digest = read_windows(outdir / "windows.h5").digest
    for name in kept[1:]:
        with h5py.File(outdir / name) as f:
            assert f.attrs["window_digest"] == digest and f.attrs["window_digest"] != "", name


def test_a_run_stopped_inside_a_step_says_that_its_blocks_are_kept(tmp_path, monkeypatch):
    """The note of a failed run names, beside the finished steps, what the step that stopped had
    done (its .partial), which the same command continues from."""
    from evoscan.backends.kmer import KmerBackend
    from evoscan.pipeline import RunConfig, run_pipeline

    rng = np.random.default_rng(5)
    fa = write_fasta(tmp_path / "s.fa", {f"g{i}": random_dna(rng, 1500) for i in range(3)})
    outdir, calls, embed = tmp_path / "results", [], KmerBackend.embed

    def fails_after_a_batch(self, seqs):
        calls.append(len(seqs))
        if len(calls) > 2:  # the first batch's windows and decoys are embedded
            raise RuntimeError("stopped part-way")
        return embed(self, seqs)

    monkeypatch.setattr(KmerBackend, "embed", fails_after_a_batch)
    (outdir / "scores.h5.partial").mkdir(parents=True)  # an earlier run's, of a step this one did not reach
    cfg = RunConfig(outdir=outdir, fasta=fa, mask_sources=("softmask",), backend="kmer",
                    backend_options={"batch_size": 4})
    with pytest.raises(RuntimeError) as stopped:
        run_pipeline(cfg)
    assert stopped.value.__notes__ == [f"windows.h5, masks.h5 of the finished steps and embeddings.h5.partial (what "
                                       f"the step that stopped had done) are kept in {outdir}: the same command "
                                       "continues from them"]
    monkeypatch.setattr(KmerBackend, "embed", embed)
    run_pipeline(cfg)
    assert not (outdir / "embeddings.h5.partial").exists()


def test_a_failed_report_leaves_the_earlier_report_whole(tmp_path, monkeypatch):
    """A report failing part-way over an earlier report (as `evoscan report` writes it) puts the
    earlier files back byte for byte and leaves nothing of its own."""
    from evoscan import check, report
    from evoscan.pipeline import PREVIOUS, RunConfig, cleanup_on_error, run_pipeline
    from evoscan.windows import read_windows

    rng = np.random.default_rng(5)
    fa = write_fasta(tmp_path / "s.fa", {f"g{i}": random_dna(rng, 1500) for i in range(3)})
    outdir = tmp_path / "results"
    run_pipeline(RunConfig(outdir=outdir, fasta=fa, mask_sources=("softmask",)))
    earlier = {p.name: p.read_bytes() for p in outdir.iterdir()}
    assert {"windows.h5", "embeddings.h5", "scores.h5", "report.html"} <= earlier.keys()

    def fails(*args, **kwargs):
        raise RuntimeError("failed part-way")

    monkeypatch.setattr(report.tracks, "best_score_bedgraph", fails)  # written after the tables
    ws = read_windows(outdir / "windows.h5")
    pairs, meta = check.read_scores(outdir / "scores.h5", ws)
    with pytest.raises(RuntimeError), cleanup_on_error(outdir, [name for name, _ in report.FILES]):
        report.write_report(outdir, ws, pairs.iloc[:len(pairs) // 2], meta)  # other tables this time
    assert {p.name: p.read_bytes() for p in outdir.iterdir()} == earlier

    # a report SIGKILLed after it set the earlier report aside and wrote part of its own: the next
    # command (here a report that succeeds) puts the earlier files back first, and keeps them
    monkeypatch.undo()
    (outdir / PREVIOUS).mkdir()
    for name in ("report.html", "candidates.tsv", "pairs.tsv.gz"):
        (outdir / name).rename(outdir / PREVIOUS / name)
    (outdir / "candidates.tsv").write_bytes(b"half-made by the killed report")
    with cleanup_on_error(outdir, [name for name, _ in report.FILES]):
        report.write_report(outdir, ws, pairs, meta)
    assert {p.name: p.read_bytes() for p in outdir.iterdir()} == earlier
