"""Two identical runs give identical outputs: every report file byte for byte (TSV, TSV.gz, BEDPE,
interact, bedGraph, HTML), every HDF5 dataset (values, dtype, shape) and attribute. The HDF5 files
differ in bytes only by their `created` time, which SOURCE_DATE_EPOCH (the reproducible-builds
convention) fixes: one run sets it, the other not, and the HDF5 bytes are equal once the two times
are swapped. (tests/test_report.py checks that `evoscan report` run twice on one scores.h5 gives
the same files; this runs the whole pipeline twice.)"""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import random_dna, write_fasta
from test_robust_cli import TINY_JASPAR

EPOCH = "1700000000"
FIXED = "2023-11-14T22:13:20+00:00"  # SOURCE_DATE_EPOCH 1700000000


def run(fasta, motifs, outdir, epoch=None):
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if epoch:
        env["SOURCE_DATE_EPOCH"] = epoch
    # kmer backend; every nominated repeat-free pair without a BLAST hit called (q <= 1, no SW
    # veto), so the candidate files have rows
    proc = subprocess.run([sys.executable, "-m", "evoscan.cli", "run", "--fasta", str(fasta), "--outdir", str(outdir),
                           "--window-size", "256", "--stride", "128", "--backend", "kmer", "--k", "4", "--motifs", str(motifs),
                           "--sw-shuffles", "3", "--motif-shuffles", "3", "--max-qvalue", "1", "--min-sw-pvalue", "0",
                           "--threads", "2"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return outdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("twice")
    rng = np.random.default_rng(5)
    fasta = write_fasta(tmp / "loci.fa", {f"g{i}": random_dna(rng, 1200) for i in range(3)})
    motifs = tmp / "tiny.jaspar"
    motifs.write_text(TINY_JASPAR)
    return {name: run(fasta, motifs, tmp / name, epoch) for name, epoch in (("fixed", EPOCH), ("now", None))}


def datasets(path) -> dict:
    found = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        found["/attrs"] = {k: str(v) for k, v in f.attrs.items()}
    return found


def test_two_runs_write_the_same_bytes(runs):
    # (not .evoscan-run.json, the record of what was written when, for a rerun to reuse: run_record.py)
    names = sorted(p.name for p in runs["fixed"].iterdir() if p.name != ".evoscan-run.json")
    assert names == sorted(p.name for p in runs["now"].iterdir() if p.name != ".evoscan-run.json")
    assert {"candidates.tsv", "pairs.tsv.gz", "candidates.bedpe", "candidates.interact.bed", "motif_sites.tsv",
            "best_score.bedgraph", "report.html", "windows.h5", "masks.h5", "embeddings.h5", "neighbours.h5",
            "scores.h5"} <= set(names)
    assert len((runs["fixed"] / "candidates.bedpe").read_text().splitlines()) >= 5  # not trivially equal
    for name in names:
        fixed, now = (runs["fixed"] / name).read_bytes(), (runs["now"] / name).read_bytes()
        if name.endswith(".h5"):
            with h5py.File(runs["now"] / name) as f:
                created = f.attrs["created"]
            assert created != FIXED and fixed.count(FIXED.encode()) == 1, name
            now = now.replace(created.encode(), FIXED.encode())  # the one difference: when
        assert fixed == now, name


def test_two_runs_write_the_same_hdf5_datasets_and_attributes(runs):
    for path in sorted(runs["fixed"].glob("*.h5")):
        a, b = datasets(path), datasets(runs["now"] / path.name)
        assert a.keys() == b.keys(), path.name
        for key in a:
            if key == "/attrs":
                assert a[key].pop("created") == FIXED and b[key].pop("created") != FIXED
                assert a[key] == b[key], path.name
                continue
            x, y = a[key], b[key]
            assert (x.dtype, x.shape) == (y.dtype, y.shape), (path.name, key)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (path.name, key)
