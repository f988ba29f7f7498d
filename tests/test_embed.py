import json

import numpy as np
import pytest

from conftest import random_dna, write_fasta
from evoscan import embed
from evoscan.backends import get_backend
from evoscan.backends.kmer import KmerBackend
from evoscan.errors import EvoscanError
from evoscan.windows import WindowParams, make_windows, reverse_complement


def test_kmer_is_strand_symmetric_and_case_blind():
    rng = np.random.default_rng(0)
    seqs = [random_dna(rng, 512) for _ in range(5)]
    backend = KmerBackend(k=5)
    fwd = backend.embed(seqs)
    assert np.allclose(fwd, backend.embed([reverse_complement(s) for s in seqs]))
    assert np.allclose(fwd, backend.embed([s.lower() for s in seqs]))
    assert np.allclose(np.linalg.norm(fwd, axis=1), 1)
    assert fwd.dtype == np.float32


def test_kmer_dimensions_and_counts():
    assert KmerBackend(k=6).dim == 2080  # (4^6 + 4^3) / 2 canonical 6-mers
    assert KmerBackend(k=5).dim == 512
    b = KmerBackend(k=2, batch_size=8)
    # AAAA: three AA (= TT canonical) 2-mers and nothing else
    v = b.embed(["AAAA"])[0]
    assert np.count_nonzero(v) == 1 and v.max() == pytest.approx(1)
    # k-mers touching N are skipped; padding of shorter sequences is N, so lengths may differ
    assert np.allclose(b.embed(["ACGNNACG"]), b.embed(["ACGACG"[:3] + "N" + "ACG"]))
    assert np.allclose(b.embed(["ACGT", "ACGTACGTAC"])[0], b.embed(["ACGT"])[0])


def test_all_n_sequence_embeds_to_zero():
    assert not KmerBackend(k=3).embed(["NNNNNN"]).any()


def test_backend_registry():
    assert get_backend("kmer", k=4).dim == 136
    with pytest.raises(EvoscanError, match="unknown backend 'nope'"):
        get_backend("nope")
    with pytest.raises(EvoscanError, match="--k must lie between"):
        get_backend("kmer", k=40)


class FailingAfter(KmerBackend):
    """The real kmer backend, made to die after some batches, as a killed job would."""

    def __init__(self, batches: int, **kw):
        super().__init__(**kw)
        self.left = batches

    def embed(self, seqs):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return super().embed(seqs)


@pytest.fixture
def windows(tmp_path):
    rng = np.random.default_rng(5)
    fa = write_fasta(tmp_path / "w.fa", {f"G{i}": random_dna(rng, 3000) for i in range(4)})
    return make_windows(WindowParams(size=256, stride=128), fasta=fa)


def test_killed_embedding_resumes_to_the_same_file(windows, tmp_path):
    whole = tmp_path / "whole.h5"
    embed.embed_windows(windows, KmerBackend(k=4, batch_size=7), whole)

    out = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        embed.embed_windows(windows, FailingAfter(6, k=4, batch_size=7), out)  # 3 batches of windows + decoys
    partial = out.with_name(out.name + ".partial")
    assert not out.exists() and partial.is_dir()
    assert json.loads((partial / "done.json").read_text())["n_done"] == 21

    seen = []
    embed.embed_windows(windows, KmerBackend(k=4, batch_size=7), out, progress=seen.append)
    assert seen[0] == 21 and sum(seen) == len(windows)  # resumed, not restarted
    assert not partial.exists()
    a, prov_a = embed.read_embeddings(whole, windows)
    b, prov_b = embed.read_embeddings(out, windows)
    assert np.array_equal(a, b) and prov_a == prov_b
    with embed.open_embeddings(whole, windows) as f, embed.open_embeddings(out, windows) as g:
        assert f["decoys"].shape == (len(windows), 1, 136) and np.array_equal(f["decoys"][()], g["decoys"][()])


def test_partial_from_other_settings_is_restarted(windows, tmp_path):
    out = tmp_path / "e.h5"
    with pytest.raises(KeyboardInterrupt):
        embed.embed_windows(windows, FailingAfter(2, k=3, batch_size=5), out)
    embed.embed_windows(windows, KmerBackend(k=4, batch_size=5), out)
    vectors, prov = embed.read_embeddings(out, windows)
    assert prov["k"] == 4 and vectors.shape == (len(windows), 136)
    assert np.allclose(vectors, KmerBackend(k=4).embed([s.decode() for s in windows.seqs]))


def test_sigkilled_embedding_resumes_and_ends_identical(loci_fasta, tmp_path, monkeypatch):
    """SIGKILL a real `evoscan embed` at two moments; each rerun keeps the rows already finished
    (not restarted) and the last ends with the file of an uninterrupted run, byte for byte."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from evoscan.windows import write_windows

    ws = make_windows(WindowParams(), fasta=loci_fasta)
    write_windows(tmp_path / "w.h5", ws)
    args = [sys.executable, "-m", "evoscan.cli", "embed", "--windows", str(tmp_path / "w.h5"), "--backend", "kmer",
            "--batch-size", "16"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the same `created` in both files
    assert subprocess.run([*args, "-o", str(tmp_path / "whole.h5")], capture_output=True).returncode == 0
    out, done = tmp_path / "e.h5", tmp_path / "e.h5.partial" / "done.json"
    finished = []
    for rows_before_kill in (100, 600):
        proc = subprocess.Popen([*args, "-o", str(out)], stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None:
            assert time.time() < deadline
            try:
                if json.loads(done.read_text())["n_done"] >= rows_before_kill:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        finished.append(json.loads(done.read_text())["n_done"])
        assert not out.exists() and finished[-1] >= rows_before_kill
    assert finished[1] > finished[0]  # the second run went on from the first one's rows
    assert subprocess.run([*args, "-o", str(out)], capture_output=True).returncode == 0
    assert not done.parent.exists()
    with embed.open_embeddings(out, ws) as got, embed.open_embeddings(tmp_path / "whole.h5", ws) as want:
        for name in ("embeddings", "decoys"):
            assert np.array_equal(got[name][()], want[name][()]), name
    assert out.read_bytes() == (tmp_path / "whole.h5").read_bytes()
