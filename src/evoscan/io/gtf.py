"""GTF input: gene models (span, TSS, transcripts with exons and coding span) by gene name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import EvoscanError
from .fasta import open_text

GTF_COLUMNS = ["chrom", "source", "feature", "start", "end", "score", "strand", "frame", "attributes"]
CODING_FEATURES = {"CDS", "CDS_span", "start_codon", "stop_codon"}


@dataclass(frozen=True)
class Transcript:
    exons: np.ndarray  # [n, 2] 0-based half-open
    coding: tuple[int, int] | None  # first..last coding base, half-open; None for non-coding


@dataclass(frozen=True)
class GeneModel:
    name: str
    chrom: str
    strand: str
    start: int  # 0-based, half-open union of the gene's records
    end: int
    transcripts: list[Transcript] = field(default_factory=list)

    @property
    def tss(self) -> int:
        """0-based position of the gene's 5'-most transcribed base."""
        return self.start if self.strand == "+" else self.end - 1


def read_gtf(path: str | Path) -> pd.DataFrame:
    """The GTF as a table with gene_name and transcript_id pulled out of the attributes."""
    try:
        with open_text(path) as handle:
            table = pd.read_csv(
                handle, sep="\t", comment="#", header=None, names=GTF_COLUMNS,
                dtype={"chrom": str, "start": "Int64", "end": "Int64"}, quoting=3,
            )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise EvoscanError(f"{path}: not a GTF file (9 tab-separated columns expected): {err}") from None
    if table.empty or table["attributes"].isna().all() or table["start"].isna().any():
        raise EvoscanError(f"{path}: not a GTF file (9 tab-separated columns with integer start/end expected)")
    attrs = table["attributes"].fillna("")
    name = attrs.str.extract(r'gene_name "([^"]+)"')[0]
    table["gene_name"] = name.fillna(attrs.str.extract(r'gene_id "([^"]+)"')[0])
    table["transcript_id"] = attrs.str.extract(r'transcript_id "([^"]+)"')[0]
    table["start"] = table["start"].astype(np.int64) - 1  # to 0-based half-open
    table["end"] = table["end"].astype(np.int64)
    return table


def gene_models(table: pd.DataFrame, names: list[str], path="GTF") -> dict[str, GeneModel]:
    """One model per requested gene name; raise naming every gene the GTF does not have."""
    names = list(dict.fromkeys(names))
    rows = table[table["gene_name"].isin(names)]
    missing = [n for n in names if n not in set(rows["gene_name"])]
    if missing:
        raise EvoscanError(
            f"{path}: gene(s) not found (by gene_name or gene_id): {', '.join(missing)}; check the spelling"
        )
    groups = dict(tuple(rows.groupby("gene_name", sort=False)))
    return {name: _model(name, groups[name]) for name in names}


def _model(name: str, rows: pd.DataFrame) -> GeneModel:
    # A name on several chromosomes (e.g. PAR genes) is modelled on the first one seen.
    rows = rows[rows["chrom"] == rows["chrom"].iloc[0]]
    genes = rows[rows["feature"] == "gene"]
    span = genes if not genes.empty else rows
    transcripts = []
    for _, tx in rows[rows["transcript_id"].notna()].groupby("transcript_id", sort=False):
        exons = tx[tx["feature"] == "exon"][["start", "end"]].to_numpy(np.int64)
        coding = tx[tx["feature"].isin(CODING_FEATURES)]
        span_cds = (int(coding["start"].min()), int(coding["end"].max())) if not coding.empty else None
        if len(exons):
            transcripts.append(Transcript(exons=exons, coding=span_cds))
    return GeneModel(
        name=name,
        chrom=str(rows["chrom"].iloc[0]),
        strand=str(span["strand"].iloc[0]),
        start=int(span["start"].min()),
        end=int(span["end"].max()),
        transcripts=transcripts,
    )
