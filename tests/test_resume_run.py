"""A stopped `evoscan run` keeps every finished step: the same command continues where it stopped,
reusing what matches (and calling no backend for it), remaking what differs and saying why, and
ending with the same bytes as a run that was never stopped. Real CLI, kmer backend, 8 real loci."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import subset_fasta

EPOCH = "1700000000"  # SOURCE_DATE_EPOCH: two runs of the same settings write the same bytes
LOCI = ["DES", "ACTC1", "TNNC1", "MYL2", "PLN", "SOD1", "TTR", "AVP"]
INTERMEDIATES = ["windows.h5", "masks.h5", "embeddings.h5", "neighbours.h5", "scores.h5"]


@pytest.fixture(scope="module")
def args(loci_fasta, gtf, tmp_path_factory):
    fa = subset_fasta(loci_fasta, LOCI, tmp_path_factory.mktemp("eight") / "eight.fa")
    return ["run", "--fasta", str(fa), "--gtf", str(gtf), "--backend", "kmer", "--k", "4", "--sw-shuffles", "5",
            "--motif-shuffles", "5", "--threads", "2"]


def start(args, outdir: Path) -> subprocess.Popen:
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    return subprocess.Popen([sys.executable, "-m", "evoscan.cli", *args, "--outdir", str(outdir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(args, tmp_path_factory) -> Path:
    """A run never stopped."""
    outdir = tmp_path_factory.mktemp("reference") / "out"
    proc = start(args, outdir)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return outdir


def run_in_process(args, outdir: Path, monkeypatch, capsys, *extra: str, trip: tuple[str, ...] = ()) -> tuple[int, str]:
    """`evoscan run` through cli.main, with the steps named in `trip` (embed, search, check) made to fail if
    they are called. (Not the kmer backend's own embed: the check's composition control calls it.)"""
    from evoscan import check, cli, embed, search

    def tripwire(*a, **k):
        raise AssertionError("called although its output was to be reused")

    with monkeypatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", EPOCH)
        for name, (owner, attr) in {"embed": (embed, "embed_windows"), "search": (search, "search"),
                                    "check": (check, "check_pairs")}.items():
            if name in trip:
                patch.setattr(owner, attr, tripwire)
        capsys.readouterr()
        code = cli.main([*args, *extra, "--outdir", str(outdir)])
    return code, capsys.readouterr().err


def assert_same_results(outdir: Path, reference: Path) -> None:
    """Every file of the reference run, byte for byte (the HDF5 files too), and nothing else."""
    names = sorted(p.name for p in reference.iterdir() if p.name != ".evoscan-run.json")
    assert sorted(p.name for p in outdir.iterdir() if p.name != ".evoscan-run.json") == names
    for name in names:
        assert (outdir / name).read_bytes() == (reference / name).read_bytes(), name


def stamps(outdir: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in outdir.iterdir()}


def copy_of(reference: Path, dest: Path) -> Path:
    shutil.copytree(reference, dest)  # (copy2: sizes and modification times kept, so the record holds)
    return dest


def test_sigkill_during_the_check_then_the_same_command_continues(args, reference, tmp_path, monkeypatch, capsys):
    outdir = tmp_path / "out"
    proc = start(args, outdir)
    record = outdir / ".evoscan-run.json"
    deadline = time.monotonic() + 120
    while "neighbours.h5" not in (json.loads(record.read_text())["files"] if record.exists() else {}):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # in the check: the search is recorded, the scores not yet written
    proc.wait()
    assert not (outdir / "scores.h5").exists() and not (outdir / "report.html").exists()
    before = stamps(outdir)

    code, err = run_in_process(args, outdir, monkeypatch, capsys, trip=("embed", "search"))
    assert code == 0, err
    for line in ("windows: reusing windows.h5 (the same window set)",
                 "mask: reusing masks.h5 (same windows, same mask sources)",
                 "embed: reusing embeddings.h5 (same windows, same backend settings)",
                 "search: reusing neighbours.h5 (same embeddings, same search settings)"):
        assert line in err, err
    after = stamps(outdir)
    assert all(after[name] == before[name] for name in INTERMEDIATES[:4])  # not even rewritten
    assert_same_results(outdir, reference)
    assert not list(outdir.glob("*.partial")) and not list(outdir.glob(".*part*"))


def test_a_steps_blocks_are_gone_before_its_file_is_recorded(args, tmp_path, monkeypatch, capsys):
    """A kill after a step's file is recorded finds no blocks of it left (a reuse keeps blocks: they
    may be another settings' run, stopped part-way)."""
    from evoscan.run_record import RunRecord

    outdir, left = tmp_path / "out", {}
    finished = RunRecord.finished

    def recording(self, names, settings):
        left[names[0]] = sorted(p.name for p in outdir.glob("*.partial"))
        return finished(self, names, settings)

    with monkeypatch.context() as patch:
        patch.setattr(RunRecord, "finished", recording)
        code, err = run_in_process(args, outdir, patch, capsys)
    assert code == 0, err
    assert left == {name: [] for name in [*INTERMEDIATES, "report.html"]}, left


