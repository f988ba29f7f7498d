"""Transcription-factor motifs: JASPAR matrices, a vectorised scan, window profiles, and the motif
evidence of a pair.

Matrices. JASPAR CORE vertebrates from pyjaspar (a release such as JASPAR2024, offline, the latest
version of each matrix) or a JASPAR / MEME file. Counts become log-odds in bits against a uniform
background with JASPAR's pseudocounts (Bio.motifs.jaspar.calculate_pseudocounts: sqrt(sites)
spread over the background).

Scan. Every matrix and its reverse complement at every position. On a CPU: tables of the odds of
every 4-letter word per block of 4 columns, a position's odds the product of its blocks', summed
and maximised as they are made in a compiled loop (motif_kernel.py; float64). On a GPU, and for
the sites of a few windows: the one-hot sequence times the matrices, one matrix product per bucket
of matrices of similar length (motif_torch.py; float32). A position whose span holds an N (or any
non-ACGT letter) is not scored. A site is a position and strand whose score reaches the matrix's
threshold: the score a random uniform sequence reaches with probability `pvalue` (default 1e-4,
FIMO's), from the exact score distribution on a 0.01-bit grid.

Redundancy. JASPAR holds many near-copies (the ETS, bHLH, SOX, KLF families...). Matrices whose
window profiles correlate at `cluster_r` or more on random sequence are one cluster, seeded
greedily by information content; a window's profile has one value per cluster (the mean of its
members' values), so a family of thirty copies weighs as much as a lone matrix, and evidence counts
a cluster once.

Profile (the `motifs` backend). Per matrix, a window's binding potential beyond its composition:
log2 of the mean odds over all positions on both strands (a soft maximum: the occupancy of a weak
binder is proportional to the summed odds), minus log2 of the mean odds the window's own
dinucleotide composition predicts (a first-order Markov chain of its dinucleotide counts, exact by
a product of 4 x 4 matrices per column). GC-rich windows bind GC-rich factors more, and that is
composition, which the kmer control and the shuffled decoys already see; what is left is grammar.
(In development runs on planted motif sets, the uncorrected potential let decoys of the same
composition win more often.)

Evidence of a pair. The clusters with a site in both windows, and how unusual that many shared
clusters is: the count is compared with those of each window against K dinucleotide shuffles of
the other (same composition, no motif content); p = the larger of the two one-sided p-values
(1 + shuffles sharing as many or more) / (1 + K), so it holds whichever window's composition
explains the sharing.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import EvoscanError, UsageError

DEFAULT_SOURCE = "JASPAR2024"
DEFAULT_PVALUE = 1e-4
DEFAULT_CLUSTER_R = 0.7
SITE_COLUMNS = {"pair": np.int64, "side": object, "cluster": np.int64, "matrix": np.int64, "id": object,
                "name": object, "start": np.int64, "end": np.int64, "strand": object, "score": np.float32}
GRID = 0.01  # bits: resolution of the exact score distribution


@dataclass(frozen=True)
class Matrices:
    """Log-odds matrices [M, 4, Lmax] (bits, rows A C G T, zero beyond each matrix's length)."""
    ids: tuple[str, ...]
    names: tuple[str, ...]
    log_odds: np.ndarray
    lengths: np.ndarray
    source: dict

    def __len__(self) -> int:
        return len(self.ids)


# ---- matrices --------------------------------------------------------------------------------

def read_motifs(source: str | Path = DEFAULT_SOURCE) -> tuple[list, dict]:
    """Bio.motifs motifs and a provenance record, from a pyjaspar release name or a JASPAR/MEME file."""
    from Bio import motifs as bio_motifs

    path = Path(source)
    if path.is_file():
        text = path.read_text(errors="replace")
        fmt = "minimal" if text.lstrip().startswith("MEME version") else "jaspar"
        try:
            with open(path) as fh:
                found = list(bio_motifs.parse(fh, fmt))
        except Exception as exc:  # Biopython raises assorted types on malformed files
            raise EvoscanError(f"{path}: not a JASPAR or MEME motif file ({exc})") from None
        if not found:
            raise EvoscanError(f"{path}: no motifs found; give a JASPAR (.jaspar) or MEME (minimal) motif file")
        return found, {"motifs": str(path), "format": fmt,
                       "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if re.fullmatch(r"JASPAR\d{4}", str(source)):
        try:
            from pyjaspar import jaspardb
        except ImportError:
            raise EvoscanError("the JASPAR releases come with pyjaspar (pip install pyjaspar), "
                               "or give --motifs a JASPAR/MEME file") from None
        releases = jaspardb().get_releases()
        if str(source) not in releases:
            raise EvoscanError(f"--motifs {source}: pyjaspar has {', '.join(releases)}; or give a JASPAR/MEME file")
        db = jaspardb(release=str(source))
        found = db.fetch_motifs(collection="CORE", tax_group=["vertebrates"])
        return found, {"motifs": str(source), "collection": "CORE", "tax_group": "vertebrates",
                       "pyjaspar": _version("pyjaspar")}
    raise EvoscanError(f"--motifs {source}: no such file; give a JASPAR/MEME file or a release such as "
                       f"{DEFAULT_SOURCE}")


def _version(package: str) -> str:
    import importlib.metadata
    return importlib.metadata.version(package)


def log_odds_matrices(found: list, source: dict) -> Matrices:
    """Bio.motifs motifs -> log-odds in bits against a uniform background, JASPAR pseudocounts."""
    from Bio.motifs.jaspar import calculate_pseudocounts

    if not found:
        raise EvoscanError("no motif matrices to scan with")
    lmax = max(m.length for m in found)
    log_odds = np.zeros((len(found), 4, lmax), dtype=np.float32)
    for i, m in enumerate(found):
        m.background = {b: 0.25 for b in "ACGT"}
        pssm = m.counts.normalize(pseudocounts=calculate_pseudocounts(m)).log_odds()
        log_odds[i, :, :m.length] = [pssm[b] for b in "ACGT"]
    ids = tuple(str(getattr(m, "matrix_id", None) or m.name) for m in found)
    names = tuple(str(m.name if getattr(m, "matrix_id", None) else (getattr(m, "alt_id", None) or m.name))
                  for m in found)
    digest = hashlib.sha256(log_odds.tobytes()).hexdigest()[:16]
    return Matrices(ids, names, log_odds, np.array([m.length for m in found]),
                    {**source, "matrices": len(found), "log_odds_digest": digest, "background": "uniform",
                     "pseudocounts": "jaspar sqrt(N)"})


def score_thresholds(mats: Matrices, pvalue: float) -> np.ndarray:
    """Per matrix, a score a uniform random sequence reaches with probability <= `pvalue` (exact
    distribution of the sum of independent columns on a GRID-bit lattice, plus the rounding's
    largest error); inf for a matrix too short to have a site that rare (91 of JASPAR 2024's 879
    at 1e-4: 5-6 bp matrices, which still count in profiles)."""
    if not 0 < pvalue < 1:
        raise UsageError(f"--motif-pvalue must lie in (0, 1) (got {pvalue})")
    out = np.empty(len(mats))
    for i, length in enumerate(mats.lengths):
        cols = np.rint(mats.log_odds[i, :, :length].astype(np.float64) / GRID).astype(np.int64)  # [4, length]
        low = cols.min(0)
        dist = np.ones(1)
        for j in range(length):  # add one column: a mixture of 4 shifts with probability 1/4 each
            shifts = cols[:, j] - low[j]
            new = np.zeros(len(dist) + shifts.max())
            for s in shifts:
                new[s:s + len(dist)] += dist / 4
            dist = new
        tail = np.cumsum(dist[::-1])[::-1]  # P(score >= lattice point)
        if tail[-1] > pvalue:  # even the best word is likelier than pvalue: no site can be that rare
            out[i] = np.inf
            continue
        # + half a grid step per column: real scores are not rounded, and may exceed the lattice
        out[i] = (low.sum() + int(np.argmax(tail <= pvalue)) + length / 2) * GRID
    return out


def load_scanner(source: str | Path = DEFAULT_SOURCE, pvalue: float = DEFAULT_PVALUE, device: str = "cpu") -> "Scanner":
    return Scanner(log_odds_matrices(*read_motifs(source)), pvalue, device)


# ---- scan ------------------------------------------------------------------------------------

def reverse_complement_matrices(log_odds: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The reverse complement of each matrix [M, 4, width] (rows A C G T -> T G C A, columns
    reversed), left-aligned like the matrices, zero beyond each length."""
    rc = np.zeros_like(log_odds)
    for m, n in enumerate(lengths):
        rc[m, :, :n] = log_odds[m, ::-1, :n][:, ::-1]
    return rc


class Scanner:
    """Scores of every matrix on both strands at every position, and what is made of them: by the
    block tables on a CPU (motif_kernel.py, float64; 4-6x faster), by matrix products on a GPU
    (motif_torch.py, float32), which also give every position's score for `sites`."""

    def __init__(self, mats: Matrices, pvalue: float = DEFAULT_PVALUE, device: str = "cpu",
                 buckets: tuple[int, ...] = (10, 16, 24), engine: str | None = None):
        from .motif_torch import TorchScan

        self.mats, self.pvalue = mats, pvalue
        self.thresholds = score_thresholds(mats, pvalue)
        rc = reverse_complement_matrices(mats.log_odds, mats.lengths)
        self.torch_scan = TorchScan(mats.log_odds, rc, mats.lengths, device, buckets)
        self.device = self.torch_scan.device
        self.engine = engine or ("tables" if self.device.type == "cpu" else "torch")
        if self.engine not in ("tables", "torch"):
            raise ValueError(f"engine must be tables or torch (got {self.engine!r})")
        if self.engine == "tables":
            try:
                from .motif_kernel import TableScan
            except ImportError as err:  # e.g. a numba that does not yet support this numpy
                logging.getLogger(__name__).warning("motif scan: numba unusable (%s); using the torch scan, "
                                                    "~6x slower", err)
                self.engine = "torch"
        if self.engine == "tables":
            self.tables = TableScan(mats.log_odds, rc, mats.lengths)

    def _threads(self) -> int:
        return self.torch_scan.torch.get_num_threads()  # (the tables' compiled loop uses as many)

    def profiles(self, seqs: list[str]) -> np.ndarray:
        """Binding potential beyond composition [B, M]: log2 of the mean odds over the scored
        positions and strands, minus log2 of the mean odds expected from the sequence's
        dinucleotides; 0 (no evidence either way) where a matrix has no scored position."""
        if self.engine == "tables":
            total, _, scored = self.tables.scan(seqs, np.arange(len(self.mats)), self._threads())
            with np.errstate(divide="ignore", invalid="ignore"):
                log_mean = np.where(scored > 0, np.log2(total) - np.log2(np.maximum(scored, 1)), np.nan)
            observed = log_mean.astype(np.float32) - self.tables.expected(seqs, self._threads())
        else:
            observed = self.torch_scan.log2_mean_odds(seqs) - self.torch_scan.expected(seqs)
        return np.nan_to_num(observed, nan=0.0)

    def best(self, seqs: list[str], only: np.ndarray | None = None) -> np.ndarray:
        """Best score [B, M] of each matrix (of those in `only`) over positions and strands (-inf:
        none scored, or not in `only`)."""
        if self.engine == "torch":
            return self.torch_scan.best(seqs, only)
        out = np.full((len(seqs), len(self.mats)), -np.inf, dtype=np.float32)
        chosen = np.arange(len(self.mats)) if only is None else np.flatnonzero(only)
        if len(chosen):
            _, top, _ = self.tables.scan(seqs, chosen, self._threads())
            with np.errstate(divide="ignore"):
                out[:, chosen] = np.log2(top)  # (0: no position scored, -inf)
        return out

    def hits(self, seqs: list[str], only: np.ndarray | None = None) -> np.ndarray:
        """Whether each matrix (of those in `only`; the others False) has a site (score >=
        threshold) in each sequence, [B, M] bool."""
        return self.best(seqs, only) >= self.thresholds[None, :]

    def provenance(self) -> dict:
        # the scan too: the tables' float64 and the torch scan's float32 differ in the last bits
        return {**self.mats.source, "motif_pvalue": self.pvalue, "motif_scan": self.engine}

    def sites(self, seq: str) -> pd.DataFrame:
        """Every site of every matrix in `seq`: matrix index, id, name, start, end (0-based half-open),
        strand, score."""
        parts = []
        for members, s, _ in self.torch_scan.scan([seq]):
            s = s[0].cpu().numpy()  # [L, 2, m]
            pos, strand, col = np.nonzero(s >= self.thresholds[members][None, None, :])
            parts.append(pd.DataFrame({"matrix": members[col], "start": pos, "strand": strand,
                                       "score": s[pos, strand, col]}))
        found = pd.concat(parts, ignore_index=True).sort_values(["start", "matrix", "strand"], ignore_index=True)
        found.insert(1, "id", np.array(self.mats.ids, dtype=object)[found["matrix"]])
        found.insert(2, "name", np.array(self.mats.names, dtype=object)[found["matrix"]])
        found.insert(4, "end", found["start"] + self.mats.lengths[found["matrix"].to_numpy()])
        found["strand"] = np.where(found["strand"] == 0, "+", "-")
        return found


def random_sequences(n: int, length: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [seq.decode() for seq in np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, (n, length))]
            .view(f"S{length}").ravel()]


def information_content(mats: Matrices) -> np.ndarray:
    """Relative entropy of each matrix against the uniform background, bits [M]."""
    return (np.exp2(mats.log_odds) / 4 * mats.log_odds).sum((1, 2))


def cluster_matrices(profiles: np.ndarray, mats: Matrices, r: float) -> np.ndarray:
    """Cluster of each matrix [M] from `profiles` [n, M] of reference sequences: greedy, seeded by
    information content, members correlated >= r with the seed."""
    z = (profiles - profiles.mean(0)) / (profiles.std(0) + 1e-9)
    corr = z.T @ z / len(z)
    cluster = np.full(len(mats), -1)
    for seed_matrix in np.argsort(-information_content(mats), kind="stable"):
        if cluster[seed_matrix] < 0:
            cluster[(cluster < 0) & (corr[seed_matrix] >= r)] = seed_matrix
            cluster[seed_matrix] = seed_matrix
    return np.unique(cluster, return_inverse=True)[1]


class MotifProfiler:
    """Windows as motif-cluster profiles, and the motif evidence of pairs (see the module docstring).

    Clusters and z-scores come from `REFERENCE` random uniform sequences of 512 bp (fixed, seeded,
    whatever the window size: the backend and the check of any run use the same ones), so
    `motif_cosine` means the same in every run; `cluster_digest` in provenance says which."""

    REFERENCE, REFERENCE_LENGTH = 1000, 512

    def __init__(self, source: str | Path = DEFAULT_SOURCE, pvalue: float = DEFAULT_PVALUE,
                 cluster_r: float = DEFAULT_CLUSTER_R, device: str = "cpu"):
        if not 0 < cluster_r <= 1:
            raise EvoscanError(f"motif cluster_r must lie in (0, 1] (got {cluster_r})")
        self.scanner = load_scanner(source, pvalue, device)
        self.cluster_r = cluster_r
        reference = random_sequences(self.REFERENCE, self.REFERENCE_LENGTH, seed=7)
        profiles = np.concatenate([self.scanner.profiles(reference[i:i + 250])
                                   for i in range(0, len(reference), 250)])
        self.clusters = cluster_matrices(profiles, self.scanner.mats, cluster_r)
        # the matrices grouped by cluster: a cluster's value is the mean of its members' columns
        self._order = np.argsort(self.clusters, kind="stable")
        self._first = np.flatnonzero(np.r_[True, np.diff(self.clusters[self._order]) != 0])
        self._sizes = np.bincount(self.clusters)
        reference_clusters = self._cluster_profiles(profiles)
        self._mean, self._sd = reference_clusters.mean(0), reference_clusters.std(0) + 1e-6
        # each cluster's name: its seed (most informative) matrix
        ic = information_content(self.scanner.mats)
        self.cluster_seed = np.array([np.flatnonzero(self.clusters == c)[np.argmax(ic[self.clusters == c])]
                                      for c in range(self.dim)])

    @property
    def dim(self) -> int:
        return len(self._sizes)

    def _cluster_profiles(self, profiles: np.ndarray) -> np.ndarray:
        # summed in order in float64, not a matmul: a BLAS's last bits depend on the kernel the CPU
        # selects (the profiles should not differ between machines, or a container and its host),
        # and its threads, spinning after the call, slowed the scan's own threads by a third
        return np.add.reduceat(profiles.astype(np.float64)[:, self._order], self._first, axis=1) / self._sizes

    def vectors(self, seqs: list[str]) -> np.ndarray:
        """Motif-cluster profiles [B, clusters], z-scores against random sequence."""
        return ((self._cluster_profiles(self.scanner.profiles(seqs)) - self._mean) / self._sd).astype(np.float32)

    def cluster_hits(self, seqs: list[str], only: np.ndarray | None = None) -> np.ndarray:
        """Whether any matrix of each cluster (of the clusters in `only`, a mask; the others
        False) has a site in each sequence [B, clusters]."""
        hits = self.scanner.hits(seqs, None if only is None else only[self.clusters])
        return np.logical_or.reduceat(hits[:, self._order], self._first, axis=1)

    def provenance(self) -> dict:
        digest = hashlib.sha256(self.clusters.astype(np.int64).tobytes()).hexdigest()[:16]
        return {**self.scanner.provenance(), "clusters": self.dim, "motif_cluster_r": self.cluster_r,
                "cluster_digest": digest}

    def evidence(self, pairs: list[tuple[str, str]], shuffles: int, seed: int,
                 keys: list[tuple[int, int]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Motif evidence of sequence pairs: per pair the clusters with a site in both and their
        count; the mean count of each window with `shuffles` dinucleotide shuffles of the other
        (`motifs_expected`); p = the larger of the two one-sided p-values (1 + shuffles of the other
        window sharing as many) / (1 + shuffles); and every site of the shared clusters' matrices
        in both windows. `keys` (e.g. the window indices) seed each pair's shuffles, so a pair's
        p-value does not depend on which other pairs are examined. The windows and their shuffles
        are counted by one scan; the sites come from the torch scan (every position's score),
        which can put a site within its last bits of the threshold on the other side."""
        from .decoys import dinucleotide_shuffle

        rows, sites = [], []
        for i, (a, b) in enumerate(pairs):
            rng = np.random.default_rng([seed, *(keys[i] if keys else (i,))])
            # the observed hits by the scan that counts the shuffles' (sites may differ in the last bits)
            hits_a, hits_b = self.cluster_hits([a, b])
            shared = hits_a & hits_b
            k = int(shared.sum())
            null = []
            for fixed, other in ((hits_a, b), (hits_b, a)):  # one window against shuffles of the other
                shuffled = [dinucleotide_shuffle(other, rng) for _ in range(shuffles)]
                # only the clusters the fixed window has count: the others are not scanned
                hits = np.concatenate([self.cluster_hits(shuffled[j:j + 256], fixed) for j in range(0, shuffles, 256)])
                null.append((hits & fixed).sum(1))
            p = max((1 + int((n >= k).sum())) / (1 + shuffles) for n in null)
            names = [self.scanner.mats.names[self.cluster_seed[c]] for c in np.flatnonzero(shared)]
            rows.append({"motifs_shared": k, "motifs_expected": float(np.concatenate(null).mean()),
                         "motif_pvalue": p, "shared_motifs": ",".join(names)})
            for side, seq in (("a", a), ("b", b)):
                here = self.scanner.sites(seq)
                here["cluster"] = self.clusters[here["matrix"].to_numpy()]
                here = here[shared[here["cluster"].to_numpy()]]
                sites.append(here.assign(pair=i, side=side))
        sites = pd.concat(sites, ignore_index=True) if sites else pd.DataFrame(columns=list(SITE_COLUMNS))
        sites = sites[list(SITE_COLUMNS)].astype(SITE_COLUMNS)
        return pd.DataFrame(rows, columns=["motifs_shared", "motifs_expected", "motif_pvalue", "shared_motifs"]), sites


def motif_profiler(source: str | Path = DEFAULT_SOURCE, pvalue: float = DEFAULT_PVALUE,
                   cluster_r: float = DEFAULT_CLUSTER_R, device: str = "cpu") -> MotifProfiler:
    """The profiler of these settings, built once per process (1,000 reference profiles, ~10 s on
    2 cores): the motifs backend and the check of one run share it. A motif file is known by its
    path, size and modification time."""
    path = Path(source)
    stamp = (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
    return _profiler(str(source), stamp, pvalue, cluster_r, device)


@functools.lru_cache(maxsize=4)
def _profiler(source: str, stamp, pvalue: float, cluster_r: float, device: str) -> MotifProfiler:
    return MotifProfiler(source, pvalue, cluster_r, device)
