"""Step 6, `evoscan report`: the files people read (TSV, BEDPE) and the terminal summary."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import html_report, tracks
from .io.h5 import atomic_path
from .check import FUNNEL
from .run_settings import file_name
from .windows import WindowSet

PAIR_VALUES = ["cosine", "repeat_frac_a", "repeat_frac_b", "blast_evalue", "blast_bitscore", "blast_pident", "blast_searched",
               "score", "score_z", "margin", "qvalue", "qvalue_all", "kmer_cosine", "composition_residual",
               "motif_cosine", "motifs_shared", "motifs_expected", "motif_pvalue", "shared_motifs",
               "sw_score", "sw_zscore", "sw_pvalue", "same_family"]
TSV_COLUMNS = ["window_a", "window_b", "gene_a", "gene_b", "chrom_a", "start_a", "end_a",
               "chrom_b", "start_b", "end_b", "region_a", "region_b", *PAIR_VALUES,
               "gc_a", "gc_b", "cpg_oe_a", "cpg_oe_b", "candidate"]
TSV_ROWS = 500_000  # pairs per part of pairs.tsv.gz


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


def site_table(ws: WindowSet, pairs: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """The shared-motif sites of the pairs with motif evidence (candidates and the best pairs) in
    genome coordinates (0-based half-open; strand on the genome: a window read from the minus
    strand flips its sites)."""
    table = ws.table
    side_a = (sites["side"] == "a").to_numpy()
    row = sites["pair"].to_numpy()
    window = np.where(side_a, pairs["window_a"].to_numpy()[row], pairs["window_b"].to_numpy()[row])
    minus = table["strand"].to_numpy()[window] == "-"
    w_start, w_end = table["start"].to_numpy()[window], table["end"].to_numpy()[window]
    start, end = sites["start"].to_numpy(), sites["end"].to_numpy()
    ids = table["id"].to_numpy()
    return pd.DataFrame({
        "window_a": ids[pairs["window_a"].to_numpy()[row]], "window_b": ids[pairs["window_b"].to_numpy()[row]],
        "window": ids[window], "gene": table["gene"].to_numpy()[window], "chrom": table["chrom"].to_numpy()[window],
        "start": np.where(minus, w_end - end, w_start + start), "end": np.where(minus, w_end - start, w_start + end),
        "strand": np.where(minus, np.where(sites["strand"] == "+", "-", "+"), sites["strand"]),
        "matrix_id": sites["id"].to_numpy(), "matrix": sites["name"].to_numpy(), "cluster": sites["cluster"].to_numpy(),
        "score": sites["score"].to_numpy(), "offset": start,
        "candidate": pairs["candidate"].to_numpy()[row],
    })


def write_tsv(path, table: pd.DataFrame | Iterable[pd.DataFrame], header: bool = True) -> None:
    """Write a table, or its parts one after another, atomically; compressed when the name ends in
    .gz (with no file name or time in the gzip header, so the same run gives the same bytes).
    Floats to 6 significant digits."""
    path = Path(path)
    parts = [table] if isinstance(table, pd.DataFrame) else table
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if path.suffix == ".gz" else None
        with io.TextIOWrapper(gz or raw, encoding="utf-8", newline="") as text:
            for i, part in enumerate(parts):
                part.to_csv(text, sep="\t", index=False, header=header and i == 0, float_format="%.6g")
        if gz:
            gz.close()


FILES = [("report.html", "this report: one self-contained page"),
         ("candidates.tsv", "the candidate pairs with every column"),
         ("motif_sites.tsv", "the shared-motif sites of the pairs with motif evidence, genome coordinates"),
         ("pairs.tsv.gz", "every nominated pair, with a candidate column"),
         ("candidates.bedpe", "candidate links (BEDPE: bedtools pairtobed, IGV)"),
         ("candidates.interact.bed", "candidate links as UCSC interact (BED5+13; bigInteract with interact.as)"),
         ("interact.as", "the autoSql schema of the interact file (bedToBigBed -as=interact.as -type=bed5+13)"),
         ("best_score.bedgraph", "each window's best normalised score (bedGraph: UCSC, IGV, bedGraphToBigWig)")]


def write_report(outdir, ws: WindowSet, pairs: pd.DataFrame, meta: dict, assembly: str = "hg38",
                 rows: int = TSV_ROWS, top: int = 10) -> dict[str, Path]:
    """Every file for people (FILES), each written atomically. The human-facing table of every
    pair is made `rows` pairs at a time (at a million windows it would be ~9 M rows at once)."""
    outdir = Path(outdir)
    candidates = pair_table(ws, pairs[pairs["candidate"].to_numpy()]).drop(columns="candidate")
    files = {name: outdir / name for name, _ in FILES}
    write_tsv(files["candidates.tsv"], candidates)
    write_tsv(files["motif_sites.tsv"], site_table(ws, pairs, pairs.attrs["motif_sites"]))
    write_tsv(files["pairs.tsv.gz"], (pair_table(ws, pairs.iloc[r0:r0 + rows])
                                      for r0 in range(0, max(len(pairs), 1), rows)))
    write_tsv(files["candidates.bedpe"], bedpe(candidates), header=False)
    write_tsv(files["candidates.interact.bed"], tracks.interact(candidates), header=False)
    write_text(files["interact.as"], tracks.INTERACT_AS)
    write_tsv(files["best_score.bedgraph"], tracks.best_score_bedgraph(ws, pairs), header=False)
    shown = html_report.shown_pairs(pairs, top)[0].head(html_report.MAX_ROWS)  # the rows the page shows
    page = html_report.render(ws, pairs, meta, pair_table(ws, shown).set_axis(shown.index),
                              pairs.attrs["motif_sites"], description(ws, meta), FILES, top=top, assembly=assembly)
    write_text(files["report.html"], page)
    return files


def write_text(path, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def description(ws: WindowSet, meta: dict) -> str:
    """What was run and how the pairs were judged, in one paragraph (terminal and report.html)."""
    p, s, stats = meta["params"], meta["search"], meta["stats"]
    motif_source = file_name(stats["motifs"]["motifs"])
    blast_scope = (f"{stats['blast_pairs']:,} nominated repeat-free pairs, all-vs-all e-values"
                   if stats["blast_mode"] == "nominated" else "all-vs-all")
    return (f"{len(ws):,} windows of {ws.table['gene'].nunique()} genes or regions; "
            f"backend {meta['backend'].get('backend')}; {s['correction']} correction; top-k {s['top_k']}; "
            f"q-values from competition with {stats['n_decoys']} dinucleotide-shuffle decoy(s) per window "
            f"({stats['entries']:,} neighbour slots); among the {stats['population_pairs']:,} repeat-free pairs "
            f"without a BLAST hit the pair's own score wins {stats['target_win_fraction']:.1%} of its "
            f"competitions ({1 / (1 + 2 * stats['n_decoys']):.1%} expected without signal); "
            f"repeat fraction <= {p['max_repeat_frac']}; no BLAST hit at e-value <= {p['max_blast_evalue']} "
            f"({blast_scope}; {meta['blastn_args']}); q <= {p['max_qvalue']}; Smith-Waterman p >= "
            f"{p['min_sw_pvalue']} ({stats['sw_alignments']:,} alignments). Composition (6-mer cosine) "
            f"explains R2 = {stats['composition_r2']:.2f} of the score over nominated pairs. Motif control and "
            f"evidence: {stats['motifs']['matrices']} matrices of {motif_source} in "
            f"{stats['motifs']['clusters']} clusters, sites at p <= {stats['motifs']['motif_pvalue']:g}, "
            f"shared counts against {p['motif_shuffles']} shuffles of each window.")


def summary(console: Console, ws: WindowSet, pairs: pd.DataFrame, meta: dict, top: int = 10) -> None:
    """The filter funnel and the best candidates, for the terminal."""
    funnel = Table(title="Filter funnel", show_header=False, title_justify="left")
    funnel.add_column("stage")
    funnel.add_column("pairs", justify="right")
    for key, label in FUNNEL:
        funnel.add_row(label, f"{meta['funnel'][key]:,}")
    console.print(funnel)
    console.print(f"[dim]{escape(description(ws, meta))}[/dim]")
    shown, called = html_report.shown_pairs(pairs, top)
    table = pair_table(ws, shown.head(top))
    title = (f"Top {len(table)} candidates" if called else  # nothing called: the best uncalled, said so
             f"No candidates. The {len(table)} best repeat-free pairs without a BLAST hit, none of them a call")
    best = Table(title=title, title_justify="left")
    for col in ("pair (regions); shared motifs, e.g.", "score", "q", "kmer", "motif", "shared (exp)", "p"):
        best.add_column(col, justify="left" if col.startswith("pair") else "right", no_wrap=not col.startswith("pair"),
                        overflow="fold")  # long ids (regions: chrom:start-end_wN) wrap, never cut
    for row in table.itertuples():
        shared = row.shared_motifs.split(",") if row.shared_motifs else []
        family = " [same family]" if row.same_family else ""
        best.add_row(escape(f"{row.window_a} ({row.region_a})\n{row.window_b} ({row.region_b}){family}\n")
                     + f"[dim]{escape(', '.join(shared[:4]))}[/dim]", f"{row.score:.3f}", f"{row.qvalue:.2g}",
                     f"{row.kmer_cosine:.2f}", f"{row.motif_cosine:.2f}",
                     f"{len(shared)} ({row.motifs_expected:.0f})" if row.motifs_shared >= 0 else "",
                     f"{row.motif_pvalue:.2g}" if row.motifs_shared >= 0 else "")
    console.print(best)
