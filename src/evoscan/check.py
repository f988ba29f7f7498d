"""Step 5, `evoscan check`: what makes a nominated pair believable, computed on the pairs the
search nominates only (cost grows with N * k, not N²).

- Significance: target-decoy competition (`decoys.py`). Each nominated pair (a, b) competes
  once: its score against the scores of a with b's decoys and of a's decoys with b (shuffles:
  same composition, no content). `margin` is how far the pair's normalised score beats the best
  decoy's (negative: a decoy won). `qvalue` comes from the winning scores among the pairs calls
  are made from — repeat-free, no BLAST hit — and `qvalue_all` among all nominated pairs (where
  paralogs and repeats win too: what the model sees beyond composition, before the filters). Scores are compared
  after symmetric normalisation (the S-norm of speaker verification), `score_z` =
  ((s - m_a) / sd_a + (s - m_b) / sd_b) / 2, where m and sd are a window's (or decoy's) mean and
  spread of similarity to every window it may pair with: hubs and composition outliers, similar
  to everything, are measured against what they usually score.
- Composition control: `kmer_cosine` (6-mer composition) of every pair whatever the backend, and
  `composition_residual`, what a linear fit on it leaves of `score`; the fit's R² says how much of
  the model's similarity composition explains.
- Motif control: `motif_cosine`, the cosine of the two windows' JASPAR motif-cluster profiles
  (binding potential beyond composition, `motifs.py`), for the pairs calls are made from
  (repeat-free, no BLAST hit; NaN for the others, which are out already): does the model see more
  than shared regulatory grammar?
- Motif evidence of every candidate (and of the `motif_top` best pairs calls are made from,
  called or not): the motif clusters with a site in both windows, how many a window shares with
  dinucleotide shuffles of the other on average (`motifs_expected`) and the shuffle p-value of
  the shared count (`motif_pvalue`); the sites themselves go to scores.h5. `motifs_shared` is -1
  for pairs not examined.
- Repeats: both windows' repeat fraction at most `max_repeat_frac`.
- Strict non-homology: BLAST of the nominated repeat-free pairs (the others are out already) with
  all-vs-all e-values (`blast.py`; or all-vs-all hits given by the user), then Smith-Waterman with
  shuffle statistics (`homology.py`) of the pairs still in. `blast_searched` says which pairs
  BLAST looked at; an empty e-value there means no hit.
- Paralogs: `same_family` from a gene -> family table; flagged, not dropped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import blast
from .motifs import DEFAULT_PVALUE, DEFAULT_SOURCE, SITE_COLUMNS as SITE_DTYPES, MotifProfiler, motif_profiler
from .backends.kmer import KmerBackend
from .decoys import competition_qvalues
from .errors import EvoscanError, UsageError
from .homology import sw_significance
from .io import h5
from .io.checkpoint import BlockStore
from .search import Neighbours, cross_group_overlaps
from .windows import WindowSet

FUNNEL = [
    ("window_pairs", "window pairs"),
    ("cross_gene", "cross-group, non-overlapping"),
    ("nominated", "nominated by the search (top-k)"),
    ("repeat_free", "both windows repeat-free"),
    ("no_blast_hit", "no BLAST hit"),
    ("significant", "target-decoy q <= max q"),
    ("no_sw_homology", "no Smith-Waterman homology"),
    ("candidates", "candidates"),
]
PAIR_COLUMNS = ["window_a", "window_b", "score", "score_z", "margin", "qvalue", "qvalue_all", "cosine",
                "kmer_cosine", "composition_residual", "motif_cosine", "motifs_shared", "motifs_expected",
                "motif_pvalue", "shared_motifs", "repeat_frac_a", "repeat_frac_b", "blast_searched",
                "blast_evalue", "blast_bitscore", "blast_pident", "sw_score", "sw_zscore", "sw_pvalue",
                "same_family", "repeat_free", "blast_hit", "significant", "sw_homology", "candidate"]

SITE_COLUMNS = list(SITE_DTYPES)
PROFILE_BLOCK = 2048  # windows per kept block of motif profiles (~7 s on 2 cores)


@dataclass(frozen=True)
class CheckParams:
    max_repeat_frac: float = 0.1
    max_blast_evalue: float = 10.0
    max_qvalue: float = 0.05
    min_cosine: float = -1.0
    sw_shuffles: int = 50
    min_sw_pvalue: float = 0.01
    seed: int = 1
    motifs: str = DEFAULT_SOURCE
    motif_pvalue: float = DEFAULT_PVALUE
    motif_shuffles: int = 100
    motif_top: int = 10

    def __post_init__(self):
        if not 0 <= self.max_repeat_frac <= 1:
            raise UsageError("--max-repeat-frac must lie between 0 and 1")
        if not 0 < self.max_qvalue <= 1:
            raise UsageError("--max-qvalue must lie in (0, 1]")
        if self.sw_shuffles < 2:
            raise UsageError("--sw-shuffles needs at least 2")
        if self.motif_shuffles < 1:
            raise UsageError("--motif-shuffles needs at least 1")
        if not self.max_blast_evalue >= 0:  # (not NaN either)
            raise UsageError(f"--max-blast-evalue must be 0 or more (got {self.max_blast_evalue})")
        if not 0 <= self.min_sw_pvalue <= 1:
            raise UsageError(f"--min-sw-pvalue must lie between 0 and 1 (got {self.min_sw_pvalue})")
        if not -1 <= self.min_cosine <= 1:
            raise UsageError(f"--min-cosine must lie between -1 and 1 (got {self.min_cosine})")
        if not 0 < self.motif_pvalue < 1:
            raise UsageError(f"--motif-pvalue must lie in (0, 1) (got {self.motif_pvalue})")


def _mean_sd(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread from the search's sums (sum, sum of squares, count)."""
    count = np.maximum(sums[..., 2], 1)
    mean = sums[..., 0] / count
    return mean, np.sqrt(np.maximum(sums[..., 1] / count - mean ** 2, 1e-12))


