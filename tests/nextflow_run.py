"""The pipeline run by the real Nextflow that `make nextflow` resolves with Maven (tools/nextflow),
as a user runs it: `nextflow run <repo> -profile ...` in a launch folder of its own, offline, with
evoscan from the test environment first on the PATH (the local executor's tasks find it there)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from conftest import REPO

NEXTFLOW = REPO / "tools" / "nextflow" / "nextflow"
SAMPLE = "grch38_loci"  # the test samplesheet's one sample


def nextflow_env(launch: Path, **extra: str) -> dict:
    return {**os.environ, "NXF_OFFLINE": "true", "NXF_HOME": str(launch / ".nxf-home"), "NXF_ANSI_LOG": "false",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **extra}


def nextflow_command(*args) -> list[str]:
    return [str(NEXTFLOW), "run", str(REPO), "-ansi-log", "false", *map(str, args)]


def run_nextflow(launch: Path, *args, timeout: int = 900, **env: str) -> subprocess.CompletedProcess:
    """`nextflow run <repo> ARGS` in LAUNCH (its work/ and .nextflow/ go there); waits for the end.
    Whatever it leaves running (on a timeout: its local tasks too) is killed."""
    launch.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(nextflow_command(*args), cwd=launch, env=nextflow_env(launch, **env), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            stop(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@contextlib.contextmanager
def running_nextflow(launch: Path, *args, **env: str) -> Iterator[subprocess.Popen]:
    """The same in the background, in a process group of its own (the head and its local tasks),
    its output in LAUNCH/nextflow.out; the group is killed on the way out, whatever happened."""
    launch.mkdir(parents=True, exist_ok=True)
    with open(launch / "nextflow.out", "w") as log:
        head = subprocess.Popen(nextflow_command(*args), cwd=launch, env=nextflow_env(launch, **env),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield head
        finally:
            stop(head)


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL to the process group PROC leads, if anything of it is left."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def trace(outdir: Path) -> list[dict]:
    """The newest execution trace of a run publishing into OUTDIR, one row per task attempt."""
    files = sorted((outdir / "pipeline_info").glob("execution_trace_*.txt"), key=lambda p: p.stat().st_mtime)
    assert files, f"no execution trace in {outdir}/pipeline_info"
    with open(files[-1]) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def step(row: dict) -> str:
    """EVOSCAN:SCATTER_EMBED:EVOSCAN_EMBED -> EMBED; the merges as MERGE embeddings / neighbours."""
    name = row["process"].rsplit(":", 1)[-1].removeprefix("EVOSCAN_")
    return f"{name} {row['tag'].split()[-1]}" if name == "MERGE" else name


def h5_datasets(path: Path) -> dict[str, np.ndarray]:
    found = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def assert_same_as_evoscan_run(published: Path, run_outdir: Path, min_pairs: int = 10_000) -> None:
    """Every file `evoscan run` wrote is published under the same name (and summary.txt, the report
    step's terminal summary, besides): text files byte for byte, HDF5 files dataset by dataset
    (their provenance attributes name the task's staged inputs, so only the datasets can agree)."""
    wrote = {p.name for p in run_outdir.iterdir() if p.is_file() and p.name != ".evoscan-run.json"}  # (its record)
    got = {p.name for p in published.iterdir()}
    assert got == wrote | {"summary.txt"}, f"published {sorted(got)}, evoscan run wrote {sorted(wrote)}"
    for name in sorted(wrote):
        if name.endswith(".h5"):
            a, b = h5_datasets(published / name), h5_datasets(run_outdir / name)
            assert a.keys() == b.keys() and a, name
            for key, x in a.items():
                y = b[key]
                assert (x.dtype, x.shape) == (y.dtype, y.shape), (name, key)
                assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (name, key)
        else:
            assert (published / name).read_bytes() == (run_outdir / name).read_bytes(), name
    pairs = gzip.open(published / "pairs.tsv.gz", "rt").read()
    assert pairs.count("\n") > min_pairs  # not trivially equal
    assert "Filter funnel" in (published / "summary.txt").read_text()
