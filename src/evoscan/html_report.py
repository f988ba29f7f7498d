"""report.html: one self-contained page a biologist reads (no network: figures are inline SVG,
the table sorts with a few lines of inline script).

Sections: what was run (inputs, windows, backend, search, checks, motifs, versions); the filter
funnel; the candidates (or, when nothing is called, the best pairs, said to be uncalled) with
coordinates, controls and links to the UCSC and Ensembl browsers; a panel per top pair with the
transcription-factor motifs both windows carry; where the scores come from (gene x gene best
scores, score distributions against the decoys, BLAST, composition and motif controls).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from html import escape
from urllib.parse import quote

import numpy as np
import pandas as pd
from jinja2 import Environment

from . import __version__
from .check import FUNNEL
from .run_settings import file_name, run_settings
from .windows import WindowSet

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>evoscan report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; line-height: 1.4 }
h1 { margin-bottom: 0 } h2 { border-bottom: 1px solid #ccc; margin-top: 2em }
table { border-collapse: collapse; font-size: 13px } td, th { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left }
th.sortable { cursor: pointer; background: #f4f4f4 } th.sortable:hover { background: #e4e4e4 }
td.num { text-align: right; font-variant-numeric: tabular-nums }
.note { color: #555; font-size: 14px } .uncalled { background: #fff6e0; padding: 6px 10px; border-left: 4px solid #e0a000 }
.panel { margin: 1.5em 0; padding: 0.5em 1em; border: 1px solid #ddd; border-radius: 4px }
.figs { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start } figure { margin: 0 } figcaption { font-size: 13px; color: #555; max-width: 520px }
svg { max-width: 100%; height: auto }
.settings { display: grid; grid-template-columns: repeat(auto-fill, minmax(500px, 1fr)); gap: 1em 1.5em; align-items: start }
.run-settings { width: 100% } .run-settings td:first-child { color: #444 }
.run-settings caption { text-align: left; font-weight: 600; padding: 4px 0 }
.run-settings td.value { font-variant-numeric: tabular-nums; overflow-wrap: break-word; max-width: 300px }
details { margin-top: 1em } pre { font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; background: #f8f8f8; padding: 8px }
</style></head><body>
<h1>evoscan report</h1>
<p class="note">evoscan {{ version }} · {{ n_windows }} windows of {{ n_groups }} genes or regions · backend
{{ backend_name }} · {{ funnel_candidates }} candidate(s)</p>

<h2 id="summary">What was run</h2>
<p>{{ summary }}</p>
<div class="settings">{% for heading, rows in settings %}<table class="run-settings">
<caption>{{ heading }}</caption>
<thead><tr><th>setting</th><th>value</th><th>unit</th></tr></thead><tbody>
{% for setting, value, unit in rows %}<tr><td>{{ setting }}</td><td class="value">{{ value }}</td><td>{{ unit }}</td></tr>
{% endfor %}</tbody></table>
{% endfor %}</div>
<details><summary>The exact provenance (as scores.h5 records it, files by name)</summary><pre id="provenance">{{ provenance_json }}</pre></details>

<h2 id="funnel">Filter funnel</h2>
<figure>{{ funnel_svg | safe }}<figcaption>Pairs left after each stage. Every check runs only on the pairs the
search nominates (each window's nearest windows of other genes).</figcaption></figure>

<h2 id="candidates">{{ table_title }}</h2>
{% if not called %}<p class="uncalled">No pair passed every filter (repeats, BLAST, q ≤ {{ max_q }}, Smith-Waterman).
These are the best repeat-free pairs without a BLAST hit, shown for inspection: <b>none of them is a call</b>.</p>{% endif %}
<p class="note">Click a column to sort. score_z: the pair's normalised similarity; q: target–decoy q-value; kmer and motif:
the composition and JASPAR motif controls (cosine); shared: motif clusters with a site in both windows (expected
from shuffles of the same composition) and its shuffle p-value. Links open the windows in genome browsers
({{ assembly }}).</p>
<table id="pairs-table"><thead><tr>{% for col in columns %}<th class="sortable">{{ col }}</th>{% endfor %}</tr></thead><tbody>
{% for row in rows %}<tr class="pair-row">{% for cell, numeric in row %}<td{% if numeric %} class="num"{% endif %}>{{ cell | safe }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>

<h2 id="motifs">Why they may be alike: shared motifs</h2>
<p class="note">For each pair: the transcription-factor motif clusters (JASPAR) with a site in both windows, drawn where
they are; boxes above the line lie on the window's strand, below on the other. Expected: the mean number of clusters
a window shares with dinucleotide shuffles of its partner (same composition, no motif content); p: how often a
shuffle shares as many.</p>
{% for panel in panels %}<div class="panel motif-panel"><h3>{{ panel.title }}</h3><p>{{ panel.text }}</p>
{{ panel.svg | safe }}</div>
{% else %}<p>No pair was examined for motif evidence.</p>{% endfor %}

<h2 id="figures">Where the scores come from</h2>
<div class="figs">
{% for fig in figs %}<figure class="figure">{{ fig.svg | safe }}<figcaption>{{ fig.caption }}</figcaption></figure>
{% endfor %}</div>

<h2 id="files">Files</h2>
<ul>{% for name, what in files %}<li><code>{{ name }}</code>: {{ what }}</li>{% endfor %}</ul>
<script>
document.querySelectorAll("#pairs-table th.sortable").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], rows = Array.from(body.rows);
    var dir = th.dataset.dir === "asc" ? -1 : 1; th.dataset.dir = dir === 1 ? "asc" : "desc";
    var key = function (r) { return r.cells[col].textContent.trim(); };
    var numeric = rows.every(function (r) { var t = key(r); return t === "" || !isNaN(parseFloat(t)); });
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === "" || y === "") { return (x === "") - (y === ""); }  // blanks last, either way
      if (numeric) { x = parseFloat(x); y = parseFloat(y); }
      return (x > y ? 1 : x < y ? -1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script>
</body></html>
"""