def normalised_scores(nb: Neighbours) -> tuple[np.ndarray, np.ndarray]:
    """S-norm of every entry's target score [entries] and decoy scores [entries, 2D].

    Each side of a score is measured against its cohort of the other side's kind: for a with b,
    a's and b's similarities to windows; for a with b's decoy, a's similarities to decoys and the
    decoy's to windows; for a's decoy with b, the decoy's to windows and b's to decoys. (Real
    windows resemble real windows more than they resemble decoys; one cohort for all would hand
    the real score a head start.)"""
    w_mean, w_sd = _mean_sd(nb.window_sums)
    wd_mean, wd_sd = _mean_sd(nb.window_decoy_sums)
    d_mean, d_sd = _mean_sd(nb.decoy_sums)
    e = nb.entries
    q, j = e["query"].to_numpy(), e["neighbour"].to_numpy()
    z = lambda s, m, sd: (s - m) / sd  # noqa: E731
    s = e["score"].to_numpy(np.float64)
    target = (z(s, w_mean[q], w_sd[q]) + z(s, w_mean[j], w_sd[j])) / 2
    d = nb.n_decoys
    s = nb.decoy_scores.astype(np.float64)
    with_their = (z(s[:, :d], wd_mean[q][:, None], wd_sd[q][:, None]) + z(s[:, :d], d_mean[j], d_sd[j])) / 2
    with_ours = (z(s[:, d:], d_mean[q], d_sd[q]) + z(s[:, d:], wd_mean[j][:, None], wd_sd[j][:, None])) / 2
    return target.astype(np.float32), np.concatenate([with_their, with_ours], 1).astype(np.float32)


