"""Step 6, `evoscan report`: the files people read (TSV, BEDPE) and the terminal summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from .io.h5 import atomic_path
from .check import FUNNEL
from .windows import WindowSet

PAIR_VALUES = ["cosine", "repeat_frac_a", "repeat_frac_b", "blast_evalue", "blast_bitscore", "blast_pident", "blast_searched",
               "score", "score_z", "margin", "qvalue", "qvalue_all", "kmer_cosine", "composition_residual",
               "sw_score", "sw_zscore", "sw_pvalue", "same_family"]
TSV_COLUMNS = ["window_a", "window_b", "gene_a", "gene_b", "chrom_a", "start_a", "end_a",
               "chrom_b", "start_b", "end_b", "region_a", "region_b", *PAIR_VALUES,
               "gc_a", "gc_b", "cpg_oe_a", "cpg_oe_b", "candidate"]


def pair_table(ws: WindowSet, pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs of window indices to the human-facing table with ids, genes, coordinates and regions."""
    table = ws.table
    out = {}
    for side in ("a", "b"):
        idx = pairs[f"window_{side}"].to_numpy()
        for col in ("id", "gene", "chrom", "start", "end", "region", "gc", "cpg_oe"):
            name = "window" if col == "id" else col
            out[f"{name}_{side}"] = table[col].to_numpy()[idx]
    for col in (*PAIR_VALUES, "candidate"):
        out[col] = pairs[col].to_numpy()
    return pd.DataFrame(out)[TSV_COLUMNS]


def bedpe(table: pd.DataFrame) -> pd.DataFrame:
    """Candidates as BEDPE (genome browsers, bedtools pairtobed)."""
    return pd.DataFrame({
        "chrom1": table["chrom_a"], "start1": table["start_a"], "end1": table["end_a"],
        "chrom2": table["chrom_b"], "start2": table["start_b"], "end2": table["end_b"],
        "name": table["window_a"] + "__" + table["window_b"],
        "score": np.round(table["cosine"] * 1000).astype(int).clip(0, 1000),
    })


def write_tsv(path, table: pd.DataFrame, header: bool = True) -> None:
    """Write atomically; compressed when the name ends in .gz. Floats to 6 significant digits."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, header=header, float_format="%.6g",
                     compression="gzip" if path.suffix == ".gz" else None)


def write_report(outdir, ws: WindowSet, pairs: pd.DataFrame) -> dict[str, Path]:
    outdir = Path(outdir)
    table = pair_table(ws, pairs)
    candidates = table[table["candidate"]].drop(columns="candidate")
    files = {"candidates": outdir / "candidates.tsv", "pairs": outdir / "pairs.tsv.gz",
             "bedpe": outdir / "candidates.bedpe"}
    write_tsv(files["candidates"], candidates)
    write_tsv(files["pairs"], table)
    write_tsv(files["bedpe"], bedpe(candidates), header=False)
    return files


def summary(console: Console, ws: WindowSet, pairs: pd.DataFrame, meta: dict, top: int = 10) -> None:
    """The filter funnel and the best candidates, for the terminal."""
    funnel = Table(title="Filter funnel", show_header=False, title_justify="left")
    funnel.add_column("stage")
    funnel.add_column("pairs", justify="right")
    for key, label in FUNNEL:
        funnel.add_row(label, f"{meta['funnel'][key]:,}")
    console.print(funnel)
    p, s, stats = meta["params"], meta["search"], meta["stats"]
    blast_scope = (f"{stats['blast_pairs']:,} nominated repeat-free pairs, all-vs-all e-values"
                   if stats["blast_mode"] == "nominated"
                   else "all-vs-all")
    console.print(f"[dim]{len(ws):,} windows of {ws.table['gene'].nunique()} genes or regions; "
                  f"backend {meta['backend'].get('backend')}; {s['correction']} correction; top-k {s['top_k']}; "
                  f"q-values from competition with {stats['n_decoys']} dinucleotide-shuffle decoy(s) per window "
                  f"({stats['entries']:,} neighbour slots); among the {stats['population_pairs']:,} repeat-free pairs "
                  f"without a BLAST hit the pair's own score wins {stats['target_win_fraction']:.1%} of its "
                  f"competitions ({1 / (1 + 2 * stats['n_decoys']):.1%} expected without signal); "
                  f"repeat fraction <= {p['max_repeat_frac']}; no BLAST hit at e-value <= {p['max_blast_evalue']} "
                  f"({blast_scope}; {meta['blastn_args']}); q <= {p['max_qvalue']}; Smith-Waterman p >= "
                  f"{p['min_sw_pvalue']} ({stats['sw_alignments']:,} alignments). Composition (6-mer cosine) "
                  f"explains R2 = {stats['composition_r2']:.2f} of the score over nominated pairs.[/dim]")
    table = pair_table(ws, pairs[pairs["candidate"]].head(top))
    best = Table(title=f"Top {min(top, len(table))} candidates", title_justify="left")
    numeric = ("score", "margin", "kmer_cosine", "qvalue", "sw_zscore")
    for col in ("window_a", "region_a", "window_b", "region_b", *numeric, "same_family"):
        best.add_column(col, justify="right" if col in numeric else "left")
    for row in table.itertuples():
        best.add_row(row.window_a, row.region_a, row.window_b, row.region_b, f"{row.score:.3f}",
                     f"{row.margin:.2f}", f"{row.kmer_cosine:.3f}", f"{row.qvalue:.2g}",
                     f"{row.sw_zscore:.1f}", "yes" if row.same_family else "")
    console.print(best)
