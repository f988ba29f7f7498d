"""What people read: report.html (rendered by a real headless Chromium), the browser tracks
(BEDPE through bedtools, UCSC interact against its schema, bedGraph), and the 80-column summary.

A run with calls: 8 shuffled loci with 20 pairs of windows sharing a vocabulary of random 8-mers
(the kmer backend's positive control), through the real embed, search, check (BLAST included)
and `evoscan report`."""

import json
import re
import shutil
import subprocess
from html import unescape

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from conftest import evoscan, subset_fasta
from evoscan import check, embed, report, search
from evoscan.backends.kmer import KmerBackend
from evoscan.run_settings import readable
from evoscan.tracks import INTERACT_COLUMNS
from evoscan.windows import WindowParams, make_windows, write_windows
from synthetic import plant_words, shuffled_loci

LOCI = ["DES", "ACTC1", "TNNC1", "MYL2", "PLN", "SOD1", "TTR", "AVP"]


@pytest.fixture(scope="module")
def called_run(loci_fasta, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("called")
    ws = make_windows(WindowParams(), fasta=shuffled_loci(subset_fasta(loci_fasta, LOCI, tmp / "8.fa"), tmp / "s.fa", 42))
    ws, planted = plant_words(ws, 20, 40, seed=5)
    write_windows(tmp / "windows.h5", ws)
    embed.embed_windows(ws, KmerBackend(k=6), tmp / "embeddings.h5", n_decoys=1, seed=1)
    with embed.open_embeddings(tmp / "embeddings.h5", ws) as f:
        nb = search.search(f, ws, search.SearchParams())
    params = check.CheckParams(sw_shuffles=10, motif_shuffles=20)
    pairs, funnel, stats = check.check_pairs(ws, nb, np.zeros(len(ws), np.float32), params, threads=2)
    meta = {"backend": {"backend": "kmer", "k": 6}, "params": search.SearchParams().__dict__}
    check.write_scores(tmp / "scores.h5", ws, pairs, funnel, params, meta, stats)
    out = tmp / "report"
    out.mkdir()
    proc = evoscan("report", "--windows", tmp / "windows.h5", "--scores", tmp / "scores.h5", "--outdir", out)
    assert proc.returncode == 0, proc.stderr
    return {"ws": ws, "planted": planted, "pairs": pairs, "out": out, "stdout": proc.stdout, "tmp": tmp}


def test_report_html_is_self_contained_with_every_section(called_run):
    html = (called_run["out"] / "report.html").read_text()
    n_candidates = int(called_run["pairs"]["candidate"].sum())
    assert n_candidates >= 5
    for section in ("summary", "provenance", "funnel", "candidates", "motifs", "figures", "files"):
        assert f'id="{section}"' in html
    assert html.count('class="pair-row"') == n_candidates
    assert html.count("<svg") >= 6 and html.count('class="panel motif-panel"') == min(10, n_candidates)
    # nothing is fetched: no external scripts, styles, images or fonts; links to browsers only
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)="https?:', html)
    assert "url(http" not in html and "@import" not in html
    assert "https://genome.ucsc.edu/cgi-bin/hgTracks?db=hg38&amp;position=chr" in html
    assert "https://www.ensembl.org/Homo_sapiens/Location/View?r=" in html
    # the same inputs give the same page
    again = called_run["tmp"] / "again"
    again.mkdir()
    assert evoscan("report", "--windows", called_run["tmp"] / "windows.h5", "--scores", called_run["tmp"] / "scores.h5",
                   "--outdir", again).returncode == 0
    for name in ("report.html", "candidates.tsv", "motif_sites.tsv", "pairs.tsv.gz", "candidates.bedpe",
                 "candidates.interact.bed", "interact.as", "best_score.bedgraph"):  # byte for byte
        assert (again / name).read_bytes() == (called_run["out"] / name).read_bytes(), name


