"""Data without signal and with planted signal, shared by the tests and the benchmarks that
calibrate the target-decoy statistics (benchmarks/calibration.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evoscan import embed, search
from evoscan.backends.kmer import KmerBackend
from evoscan.check import nominated_pairs
from evoscan.decoys import dinucleotide_shuffle
from evoscan.io.fasta import read_fasta
from evoscan.windows import WindowSet, reverse_complement


def shuffled_loci(source: Path, dest: Path, seed: int, names: list[str] | None = None) -> Path:
    """A copy of a loci FASTA with every record dinucleotide-shuffled as a whole (headers kept):
    real composition, overlapping windows share sequence as in the real loci, no signal."""
    with open(dest, "w") as out:
        for i, rec in enumerate(read_fasta(source)):
            if names is None or rec.name in names:
                seq = dinucleotide_shuffle(rec.seq.upper(), np.random.default_rng([seed, i]))
                out.write(f">{rec.description}\n{seq}\n")
    return dest


def plant_motifs(motif_file: Path, ws: WindowSet, n_pairs: int, n_motifs: int, seed: int):
    """The same set of JASPAR motif instances (each sampled anew from its matrix, at random
    positions and strands) planted into pairs of windows of different genes. Returns the new
    window set and the planted pairs (a < b)."""
    from Bio import motifs

    with open(motif_file) as fh:
        matrices = [m for m in motifs.parse(fh, "jaspar") if 8 <= m.length <= 14]
    rng = np.random.default_rng(seed)
    gene = ws.table.gene.to_numpy()
    seqs = [s.decode().upper() for s in ws.seqs]
    planted, used = [], set()
    order = rng.permutation(len(ws))
    for i in order:
        if len(planted) == n_pairs:
            break
        partners = [j for j in order if gene[j] != gene[i] and j not in used and i not in used and j != i]
        if not partners:
            continue
        j = partners[0]
        chosen = rng.choice(len(matrices), n_motifs, replace=False)
        for w in (i, j):
            seq = list(seqs[w])
            slots = rng.choice(np.arange(0, len(seq) - 16, 16), n_motifs, replace=False)
            for slot, m in zip(slots, (matrices[c] for c in chosen)):
                pwm = np.array([m.counts.normalize()[base] for base in "ACGT"]).T
                site = "".join("ACGT"[rng.choice(4, p=row / row.sum())] for row in pwm)
                site = reverse_complement(site) if rng.random() < 0.5 else site
                seq[slot:slot + len(site)] = site
            seqs[w] = "".join(seq)
        used |= {i, j}
        planted.append((min(i, j), max(i, j)))
    return WindowSet(ws.table, np.array([s.encode() for s in seqs]), ws.params), planted


def kmer_search(ws: WindowSet, workdir: Path, n_decoys: int = 1, params=search.SearchParams(), seed: int = 1,
                backend=None):
    """Embed (kmer unless another backend is given, with decoys) and search; the nominated pairs
    with their target-decoy q-values, and the neighbours."""
    path = workdir / f"emb.{n_decoys}.{seed}.h5"
    path.unlink(missing_ok=True)
    embed.embed_windows(ws, backend or KmerBackend(k=6), path, n_decoys=n_decoys, seed=seed)
    with embed.open_embeddings(path, ws) as f:
        nb = search.search(f, ws, params)
    path.unlink()
    return nominated_pairs(nb), nb


def plant_words(ws: WindowSet, n_pairs: int, n_words: int, seed: int, length: int = 8):
    """A shared vocabulary: the same `n_words` random words planted, in random order, positions and
    strands, into pairs of windows of different genes. No alignable similarity (an 8-bp match is
    far above BLAST's e-value 10 in this search space), but shared k-mer content a composition
    backend can see: the positive control of the statistics."""
    rng = np.random.default_rng(seed)
    gene = ws.table.gene.to_numpy()
    seqs = [s.decode().upper() for s in ws.seqs]
    order = rng.permutation(len(ws))
    planted, used = [], set()
    for i in order:
        j = next((j for j in order if gene[j] != gene[i] and i not in used and j not in used), None)
        if j is None:
            continue
        words = ["".join(rng.choice(list("ACGT"), length)) for _ in range(n_words)]
        for w in (i, j):
            seq = list(seqs[w])
            slots = rng.choice(np.arange(0, len(seq) - length, length), n_words, replace=False)
            for slot, word in zip(slots, words):
                seq[slot:slot + length] = reverse_complement(word) if rng.random() < 0.5 else word
            seqs[w] = "".join(seq)
        used |= {i, j}
        planted.append((min(i, j), max(i, j)))
        if len(planted) == n_pairs:
            break
    return WindowSet(ws.table, np.array([s.encode() for s in seqs]), ws.params), planted
