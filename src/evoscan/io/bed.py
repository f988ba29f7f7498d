"""BED input: regions to scan (peaks, enhancers, promoters), BED3+ with an optional name and strand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import EvoscanError
from .fasta import open_text, reading

BED_COLUMNS = ["chrom", "start", "end", "name", "strand"]


def read_bed(path: str | Path) -> pd.DataFrame:
    """Regions as a table: chrom, start, end (0-based half-open, as written), name (column 4; None when
    absent or '.') and strand (column 6; '+' unless it says '-'). Blank, '#', 'track' and 'browser'
    lines are skipped; a malformed line is an error naming the file and line."""
    rows = []
    with open_text(path) as handle, reading(path, "BED"):
        for number, line in enumerate(handle, 1):
            words = line.split(maxsplit=1)
            if not words or words[0].startswith("#") or words[0] in ("track", "browser"):
                continue
            rows.append(_region(line, f"{path}, line {number}"))
    if not rows:
        raise EvoscanError(f"{path}: no regions (expected BED lines: chrom, start, end[, name, score, strand])")
    return pd.DataFrame(rows, columns=BED_COLUMNS).astype({"start": np.int64, "end": np.int64})


def _region(line: str, where: str) -> tuple:
    fields = [f.strip() for f in (line.rstrip("\r\n").split("\t") if "\t" in line else line.split())]
    if len(fields) < 3 or not fields[0]:
        raise EvoscanError(f"{where}: a BED line needs at least chrom, start and end (got {line.strip()[:60]!r})")
    try:
        start, end = int(fields[1]), int(fields[2])
    except ValueError:
        raise EvoscanError(f"{where}: start and end must be integers (got {fields[1]!r}, {fields[2]!r})") from None
    if start < 0:
        raise EvoscanError(f"{where}: start {start} is negative")
    if end <= start:
        raise EvoscanError(f"{where}: end {end} is not after start {start} (BED is 0-based, half-open)")
    name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else None
    strand = fields[5] if len(fields) > 5 else "."
    if strand not in ("+", "-", "."):
        raise EvoscanError(f"{where}: strand (column 6) must be +, - or . (got {strand!r})")
    return fields[0], start, end, name, "-" if strand == "-" else "+"