def nominated_pairs(nb: Neighbours) -> pd.DataFrame:
    """Unique pairs window_a < window_b, each with one competition, best normalised score first.

    Both ends of a pair hold the same 1 + 2D scores, so its entries agree and one stands for it.
    `margin`: the normalised score minus the best decoy's (negative: a decoy won); `qvalue`: of
    the competitions of all these pairs (target wins against decoy wins / 2D; 1 where a decoy
    wins). `attrs["decoy_z"]`: each pair's normalised decoy scores, window_a with window_b's
    decoys, then window_a's decoys with window_b."""
    e = nb.entries
    target_z, decoy_z = normalised_scores(nb)
    d = nb.n_decoys
    from_b = (e["query"] > e["neighbour"]).to_numpy()  # held by window_b: its halves are the other way round
    decoy_z[from_b] = np.concatenate([decoy_z[from_b, d:], decoy_z[from_b, :d]], 1)
    pairs = pd.DataFrame({"window_a": np.minimum(e["query"], e["neighbour"]),
                          "window_b": np.maximum(e["query"], e["neighbour"]),
                          "score": e["score"].to_numpy(), "score_z": target_z, "cosine": e["cosine"].to_numpy()})
    first = ~pairs.duplicated(["window_a", "window_b"]).to_numpy()
    pairs, decoy_z = pairs[first], decoy_z[first]
    order = np.lexsort((pairs["window_b"], pairs["window_a"], -pairs["score_z"].to_numpy()))
    pairs, decoy_z = pairs.iloc[order].reset_index(drop=True), decoy_z[order]
    pairs["margin"] = pairs["score_z"] - decoy_z.max(1)
    pairs["qvalue"] = competition_qvalues(pairs["score_z"].to_numpy(), decoy_z)
    pairs.attrs["decoy_z"] = decoy_z
    return pairs


def kmer_cosine(ws: WindowSet, a: np.ndarray, b: np.ndarray, block: int = 8192) -> np.ndarray:
    """6-mer composition cosine of pairs (a, b), block by block from the sequences, each window of a
    block embedded once (pairs taken in order of `a`, so a block holds few distinct `a`)."""
    kmer = KmerBackend(k=6)
    out = np.empty(len(a), dtype=np.float32)
    order = np.argsort(a, kind="stable")
    for s in range(0, len(a), block):
        rows = order[s:s + block]
        needed, where = np.unique(np.concatenate([a[rows], b[rows]]), return_inverse=True)
        vectors = kmer.embed([ws.seqs[i].decode("ascii") for i in needed])
        out[rows] = np.einsum("pd,pd->p", vectors[where[:len(rows)]], vectors[where[len(rows):]])
    return out


def motif_profiles(ws: WindowSet, rows: np.ndarray, profiler: MotifProfiler, resume_dir: Path | None = None,
                   batch: int = 256) -> tuple[np.ndarray, int]:
    """Motif-cluster profiles of windows `rows` [rows, clusters], PROFILE_BLOCK windows at a time,
    and how many blocks a killed run had finished. With `resume_dir`, every finished block is kept
    there (an hour's work at a million windows on 2 cores), and a check killed and started again
    continues from them."""
    store = BlockStore(resume_dir, {"window_digest": ws.digest, "motifs": profiler.provenance(), "block": PROFILE_BLOCK,
                                    "rows": hashlib.sha256(rows.astype(np.int64).tobytes()).hexdigest()}
                       ) if resume_dir else None
    vectors = np.zeros((len(rows), profiler.dim), dtype=np.float32)
    for b0 in range(0, len(rows), PROFILE_BLOCK):
        b1 = min(len(rows), b0 + PROFILE_BLOCK)
        kept = store.load(b0) if store else None
        if kept is not None:
            vectors[b0:b1] = kept["vectors"]
            continue
        for s in range(b0, b1, batch):
            e = min(b1, s + batch)
            vectors[s:e] = profiler.vectors([ws.seqs[i].decode("ascii").upper() for i in rows[s:e]])
        if store:
            store.save(b0, {"vectors": vectors[b0:b1]})
    return vectors, store.resumed if store else 0


