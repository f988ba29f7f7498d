"""No network at run time: a whole run and each model backend's real loading path work inside a
network namespace that has no interface but loopback (`unshare --net`), and Evo 2 weights that are
not on disk are refused in one line, never fetched, unless the user passes --allow-download."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, random_dna, write_fasta
from test_evo2_backend import tiny  # noqa: F401  (fixture: a tiny random-weight Evo 2 on disk)
from test_hf_backend import model_dir  # noqa: F401  (fixture: a tiny random BERT on disk)

OFFLINE = ["unshare", "--net"]


def can_cut_the_network() -> bool:
    return bool(shutil.which("unshare")) and subprocess.run([*OFFLINE, "true"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not can_cut_the_network(),
                                reason="unshare --net needs root (CAP_SYS_ADMIN): the network cannot be cut here")

# the real CLI; for evo2, with the test-only CPU shims of tests/evo2_cpu.py installed first
CLI = "import sys; from evoscan.cli import main; sys.exit(main(sys.argv[1:]))"
CLI_EVO2 = f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); import evo2_cpu; evo2_cpu.install(); " + CLI


def offline(*args, code=CLI, env=None, cwd=None):
    return subprocess.run([*OFFLINE, sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("offline")
    rng = np.random.default_rng(11)
    fa = write_fasta(tmp / "loci.fa", {f"g{i}": random_dna(rng, 1500) for i in range(3)})
    proc = offline("windows", "--fasta", fa, "--window-size", "256", "--stride", "128", "-o", tmp / "w.h5")
    assert proc.returncode == 0, proc.stderr
    return tmp / "w.h5"


def test_the_network_is_really_cut():
    probe = offline(code="import socket; socket.create_connection(('192.0.2.1', 443), timeout=5)")
    assert probe.returncode != 0 and "Network is unreachable" in probe.stderr


def test_a_whole_run_needs_no_network(tmp_path):
    rng = np.random.default_rng(12)
    fa = write_fasta(tmp_path / "loci.fa", {f"g{i}": random_dna(rng, 1500) for i in range(3)})
    proc = offline("run", "--fasta", fa, "--window-size", "256", "--stride", "128", "--outdir", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "pairs.tsv.gz").exists()


def test_model_backends_load_from_disk_offline(windows, model_dir, tiny, tmp_path):  # noqa: F811
    hf = offline("embed", "--windows", windows, "--backend", "hf", "--model", model_dir, "-o", tmp_path / "hf.h5")
    assert hf.returncode == 0, hf.stderr[-2000:]
    config, weights = tiny
    evo2 = offline("embed", "--windows", windows, "--backend", "evo2", "--model-config", config, "--weights", weights,
                   "--layer", "blocks.3", "-o", tmp_path / "evo2.h5", code=CLI_EVO2)
    assert evo2.returncode == 0, evo2.stderr[-2000:]


def test_evo2_weights_missing_from_disk_are_not_fetched(windows, tiny, tmp_path):  # noqa: F811
    """Without --allow-download: one line saying where to put the weights, exit 1, nothing written
    (and no attempt at the network, which would fail differently here)."""
    import os

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home")}
    proc = offline("embed", "--windows", windows, "--backend", "evo2", "--model", "evo2_7b", "-o", tmp_path / "e.h5",
                   code=CLI_EVO2, env=env)
    err = proc.stderr.strip()
    assert proc.returncode == 1 and len(err.splitlines()) == 1, err
    assert "no weights for evo2_7b" in err and "--allow-download" in err
    assert not list(tmp_path.glob("e.h5*"))
