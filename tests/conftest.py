"""Shared fixtures: the real GRCh38 data (the test profile's loci inside the repository, the rest beside
it), random DNA, the real CLI and `evoscan run` on the loci."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evoscan.pipeline import find_shared_data

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["images"]  # the CPU image (podman, cpu_image), built once per session when a test asks


# CI (.ci/run sets EVOSCAN_NO_SKIPS=1) runs as root with every tool `make test-tools` installs: a
# test skipped there would hide a broken set-up, so any skip fails the run
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and os.environ.get("EVOSCAN_NO_SKIPS"):
        print(f"\nEVOSCAN_NO_SKIPS: {len(_skipped)} test(s) skipped: {', '.join(_skipped)}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real data beside the repository (motifs, repeats, chr10 regions, the loci too)."""
    return find_shared_data(REPO)


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The test profile's loci and GTF, inside the repository (what a bare clone has)."""
    return REPO / "assets" / "test_data"


@pytest.fixture(scope="session")
def loci_fasta(test_data) -> Path:
    return test_data / "loci" / "grch38_loci.softmasked.fa"


@pytest.fixture(scope="session")
def gtf(test_data) -> Path:
    return test_data / "annotation" / "lrg_derived_grch38.gtf"


@pytest.fixture(scope="session")
def demo_run(test_data, tmp_path_factory):
    """`evoscan run` on the 25 real loci as the demo does it (motifs backend, the default), once per test session."""
    from rich.console import Console

    from evoscan.pipeline import demo_config, run_pipeline

    outdir = tmp_path_factory.mktemp("demo") / "results"
    console = Console(record=True, width=120)
    result = run_pipeline(demo_config(test_data, outdir, threads=2), console)
    return {**result, "stdout": console.export_text(), "outdir": outdir}


def random_dna(rng: np.random.Generator, n: int, gc: float = 0.5) -> str:
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return "".join(rng.choice(list("ACGT"), size=n, p=p))


def write_fasta(path: Path, records: dict[str, str], width: int = 60) -> Path:
    with open(path, "w") as out:
        for name, seq in records.items():
            out.write(f">{name}\n")
            for i in range(0, len(seq), width):
                out.write(seq[i:i + width] + "\n")
    return path


def subset_fasta(source: Path, names: list[str], dest: Path) -> Path:
    """A FASTA with some records of a real one, headers unchanged."""
    from evoscan.io.fasta import read_fasta

    with open(dest, "w") as out:
        for rec in read_fasta(source):
            if rec.name in names:
                out.write(f">{rec.description}\n{rec.seq}\n")
    return dest


def run_counting_loads(args: list[str], backend: str, caplog, capsys) -> tuple[int, str]:
    """Run the CLI in this process (it must succeed): how many times the `backend` loaded its model
    (its "<backend>: loading" log lines), and what it wrote on stderr."""
    import logging

    from evoscan.cli import main

    caplog.clear()
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger=f"evoscan.{backend}"):
        code = main(args)
    assert code == 0, capsys.readouterr().err
    loads = sum(r.getMessage().startswith(f"{backend}: loading") for r in caplog.records)
    return loads, capsys.readouterr().err


def evoscan(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI as a user would."""
    return subprocess.run([sys.executable, "-m", "evoscan.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)