def test_an_error_in_the_report_keeps_the_finished_steps(args, reference, tmp_path, monkeypatch, capsys):
    from evoscan import report

    def fails(*a, **k):
        raise OSError(5, "Input/output error")

    outdir = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(report.tracks, "best_score_bedgraph", fails)  # written after the tables
        code, err = run_in_process(args, outdir, patch, capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert (f"windows.h5, masks.h5, embeddings.h5, neighbours.h5, scores.h5 of the finished steps are kept in {outdir}: "
            "the same command continues from them") in err, err
    assert sorted(p.name for p in outdir.iterdir()) == sorted([".evoscan-run.json", *INTERMEDIATES])  # no half report

    code, err = run_in_process(args, outdir, monkeypatch, capsys, trip=("embed", "search", "check"))
    assert code == 0, err
    assert "check: reusing scores.h5 (same neighbours and masks, same check settings)" in err, err
    assert_same_results(outdir, reference)


def test_a_changed_backend_setting_remakes_embed_search_check_and_report(args, reference, tmp_path, monkeypatch,
                                                                          capsys):
    outdir = copy_of(reference, tmp_path / "out")
    before = stamps(outdir)
    code, err = run_in_process([*args, "--k", "5"], outdir, monkeypatch, capsys)
    assert code == 0, err
    for line in ("windows: reusing windows.h5", "mask: reusing masks.h5", "embed: making embeddings.h5 anew (k 4 → 5)",
                 "search: making neighbours.h5 anew (embeddings.h5 was made anew)",
                 "check: making scores.h5 anew (neighbours.h5 was made anew)",
                 "report: making report.html and the rest anew (scores.h5 was made anew)"):
        assert line in err, err
    after = stamps(outdir)
    assert [after[n] == before[n] for n in INTERMEDIATES] == [True, True, False, False, False]
    assert after["report.html"] != before["report.html"]
    assert (outdir / "embeddings.h5").read_bytes() != (reference / "embeddings.h5").read_bytes()


def test_a_changed_max_qvalue_remakes_only_the_check_and_report(args, reference, tmp_path, monkeypatch, capsys):
    outdir = copy_of(reference, tmp_path / "out")
    before = stamps(outdir)
    code, err = run_in_process(args, outdir, monkeypatch, capsys, "--max-qvalue", "0.5", trip=("embed", "search"))
    assert code == 0, err
    assert "check: making scores.h5 anew (max_qvalue 0.05 → 0.5)" in err, err
    after = stamps(outdir)
    assert [after[n] == before[n] for n in INTERMEDIATES] == [True, True, True, True, False]
    assert all(after[n] != before[n] for n in ("report.html", "pairs.tsv.gz", "best_score.bedgraph"))

    # and --assembly, which only the report reads: only the report
    before = stamps(outdir)
    code, err = run_in_process(args, outdir, monkeypatch, capsys, "--max-qvalue", "0.5", "--assembly", "hg19",
                               trip=("embed", "search", "check"))
    assert code == 0, err
    assert 'report: making report.html and the rest anew (assembly "hg38" → "hg19")' in err, err
    after = stamps(outdir)
    assert all(after[n] == before[n] for n in INTERMEDIATES) and after["report.html"] != before["report.html"]
    assert "hg19" in (outdir / "report.html").read_text()


def test_a_truncated_embeddings_file_is_remade_and_fresh_remakes_all(args, reference, tmp_path, monkeypatch, capsys):
    outdir = copy_of(reference, tmp_path / "out")
    with open(outdir / "embeddings.h5", "r+b") as fh:
        fh.truncate(os.path.getsize(outdir / "embeddings.h5") // 2)
    code, err = run_in_process(args, outdir, monkeypatch, capsys)
    assert code == 0, err
    assert ("embed: making embeddings.h5 anew (embeddings.h5 changed on disk since it was written: truncated, "
            "replaced or edited)") in err, err
    assert "search: making neighbours.h5 anew (embeddings.h5 was made anew)" in err, err
    assert_same_results(outdir, reference)

    # a file that was recorded but damaged with its size and time kept is still not trusted
    path = outdir / "neighbours.h5"
    stat = path.stat()
    path.write_bytes(b"\0" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    code, err = run_in_process(args, outdir, monkeypatch, capsys, trip=("embed",))
    assert code == 0, err
    assert "search: making neighbours.h5 anew" in err and "not an HDF5 file" in err, err
    assert_same_results(outdir, reference)

    before = stamps(outdir)
    code, err = run_in_process(args, outdir, monkeypatch, capsys, "--fresh")
    assert code == 0 and "reusing" not in err, err
    after = stamps(outdir)
    assert all(after[n] != before[n] for n in INTERMEDIATES)
    assert_same_results(outdir, reference)


def test_a_finished_run_rerun_reuses_every_step_and_windows_made_again_keep_what_was_made_from_them(
        args, reference, tmp_path, monkeypatch, capsys):
    outdir = copy_of(reference, tmp_path / "out")
    for name in ("embeddings.h5", "scores.h5"):  # blocks of a stopped run of other settings: kept for it
        (outdir / f"{name}.partial").mkdir()
        (outdir / f"{name}.partial" / "identity.json").write_text('{"params": "other"}')
    before = stamps(outdir)
    (outdir / ".embeddings.h5.4242.0123abcd.part").write_bytes(b"left by a run killed while writing")
    code, err = run_in_process([*args, "--threads", "1"], outdir, monkeypatch, capsys,  # threads: not in any key
                               trip=("embed", "search", "check"))
    assert code == 0, err
    assert "report: reusing report.html and the rest (same scores, same report settings)" in err, err
    assert "making" not in err and stamps(outdir) == before  # nothing rewritten; the stray .part removed
    for name in ("embeddings.h5", "scores.h5"):
        assert (outdir / f"{name}.partial" / "identity.json").read_text() == '{"params": "other"}'
        shutil.rmtree(outdir / f"{name}.partial")

    with open(outdir / "windows.h5", "r+b") as fh:  # the same windows made again: the rest still holds
        fh.truncate(1000)
    code, err = run_in_process(args, outdir, monkeypatch, capsys, trip=("embed", "search", "check"))
    assert code == 0, err
    assert "windows: making windows.h5 anew (windows.h5 changed on disk since it was written" in err, err
    assert "embed: reusing embeddings.h5" in err and "check: reusing scores.h5" in err, err
    assert_same_results(outdir, reference)
