"""Step 2, `evoscan mask`: repeat and low-complexity fraction of every window, per source and united.

Sources: the input's soft-masking, dustmasker (low complexity), trf (tandem repeats) and, when
the user has one, a RepeatMasker `.out` file or a BED of repeat intervals in genome coordinates.
Each source yields intervals in window coordinates (gene orientation, 0-based half-open); the
union is taken base by base, so a base flagged by two sources counts once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from . import tools
from .errors import EvoscanError, UsageError
from .io import h5
from .io.fasta import open_text, write_fasta_upper
from .windows import WindowSet

SOURCES = ("softmask", "dust", "trf")
# trf's recommended parameters: match, mismatch, indel, PM, PI, minscore, maxperiod.
TRF_PARAMS = ["2", "7", "7", "80", "10", "50", "500"]
TRF_SUCCESS = 253  # trf -ngs exits 253 when it succeeds


def intervals_frame(window: np.ndarray, start: np.ndarray, end: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"window": np.asarray(window, np.int64), "start": np.asarray(start, np.int64),
                         "end": np.asarray(end, np.int64)})


def coverage(intervals: pd.DataFrame, n_windows: int, size: int, chunk: int = 65536) -> np.ndarray:
    """Fraction of each window's bases covered by at least one interval (overlaps counted once)."""
    frac = np.zeros(n_windows, dtype=np.float32)
    if intervals.empty:
        return frac
    w, s, e = (intervals[c].to_numpy() for c in ("window", "start", "end"))
    s, e = np.clip(s, 0, size), np.clip(e, 0, size)
    for lo in range(0, n_windows, chunk):  # bounded memory: chunk x size counters at a time
        sel = (w >= lo) & (w < lo + chunk)
        rows = min(chunk, n_windows - lo)
        diff = np.zeros((rows, size + 1), dtype=np.int32)
        np.add.at(diff, (w[sel] - lo, s[sel]), 1)
        np.add.at(diff, (w[sel] - lo, e[sel]), -1)
        frac[lo:lo + rows] = (np.cumsum(diff[:, :size], axis=1) > 0).sum(1) / size
    return frac


def softmask_intervals(seqs: np.ndarray) -> pd.DataFrame:
    """Runs of lowercase bases."""
    raw = np.frombuffer(b"".join(seqs.tolist()), dtype=np.uint8).reshape(len(seqs), -1)
    lower = np.pad(raw >= ord("a"), ((0, 0), (1, 1))).astype(np.int8)
    edges = np.diff(lower, axis=1)
    w_start, s = np.nonzero(edges == 1)
    _, e = np.nonzero(edges == -1)
    return intervals_frame(w_start, s, e)


def parse_dust(text: str) -> pd.DataFrame:
    """dustmasker -outfmt interval: '>id' then 'start - end' lines, 0-based inclusive."""
    rows, window = [], -1
    for line in text.splitlines():
        if line.startswith(">"):
            window = int(line[2:].split()[0])
        elif " - " in line:
            a, b = line.split(" - ")
            rows.append((window, int(a), int(b) + 1))
    return intervals_frame(*np.array(rows, dtype=np.int64).reshape(-1, 3).T)


def parse_trf_ngs(text: str) -> pd.DataFrame:
    """trf -ngs: '@id' then one line per repeat, first two fields 1-based inclusive start, end."""
    rows, window = [], -1
    for line in text.splitlines():
        if line.startswith("@"):
            window = int(line[2:].split()[0])
        elif line.strip():
            a, b = line.split(maxsplit=2)[:2]
            rows.append((window, int(a) - 1, int(b)))
    return intervals_frame(*np.array(rows, dtype=np.int64).reshape(-1, 3).T)


def run_dust(fasta: Path) -> pd.DataFrame:
    return parse_dust(tools.run(["dustmasker", "-in", str(fasta), "-outfmt", "interval"]))


def run_trf(fasta: Path) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:  # trf writes side files into its working directory
        out = tools.run(["trf", str(fasta.resolve()), *TRF_PARAMS, "-h", "-ngs"],
                        ok_codes=(0, TRF_SUCCESS), cwd=tmp)
    return parse_trf_ngs(out)


def read_repeat_intervals(path) -> pd.DataFrame:
    """Genome intervals (chrom, start, end; 0-based half-open) from a RepeatMasker .out or a BED file."""
    rows = []
    with open_text(path) as handle:
        lines = handle.read().splitlines()
    is_rmsk = any("SW" in line and "perc" in line for line in lines[:3])
    for line in lines:
        fields = line.split()
        if is_rmsk:  # score div del ins query begin end (left) strand repeat class ...
            if len(fields) >= 11 and fields[5].isdigit() and fields[6].isdigit():
                rows.append((fields[4], int(fields[5]) - 1, int(fields[6])))
        elif len(fields) >= 3 and not line.startswith(("#", "track", "browser")):
            if not (fields[1].isdigit() and fields[2].isdigit()):
                raise EvoscanError(f"{path}: not a RepeatMasker .out or BED file (line {line[:50]!r})")
            rows.append((fields[0], int(fields[1]), int(fields[2])))
    if not rows:
        raise EvoscanError(f"{path}: no repeat intervals found; expected a RepeatMasker .out or BED file")
    return pd.DataFrame(rows, columns=["chrom", "start", "end"])


