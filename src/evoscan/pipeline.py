"""`evoscan run` and `evoscan demo`: every step in one process, with progress bars and a summary."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from . import blast, check, embed, mask, motifs, report, search
from .backends import get_backend
from .errors import EvoscanError
from .windows import WindowParams, make_windows, require_two_genes, require_two_groups, write_windows

FILES = {"windows": "windows.h5", "masks": "masks.h5", "embeddings": "embeddings.h5",
         "neighbours": "neighbours.h5", "blast": "blast.h5", "scores": "scores.h5"}

# every file a run writes: its intermediates and the report's files
RUN_OUTPUTS = [*FILES.values(), *(name for name, _ in report.FILES)]


@dataclass
class RunConfig:
    outdir: Path
    fasta: Path | None = None
    genome: Path | None = None
    gtf: Path | None = None
    genes: list[str] | None = None
    regions: Path | None = None
    gene_type: str | None = None
    ambiguous_as_n: bool = False
    window: WindowParams = field(default_factory=WindowParams)
    mask_sources: tuple[str, ...] = mask.SOURCES
    rmsk: Path | None = None
    blast_args: str = blast.DEFAULT_ARGS
    threads: int = 1
    backend: str = "motifs"  # the strongest backend without a language model (docs/validation.md)
    backend_options: dict = field(default_factory=dict)
    decoys: int = 1
    decoy_seed: int = 1
    search: search.SearchParams = field(default_factory=search.SearchParams)
    blast_all_vs_all: bool = False
    families: Path | None = None
    check: check.CheckParams = field(default_factory=check.CheckParams)
    assembly: str = "hg38"  # browser links of report.html


PREVIOUS = ".evoscan-previous"  # an earlier run's outputs, kept aside until this run succeeds


@contextlib.contextmanager
def cleanup_on_error(outdir: Path, writes: Iterable[str]) -> Iterator[None]:
    """All of a run's outputs `writes` in `outdir`, or none: an earlier run's files of those names
    are moved aside first and put back if this run fails, and what this run made of them is
    removed, so a failed run leaves the earlier results whole and nothing half-made behind. (The
    `.partial` folders of the long steps stay: the same command continues from them.)"""
    writes = list(writes)
    for name in writes:
        if (outdir / name).is_dir() and not (outdir / name).is_symlink():
            raise EvoscanError(f"{outdir / name} is a directory where evoscan writes a file of that name; "
                               "move it, or choose another output folder")
    existed = outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    aside = outdir / PREVIOUS
    if aside.is_dir():  # a run killed before it ended: its results before it come back first
        for kept in aside.iterdir():
            os.replace(kept, outdir / kept.name)
        aside.rmdir()
    moved = []
    for name in writes:
        if os.path.lexists(outdir / name):
            aside.mkdir(exist_ok=True)
            os.replace(outdir / name, aside / name)
            moved.append(name)
    before = set(outdir.iterdir())
    try:
        yield
    except BaseException:
        for path in set(outdir.iterdir()) - before:
            if path.name in writes:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        for name in moved:
            with contextlib.suppress(OSError):  # (the error that stopped the run is the one to report)
                os.replace(aside / name, outdir / name)
        with contextlib.suppress(OSError):
            aside.rmdir()  # (only if empty)
        if not existed and not any(outdir.iterdir()):
            outdir.rmdir()
        raise
    for name in moved:
        (aside / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        aside.rmdir()


def run_pipeline(cfg: RunConfig, console: Console | None = None) -> dict:
    """Run windows -> mask -> embed -> search -> check -> report into cfg.outdir; return the run's facts."""
    console = console or Console()
    out = {k: cfg.outdir / v for k, v in FILES.items()}
    timings: dict[str, float] = {}
    # fail fast, cheapest first, before any work: a one-gene list, missing tools, options blastn
    # rejects, bad motifs, a bad backend choice (the backend may load a model for minutes)
    if cfg.regions is None:
        require_two_genes(cfg.genes)
    mask.require_tools(cfg.mask_sources)
    blast.check_args(cfg.blast_args, all_vs_all=cfg.blast_all_vs_all)
    motifs.read_motifs(cfg.check.motifs)
    families = check.read_families(cfg.families) if cfg.families else None
    backend = get_backend(cfg.backend, **cfg.backend_options)
    columns = (SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    progress_console = Console(stderr=True)
    with cleanup_on_error(cfg.outdir, RUN_OUTPUTS), Progress(*columns, console=progress_console,
                                                disable=not progress_console.is_terminal) as bar:
        def step(name: str, total: int | None = None):
            return bar.add_task(name, total=total)

        t = time.perf_counter()
        task = step("windows")
        ws = make_windows(cfg.window, fasta=cfg.fasta, genome=cfg.genome, gtf=cfg.gtf, genes=cfg.genes,
                          ambiguous_as_n=cfg.ambiguous_as_n, regions=cfg.regions, gene_type=cfg.gene_type)
        require_two_groups(ws)
        search.require_enough_windows(cfg.search.index, len(ws))  # before hours of embedding
        write_windows(out["windows"], ws)
        bar.update(task, total=len(ws), completed=len(ws))
        timings["windows"] = time.perf_counter() - t

        t = time.perf_counter()
        task = step("mask")
        found, versions = mask.compute_masks(ws, cfg.mask_sources, cfg.rmsk)
        mask.write_masks(out["masks"], ws, found, versions,
                         {"sources": list(cfg.mask_sources), "rmsk": str(cfg.rmsk or "")})
        bar.update(task, total=1, completed=1)
        timings["mask"] = time.perf_counter() - t

        t = time.perf_counter()
        task = step("embed", len(ws))
        embed.embed_windows(ws, backend, out["embeddings"], lambda n: bar.advance(task, n),
                            n_decoys=cfg.decoys, seed=cfg.decoy_seed)
        timings["embed"] = time.perf_counter() - t

        t = time.perf_counter()
        task = step("search", len(ws))
        partial = out["neighbours"].with_name(out["neighbours"].name + ".partial")
        with embed.open_embeddings(out["embeddings"], ws) as f:
            provenance = json.loads(f.attrs["params"])
            nb = search.search(f, ws, cfg.search, progress=lambda n: bar.advance(task, n), resume_dir=partial)
        search.write_neighbours(out["neighbours"], ws, nb, cfg.search, provenance)
        shutil.rmtree(partial, ignore_errors=True)
        timings["search"] = time.perf_counter() - t

        hits, blast_args = None, cfg.blast_args
        if cfg.blast_all_vs_all:
            t = time.perf_counter()
            task = step("blast")
            hits, info = blast.run_blast(ws, cfg.blast_args, cfg.threads)
            blast.write_blast(out["blast"], ws, hits, info, {"threads": cfg.threads})
            blast_args = info["blastn_args"]
            bar.update(task, total=1, completed=1)
            timings["blast (all-vs-all)"] = time.perf_counter() - t

        t = time.perf_counter()
        task = step("check")
        repeat_frac = mask.read_repeat_frac(out["masks"], ws)["repeat_frac"]
        nb, meta = search.read_neighbours(out["neighbours"], ws)
        partial = out["scores"].with_name(out["scores"].name + ".partial")
        pairs, funnel, stats = check.check_pairs(ws, nb, repeat_frac, cfg.check, blast_args, cfg.threads,
                                                 hits, families, lambda n: bar.advance(task, n), partial)
        for key in ("resumed_blast_blocks", "resumed_profile_blocks"):  # how the run went, not what it found
            stats.pop(key, None)
        check.write_scores(out["scores"], ws, pairs, funnel, cfg.check, meta, stats)
        shutil.rmtree(partial, ignore_errors=True)
        timings["check"] = time.perf_counter() - t

        t = time.perf_counter()
        pairs, meta = check.read_scores(out["scores"], ws)  # what `evoscan report` reads
        files = report.write_report(cfg.outdir, ws, pairs, meta, assembly=cfg.assembly)
        timings["report"] = time.perf_counter() - t
    report.summary(console, ws, pairs, meta)
    console.print("[dim]steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + "[/dim]")
    console.print(f"Report: {files['report.html']}")
    console.print(f"Results in {cfg.outdir}/: " + ", ".join(p.name for p in files.values())
                  + ", and the HDF5 intermediates")
    return {"windows": ws, "pairs": pairs, "funnel": funnel, "timings": timings, "files": files}


def find_demo_data(start: Path | None = None) -> Path:
    """The demo's loci and GTF: $EVOSCAN_DATA, else the repository's own copy (assets/test_data, found
    from the working directory up), else the shared data folder."""
    if os.environ.get("EVOSCAN_DATA"):
        return Path(os.environ["EVOSCAN_DATA"])
    here = (start or Path.cwd()).resolve()
    for base in (here, *here.parents):
        if (base / "assets" / "test_data" / "loci" / "grch38_loci.softmasked.fa").exists():
            return base / "assets" / "test_data"
    return find_shared_data(start)


def find_shared_data(start: Path | None = None) -> Path:
    """The shared real-data folder (the loci and also motifs, repeats, chr10 regions): $EVOSCAN_DATA,
    else shared/data beside or above the working directory."""
    if os.environ.get("EVOSCAN_DATA"):
        return Path(os.environ["EVOSCAN_DATA"])
    here = (start or Path.cwd()).resolve()
    for base in (here, *here.parents):
        for candidate in (base / "shared" / "data", base.parent / "shared" / "data"):
            if (candidate / "loci" / "grch38_loci.softmasked.fa").exists():
                return candidate
    raise EvoscanError("demo data not found: set EVOSCAN_DATA to the folder holding loci/ and annotation/ "
                       "(assets/test_data in the repository, or shared/data beside it)")


def demo_config(data: Path, outdir: Path, threads: int, backend: str = "motifs") -> RunConfig:
    """The 25 real GRCh38 loci, soft-masked, annotated with the LRG-derived GTF."""
    if not (data / "loci" / "grch38_loci.softmasked.fa").is_file():
        raise EvoscanError(f"{data}: not a demo data folder (no loci/grch38_loci.softmasked.fa in it); give "
                           "the folder that holds loci/ and annotation/ (assets/test_data) with --data, or set EVOSCAN_DATA")
    return RunConfig(outdir=outdir, fasta=data / "loci" / "grch38_loci.softmasked.fa",
                     gtf=data / "annotation" / "lrg_derived_grch38.gtf", threads=threads,
                     backend=backend)
