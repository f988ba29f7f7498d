"""The `evoscan` command: one subcommand per pipeline step, plus `run` (all steps) and `demo`; the\noptions of each step are in options.py."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from . import __version__, blast, check, embed, mask, report, search
from .backends import get_backend
from .errors import EvoscanError, UsageError, os_error_message
from .io import h5
from .options import (add_backend_options, add_blast_options, add_check_options, add_input_options,
                      add_mask_options, add_motif_options, add_report_options, add_search_options, backend_options,
                      check_params, chunk_spec, positive_int, search_params, window_params)
from .pipeline import RunConfig, cleanup_on_error, demo_config, find_demo_data, run_pipeline
from .windows import chunk_range, make_windows, read_windows, require_two_groups, write_windows


# ---- subcommands -----------------------------------------------------------------------------

def cmd_windows(a) -> None:
    ws = make_windows(window_params(a), fasta=a.fasta, genome=a.genome, gtf=a.gtf, genes=a.genes,
                      ambiguous_as_n=a.ambiguous_as_n, regions=a.regions, gene_type=a.gene_type)
    write_windows(a.out, ws)
    groups = "regions" if a.regions else "genes"
    skipped = (f"; {ws.n_genes_skipped} {groups} skipped, on chromosomes not in the genome"
               if ws.n_genes_skipped else "")
    one = ("; one group only: mask, embed and run refuse it, evoscan pairs windows of different groups"
           if ws.table["gene"].nunique() < 2 else "")
    print(f"{len(ws)} windows of {ws.table['gene'].nunique()} {groups} -> {a.out}"
          f" ({ws.n_dropped_n} dropped for N{skipped}){one}", file=sys.stderr)


def cmd_mask(a) -> None:
    ws = read_windows(a.windows)
    require_two_groups(ws)  # the first step after windows: refused before any work
    found, versions = mask.compute_masks(ws, a.mask_sources, a.rmsk)
    mask.write_masks(a.out, ws, found, versions, {"sources": a.mask_sources, "rmsk": str(a.rmsk or "")})


def cmd_blast(a) -> None:
    ws = read_windows(a.windows)
    blast.check_args(a.blast_args, all_vs_all=True)
    hits, info = blast.run_blast(ws, a.blast_args, a.threads, chunk_range(a.chunk, len(ws)))
    blast.write_blast(a.out, ws, hits, info, {"threads": a.threads})


def cmd_embed(a) -> None:
    ws = read_windows(a.windows)
    rows = chunk_range(a.chunk, len(ws))
    require_two_groups(ws)
    backend = get_backend(a.backend, **backend_options(a))
    embed.embed_windows(ws, backend, a.out, rows=rows, n_decoys=a.decoys, seed=a.decoy_seed)


def cmd_merge(a) -> None:
    ws = read_windows(a.windows)
    kinds = {h5.schema_kind(p) for p in a.parts}
    merge = {"blast": blast.merge_blast, "embeddings": embed.merge_embeddings, "neighbours": search.merge_neighbours}
    if len(kinds) != 1 or next(iter(kinds)) not in merge:
        raise EvoscanError("merge takes chunk files of one kind: all embeddings, all neighbours or all blast files")
    merge[kinds.pop()](a.parts, ws, a.out)


def cmd_search(a) -> None:
    ws = read_windows(a.windows)
    params = search_params(a)
    partial = a.out.with_name(a.out.name + ".partial")  # finished query blocks of a killed run
    with embed.open_embeddings(a.embeddings, ws) as f:
        provenance = json.loads(f.attrs["params"])
        nb = search.search(f, ws, params, chunk_spec(a.chunk), resume_dir=partial)
    if nb.resumed_blocks:
        print(f"evoscan search: resumed {nb.resumed_blocks} finished query block(s) from {partial}", file=sys.stderr)
    search.write_neighbours(a.out, ws, nb, params, provenance)
    shutil.rmtree(partial, ignore_errors=True)


def cmd_check(a) -> None:
    ws = read_windows(a.windows)
    params = check_params(a)
    nb, meta = search.read_neighbours(a.neighbours, ws)
    repeat_frac = mask.read_repeat_frac(a.masks, ws)["repeat_frac"]
    hits, blast_args = blast.read_blast(a.blast_hits, ws) if a.blast_hits else (None, a.blast_args)
    if hits is None:
        blast.check_args(blast_args)  # before the controls and Smith-Waterman, not after
    families = check.read_families(a.families) if a.families else None
    partial = a.out.with_name(a.out.name + ".partial")  # finished BLAST blocks of a killed run
    pairs, funnel, stats = check.check_pairs(ws, nb, repeat_frac, params, blast_args, a.threads, hits, families,
                                             resume_dir=partial)
    resumed = {"BLAST": stats.pop("resumed_blast_blocks", 0), "motif-profile": stats.pop("resumed_profile_blocks", 0)}
    for phase, blocks in resumed.items():
        if blocks:
            print(f"evoscan check: resumed {blocks} finished {phase} block(s) from {partial}", file=sys.stderr)
    check.write_scores(a.out, ws, pairs, funnel, params, meta, stats)
    shutil.rmtree(partial, ignore_errors=True)


def cmd_report(a) -> None:
    ws = read_windows(a.windows)
    pairs, meta = check.read_scores(a.scores, ws)
    with cleanup_on_error(a.outdir, [name for name, _ in report.FILES]):  # all the report's files, or none
        files = report.write_report(a.outdir, ws, pairs, meta, assembly=a.assembly)
    console = Console()
    report.summary(console, ws, pairs, meta)
    console.print(f"Report: {files['report.html']}")


def run_config(a, outdir: Path) -> RunConfig:
    return RunConfig(outdir=outdir, fasta=a.fasta, genome=a.genome, gtf=a.gtf, genes=a.genes,
                     regions=a.regions, gene_type=a.gene_type,
                     ambiguous_as_n=a.ambiguous_as_n, window=window_params(a),
                     mask_sources=tuple(a.mask_sources), rmsk=a.rmsk, blast_args=a.blast_args,
                     threads=a.threads, backend=a.backend, backend_options=backend_options(a),
                     decoys=a.decoys, decoy_seed=a.decoy_seed, search=search_params(a),
                     blast_all_vs_all=a.blast_all_vs_all, families=a.families, check=check_params(a),
                     assembly=a.assembly, fresh=a.fresh)


def cmd_run(a) -> None:
    run_pipeline(run_config(a, a.outdir))


def cmd_demo(a) -> None:
    data = a.data or find_demo_data()
    cfg = replace(demo_config(data, a.outdir, a.threads, a.backend), fresh=a.fresh)
    Console(stderr=True).print(f"evoscan demo: 25 real GRCh38 loci from {data}, {a.backend} backend -> {a.outdir}")
    run_pipeline(cfg)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (exit status 2) like every other evoscan error."""

    def error(self, message):
        if message.endswith("expected one argument"):  # argparse takes a value starting with '-' for an option
            message += " (a value that starts with '-' goes after '=', e.g. --blast-args='-word_size 7')"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