MAX_ROWS = 500
ENSEMBL = {"hg38": "https://www.ensembl.org/Homo_sapiens/Location/View?r={chrom}:{start}-{end}"}
UCSC = "https://genome.ucsc.edu/cgi-bin/hgTracks?db={db}&position={chrom}:{start}-{end}"


def _fmt(value, digits: int = 3) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def _links(chrom: str, start: int, end: int, assembly: str) -> str:
    """UCSC (and, for hg38, Ensembl) links; 1-based inclusive positions, as browsers show them."""
    where = {"chrom": quote(chrom, safe=""), "start": start + 1, "end": end, "db": quote(assembly, safe="")}
    links = [f'<a href="{escape(UCSC.format(**where))}">UCSC</a>']
    if assembly in ENSEMBL:
        url = ENSEMBL[assembly].format(**{**where, "chrom": chrom.removeprefix("chr")})
        links.append(f'<a href="{escape(url)}">Ensembl</a>')
    return " ".join(links)


def shown_pairs(pairs: pd.DataFrame, top: int = 10) -> tuple[pd.DataFrame, bool]:
    """The candidates, or (nothing called) the `top` best pairs calls are made from; and whether called."""
    if pairs["candidate"].any():
        return pairs[pairs["candidate"]], True
    clean = pairs[pairs["qvalue"].notna()].sort_values("score_z", ascending=False, kind="stable")
    return clean.head(top), False


