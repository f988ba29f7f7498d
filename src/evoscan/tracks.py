"""Genome-browser tracks of a run: candidate links as UCSC interact (BED5+13, bigInteract-ready,
with its autoSql schema) and each window's best score as a bedGraph.

interact: one record per candidate on one chromosome (chromStart..chromEnd spans both windows);
a pair on two chromosomes gets two records, one on each, as the format asks. Non-directional, as
UCSC's schema says: source = the lower (upstream) window on one chromosome, and on two
chromosomes source = the record's own region, target = the other. `value` is the normalised score (score_z), `score` its
0-1000 scaling over the file, `exp` "evoscan".

bedGraph: per window the best score_z of its nominated pairs, written over the middle `stride`
bases of the window so that the windows of one tiling do not overlap (bedGraphToBigWig refuses
overlaps).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .windows import WindowSet

INTERACT_AS = '''table interact
"Interaction between two regions"
    (
    string chrom;        "Chromosome (or contig, scaffold, etc.). For interchromosomal, use 2 records"
    uint chromStart;     "Start position of lower region. For interchromosomal, set to chromStart of this region"
    uint chromEnd;       "End position of upper region. For interchromosomal, set to chromEnd of this region"
    string name;         "Name of item, for display. Usually 'sourceName/targetName' or empty"
    uint score;          "Score from 0-1000."
    double value;        "Strength of interaction or other data value. Typically basis for score"
    string exp;          "Experiment name (metadata for filtering). Use . if not applicable"
    string color;        "Item color. Specified as r,g,b or hexadecimal #RRGGBB or html color name"
    string sourceChrom;  "Chromosome of source region (directional) or lower region. For non-directional interchromosomal, chrom of this region."
    uint sourceStart;    "Start position in chromosome of source/lower/this region"
    uint sourceEnd;      "End position in chromosome of source/lower/this region"
    string sourceName;   "Identifier of source/lower/this region"
    string sourceStrand; "Orientation of source/lower/this region: + or -. Use . if not applicable"
    string targetChrom;  "Chromosome of target region (directional) or upper region. For non-directional interchromosomal, chrom of other region"
    uint targetStart;    "Start position in chromosome of target/upper/this region"
    uint targetEnd;      "End position in chromosome of target/upper/this region"
    string targetName;   "Identifier of target/upper/this region"
    string targetStrand; "Orientation of target/upper/this region: + or -. Use . if not applicable"
    )
'''
INTERACT_COLUMNS = ["chrom", "chromStart", "chromEnd", "name", "score", "value", "exp", "color",
                    "sourceChrom", "sourceStart", "sourceEnd", "sourceName", "sourceStrand",
                    "targetChrom", "targetStart", "targetEnd", "targetName", "targetStrand"]


def interact(table: pd.DataFrame) -> pd.DataFrame:
    """Candidate pairs (report.pair_table rows) as interact records, sorted by position."""
    if table.empty:
        return pd.DataFrame(columns=INTERACT_COLUMNS)
    z = table["score_z"].to_numpy(float)
    span = z.max() - z.min()
    score = np.round(1000 * (z - z.min()) / span if span > 0 else np.full(len(z), 1000)).astype(int)
    a = table[["chrom_a", "start_a", "end_a", "window_a"]].set_axis(["chrom", "start", "end", "id"], axis=1)
    b = table[["chrom_b", "start_b", "end_b", "window_b"]].set_axis(["chrom", "start", "end", "id"], axis=1)
    same = (a["chrom"] == b["chrom"]).to_numpy()
    swap = same & (b["start"] < a["start"]).to_numpy()  # one chromosome: source is the lower window
    a, b = a.mask(swap[:, None] & np.ones((1, 4), bool), b), b.mask(swap[:, None] & np.ones((1, 4), bool), a)
    common = {"name": (table["window_a"] + "/" + table["window_b"]).to_numpy(), "score": score, "value": z.round(4)}

    def records(source, target, rows, chrom, start, end):
        return pd.DataFrame({**{k: v[rows] for k, v in common.items()}, "exp": "evoscan", "color": "#2ca02c",
                             "chrom": chrom, "chromStart": start, "chromEnd": end,
                             "sourceChrom": source["chrom"].to_numpy()[rows], "sourceStart": source["start"].to_numpy()[rows],
                             "sourceEnd": source["end"].to_numpy()[rows], "sourceName": source["id"].to_numpy()[rows],
                             "sourceStrand": ".",
                             "targetChrom": target["chrom"].to_numpy()[rows], "targetStart": target["start"].to_numpy()[rows],
                             "targetEnd": target["end"].to_numpy()[rows], "targetName": target["id"].to_numpy()[rows],
                             "targetStrand": "."})

    one, two = np.flatnonzero(same), np.flatnonzero(~same)
    records = [records(a, b, one, a["chrom"].to_numpy()[one], np.minimum(a["start"], b["start"]).to_numpy()[one],
                       np.maximum(a["end"], b["end"]).to_numpy()[one]),
               # two chromosomes: a record on each, its own region as the source
               records(a, b, two, a["chrom"].to_numpy()[two], a["start"].to_numpy()[two], a["end"].to_numpy()[two]),
               records(b, a, two, b["chrom"].to_numpy()[two], b["start"].to_numpy()[two], b["end"].to_numpy()[two])]
    out = pd.concat(records, ignore_index=True)[INTERACT_COLUMNS]
    return out.sort_values(["chrom", "chromStart", "chromEnd", "name"], ignore_index=True)


def best_score_bedgraph(ws: WindowSet, pairs: pd.DataFrame) -> pd.DataFrame:
    """chrom, start, end, best score_z of each window that has a nominated pair (middle `stride`
    bases of the window), sorted."""
    z = pairs["score_z"].to_numpy(float)
    best = (pd.DataFrame({"w": np.concatenate([pairs["window_a"], pairs["window_b"]]), "z": np.concatenate([z, z])})
            .groupby("w")["z"].max())
    t = ws.table.iloc[best.index.to_numpy()]
    stride = min(ws.params.stride, ws.params.size)
    lengths = (t["end"] - t["start"]).to_numpy()
    start = t["start"].to_numpy() + np.maximum(lengths - stride, 0) // 2
    out = pd.DataFrame({"chrom": t["chrom"].to_numpy(), "start": start,
                        "end": np.minimum(start + stride, t["end"].to_numpy()), "value": best.to_numpy().round(4)})
    out = out.sort_values(["chrom", "start", "value"], ascending=[True, True, False], ignore_index=True)
    # windows of overlapping genes may still overlap: each interval starts where the previous ended
    previous_end = out.groupby("chrom")["end"].transform(lambda e: e.cummax().shift(fill_value=0))
    out["start"] = np.maximum(out["start"], previous_end)
    return out[out["start"] < out["end"]].reset_index(drop=True)
