"""Step 3, `evoscan blast`: all-vs-all blastn of the windows, best hit per window pair.

The defaults are chosen to support a "no detectable similarity" claim: the sensitive blastn task
with word size 7, e-value 10, no DUST or soft masking, both strands, and no cap on targets per
query (blastn's default of 500 would silently hide hits of repeat-rich windows).

A run may search one chunk of the windows as queries (`--chunk I/N`) against the database of all
windows: e-values depend only on the query and the database, so chunks searched against the same
database and merged (`merge_blast`) give exactly the all-vs-all result.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from . import tools
from .errors import EvoscanError
from .io import h5
from .mask import write_fasta_upper
from .windows import WindowSet, check_tiling

DEFAULT_ARGS = "-task blastn -word_size 7 -evalue 10 -dust no -soft_masking false -strand both"
OUTFMT = "6 qseqid sseqid pident length evalue bitscore"
HIT_COLUMNS = ["window_a", "window_b", "evalue", "bitscore", "pident", "length"]
RESERVED = {"-query", "-db", "-out", "-outfmt", "-num_threads"}


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
        write_fasta_upper(ws, tmp / "windows.fa")
        write_fasta_upper(ws, tmp / "queries.fa", rows=(lo, hi))
        tools.run(["makeblastdb", "-in", str(tmp / "windows.fa"), "-dbtype", "nucl", "-out", str(tmp / "db")])
        tools.run(["blastn", "-query", str(tmp / "queries.fa"), "-db", str(tmp / "db"), "-outfmt", OUTFMT,
                   "-num_threads", str(threads), "-out", str(tmp / "hits.tsv"), *words])
        hits = best_per_pair(read_outfmt6(tmp / "hits.tsv"))
    return hits, {"blastn_args": " ".join(words), "versions": versions, "rows": (lo, hi)}


def write_blast(path, ws: WindowSet, hits: pd.DataFrame, info: dict, params: dict) -> None:
    attrs = h5.provenance("blast", ws.digest, {**params, "blastn_args": info["blastn_args"]}, info["versions"])
    attrs["rows_start"], attrs["rows_end"] = info.get("rows", (0, len(ws)))
    h5.write_h5(path, {c: hits[c].to_numpy() for c in HIT_COLUMNS}, attrs)


def _read_part(path, ws: WindowSet) -> tuple[pd.DataFrame, str, tuple[int, int], dict]:
    with h5.open_checked(path, "blast", ws.digest) as f:
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