def render(ws: WindowSet, pairs: pd.DataFrame, meta: dict, table: pd.DataFrame, sites: pd.DataFrame,
           summary: str, files: list[tuple[str, str]], top: int = 10, assembly: str = "hg38") -> str:
    """The page. `table`: report.pair_table of the pairs `shown_pairs` gives (at least), indexed
    as `pairs`; `sites`: the motif sites of the pairs with evidence (`pair` = row of `pairs`)."""
    from . import figures  # matplotlib (~0.4 s) only when a page is drawn, not in every command

    shown, called = shown_pairs(pairs, top)
    total = len(shown)
    shown = shown.head(MAX_ROWS)  # a genome-wide run: the best rows here, all in candidates.tsv
    shown_table = table.loc[shown.index]
    columns = ["pair", "regions", "score_z", "q", "kmer", "motif", "shared (exp.)", "motif p", "BLAST e",
               "SW z", "family", "window a", "window b"]
    rows = []
    for r in shown_table.itertuples():
        shared = r.shared_motifs.split(",") if r.shared_motifs else []
        rows.append([
            (escape(f"{r.window_a} – {r.window_b}"), False), (escape(f"{r.region_a} / {r.region_b}"), False),
            (_fmt(r.score_z), True), (_fmt(r.qvalue, 2), True), (_fmt(r.kmer_cosine, 2), True),
            (_fmt(r.motif_cosine, 2), True),
            (f"{len(shared)} ({r.motifs_expected:.0f})" if r.motifs_shared >= 0 else "", True),
            (_fmt(r.motif_pvalue, 2), True), (_fmt(r.blast_evalue, 2), True), (_fmt(r.sw_zscore, 2), True),
            ("same family" if r.same_family else "", False),
            (f"{escape(r.chrom_a)}:{r.start_a + 1:,}-{r.end_a:,} {_links(r.chrom_a, r.start_a, r.end_a, assembly)}", False),
            (f"{escape(r.chrom_b)}:{r.start_b + 1:,}-{r.end_b:,} {_links(r.chrom_b, r.start_b, r.end_b, assembly)}", False)])
    panels = []
    with_evidence = shown[shown["motifs_shared"] >= 0].head(top)
    for row, pair in with_evidence.iterrows():
        t = table.loc[row]
        own = sites[sites["pair"] == row]
        title = f"{t.window_a} ({t.region_a}) – {t.window_b} ({t.region_b})"
        text = (f"{pair.motifs_shared} shared motif clusters where shuffles share {pair.motifs_expected:.1f}; "
                f"p = {pair.motif_pvalue:.2g}. q = {_fmt(pair.qvalue, 2)}, kmer cosine {pair.kmer_cosine:.2f}, "
                f"motif cosine {pair.motif_cosine:.2f}.")
        lengths = (len(ws.seqs[pair.window_a]), len(ws.seqs[pair.window_b]))
        svg = figures.motif_panel(own, (t.window_a, t.window_b), lengths, "") if len(own) else ""
        panels.append({"title": title, "text": text, "svg": svg})
    decoy_z = np.asarray(pairs.attrs["decoy_z"])
    blasted = pairs["blast_bitscore"].notna().to_numpy()  # masks, not copies of the pair table
    figs = [
        {"svg": figures.gene_heatmap(ws, pairs), "caption": "Best normalised score (score_z) of each pair of "
         "genes or regions among the nominated pairs, repeats and BLAST hits included."},
        {"svg": figures.score_distributions(pairs, decoy_z), "caption": "Normalised scores of clean pairs "
         "(repeat-free, no BLAST hit) against their best decoy, and of BLAST-hit and repeat pairs. Where the clean "
         "pairs' tail rises above the decoys' is what the q-values measure."},
        {"svg": figures.scatter(pairs, "blast_bitscore", "BLAST bitscore (pairs with a hit)", where=blasted)
         if blasted.any() else "", "caption": "Embedding score against BLAST bitscore: homology the model also sees."},
        {"svg": figures.scatter(pairs, "kmer_cosine", "6-mer composition cosine (kmer control)",
                                f"composition explains R² = {meta['stats']['composition_r2']:.2f}"),
         "caption": "Embedding score against composition: a call that composition explains as well is no discovery."},
        {"svg": figures.scatter(pairs, "motif_cosine", "JASPAR motif profile cosine (motif control)",
                                where=pairs["motif_cosine"].notna().to_numpy()),
         "caption": "Embedding score against shared regulatory grammar (repeat-free pairs without a BLAST hit)."},
    ]
    p = meta["params"]
    versions = {"evoscan": __version__, **meta["stats"].get("tool_versions", {}),
                **{k: v for k, v in meta["backend"].items() if k in ("pyjaspar", "evo2", "transformers", "torch")}}
    settings = run_settings(ws.source, asdict(ws.params), meta, versions)
    exact = {"input": ws.source, "windows": asdict(ws.params), "backend": meta["backend"], "search": meta["search"],
             "checks": p, "blastn_args": meta["blastn_args"], "statistics": meta["stats"], "versions": versions}
    return Environment(autoescape=True).from_string(TEMPLATE).render(
        version=__version__, n_windows=f"{len(ws):,}", n_groups=ws.table["gene"].nunique(),
        backend_name=meta["backend"].get("backend"), funnel_candidates=meta["funnel"]["candidates"],
        summary=summary, settings=settings,
        provenance_json=json.dumps(file_name(exact), indent=1), funnel_svg=figures.funnel(meta["funnel"], FUNNEL),
        table_title=(f"Candidates ({total:,}{f', the best {MAX_ROWS} shown: all in candidates.tsv' if total > MAX_ROWS else ''})"
                     if called else "Best pairs (none called)"), called=called,
        max_q=p["max_qvalue"], assembly=assembly, columns=columns, rows=rows, panels=panels,
        figs=[f for f in figs if f["svg"]], files=files)
