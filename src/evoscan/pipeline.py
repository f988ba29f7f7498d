"""`evoscan run` and `evoscan demo`: every step in one process, with progress bars and a summary."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from . import blast, check, embed, mask, motifs, report, search, tools
from .backends import get_backend
from .errors import EvoscanError
from .io import h5
from .run_record import RECORD, RunRecord, file_identity
from .windows import WindowParams, WindowSet, make_windows, require_two_genes, require_two_groups, write_windows

FILES = {"windows": "windows.h5", "masks": "masks.h5", "embeddings": "embeddings.h5",
         "neighbours": "neighbours.h5", "blast": "blast.h5", "scores": "scores.h5"}

REPORT_FILES = [name for name, _ in report.FILES]
# every file a run writes: its intermediates and the report's files
RUN_OUTPUTS = [*FILES.values(), *REPORT_FILES]
KINDS = {name: kind for kind, name in FILES.items()}
# the files made from each intermediate, directly or not: stale once it is made anew
MADE_FROM = {"windows.h5": [name for name in RUN_OUTPUTS if name != "windows.h5"],
             "masks.h5": ["scores.h5", *REPORT_FILES],
             "embeddings.h5": ["neighbours.h5", "scores.h5", *REPORT_FILES],
             "neighbours.h5": ["scores.h5", *REPORT_FILES],
             "blast.h5": ["scores.h5", *REPORT_FILES],
             "scores.h5": REPORT_FILES}


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
    fresh: bool = False  # recompute every step, reusing nothing an earlier run left


PREVIOUS = ".evoscan-previous"  # an earlier report's files, kept aside until the new report is whole


@contextlib.contextmanager
def cleanup_on_error(outdir: Path, writes: Iterable[str]) -> Iterator[None]:
    """All of the files `writes` in `outdir` (a report's), or none: earlier files of those names are
    moved aside first and put back if the block fails, and what it made of them is removed, so a
    failed report leaves the earlier one whole and nothing half-made behind."""
    writes = list(writes)
    for name in writes:
        if (outdir / name).is_dir() and not (outdir / name).is_symlink():
            raise EvoscanError(f"{outdir / name} is a directory where evoscan writes a file of that name; "
                               "move it, or choose another output folder")
    existed = outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    aside = outdir / PREVIOUS
    if aside.is_dir():  # a report killed before it ended: the files before it come back first
        for kept in aside.iterdir():
            if kept.name in writes:  # (not what an older evoscan set aside: a run now keeps its steps)
                os.replace(kept, outdir / kept.name)
        with contextlib.suppress(OSError):
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
    """Run windows -> mask -> embed -> search -> check -> report into cfg.outdir; return the run's facts.

    Every finished step stays, recorded with its settings (run_record.py): the same command after a
    kill or an error reuses it and runs the rest; a step whose settings or inputs differ runs again,
    and removes what was made from its earlier output."""
    console = console or Console()
    out = {k: cfg.outdir / v for k, v in FILES.items()}
    timings: dict[str, float] = {}
    # fail fast, cheapest first, before any work: a one-gene list, missing tools, options blastn
    # rejects, bad motifs, a bad backend choice or its missing files (evo2 and hf load their model
    # only to embed: a checkpoint that fails to load or does not fit, a tokenizer of no DNA, no GPU
    # for evo2, stop the run there, with the windows and masks kept)
    if cfg.regions is None:
        require_two_genes(cfg.genes)
    mask.require_tools(cfg.mask_sources)
    blast.check_args(cfg.blast_args, all_vs_all=cfg.blast_all_vs_all)
    motifs.read_motifs(cfg.check.motifs)
    families = check.read_families(cfg.families) if cfg.families else None
    backend = get_backend(cfg.backend, **cfg.backend_options)
    require_file_names(cfg.outdir, RUN_OUTPUTS)
    existed = cfg.outdir.exists()
    if cfg.fresh:
        start_afresh(cfg.outdir)
    cfg.outdir.mkdir(parents=True, exist_ok=True)
    remove_unfinished_writes(cfg.outdir)
    record = RunRecord(cfg.outdir)
    columns = (SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    log = Console(stderr=True)
    steps = _Steps(record, log)
    try:
        with Progress(*columns, console=log, disable=not log.is_terminal) as bar:

            def step(name: str, total: int | None = None):
                return bar.add_task(name, total=total)

            t = time.perf_counter()
            ws = make_windows(cfg.window, fasta=cfg.fasta, genome=cfg.genome, gtf=cfg.gtf, genes=cfg.genes,
                              ambiguous_as_n=cfg.ambiguous_as_n, regions=cfg.regions, gene_type=cfg.gene_type)
            require_two_groups(ws)  # what the next steps would refuse, refused before windows.h5 is kept
            mask.require_uppercase(ws, cfg.mask_sources)
            search.require_enough_windows(cfg.search.index, len(ws))  # before hours of embedding
            settings = {"windows": ws.digest}
            if not steps.reused("windows", ["windows.h5"], settings, "the same window set", ws):
                write_windows(out["windows"], ws)
                steps.finished(["windows.h5"], settings)
                bar.update(step("windows"), total=len(ws), completed=len(ws))
            timings["windows"] = time.perf_counter() - t

            settings = {"windows": ws.digest, "sources": list(cfg.mask_sources), "rmsk": file_identity(cfg.rmsk),
                        "tools": mask.tool_versions(cfg.mask_sources)}
            if not steps.reused("mask", ["masks.h5"], settings, "same windows, same mask sources", ws):
                t = time.perf_counter()
                task = step("mask")
                found, versions = mask.compute_masks(ws, cfg.mask_sources, cfg.rmsk)
                mask.write_masks(out["masks"], ws, found, versions,
                                 {"sources": list(cfg.mask_sources), "rmsk": str(cfg.rmsk or "")})
                steps.finished(["masks.h5"], settings)
                bar.update(task, total=1, completed=1)
                timings["mask"] = time.perf_counter() - t

            settings = {"windows": ws.digest,
                        "backend": embed.embedding_identity(ws, backend, cfg.decoys, cfg.decoy_seed)}
            if not steps.reused("embed", ["embeddings.h5"], settings, "same windows, same backend settings", ws):
                t = time.perf_counter()
                task = step("embed", len(ws))
                embed.embed_windows(ws, backend, out["embeddings"], lambda n: bar.advance(task, n),
                                    n_decoys=cfg.decoys, seed=cfg.decoy_seed)
                steps.finished(["embeddings.h5"], settings)
                timings["embed"] = time.perf_counter() - t
            backend.close()  # its model's memory (most of a GPU's for Evo 2) is the search's from here
            del backend
            release_model_memory()

            settings = {"inputs": {"embeddings.h5": record.stamp("embeddings.h5")}, "search": asdict(cfg.search)}
            if not steps.reused("search", ["neighbours.h5"], settings, "same embeddings, same search settings", ws):
                t = time.perf_counter()
                task = step("search", len(ws))
                partial = out["neighbours"].with_name(out["neighbours"].name + ".partial")
                with embed.open_embeddings(out["embeddings"], ws) as f:
                    provenance = json.loads(f.attrs["params"])
                    nb = search.search(f, ws, cfg.search, progress=lambda n: bar.advance(task, n),
                                       resume_dir=partial)
                search.write_neighbours(out["neighbours"], ws, nb, cfg.search, provenance)
                shutil.rmtree(partial, ignore_errors=True)  # before the record: a reuse never meets them
                steps.finished(["neighbours.h5"], settings)
                timings["search"] = time.perf_counter() - t

            hits, blast_args, blastn = None, cfg.blast_args, tools.version("blastn")
            if cfg.blast_all_vs_all:
                settings = {"windows": ws.digest, "blast_args": cfg.blast_args, "blastn": blastn}
                if not steps.reused("blast", ["blast.h5"], settings, "same windows, same blastn options", ws):
                    t = time.perf_counter()
                    task = step("blast")
                    hits, info = blast.run_blast(ws, cfg.blast_args, cfg.threads)
                    blast.write_blast(out["blast"], ws, hits, info, {"threads": cfg.threads})
                    steps.finished(["blast.h5"], settings)
                    bar.update(task, total=1, completed=1)
                    timings["blast (all-vs-all)"] = time.perf_counter() - t
                hits, blast_args = blast.read_blast(out["blast"], ws)

            inputs = ["masks.h5", "neighbours.h5", *(["blast.h5"] if cfg.blast_all_vs_all else [])]
            settings = {"inputs": {name: record.stamp(name) for name in inputs}, "check": asdict(cfg.check),
                        "motifs": file_identity(cfg.check.motifs), "blast_args": blast_args, "blastn": blastn,
                        "families": file_identity(cfg.families)}
            if not steps.reused("check", ["scores.h5"], settings, "same neighbours and masks, same check settings", ws):
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
                # (an all-vs-all blast.h5 of an earlier run is not what these scores were made with)
                steps.finished(["scores.h5"], settings, also_stale=() if cfg.blast_all_vs_all else ("blast.h5",))
                timings["check"] = time.perf_counter() - t

            pairs, meta = check.read_scores(out["scores"], ws)  # what `evoscan report` reads
            files = {name: cfg.outdir / name for name in REPORT_FILES}
            settings = {"inputs": {"scores.h5": record.stamp("scores.h5")}, "assembly": cfg.assembly}
            if not steps.reused("report", REPORT_FILES, settings, "same scores, same report settings"):
                t = time.perf_counter()
                with cleanup_on_error(cfg.outdir, REPORT_FILES):  # all the report's files, or none
                    files = report.write_report(cfg.outdir, ws, pairs, meta, assembly=cfg.assembly)
                steps.finished(REPORT_FILES, settings)
                timings["report"] = time.perf_counter() - t
    except BaseException as err:
        kept = [name for name in FILES.values() if name in steps.this_run]  # (not an earlier run's)
        # the step that stopped: the first whose file this run neither reused nor made
        stopped = next((name for kind, name in FILES.items() if name not in steps.this_run
                        and (kind != "blast" or cfg.blast_all_vs_all)), None)
        partial = [f"{stopped}.partial"] if stopped and (cfg.outdir / f"{stopped}.partial").exists() else []
        what = ([f"{', '.join(kept)} of the finished steps"] if kept else []) + (
            [f"{', '.join(partial)} (what the step that stopped had done)"] if partial else [])
        if what:
            err.add_note(f"{' and '.join(what)} {'are' if len(kept) + len(partial) > 1 else 'is'} kept in "
                         f"{cfg.outdir}: the same command continues from them")
        elif not existed and cfg.outdir.is_dir() and not any(cfg.outdir.iterdir()):
            cfg.outdir.rmdir()
        raise
    report.summary(console, ws, pairs, meta)
    reused = "; reused: " + ", ".join(steps.reused_steps) if steps.reused_steps else ""
    console.print("[dim]steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + reused + "[/dim]",
                  soft_wrap=True)
    console.print(f"Report: {files['report.html']}")
    console.print(f"Results in {cfg.outdir}/: " + ", ".join(p.name for p in files.values())
                  + ", and the HDF5 intermediates")
    return {"windows": ws, "pairs": pairs, "funnel": meta["funnel"],
            "timings": timings, "files": files, "reused": steps.reused_steps}


class _Steps:
    """Asks the record whether a step's files can be reused, says so in one line, and records what a
    step finished (removing the files made from the earlier version of its output)."""

    def __init__(self, record: RunRecord, log: Console):
        self.record, self.log, self.reused_steps = record, log, []
        self.stale: dict[str, str] = {}  # file removed in this run -> the file made anew it was made from
        self.this_run: list[str] = []  # the files this run reused or made

    def reused(self, step: str, names: list[str], settings: dict, same: str, ws: WindowSet | None = None) -> bool:
        why = self.record.why_not_reuse(names, settings)
        if why is None and ws is not None:  # recorded and unchanged; still, never trust an unreadable file
            try:
                h5.open_checked(self.record.outdir / names[0], KINDS[names[0]], ws.digest).close()
            except EvoscanError as err:
                why = str(err)
        if why is None:
            self.log.print(f"{step}: reusing {names[0]}{' and the rest' if len(names) > 1 else ''} ({same})",
                           highlight=False, soft_wrap=True)
            self.reused_steps.append(step)
            self.this_run += names
            return True
        if names[0] in self.stale:
            why = f"{self.stale[names[0]]} was made anew"
        if names[0] in self.stale or any(name in self.record.files or (self.record.outdir / name).exists()
                                         for name in names):
            self.log.print(f"{step}: making {names[0]}{' and the rest' if len(names) > 1 else ''} anew ({why})",
                           highlight=False, soft_wrap=True)
        return False

    def finished(self, names: list[str], settings: dict, also_stale: tuple[str, ...] = ()) -> None:
        """Record `names` as made with `settings`, and remove the files made from their earlier
        version (and `also_stale`). Windows made again with the same digest are the same windows:
        what was made from them stays."""
        same_windows = names == ["windows.h5"] and self.record.made_with("windows.h5", settings)
        self.record.finished(names, settings)
        self.this_run += names
        made_from = [] if same_windows else [*MADE_FROM.get(names[0], []), *also_stale]
        self.stale.update({name: names[0] for name in made_from if name in self.stale or name in self.record.files
                           or (self.record.outdir / name).exists()})
        self.record.forget(made_from)


def release_model_memory() -> None:
    """Collect a dropped backend (a model's modules hold reference cycles) and hand its GPU memory back."""
    gc.collect()
    if "torch" in sys.modules:
        sys.modules["torch"].cuda.empty_cache()  # (nothing to do where CUDA never started)


def require_file_names(outdir: Path, names: list[str]) -> None:
    for name in names:
        if (outdir / name).is_dir() and not (outdir / name).is_symlink():
            raise EvoscanError(f"{outdir / name} is a directory where evoscan writes a file of that name; "
                               "move it, or choose another output folder")


def remove_unfinished_writes(outdir: Path) -> None:
    """The temporary files of atomic writes a killed run left (h5.atomic_path): never of use."""
    for name in RUN_OUTPUTS:
        for tmp in outdir.glob(f".{name}.*.part"):
            tmp.unlink(missing_ok=True)


def start_afresh(outdir: Path) -> None:
    """--fresh: remove every file and kept block an earlier run left, so that nothing is reused."""
    for name in [*RUN_OUTPUTS, RECORD]:
        (outdir / name).unlink(missing_ok=True)
    for name in FILES.values():
        shutil.rmtree(outdir / f"{name}.partial", ignore_errors=True)


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
