"""The report's figures: pure functions from a run's tables to inline SVG (matplotlib, no display).

SVGs are deterministic (fixed element ids, no date) so that the same run gives the same report.
"""

from __future__ import annotations

import hashlib
import io
import re

import numpy as np
import pandas as pd
from matplotlib import rcParams
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .windows import WindowSet

rcParams.update({"svg.hashsalt": "evoscan", "svg.fonttype": "none", "font.size": 9,
                 "axes.spines.top": False, "axes.spines.right": False})
CLEAN, BLAST, REPEAT, DECOY, CANDIDATE = "#1f77b4", "#d62728", "#8c564b", "#7f7f7f", "#2ca02c"


def to_svg(fig: Figure) -> str:
    """Inline SVG: no prolog or metadata, and element ids prefixed by a digest of the figure, so
    that several figures in one page keep unique ids (and the same figure the same ones)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", dpi=110,
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    prefix = "f" + hashlib.sha1(text.encode()).hexdigest()[:8] + "-"
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', text)
    return re.sub(r'(url\(#|href="#)([^")]+)', rf"\g<1>{prefix}\2", text)


CLASSES = ("repeat", "BLAST hit", "clean", "candidate")


def pair_classes(pairs: pd.DataFrame) -> np.ndarray:
    """Each nominated pair's class, an index into CLASSES: candidate, clean (repeat-free, no BLAST
    hit), BLAST hit or repeat (one byte a pair: millions of pairs at genome scale)."""
    return np.select([pairs["candidate"].to_numpy(), (pairs["repeat_free"] & ~pairs["blast_hit"]).to_numpy(),
                      pairs["repeat_free"].to_numpy()], [3, 2, 1], 0).astype(np.int8)


def funnel(counts: dict, labels: list[tuple[str, str]]) -> str:
    fig = Figure(figsize=(6.5, 2.6))
    ax = fig.subplots()
    names = [label for _, label in labels][::-1]
    values = [max(counts[key], 0) for key, _ in labels][::-1]
    ax.barh(names, [max(v, 0.8) for v in values], color=CLEAN)
    ax.set_xscale("log")
    for y, v in enumerate(values):
        ax.text(max(v, 0.8) * 1.15, y, f"{v:,}", va="center")
    ax.set_xlabel("pairs (log scale)")
    return to_svg(fig)


def gene_heatmap(ws: WindowSet, pairs: pd.DataFrame, max_genes: int = 40) -> str:
    """Best normalised score of each pair of genes (groups) among the nominated pairs; with many
    genes, the `max_genes` whose best pairs score highest."""
    gene = ws.table["gene"].to_numpy()
    ga, gb = gene[pairs["window_a"]], gene[pairs["window_b"]]
    best = (pd.DataFrame({"a": np.minimum(ga, gb), "b": np.maximum(ga, gb), "s": pairs["score_z"].to_numpy()})
            .groupby(["a", "b"])["s"].max())
    top = pd.concat([best.groupby(level=0).max(), best.groupby(level=1).max()]).groupby(level=0).max()
    genes = sorted(top.reset_index().sort_values(["s", "index"], ascending=[False, True], kind="stable")
                   ["index"].iloc[:max_genes])
    index = {g: i for i, g in enumerate(genes)}
    grid = np.full((len(genes), len(genes)), np.nan)
    for (a, b), s in best.items():
        if a in index and b in index:
            grid[index[a], index[b]] = grid[index[b], index[a]] = s
    size = 2.5 + 0.16 * len(genes)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(genes)), genes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(genes)), genes, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.7, label="best score_z (normalised score)")
    ax.spines[:].set_visible(False)
    return to_svg(fig)


def score_distributions(pairs: pd.DataFrame, decoy_z: np.ndarray) -> str:
    """score_z of clean, BLAST-hit and repeat pairs against the best decoy score of the clean pairs."""
    kind = pair_classes(pairs)
    fig = Figure(figsize=(6.5, 3))
    ax = fig.subplots()
    clean = kind >= CLASSES.index("clean")  # candidates are clean pairs too
    score_z = pairs["score_z"].to_numpy()
    values = {"clean pairs (repeat-free, no BLAST hit)": (score_z[clean], CLEAN),
              "their best decoy": (decoy_z[clean].max(1) if len(decoy_z) else np.array([]), DECOY),
              "BLAST-hit pairs": (score_z[kind == CLASSES.index("BLAST hit")], BLAST),
              "repeat pairs": (score_z[kind == CLASSES.index("repeat")], REPEAT)}
    finite = np.concatenate([np.asarray(v, float) for v, _ in values.values()] + [np.zeros(1)])
    bins = np.linspace(np.nanmin(finite), np.nanmax(finite) + 1e-9, 60)
    for label, (v, color) in values.items():
        if len(v):
            ax.hist(v, bins=bins, histtype="step", color=color, label=f"{label} ({len(v):,})", linewidth=1.4)
    ax.set_yscale("log")
    ax.set_xlabel("normalised score (score_z)")
    ax.set_ylabel("pairs")
    ax.legend(frameon=False, fontsize=8)
    return to_svg(fig)


def scatter(pairs: pd.DataFrame, x: str, xlabel: str, note: str = "", most: int = 20_000,
            where: np.ndarray | None = None) -> str:
    """score_z against a control column for the pairs `where` says (default all; a mask, not a
    copy of the table), coloured by class, candidates on top; at most `most` pairs of a class
    drawn (a seeded sample, said in the legend), so a genome-wide run draws in seconds."""
    kind = pair_classes(pairs)
    if where is not None:
        kind[~where] = -1  # not drawn
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    for code, (name, color) in enumerate(zip(CLASSES, (REPEAT, BLAST, CLEAN, CANDIDATE))):
        sel = np.flatnonzero(kind == code)
        if len(sel):
            shown = np.sort(np.random.default_rng(0).choice(sel, most, replace=False)) if len(sel) > most else sel
            label = f"{name} ({len(sel):,}{f', {most:,} drawn' if len(sel) > most else ''})"
            ax.scatter(pairs[x].to_numpy()[shown], pairs["score_z"].to_numpy()[shown], s=6 if name != "candidate" else 18,
                       alpha=0.6, color=color, label=label, linewidths=0,
                       rasterized=name != "candidate")  # thousands of points: an inline image, not SVG nodes
    ax.set_xlabel(xlabel)
    ax.set_ylabel("normalised score (score_z)")
    if note:
        ax.set_title(note, fontsize=8, loc="left")
    ax.legend(frameon=False, fontsize=7, markerscale=2)
    return to_svg(fig)


def motif_panel(sites: pd.DataFrame, names: tuple[str, str], lengths: tuple[int, int], title: str) -> str:
    """The two windows as lines, the sites of their shared motif clusters as boxes (above: on the
    window's strand, below: on the other), one colour per cluster, the same in both windows."""
    clusters = sorted(sites["cluster"].unique())
    colors = {c: rcParams["axes.prop_cycle"].by_key()["color"][i % 10] for i, c in enumerate(clusters)}
    label = sites.groupby("cluster")["name"].first()
    fig = Figure(figsize=(7.5, 1.9 + 0.12 * ((len(clusters) + 3) // 4)))
    ax = fig.subplots()
    for row, (side, name, length) in enumerate(zip(("a", "b"), names, lengths)):
        y = 1 - row
        ax.plot([0, length], [y, y], color="black", linewidth=1)
        ax.text(-8, y, name, ha="right", va="center", fontsize=8)
        for site in sites[sites["side"] == side].itertuples():
            up = site.strand == "+"
            ax.add_patch(Rectangle((site.start, y + (0.03 if up else -0.23)), site.end - site.start, 0.2,
                                   color=colors[site.cluster], alpha=0.8, linewidth=0))
    handles = [Rectangle((0, 0), 1, 1, color=colors[c]) for c in clusters]
    ax.legend(handles, [label[c] for c in clusters], ncol=4, frameon=False, fontsize=7,
              loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_xlim(-2, max(lengths) + 2)
    ax.set_ylim(-0.4, 1.4)
    ax.set_yticks([])
    ax.spines[["left"]].set_visible(False)
    ax.set_xlabel("position in window (bp, 5'→3' on the window's strand; boxes above: + strand)")
    ax.set_title(title, fontsize=9, loc="left")
    return to_svg(fig)
