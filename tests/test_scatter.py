"""Scatter/gather: BLAST query chunks and embedding chunks, merged, equal whole runs exactly."""

import numpy as np
import pytest

from conftest import evoscan, subset_fasta
from evoscan import blast, embed
from evoscan.backends.kmer import KmerBackend
from evoscan.errors import EvoscanError
from evoscan.windows import WindowParams, chunk_range, make_windows, write_windows


def test_chunk_ranges_tile_the_rows():
    edges = [chunk_range(f"{i}/4", 10) for i in range(1, 5)]
    assert edges == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert chunk_range(None, 10) == (0, 10)
    assert chunk_range("3/3", 2) == (1, 2)
    for bad in ("0/3", "4/3", "x", "1-3"):
        with pytest.raises(EvoscanError, match="--chunk must look like I/N"):
            chunk_range(bad, 10)


@pytest.fixture(scope="module")
def real(loci_fasta, tmp_path_factory):
    """Windows of three real loci (two of them the overlapping MYH6/MYH7 paralogs)."""
    tmp = tmp_path_factory.mktemp("scatter")
    fa = subset_fasta(loci_fasta, ["MYH6", "MYH7", "ACTC1"], tmp / "three.fa")
    ws = make_windows(WindowParams(size=512, stride=512), fasta=fa)
    write_windows(tmp / "windows.h5", ws)
    return ws, tmp


def test_blast_chunks_merge_to_the_whole_run(real):
    ws, tmp = real
    whole, info = blast.run_blast(ws, threads=2)
    blast.write_blast(tmp / "whole.h5", ws, whole, info, {})
    parts = []
    for i in (3, 1, 2):  # any order
        hits, info = blast.run_blast(ws, threads=2, rows=chunk_range(f"{i}/3", len(ws)))
        blast.write_blast(tmp / f"b{i}.h5", ws, hits, info, {})
        parts.append(tmp / f"b{i}.h5")
    with pytest.raises(EvoscanError, match="join the chunks with `evoscan merge` first"):
        blast.read_blast(parts[0], ws)
    blast.merge_blast(parts, ws, tmp / "merged.h5")
    merged, args = blast.read_blast(tmp / "merged.h5", ws)
    assert len(whole) > 100 and "-word_size 7" in args
    assert merged.equals(whole)
    with pytest.raises(EvoscanError, match="BLAST chunks cover windows"):
        blast.merge_blast(parts[:2], ws, tmp / "gap.h5")
    assert not (tmp / "gap.h5").exists()


def test_embedding_chunks_merge_to_the_whole_run(real):
    ws, tmp = real
    backend = KmerBackend(k=5, batch_size=7)
    embed.embed_windows(ws, backend, tmp / "e_whole.h5")
    parts = []
    for i in (1, 2, 3, 4):
        embed.embed_windows(ws, backend, tmp / f"e{i}.h5", rows=chunk_range(f"{i}/4", len(ws)))
        parts.append(tmp / f"e{i}.h5")
    with pytest.raises(EvoscanError, match="holds windows 0..\\d+ of \\d+ only"):
        embed.read_embeddings(parts[0], ws)
    embed.merge_embeddings(parts[::-1], ws, tmp / "e_merged.h5")
    a, prov_a = embed.read_embeddings(tmp / "e_whole.h5", ws)
    b, prov_b = embed.read_embeddings(tmp / "e_merged.h5", ws)
    assert np.array_equal(a, b) and prov_a == prov_b
    with pytest.raises(EvoscanError, match="cover windows"):
        embed.merge_embeddings([parts[0], parts[0], parts[1], parts[2], parts[3]], ws, tmp / "dup.h5")
    embed.embed_windows(ws, KmerBackend(k=4), tmp / "other.h5", rows=chunk_range("1/4", len(ws)))
    with pytest.raises(EvoscanError, match="different backend settings"):
        embed.merge_embeddings([tmp / "other.h5", *parts[1:]], ws, tmp / "mixed.h5")


def test_cli_chunk_and_merge(real):
    ws, tmp = real
    w = tmp / "windows.h5"
    for i in (1, 2):
        proc = evoscan("embed", "--windows", w, "--backend", "kmer", "--chunk", f"{i}/2", "-o", tmp / f"c{i}.h5")
        assert proc.returncode == 0, proc.stderr
    proc = evoscan("merge", "--windows", w, "-o", tmp / "cli_merged.h5", tmp / "c1.h5", tmp / "c2.h5")
    assert proc.returncode == 0, proc.stderr
    proc = evoscan("embed", "--windows", w, "--backend", "kmer", "-o", tmp / "cli_whole.h5")
    assert proc.returncode == 0, proc.stderr
    merged, merged_prov = embed.read_embeddings(tmp / "cli_merged.h5", ws)
    whole, whole_prov = embed.read_embeddings(tmp / "cli_whole.h5", ws)
    assert merged.shape == (len(ws), 2080) and np.array_equal(merged, whole) and merged_prov == whole_prov
    proc = evoscan("merge", "--windows", w, "-o", tmp / "bad.h5", tmp / "c1.h5", w)
    assert proc.returncode == 1 and "one kind" in proc.stderr