def test_what_was_run_is_tables_a_person_reads(called_run):
    """"What was run": one table per step of named settings, values rounded for reading, with units;
    no dictionary or JSON outside the collapsed exact provenance, which keeps every digit."""
    html = (called_run["out"] / "report.html").read_text()
    shown = html[html.index('id="summary"'):html.index("<details>")]
    captions = re.findall(r"<caption>(.*?)</caption>", shown)
    assert captions == ["Input and windows", "Embedding", "Search", "Checks", "Motifs",
                        "What the run found on the way", "Versions"]
    rows = re.findall(r'<tr><td>(.*?)</td><td class="value">(.*?)</td><td>(.*?)</td></tr>', shown)
    settings = {name: (value, unit) for name, value, unit in rows}
    assert settings["window size"] == ("512", "bp") and settings["stride"] == ("256", "bp")
    assert settings["max. target-decoy q-value of a call"] == ("0.05", "")
    assert settings["backend"] == ("kmer", "") and settings["k-mer length"] == ("6", "bp")
    assert settings["matrices"] == ("879", "")
    exact = json.loads(unescape(re.search(r'<pre id="provenance">(.*?)</pre>', html, re.S).group(1)))
    r2 = exact["statistics"]["composition_r2"]
    assert settings["score explained by 6-mer composition"] == (f"{r2:.3g}", "R²") and len(repr(r2)) > 6
    assert not any(c in value for _, value, _ in rows for c in "{}[]\"") and "&#34;" not in shown
    assert exact["checks"]["max_qvalue"] == 0.05 and exact["windows"]["size"] == 512


def test_readable_values():
    assert [readable(v) for v in (0.6122423602119197, 2048, 487643100.0, True, 1e-4, ["a", "b"], "")] == [
        "0.612", "2,048", "487,643,100", "yes", "0.0001", "a, b", "—"]
    assert readable(0.44647445047102485, "%") == "44.6"


def test_candidates_pass_every_filter_and_lead_every_table(called_run):
    """Each call is repeat-free, BLAST-free, significant, beaten by no decoy and without
    Smith-Waterman homology; the tables list the calls first, each part by normalised score,
    and the BEDPE has one 8-column link per call."""
    pairs, out = called_run["pairs"], called_run["out"]
    final = pairs[pairs.candidate]
    assert len(final) >= 5
    assert final.repeat_free.all() and final.blast_searched.all() and final.blast_evalue.isna().all()
    assert (final.qvalue <= 0.05).all() and (final.margin > 0).all() and not final.sw_homology.any()
    cand = pd.read_csv(out / "candidates.tsv", sep="\t", keep_default_na=False)
    assert len(cand) == len(final) and (cand.blast_evalue == "").all()  # empty when there is no hit
    table = pd.read_csv(out / "pairs.tsv.gz", sep="\t", dtype={"shared_motifs": str})
    assert table.candidate.sum() == len(final) and not table.candidate.all()
    assert table.candidate.is_monotonic_decreasing
    for _, group in table.groupby("candidate"):
        assert group.score_z.is_monotonic_decreasing
    lines = (out / "candidates.bedpe").read_text().splitlines()
    assert len(lines) == len(final) and all(len(line.split("\t")) == 8 for line in lines)