DEBUG_HELP = "on an error, show the Python traceback instead of the one-line message"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="evoscan", description="Find genomic windows a language model calls alike that no alignment can see.")
    parser.add_argument("--version", action="version", version=f"evoscan {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        return p

    def io_options(p, inputs: list[str], out_default: str):
        for name in inputs:
            p.add_argument(f"--{name}", type=Path, required=True, help=f"evoscan {name} HDF5 file")
        p.add_argument("-o", "--out", type=Path, default=Path(out_default), help="output (default %(default)s)")

    p = command("windows", cmd_windows, "cut windows over genes and promoters")
    add_input_options(p)
    p.add_argument("-o", "--out", type=Path, default=Path("windows.h5"), help="output (default %(default)s)")
    p = command("mask", cmd_mask, "repeat and low-complexity fraction per window")
    io_options(p, ["windows"], "masks.h5")
    add_mask_options(p)
    p = command("embed", cmd_embed, "embed every window and its decoys with a backend (resumable)")
    io_options(p, ["windows"], "embeddings.h5")
    add_backend_options(p)
    add_motif_options(p)
    p.add_argument("--chunk", help="embed only chunk I/N of the windows (for scatter; join with merge)")
    p = command("search", cmd_search, "each window's nearest windows of other genes, and nearest decoys")
    io_options(p, ["windows", "embeddings"], "neighbours.h5")
    add_search_options(p)
    p.add_argument("--chunk", help="search only the query block chunk I/N (for scatter; join with merge)")
    p = command("check", cmd_check, "q-values, repeats, BLAST, Smith-Waterman and controls of the nominated pairs")
    io_options(p, ["windows", "masks", "neighbours"], "scores.h5")
    add_blast_options(p)
    p.add_argument("--blast-hits", type=Path, help="all-vs-all hits from `evoscan blast` instead of searching "
                                                   "the nominated pairs")
    add_check_options(p)
    add_motif_options(p)
    p = command("merge", cmd_merge, "join embed, search or blast chunk files")
    io_options(p, ["windows"], "merged.h5")
    p.add_argument("parts", nargs="+", type=Path, help="chunk files from embed, search or blast --chunk")
    p = command("blast", cmd_blast, "opt-in, small sets: all-vs-all blastn, best hit per pair (for check --blast-hits)")
    io_options(p, ["windows"], "blast.h5")
    add_blast_options(p)
    p.add_argument("--chunk", help="search only query chunk I/N (for scatter; join with merge)")
    p = command("report", cmd_report, "report.html, TSV tables, browser tracks and a terminal summary")
    p.add_argument("--windows", type=Path, required=True)
    p.add_argument("--scores", type=Path, required=True)
    p.add_argument("--outdir", type=Path, default=Path("."))
    add_report_options(p)
    p = command("run", cmd_run, "all steps in one process on this machine")
    for add_options in (add_input_options, add_mask_options, add_backend_options, add_search_options,
                        add_blast_options, add_check_options, add_motif_options, add_report_options):
        add_options(p)
    p.add_argument("--blast-all-vs-all", action="store_true",
                   help="BLAST every pair of windows (small sets) instead of the nominated pairs")
    p.add_argument("--outdir", type=Path, required=True)
    add_fresh_option(p)
    p = command("demo", cmd_demo, "run on the 25 real GRCh38 loci into results/demo")
    p.add_argument("--data", type=Path, help="folder with loci/ and annotation/ (default: the repository's assets/test_data, else shared/data beside it)")
    p.add_argument("--outdir", type=Path, default=Path("results/demo"))
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--backend", default="motifs", choices=["motifs", "kmer"],
                   help="motifs (default) or kmer, the backends that need no model (default %(default)s)")
    add_fresh_option(p)
    return parser