def genome_to_window_intervals(repeats: pd.DataFrame, ws: WindowSet) -> pd.DataFrame:
    """Clip genome intervals to every window they touch, in window (gene-orientation) coordinates."""
    size = ws.params.size
    parts = []
    for chrom, wins in ws.table.groupby("chrom", sort=False):
        reps = repeats[repeats["chrom"] == chrom]
        if reps.empty:
            continue
        order = np.argsort(wins["start"].to_numpy(), kind="stable")
        w_idx = wins.index.to_numpy()[order]
        w_start = wins["start"].to_numpy()[order]
        a, b = reps["start"].to_numpy(np.int64), reps["end"].to_numpy(np.int64)
        # windows overlapping [a, b) start in (a - size, b)
        lo = np.searchsorted(w_start, a - size + 1, "left")
        hi = np.searchsorted(w_start, b, "left")
        counts = np.maximum(hi - lo, 0)
        rep = np.repeat(np.arange(len(a)), counts)
        pos = np.repeat(lo, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        win = w_idx[pos]
        ws0 = w_start[pos]
        s, e = np.maximum(a[rep] - ws0, 0), np.minimum(b[rep] - ws0, size)
        minus = ws.table["strand"].to_numpy()[win] == "-"
        s, e = np.where(minus, size - e, s), np.where(minus, size - s, e)
        parts.append(intervals_frame(win, s, e))
    return pd.concat(parts, ignore_index=True) if parts else intervals_frame([], [], [])


SOURCE_TOOLS = {"dust": "dustmasker", "trf": "trf"}  # the sources that run a program


def require_tools(sources) -> None:
    """Known sources, and the programs they need on PATH."""
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise UsageError(f"unknown mask source(s) {', '.join(sorted(unknown))}; choose from {', '.join(SOURCES)}")
    for source, tool in SOURCE_TOOLS.items():
        if source in sources:
            tools.require(tool)


def tool_versions(sources) -> dict[str, str]:
    """The version of each program the sources run."""
    return {tool: tools.version(tool) for source, tool in SOURCE_TOOLS.items() if source in sources}


def require_uppercase(ws: WindowSet, sources) -> None:
    """Soft-masking input that is lowercase throughout would call every window a repeat."""
    if "softmask" in sources and len(ws) and (ws.table["softmask_frac"].to_numpy() == 1).all():
        raise EvoscanError(f"{ws.source or 'the windows'}: every base is lowercase, so soft-masking marks every "
                           "window a repeat and nothing could be called; if lowercase does not mean repeats "
                           "in this file, uppercase it or leave softmask out of --mask-sources")


def compute_masks(ws: WindowSet, sources=SOURCES, rmsk=None) -> tuple[dict[str, pd.DataFrame], dict]:
    """Intervals per source and the versions of the tools that made them."""
    require_tools(sources)
    require_uppercase(ws, sources)
    found, versions = {}, tool_versions(sources)
    if "softmask" in sources:
        found["softmask"] = softmask_intervals(ws.seqs)
    if rmsk is not None:
        found["rmsk"] = genome_to_window_intervals(read_repeat_intervals(rmsk), ws)
    if "dust" in sources or "trf" in sources:
        with tempfile.TemporaryDirectory() as tmp:
            fasta = Path(tmp) / "windows.fa"
            write_fasta_upper(fasta, ws.seqs)
            if "dust" in sources:
                found["dust"] = run_dust(fasta)
            if "trf" in sources:
                found["trf"] = run_trf(fasta)
    return found, versions


def mask_fractions(found: dict[str, pd.DataFrame], n: int, size: int) -> dict[str, np.ndarray]:
    fractions = {f"{name}_frac": coverage(iv, n, size) for name, iv in found.items()}
    union = pd.concat(list(found.values()), ignore_index=True) if found else intervals_frame([], [], [])
    fractions["repeat_frac"] = coverage(union, n, size)
    return fractions


def write_masks(path, ws: WindowSet, found: dict[str, pd.DataFrame], versions: dict, params: dict) -> None:
    data = mask_fractions(found, len(ws), ws.params.size)
    for name, iv in found.items():
        data[f"{name}_intervals"] = iv[["window", "start", "end"]].to_numpy(np.int32).reshape(-1, 3)
    attrs = h5.provenance("masks", ws.digest, params, versions)
    attrs["sources"] = ",".join(found)
    h5.write_h5(path, data, attrs)


def read_repeat_frac(path, ws: WindowSet) -> dict[str, np.ndarray]:
    """Every `*_frac` dataset of a masks file made from `ws`."""
    with h5.open_checked(path, "masks", ws.digest, datasets=("repeat_frac",)) as f:
        return {k: f[k][()] for k in f if k.endswith("_frac")}