def test_report_renders_in_headless_chromium_without_errors(called_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (make test-tools installs it)"
    page = (called_run["out"] / "report.html").resolve()
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not errors, errors
    dom = proc.stdout
    assert dom.count('class="pair-row"') == int(called_run["pairs"]["candidate"].sum())
    assert dom.count("<svg") >= 6 and "Filter funnel" in dom
    shot = tmp_path / "report.png"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,1600",
                           f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.stat().st_size > 20_000


def test_bedpe_loads_in_bedtools_pairtobed(called_run, tmp_path):
    bedtools = shutil.which("bedtools")
    assert bedtools, "bedtools is needed (make test-tools installs it)"
    out = called_run["out"]
    cand = pd.read_csv(out / "candidates.tsv", sep="\t")
    first = cand.iloc[0]
    bed = tmp_path / "a.bed"
    bed.write_text(f"{first.chrom_a}\t{first.start_a + 10}\t{first.start_a + 20}\tprobe\n")
    proc = subprocess.run([bedtools, "pairtobed", "-a", str(out / "candidates.bedpe"), "-b", str(bed)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    hits = [line.split("\t") for line in proc.stdout.splitlines()]
    assert any(h[6] == f"{first.window_a}__{first.window_b}" for h in hits)


def parse_autosql(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s*(string|uint|int|double|float)\s+(\w+);", text, flags=re.M)


def test_interact_file_follows_its_schema(called_run):
    out = called_run["out"]
    fields = parse_autosql((out / "interact.as").read_text())
    assert [name for _, name in fields] == INTERACT_COLUMNS
    lines = (out / "candidates.interact.bed").read_text().splitlines()
    cand = pd.read_csv(out / "candidates.tsv", sep="\t")
    inter = (cand.chrom_a != cand.chrom_b).sum()
    assert len(lines) == len(cand) + inter  # two records for a pair on two chromosomes
    previous = None
    for line in lines:
        values = line.split("\t")
        assert len(values) == 18
        row = dict(zip(INTERACT_COLUMNS, values))
        for kind, name in fields:
            if kind == "uint":
                assert values[INTERACT_COLUMNS.index(name)].isdigit(), (name, line)
            elif kind == "double":
                float(values[INTERACT_COLUMNS.index(name)])
        assert int(row["chromStart"]) < int(row["chromEnd"]) and 0 <= int(row["score"]) <= 1000
        assert row["chrom"] == row["sourceChrom"]  # non-directional: the record's own region is the source
        if row["sourceChrom"] == row["targetChrom"]:
            assert int(row["sourceStart"]) <= int(row["targetStart"])  # ... or the lower one
            assert int(row["chromStart"]) <= min(int(row["sourceStart"]), int(row["targetStart"]))
            assert int(row["chromEnd"]) >= max(int(row["sourceEnd"]), int(row["targetEnd"]))
        key = (row["chrom"], int(row["chromStart"]))
        assert previous is None or key >= previous  # sorted, as bedToBigBed needs
        previous = key


def test_bedgraph_is_sorted_and_does_not_overlap(called_run):
    graph = pd.read_csv(called_run["out"] / "best_score.bedgraph", sep="\t", header=None,
                        names=["chrom", "start", "end", "value"])
    assert len(graph) > 100 and (graph.start < graph.end).all()
    for _, g in graph.groupby("chrom"):
        assert (g.start.to_numpy()[1:] >= g.end.to_numpy()[:-1]).all()


def test_summary_reads_at_80_columns(called_run):
    """No id is cut at 80 columns, and the summary says where the report is."""
    assert "report.html" in called_run["stdout"]
    ws, pairs = called_run["ws"], called_run["pairs"]
    console = Console(record=True, width=80)
    meta = check.read_scores(called_run["tmp"] / "scores.h5", ws)[1]
    report.summary(console, ws, pairs, meta)
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    ids = ws.table["id"].to_numpy()
    for row in pairs[pairs["candidate"]].head(10).itertuples():
        assert ids[row.window_a] in text and ids[row.window_b] in text


def test_demo_report_shows_the_best_uncalled_pairs_as_such(demo_run):
    """Nothing is called on the real loci: the page says so and shows the 10 best pairs calls are
    made from, with their motif panels; the terminal says the same."""
    html = (demo_run["outdir"] / "report.html").read_text(encoding="utf-8")
    assert "Best pairs (none called)" in html and "none of them is a call" in html
    assert html.count('class="pair-row"') == 10 and html.count('class="panel motif-panel"') == 10
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # inline SVGs keep unique ids
    assert "none of them a call" in demo_run["stdout"]


def test_pairs_written_in_parts_are_the_whole_table(called_run, tmp_path):
    """pairs.tsv.gz made a few pairs at a time (as at a million windows) holds the bytes the
    whole table gives, and every other file is the same too."""
    ws, out = called_run["ws"], called_run["out"]
    pairs, meta = check.read_scores(called_run["tmp"] / "scores.h5", ws)
    assert pairs["candidate"].sum() >= 2 and len(pairs) > 7 * 3
    files = report.write_report(tmp_path, ws, pairs, meta, rows=7)
    for name, path in files.items():
        assert path.read_bytes() == (out / name).read_bytes(), name
    whole = report.pair_table(ws, pairs)
    parts = pd.read_csv(tmp_path / "pairs.tsv.gz", sep="\t")
    assert len(parts) == len(whole) and list(parts.columns) == list(whole.columns)