def add_fresh_option(p) -> None:
    p.add_argument("--fresh", action="store_true",
                   help="recompute every step; without it, a rerun into the same --outdir reuses each finished "
                        "step whose settings and inputs are unchanged")


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; every failure is one line on stderr (the traceback only with --debug) and a
    non-zero exit: 2 for a usage error, 1 for bad input or environment, 130 when interrupted."""
    args = build_parser().parse_args(argv)
    try:
        check_output(args)
        args.func(args)
    except KeyboardInterrupt as err:
        print("; ".join(["evoscan: interrupted", *getattr(err, "__notes__", [])]), file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"evoscan {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1
    return 0


def check_output(a) -> None:
    """Where the outputs go must exist (a file's folder) and be writable, checked before any work."""
    if getattr(a, "out", None) is not None:
        folder = a.out.parent
        if not folder.is_dir():
            raise EvoscanError(f"output directory {folder} does not exist; create it first")
        if a.out.is_dir():
            raise EvoscanError(f"-o {a.out} is a directory; give the path of a file to write")
        for name, value in vars(a).items():  # writing over an input would destroy it
            for given in (value if isinstance(value, list) else [value]):
                if name != "out" and isinstance(given, Path) and _same_file(given, a.out):
                    option = "one of the chunk files" if name == "parts" else f"--{name.replace('_', '-')}"
                    raise EvoscanError(f"-o {a.out} is the file given as {option}: writing it would destroy that "
                                       "input; choose another -o")
    elif getattr(a, "outdir", None) is not None:
        folder = a.outdir
        while not folder.exists():  # made by the step: the nearest folder that exists must take it
            folder = folder.parent
        if not folder.is_dir():
            raise EvoscanError(f"--outdir {a.outdir}: {folder} is a file, not a directory")
    else:
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EvoscanError(f"output directory {folder} is not writable (read-only or no permission); "
                           "choose another, or fix its permissions")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except (OSError, RuntimeError):  # (RuntimeError: a symlink loop)
        return False


def error_message(err: Exception) -> str:
    """One line for any error: evoscan's own say what to do; an OS error says which file and why;
    anything else is a bug, named as such."""
    if isinstance(err, EvoscanError):
        text = str(err)
    elif isinstance(err, OSError):
        text = os_error_message(err)
    else:
        first = (str(err).strip().splitlines() or [""])[0]
        text = (f"internal error ({type(err).__name__}: {first}); please report it, "
                "with the traceback that --debug shows")
    text = "; ".join([text, *getattr(err, "__notes__", [])])  # e.g. what a stopped run kept
    return " ".join(text.split())  # one line, whatever the message held


if __name__ == "__main__":
    sys.exit(main())