def motif_cosine(ws: WindowSet, a: np.ndarray, b: np.ndarray, profiler: MotifProfiler,
                 resume_dir: Path | None = None, batch: int = 256, block: int = 32768) -> tuple[np.ndarray, int]:
    """Cosine of the motif-cluster profiles of pairs (a, b), and the profile blocks resumed
    (`motif_profiles`); each window profiled once, the pairs taken in blocks (gathering both sides
    of millions of pairs at once would take gigabytes)."""
    needed, where = np.unique(np.concatenate([a, b]), return_inverse=True)
    vectors, resumed = motif_profiles(ws, needed, profiler, resume_dir, batch)
    # products and sums in float64: the same last digits on any CPU
    inverse_norm = 1 / np.maximum(np.sqrt(np.einsum("pd,pd->p", vectors, vectors, dtype=np.float64)), 1e-12)
    side_a, side_b = where[:len(a)], where[len(a):]
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), block):
        i, j = side_a[s:s + block], side_b[s:s + block]
        out[s:s + block] = (np.einsum("pd,pd->p", vectors[i], vectors[j], dtype=np.float64)
                            * inverse_norm[i] * inverse_norm[j])
    return out, resumed


def motif_evidence(ws: WindowSet, pairs: pd.DataFrame, which: np.ndarray, profiler: MotifProfiler,
                   params: "CheckParams") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Motif evidence columns for the pairs in `which` (the others stay empty), and the sites of
    their shared motifs with `pair` = the pair's row in `pairs`."""
    rows = np.flatnonzero(which)
    seqs = [(ws.seqs[pairs["window_a"].iat[r]].decode().upper(), ws.seqs[pairs["window_b"].iat[r]].decode().upper())
            for r in rows]
    keys = [(int(pairs["window_a"].iat[r]), int(pairs["window_b"].iat[r])) for r in rows]
    summary, sites = profiler.evidence(seqs, params.motif_shuffles, params.seed, keys)
    summary.index = rows
    evidence = summary.reindex(range(len(pairs)))
    evidence = evidence.astype({"motifs_expected": np.float64, "motif_pvalue": np.float64})
    evidence["motifs_shared"] = evidence["motifs_shared"].fillna(-1).astype(np.int64)  # -1: not examined
    evidence["shared_motifs"] = evidence["shared_motifs"].fillna("").astype(str)
    sites["pair"] = rows[sites["pair"].to_numpy(np.int64)] if len(sites) else sites["pair"]
    return evidence, sites


def best_hit_columns(pairs: pd.DataFrame, hits: pd.DataFrame) -> dict[str, np.ndarray]:
    """blast_evalue / blast_bitscore / blast_pident of each pair's best hit (NaN: none), looked up
    by pair key (a merge would copy the whole pair table)."""
    span = int(max(pairs["window_b"].max(), hits["window_b"].max() if len(hits) else 0)) + 1
    key = pairs["window_a"].to_numpy(np.int64) * span + pairs["window_b"].to_numpy(np.int64)
    hit_key = hits["window_a"].to_numpy(np.int64) * span + hits["window_b"].to_numpy(np.int64)
    order = np.argsort(hit_key, kind="stable")
    pos = np.minimum(np.searchsorted(hit_key[order], key), max(len(hit_key) - 1, 0))
    found = hit_key[order][pos] == key if len(hit_key) else np.zeros(len(key), bool)
    out = {}
    for column in ("evalue", "bitscore", "pident"):
        values = np.full(len(key), np.nan)
        values[found] = hits[column].to_numpy(np.float64)[order][pos[found]]
        out[f"blast_{column}"] = values
    return out


def composition_fit(score: np.ndarray, kmer: np.ndarray) -> tuple[np.ndarray, float]:
    """Residual of `score` after a least-squares line on `kmer`, and that line's R²."""
    if len(score) < 3 or np.ptp(kmer) == 0:
        return score - score.mean() if len(score) else score, 0.0
    slope, intercept = np.polyfit(kmer, score, 1)
    residual = score - (slope * kmer + intercept)
    total = ((score - score.mean()) ** 2).sum()
    return residual, float(1 - (residual ** 2).sum() / total) if total > 0 else 0.0


