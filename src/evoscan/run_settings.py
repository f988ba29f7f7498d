"""What was run, as a person reads it: the settings and facts of a run, from the provenance that
scores.h5 carries, as tables of (setting, value, unit) under a heading per step, numbers rounded
for reading. The exact values stay in the HDF5 provenance (and in the report's collapsed JSON)."""

from __future__ import annotations

import numbers
from pathlib import PurePath

# known settings: key -> (what it is, unit); anything else is shown under its own key
LABELS = {
    "windows": {
        "size": ("window size", "bp"), "stride": ("stride", "bp"),
        "promoter_upstream": ("promoter, upstream of the TSS", "bp"),
        "promoter_downstream": ("promoter, downstream of the TSS", "bp"),
        "max_n_frac": ("windows dropped above this fraction of N", ""),
    },
    "backend": {
        "backend": ("backend", ""), "k": ("k-mer length", "bp"), "canonical": ("strand-canonical k-mers", ""),
        "normalisation": ("normalisation", ""), "decoys": ("decoys per window", ""),
        "decoy_seed": ("decoy seed", ""), "decoy_segment": ("decoys: dinucleotide shuffle within segments of", "bp"),
        "model": ("model", ""), "layer": ("layer", ""), "pooling": ("pooling over tokens", ""),
        "weights": ("weights", ""), "weights_digest": ("weights digest", ""), "model_digest": ("model digest", ""),
        "architecture": ("architecture", ""), "config": ("architecture file", ""), "uppercase": ("upper-cased input", ""),
        "stop_at_layer": ("forward stopped at the layer", ""), "feature": ("feature", ""),
        "clusters": ("motif clusters (dimensions)", ""),
    },
    "search": {
        "top_k": ("neighbours kept per window", ""), "correction": ("anisotropy correction", ""),
        "index": ("index", ""), "nprobe": ("lists searched per query (ivf; 0: chosen from the index)", ""),
        "precision": ("matmul precision", ""), "device": ("device", ""), "memory_mb": ("memory budget", "MB"),
    },
    "checks": {
        "max_repeat_frac": ("max. repeat fraction of either window", ""),
        "max_blast_evalue": ("a BLAST hit at or below this e-value disqualifies", ""),
        "max_qvalue": ("max. target-decoy q-value of a call", ""), "min_cosine": ("min. cosine of a call", ""),
        "sw_shuffles": ("Smith-Waterman shuffles per pair", ""),
        "min_sw_pvalue": ("Smith-Waterman p below this: homologous", ""),
        "motif_shuffles": ("shuffles behind each motif p-value", ""),
        "motif_top": ("best uncalled pairs also given motif evidence", ""), "seed": ("seed of the shuffles", ""),
        "motifs": ("motifs", ""), "motif_pvalue": ("motif site p-value", ""),
    },
    "motifs": {
        "motifs": ("motifs", ""), "collection": ("JASPAR collection", ""), "tax_group": ("taxonomic group", ""),
        "matrices": ("matrices", ""), "motif_pvalue": ("site p-value (per position and strand)", ""),
        "clusters": ("clusters of near-identical matrices", ""), "motif_cluster_r": ("cluster correlation", "r"),
        "background": ("background", ""), "pseudocounts": ("pseudocounts", ""),
        "log_odds_digest": ("matrices digest", ""), "cluster_digest": ("clusters digest", ""),
        "format": ("file format", ""), "sha256": ("file SHA-256", ""),
    },
    "statistics": {
        "entries": ("neighbour entries found by the search", ""), "n_decoys": ("decoys per window", ""),
        "population_pairs": ("pairs calls are made from (repeat-free, no BLAST hit)", ""),
        "target_win_fraction": ("of those, pairs whose real score beat its decoys", "%"),
        "composition_r2": ("score explained by 6-mer composition", "R²"),
        "blast_mode": ("BLAST searched", ""), "blast_pairs": ("pairs BLASTed", ""),
        "blast_searchsp": ("BLAST search space of every pair's e-value", "bp²"),
        "sw_alignments": ("Smith-Waterman alignments", ""),
    },
}
NOT_SHOWN = {"motifs": {"pyjaspar"}, "backend": {"versions", "pyjaspar", "motifs", "collection", "tax_group",
                                                 "matrices", "log_odds_digest", "background", "pseudocounts",
                                                 "motif_pvalue", "motif_cluster_r", "cluster_digest"},
             "statistics": {"motifs", "tool_versions", "blastn_args"}}


def readable(value, unit: str = "") -> str:
    """A value as a person reads it: 3 significant digits, thousands separated, yes/no, lists joined."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "%" and isinstance(value, numbers.Real):
        return f"{100 * value:.1f}"
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    if isinstance(value, numbers.Real):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {readable(v)}" for k, v in value.items())
    if value is None or value == "":
        return "—"
    return str(value)


def file_name(value):
    """Files by name: the page says what was read, not where it lay on the machine that ran the step
    (a Nextflow task reads its staged copy); the HDF5 provenance keeps the paths."""
    if isinstance(value, dict):
        return {k: file_name(v) for k, v in value.items()}
    is_path = isinstance(value, str) and "/" in value and "://" not in value
    return PurePath(value).name if is_path else value


def section(kind: str, values: dict) -> list[tuple[str, str, str]]:
    """(setting, value, unit) rows of one step's settings: the known ones first, in their order."""
    known = LABELS[kind]
    hidden = NOT_SHOWN.get(kind, set())
    if kind == "search" and values.get("index") == "exact":
        hidden = {*hidden, "nprobe"}  # (only the approximate indexes read it)
    keys = [k for k in known if k in values] + [k for k in values if k not in known]
    rows = []
    for key in (k for k in keys if k not in hidden):
        label, unit = known.get(key, (key.replace("_", " "), ""))
        rows.append((label, readable(file_name(values[key]), unit), unit))
    return rows


def run_settings(source: str, windows: dict, meta: dict, versions: dict) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The report's "What was run": (heading, rows) per step, from scores.h5's provenance `meta`
    (report.read_scores), the windows' parameters and the versions of the tools that ran."""
    stats = meta["stats"]
    input_rows = [("input", readable(file_name(source)), "")]
    blast = [("blastn options", meta["blastn_args"], "")]
    return [
        ("Input and windows", input_rows + section("windows", windows)),
        ("Embedding", section("backend", meta["backend"])),
        ("Search", section("search", meta["search"])),
        ("Checks", section("checks", meta["params"]) + blast),
        ("Motifs", section("motifs", stats.get("motifs", {}))),
        ("What the run found on the way", section("statistics", stats)),
        ("Versions", [(name, str(version), "") for name, version in versions.items()]),
    ]
