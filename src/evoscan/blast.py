"""BLAST, the first non-homology check: on the pairs the search nominates (`nominated_hits`, used by
`evoscan check`), or all-vs-all for small sets (`evoscan blast`, opt-in).

Nominated pairs: every window is searched against the windows it is paired with, both directions
(as all-vs-all does), in blocks of query windows against the union of their partners. BLAST's
e-value depends on the query, the scoring and the effective search space, which an all-vs-all
search sets from the database of all windows; `effective_search_space` asks blastn for that space
once, and every block is searched with it (`-searchsp`), so a pair's e-value is the one an
all-vs-all search gives (bitscores do not depend on it). Cost grows with the pairs, not with N².

The defaults are chosen to support a "no detectable similarity" claim: the sensitive blastn task
with word size 7, e-value 10, no DUST or soft masking, both strands, and no cap on targets per
query (blastn's default of 500 would silently hide hits of repeat-rich windows).

A run may search one chunk of the windows as queries (`--chunk I/N`) against the database of all
windows: e-values depend only on the query and the database, so chunks searched against the same
database and merged (`merge_blast`) give exactly the all-vs-all result.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from . import tools
from .errors import EvoscanError
from .io import h5
from .io.checkpoint import BlockStore
from .io.fasta import write_fasta_upper
from .windows import WindowSet, check_tiling

DEFAULT_ARGS = "-task blastn -word_size 7 -evalue 10 -dust no -soft_masking false -strand both"
OUTFMT = "6 qseqid sseqid pident length evalue bitscore"
HIT_COLUMNS = ["window_a", "window_b", "evalue", "bitscore", "pident", "length"]
RESERVED = {"-query", "-db", "-subject", "-out", "-outfmt", "-num_threads", "-searchsp"}
QUERY_BLOCK = 32  # query windows per nominated-pair search


def blastn_args(args: str, n_windows: int) -> list[str]:
    """User blastn options, checked; `-max_target_seqs` defaults to every window."""
    try:
        words = shlex.split(args)
    except ValueError as err:
        raise EvoscanError(f"--blast-args cannot be parsed: {err}") from None
    clash = RESERVED.intersection(words)
    if clash:
        raise EvoscanError(f"--blast-args must not set {', '.join(sorted(clash))}; evoscan sets it")
    if "-max_target_seqs" not in words:
        words += ["-max_target_seqs", str(max(n_windows, 1))]
    return words


def check_args(args: str, all_vs_all: bool = False) -> None:
    """Run blastn once on a tiny sequence with the user's options, the way the step will (against a
    database, or a subject with -searchsp), so bad --blast-args fail in a second before the expensive
    steps rather than after them."""
    words = blastn_args(args, 2)
    tools.require("makeblastdb")
    hint = f"check --blast-args {args!r}"
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "probe.fa"
        fasta.write_text(">w0\nACGTTGCAAGGCTTACGATCGATCGGATCCTAGCTAGGCTAACGTTAGC\n")
        if all_vs_all:
            tools.run(["makeblastdb", "-in", str(fasta), "-dbtype", "nucl", "-out", str(Path(tmp) / "db")], hint=hint)
            target = ["-db", str(Path(tmp) / "db")]
        else:
            target = ["-subject", str(fasta), "-searchsp", "1000000"]
        tools.run(["blastn", "-query", str(fasta), *target, "-outfmt", OUTFMT, *words], hint=hint)


def best_per_pair(hsps: pd.DataFrame) -> pd.DataFrame:
    """One row per unordered window pair (a < b): min e-value, max bitscore, and the identity and
    length of the top-scoring HSP. Self hits are dropped."""
    a = np.minimum(hsps["query"], hsps["subject"])
    b = np.maximum(hsps["query"], hsps["subject"])
    hsps = hsps.assign(window_a=a, window_b=b)[a != b]
    if hsps.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                             zip(HIT_COLUMNS, ["i8", "f8", "f4", "f4", "f4", "i8"])})
    # ties broken on every column, so chunked and whole runs pick the same top HSP
    top = hsps.sort_values(["bitscore", "evalue", "pident", "length"], ascending=[False, True, False, False],
                           kind="stable").drop_duplicates(["window_a", "window_b"])
    min_e = hsps.groupby(["window_a", "window_b"])["evalue"].min()
    top = top.set_index(["window_a", "window_b"]).assign(evalue=min_e).reset_index()
    return top[HIT_COLUMNS].sort_values(["window_a", "window_b"], ignore_index=True)


def pair_extremes(hsps: pd.DataFrame) -> pd.DataFrame:
    """The HSPs `best_per_pair` can pick from: per unordered pair, the top-scoring one and the one
    with the least e-value. Blocks of HSPs reduced to these as they finish give the same best hits
    as all HSPs together, in memory that grows with the pairs, not with the HSPs."""
    a = np.minimum(hsps["query"], hsps["subject"])
    b = np.maximum(hsps["query"], hsps["subject"])
    keyed = hsps.assign(_a=a, _b=b)
    top = keyed.sort_values(["bitscore", "evalue", "pident", "length"], ascending=[False, True, False, False],
                            kind="stable").drop_duplicates(["_a", "_b"])
    least = keyed.sort_values("evalue", kind="stable").drop_duplicates(["_a", "_b"])
    return pd.concat([top, least], ignore_index=True).drop_duplicates().drop(columns=["_a", "_b"])


def read_outfmt6(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            ["query", "subject", "pident", "length", "evalue", "bitscore"], ["i8", "i8", "f8", "i8", "f8", "f8"])})
    hsps = pd.read_csv(path, sep="\t", header=None,
                       names=["query", "subject", "pident", "length", "evalue", "bitscore"],
                       dtype={"query": str, "subject": str})
    for col in ("query", "subject"):  # ids are w<index>
        hsps[col] = hsps[col].str.slice(1).astype(np.int64)
    return hsps


def run_blast(ws: WindowSet, args: str = DEFAULT_ARGS, threads: int = 1,
              rows: tuple[int, int] | None = None) -> tuple[pd.DataFrame, dict]:
    """Best hit per window pair (queries: windows `rows`, default all) and provenance of the search."""
    words = blastn_args(args, len(ws))
    lo, hi = rows or (0, len(ws))
    versions = {"blastn": tools.version("blastn")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_fasta_upper(tmp / "windows.fa", ws.seqs)
        write_fasta_upper(tmp / "queries.fa", ws.seqs, range(lo, hi))
        tools.run(["makeblastdb", "-in", str(tmp / "windows.fa"), "-dbtype", "nucl", "-out", str(tmp / "db")])
        tools.run(["blastn", "-query", str(tmp / "queries.fa"), "-db", str(tmp / "db"), "-outfmt", OUTFMT,
                   "-num_threads", str(threads), "-out", str(tmp / "hits.tsv"), *words])
        hits = best_per_pair(read_outfmt6(tmp / "hits.tsv"))
    return hits, {"blastn_args": " ".join(words), "versions": versions, "rows": (lo, hi)}


def effective_search_space(fasta: Path, db: Path, words: list[str], tmp: Path) -> int:
    """The effective search space blastn uses for a window (all windows have one length) against
    the database of all windows: what makes nominated-pair e-values equal all-vs-all ones."""
    with open(fasta) as fh:
        first = fh.readline() + fh.readline()
    (tmp / "one.fa").write_text(first)
    options = [w for i, w in enumerate(words) if w != "-max_target_seqs" and (i == 0 or words[i - 1] != "-max_target_seqs")]
    report = tools.run(["blastn", "-query", str(tmp / "one.fa"), "-db", str(db), "-outfmt", "0",
                        "-num_descriptions", "1", "-num_alignments", "1", *options])
    found = re.search(r"Effective search space used:\s*(\d+)", report)
    if not found:
        raise EvoscanError("blastn did not report its effective search space; check --blast-args")
    return int(found.group(1))


def _search_block(queries: np.ndarray, partners: dict[int, np.ndarray], ws: WindowSet, words: list[str],
                  searchsp: int, tmp: Path) -> pd.DataFrame:
    """HSPs of `queries` against the union of their partners, kept only for nominated pairs."""
    subjects = np.unique(np.concatenate([partners[q] for q in queries]))
    name = f"b{int(queries[0])}"
    write_fasta_upper(tmp / f"{name}.q.fa", ws.seqs, queries)
    write_fasta_upper(tmp / f"{name}.s.fa", ws.seqs, subjects)
    tools.run(["blastn", "-query", str(tmp / f"{name}.q.fa"), "-subject", str(tmp / f"{name}.s.fa"),
               "-searchsp", str(searchsp), "-outfmt", OUTFMT, "-out", str(tmp / f"{name}.tsv"), *words])
    hsps = read_outfmt6(tmp / f"{name}.tsv")
    wanted = pd.MultiIndex.from_arrays([np.repeat(queries, [len(partners[q]) for q in queries]),
                                        np.concatenate([partners[q] for q in queries])])
    return hsps[pd.MultiIndex.from_arrays([hsps["query"], hsps["subject"]]).isin(wanted)]


def nominated_hits(ws: WindowSet, window_a: np.ndarray, window_b: np.ndarray, args: str = DEFAULT_ARGS,
                   threads: int = 1, progress=None, resume_dir: Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Best hit of each nominated pair (a, b), with the e-values an all-vs-all search would give.

    With `resume_dir`, the HSPs of every finished block of queries are kept there, and a run
    killed and started again continues from them."""
    words = blastn_args(args, len(ws))
    versions = {"blastn": tools.version("blastn")}
    both = pd.DataFrame({"q": np.concatenate([window_a, window_b]), "s": np.concatenate([window_b, window_a])})
    partners = {int(q): g["s"].to_numpy() for q, g in both.groupby("q", sort=True)}
    queries = np.array(sorted(partners), dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_fasta_upper(tmp / "windows.fa", ws.seqs)
        tools.run(["makeblastdb", "-in", str(tmp / "windows.fa"), "-dbtype", "nucl", "-out", str(tmp / "db")])
        searchsp = effective_search_space(tmp / "windows.fa", tmp / "db", words, tmp)
        blocks = [queries[i:i + QUERY_BLOCK] for i in range(0, len(queries), QUERY_BLOCK)]
        pairs = hashlib.sha256(np.concatenate([window_a, window_b]).astype(np.int64).tobytes()).hexdigest()
        store = BlockStore(resume_dir, {"window_digest": ws.digest, "blastn": words, "searchsp": searchsp,
                                        "pairs": pairs, "block": QUERY_BLOCK}) if resume_dir else None

        def block_hsps(i: int) -> pd.DataFrame:
            kept = store.load(i) if store else None
            if kept is not None:
                return pd.DataFrame(kept)
            hsps = _search_block(blocks[i], partners, ws, words, searchsp, tmp)
            if store:
                store.save(i, {c: hsps[c].to_numpy() for c in hsps.columns})
            return hsps

        with ThreadPoolExecutor(max(1, threads)) as pool:  # one single-threaded blastn per block
            found = []
            for hsps in pool.map(block_hsps, range(len(blocks))):
                found.append(pair_extremes(hsps))
                if progress:
                    progress(1)
    hsps = pd.concat(found, ignore_index=True) if found else read_outfmt6(Path("/dev/null"))
    info = {"blastn_args": " ".join(words), "versions": versions, "searchsp": searchsp,
            "pairs_searched": len(window_a), "query_blocks": len(blocks), "resumed_blocks": store.resumed if store else 0}
    return best_per_pair(hsps), info


def write_blast(path, ws: WindowSet, hits: pd.DataFrame, info: dict, params: dict) -> None:
    attrs = h5.provenance("blast", ws.digest, {**params, "blastn_args": info["blastn_args"]}, info["versions"])
    attrs["rows_start"], attrs["rows_end"] = info.get("rows", (0, len(ws)))
    h5.write_h5(path, {c: hits[c].to_numpy() for c in HIT_COLUMNS}, attrs)


def _read_part(path, ws: WindowSet) -> tuple[pd.DataFrame, str, tuple[int, int], dict]:
    with h5.open_checked(path, "blast", ws.digest, datasets=tuple(HIT_COLUMNS)) as f:
        rows = (int(f.attrs.get("rows_start", 0)), int(f.attrs.get("rows_end", len(ws))))
        hits = pd.DataFrame({c: f[c][()] for c in HIT_COLUMNS})
        return hits, h5.params_of(f)["blastn_args"], rows, dict(f.attrs)


def read_blast(path, ws: WindowSet) -> tuple[pd.DataFrame, str]:
    """Best hits of a blast file made from `ws`, and the blastn options that found them."""
    hits, args, rows, _ = _read_part(path, ws)
    if rows != (0, len(ws)):
        raise EvoscanError(f"{path} holds the hits of query windows {rows[0]}..{rows[1]} of {len(ws)} only; "
                           "join the chunks with `evoscan merge` first")
    return hits, args


def merge_blast(parts: list, ws: WindowSet, out_path) -> None:
    """Join query-chunk files into the all-vs-all best hits (same reduction as a whole run)."""
    pieces = sorted((_read_part(p, ws) for p in parts), key=lambda p: p[2][0])
    if len({p[1] for p in pieces}) != 1:
        raise EvoscanError("BLAST chunks were searched with different blastn options; rerun them alike")
    check_tiling([p[2] for p in pieces], len(ws), "BLAST")
    both = pd.concat([p[0] for p in pieces], ignore_index=True)
    hits = best_per_pair(both.rename(columns={"window_a": "query", "window_b": "subject"}))
    attrs = {**pieces[0][3], "rows_start": 0, "rows_end": len(ws)}
    h5.write_h5(out_path, {c: hits[c].to_numpy() for c in HIT_COLUMNS}, attrs)