def cross_group_pairs(ws: WindowSet) -> int:
    """Window pairs of different groups that do not overlap in the genome: the pairs searched."""
    n = len(ws)
    sizes = ws.table["gene"].value_counts().to_numpy()
    return n * (n - 1) // 2 - int((sizes * (sizes - 1) // 2).sum()) - len(cross_group_overlaps(ws)[0]) // 2


def check_pairs(ws: WindowSet, nb: Neighbours, repeat_frac: np.ndarray, params: CheckParams,
                blast_args: str = blast.DEFAULT_ARGS, threads: int = 1, hits: pd.DataFrame | None = None,
                families: dict[str, str] | None = None, progress: Callable[[int], None] | None = None,
                resume_dir=None, profiler: MotifProfiler | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """Every nominated pair with its significance, controls and checks; (pairs, funnel, stats).
    `pairs.attrs`: "decoy_z" (each pair's normalised decoy scores), "motif_sites" (the sites of
    the candidates' shared motifs, `pair` = row in `pairs`).

    `hits`: best BLAST hits of an all-vs-all search (opt-in; `blast_args` then says how they were
    found); by default the nominated pairs are searched here with `blast_args`. With `resume_dir`,
    the finished blocks of the two long phases, BLAST and the motif profiles, are kept there (in
    blast/ and motif_profiles/), and a killed check continues from them."""
    # the matrices first: a bad --motifs fails before any work is done
    profiler = profiler or motif_profiler(params.motifs, params.motif_pvalue)
    resume_dir = Path(resume_dir) if resume_dir else None
    pairs = nominated_pairs(nb)
    decoy_z = pairs.attrs.pop("decoy_z")
    pairs["row"] = np.arange(len(pairs))  # to keep each pair's decoy scores with it
    a, b = pairs["window_a"].to_numpy(), pairs["window_b"].to_numpy()
    pairs["kmer_cosine"] = kmer_cosine(ws, a, b)
    pairs["composition_residual"], r2 = composition_fit(pairs["score"].to_numpy(np.float64),
                                                        pairs["kmer_cosine"].to_numpy(np.float64))
    pairs["repeat_frac_a"], pairs["repeat_frac_b"] = repeat_frac[a], repeat_frac[b]
    pairs["repeat_free"] = (pairs["repeat_frac_a"] <= params.max_repeat_frac) & (
        pairs["repeat_frac_b"] <= params.max_repeat_frac)
    stats = {"composition_r2": r2, "n_decoys": nb.n_decoys, "entries": len(nb.entries)}
    if hits is None:
        free = pairs["repeat_free"].to_numpy()
        hits, info = blast.nominated_hits(ws, a[free], b[free], blast_args, threads, progress,
                                          resume_dir / "blast" if resume_dir else None)
        pairs["blast_searched"] = free
        stats.update(blast_mode="nominated", blast_pairs=int(free.sum()), blast_searchsp=info["searchsp"],
                     blastn_args=info["blastn_args"], tool_versions=info["versions"])
        stats["resumed_blast_blocks"] = info["resumed_blocks"]
    else:
        pairs["blast_searched"] = True
        stats.update(blast_mode="all-vs-all", blast_pairs=len(ws) * (len(ws) - 1) // 2, blastn_args=blast_args)
    for column, values in best_hit_columns(pairs, hits).items():
        pairs[column] = values
    pairs["blast_hit"] = pairs["blast_evalue"].le(params.max_blast_evalue)
    # q-values among the pairs calls are made from (repeat-free, no BLAST hit): q-values over all
    # pairs would borrow the wins of paralogs and repeats, and not hold for what is left
    population = (pairs["repeat_free"] & ~pairs["blast_hit"]).to_numpy()
    pairs["qvalue_all"], pairs["qvalue"] = pairs["qvalue"], np.nan
    pairs.loc[population, "qvalue"] = competition_qvalues(pairs["score_z"].to_numpy()[population],
                                                          decoy_z[pairs["row"].to_numpy()[population]])
    pairs["significant"] = pairs["qvalue"].le(params.max_qvalue)
    # under the null a pair's own score wins 1 / (1 + 2D) of its competitions: more is signal
    # (or a bias of the decoys, which the calibration on signal-free copies rules out)
    stats.update(population_pairs=int(population.sum()),
                 target_win_fraction=float((pairs["margin"].to_numpy()[population] > 0).mean()) if population.any() else 0.0)
    pairs["motif_cosine"] = np.nan
    pairs.loc[population, "motif_cosine"], stats["resumed_profile_blocks"] = motif_cosine(
        ws, pairs["window_a"].to_numpy()[population], pairs["window_b"].to_numpy()[population], profiler,
        resume_dir / "motif_profiles" if resume_dir else None)
    pairs = _smith_waterman(ws, pairs, pairs["repeat_free"] & ~pairs["blast_hit"] & pairs["significant"], params)
    pairs["sw_homology"] = pairs["sw_pvalue"].lt(params.min_sw_pvalue)
    family = pd.factorize(ws.table["gene"].map(families or {}).replace("", np.nan))[0]  # -1: none
    family_a, family_b = family[pairs["window_a"].to_numpy()], family[pairs["window_b"].to_numpy()]
    pairs["same_family"] = (family_a >= 0) & (family_a == family_b)
    pairs["candidate"] = (pairs["repeat_free"] & ~pairs["blast_hit"] & pairs["significant"]
                          & ~pairs["sw_homology"] & (pairs["cosine"] >= params.min_cosine))
    # evidence for every candidate and for the best pairs calls are made from, called or not (what
    # a report shows when nothing is called)
    best = np.zeros(len(pairs), dtype=bool)
    by_score = np.argsort(-pairs["score_z"].to_numpy()[population], kind="stable")
    best[np.flatnonzero(population)[by_score[:params.motif_top]]] = True
    evidence, sites = motif_evidence(ws, pairs, pairs["candidate"].to_numpy() | best, profiler, params)
    for column in evidence.columns:  # columns added one by one: a concat or merge would copy the table
        pairs[column] = evidence[column].to_numpy()
    pairs["site_row"] = np.arange(len(pairs))
    # candidates first, then by normalised score
    order = np.lexsort((pairs["window_b"], pairs["window_a"], -pairs["score_z"].to_numpy(), ~pairs["candidate"].to_numpy()))
    pairs = pairs[[*PAIR_COLUMNS, "row", "site_row"]].take(order)
    pairs.index = pd.RangeIndex(len(pairs))
    pairs.attrs["decoy_z"] = decoy_z[pairs.pop("row").to_numpy()]
    new_row = np.empty(len(pairs), dtype=np.int64)
    new_row[pairs.pop("site_row").to_numpy()] = np.arange(len(pairs))
    pairs.attrs["motif_sites"] = sites.assign(pair=new_row[sites["pair"].to_numpy(np.int64)]).sort_values(
        ["pair", "side", "start", "matrix", "strand"], ignore_index=True)
    stats["motifs"] = profiler.provenance()
    stats["sw_alignments"] = int(pairs["sw_score"].notna().sum() * (2 * params.sw_shuffles + 2))
    return pairs, funnel_counts(ws, pairs), stats


def funnel_counts(ws: WindowSet, pairs: pd.DataFrame) -> dict[str, int]:
    n = len(ws)
    stage = pairs["repeat_free"] & ~pairs["blast_hit"]
    return {
        "window_pairs": n * (n - 1) // 2,
        "cross_gene": cross_group_pairs(ws),
        "nominated": len(pairs),
        "repeat_free": int(pairs["repeat_free"].sum()),
        "no_blast_hit": int(stage.sum()),
        "significant": int((stage & pairs["significant"]).sum()),
        "no_sw_homology": int((stage & pairs["significant"] & ~pairs["sw_homology"]).sum()),
        "candidates": int(pairs["candidate"].sum()),
    }


def _smith_waterman(ws: WindowSet, pairs: pd.DataFrame, which: pd.Series, params: CheckParams) -> pd.DataFrame:
    """sw_score / sw_zscore / sw_pvalue for the pairs in `which` (the others stay NaN)."""
    results = np.full((len(pairs), 3), np.nan)
    for p in np.flatnonzero(which.to_numpy()):
        a, b = int(pairs["window_a"].iat[p]), int(pairs["window_b"].iat[p])
        results[p] = sw_significance(ws.seqs[a].decode(), ws.seqs[b].decode(), params.sw_shuffles,
                                     seed=params.seed * 1_000_003 + a * 7919 + b)
    return pairs.assign(sw_score=results[:, 0], sw_zscore=results[:, 1], sw_pvalue=results[:, 2])


def read_families(path) -> dict[str, str]:
    """gene -> family from a two-column TSV (gene, family); '#' lines are comments."""
    path = Path(path)
    if not path.exists() or path.is_dir():  # (a pipe such as <(cut -f1,2 t.tsv) is fine)
        raise EvoscanError(f"--families {path}: {'a directory' if path.is_dir() else 'no such file'}; "
                           "give a two-column TSV of gene and family")
    try:
        table = pd.read_csv(path, sep="\t", comment="#", header=None, usecols=[0, 1], dtype=str)
    except (OSError, ValueError, pd.errors.ParserError):
        raise EvoscanError(f"{path}: expected a two-column TSV of gene and family") from None
    if table.isna().any().any():
        raise EvoscanError(f"{path}: a line without a gene and a family; expected a two-column TSV of gene and family")
    return dict(zip(table[0], table[1]))


# ---- HDF5 I/O --------------------------------------------------------------------------------

def write_scores(path, ws: WindowSet, pairs: pd.DataFrame, funnel: dict, params: CheckParams, meta: dict,
                 stats: dict) -> None:
    """scores.h5: every nominated pair with its checks and its decoys' normalised scores, the funnel,
    and the sites of the candidates' shared motifs (group motif_sites)."""
    attrs = h5.provenance("scores", ws.digest, asdict(params))
    attrs.update(funnel=json.dumps(funnel), backend=json.dumps(meta["backend"]), search=json.dumps(meta["params"]),
                 blastn_args=stats["blastn_args"], stats=json.dumps(stats))
    data = {c: pairs[c].to_numpy() for c in PAIR_COLUMNS}
    data["decoy_score_z"] = np.asarray(pairs.attrs["decoy_z"], np.float32)
    sites = pairs.attrs.get("motif_sites", pd.DataFrame(columns=SITE_COLUMNS)).astype(SITE_DTYPES)
    data.update({f"motif_sites/{c}": sites[c].to_numpy() for c in SITE_COLUMNS})
    h5.write_h5(path, data, attrs)


def read_scores(path, ws: WindowSet) -> tuple[pd.DataFrame, dict]:
    sites = tuple(f"motif_sites/{c}" for c in SITE_COLUMNS)
    with h5.open_checked(path, "scores", ws.digest, datasets=(*PAIR_COLUMNS, "decoy_score_z", *sites)) as f:
        pairs = pd.DataFrame({c: h5.read_strings(f[c]) if f[c].dtype.kind == "O" else f[c][()] for c in PAIR_COLUMNS})
        pairs.attrs["decoy_z"] = f["decoy_score_z"][()]
        pairs.attrs["motif_sites"] = pd.DataFrame({c: h5.read_strings(f[f"motif_sites/{c}"])
                                                   if f[f"motif_sites/{c}"].dtype.kind == "O" else f[f"motif_sites/{c}"][()]
                                                   for c in SITE_COLUMNS})
        meta = {"funnel": json.loads(f.attrs["funnel"]), "backend": json.loads(f.attrs["backend"]),
                "search": json.loads(f.attrs["search"]), "blastn_args": str(f.attrs["blastn_args"]),
                "params": h5.params_of(f), "stats": json.loads(f.attrs["stats"])}
    return pairs, meta
