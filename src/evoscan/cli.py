"""The `evoscan` command: one subcommand per pipeline step, plus `run` (all steps) and `demo`."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from rich.console import Console

from . import __version__, blast, check, embed, mask, motifs, report, search
from .backends import get_backend, names as backend_names
from .errors import EvoscanError, UsageError, os_error_message
from .pipeline import RunConfig, cleanup_on_error, demo_config, find_demo_data, run_pipeline
from .io import h5
from .windows import WindowParams, chunk_range, make_windows, read_windows, require_two_groups, write_windows


# ---- option groups shared by the step subcommands and `run` -----------------------------------

def add_input_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input (loci FASTA, or genome + GTF + genes, or genome + regions BED)")
    g.add_argument("--fasta", type=Path, help="loci FASTA, one record per gene (plain or gzipped)")
    g.add_argument("--genome", type=Path,
                   help="genome FASTA (plain or gzipped); needs --gtf and --genes, or --regions")
    g.add_argument("--gtf", type=Path, help="GTF; with --fasta it only annotates region classes")
    g.add_argument("--genes", type=gene_list,
                   help="comma-separated gene names, a file with one per line, or 'all' (every gene of the GTF)")
    g.add_argument("--gene-type", help="with --genes all: only genes of this GTF gene_type/gene_biotype "
                                       "(e.g. protein_coding)")
    g.add_argument("--regions", type=Path,
                   help="BED of regions to scan with --genome (peaks, enhancers, ...); each region is one group")
    g.add_argument("--ambiguous-as-n", action="store_true", help="read IUPAC ambiguity codes as N")
    w = p.add_argument_group("windows")
    w.add_argument("--window-size", type=int, default=WindowParams.size)
    w.add_argument("--stride", type=int, default=WindowParams.stride)
    w.add_argument("--promoter-upstream", type=int, default=WindowParams.promoter_upstream)
    w.add_argument("--promoter-downstream", type=int, default=WindowParams.promoter_downstream)
    w.add_argument("--max-n-frac", type=float, default=WindowParams.max_n_frac,
                   help="drop windows with a larger fraction of N (default %(default)s)")


def add_mask_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("repeat masking")
    g.add_argument("--mask-sources", type=mask_sources, default=list(mask.SOURCES),
                   help="comma-separated, from " + ",".join(mask.SOURCES) + ", or none (default all)")
    g.add_argument("--rmsk", type=Path, help="RepeatMasker .out or BED of repeats (genome coordinates)")


def add_blast_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("BLAST")
    g.add_argument("--blast-args", default=blast.DEFAULT_ARGS, help="blastn options (default: %(default)s)")
    g.add_argument("--threads", type=positive_int, default=1, help="blastn threads (default %(default)s)")


def add_backend_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embedding backend")
    g.add_argument("--backend", default="kmer", choices=backend_names())
    g.add_argument("--batch-size", type=positive_int,
                   help="windows per backend call (kmer 1024, motifs 256, evo2 16, hf 16)")
    g.add_argument("--k", type=int, default=6, help="kmer: k-mer length (default %(default)s)")
    g.add_argument("--model", help="evo2: model name (default evo2_7b); hf: model directory")
    g.add_argument("--layer", help="evo2: blocks.N or blocks.N.mlp.l3 (default per model); hf: hidden-state index")
    g.add_argument("--pooling", default="mean", choices=["mean", "last", "rc_mean"],
                   help="evo2/hf: mean over real tokens, last token, or mean of both strands")
    g.add_argument("--weights", type=Path, help="evo2: merged checkpoint .pt (default $HF_HOME/<model>.pt)")
    g.add_argument("--model-config", type=Path, help="evo2: architecture YAML of a custom checkpoint")
    g.add_argument("--allow-download", action="store_true", help="evo2: fetch missing weights from the hub")
    g.add_argument("--full-forward", action="store_true",
                   help="evo2: run every block and the logits instead of stopping at --layer")
    g.add_argument("--decoys", type=positive_int, default=1,
                   help="dinucleotide-shuffle decoys per window, embedded for the target-decoy q-values "
                        "(default %(default)s)")
    g.add_argument("--decoy-seed", type=nonnegative_int, default=1)


def add_motif_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("motifs (the motifs backend, the motif_cosine control, motif evidence)")
    g.add_argument("--motifs", default=motifs.DEFAULT_SOURCE,
                   help="a JASPAR release shipped with pyjaspar (CORE vertebrates) or a JASPAR/MEME motif file "
                        "(default %(default)s)")
    g.add_argument("--motif-pvalue", type=float, default=motifs.DEFAULT_PVALUE,
                   help="a site scores what random sequence reaches with this probability (default %(default)s)")


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--assembly", default="hg38", type=assembly_name,
                   help="UCSC assembly name for the browser links of report.html (default %(default)s; "
                        "hg38 also links to Ensembl)")


def assembly_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.]+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a UCSC assembly name (e.g. hg38, mm39)")
    return text


def add_search_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search")
    d = search.SearchParams
    g.add_argument("--top-k", type=int, default=d.top_k, help="neighbours per window (default %(default)s)")
    g.add_argument("--correction", default=d.correction, choices=list(search.CORRECTIONS),
                   help="anisotropy correction of the embeddings before similarity (default %(default)s)")
    g.add_argument("--device", default=d.device, help="torch device of the search: cpu, cuda, cuda:1 (default %(default)s)")
    g.add_argument("--precision", default=d.precision, choices=list(search.PRECISIONS),
                   help="matmul precision of the search (default %(default)s)")
    g.add_argument("--memory", type=int, default=d.memory_mb, dest="memory_mb",
                   help="memory budget of the search blocks in MB (default %(default)s)")
    g.add_argument("--index", default=d.index, choices=list(search.INDEXES),
                   help="exact (every similarity), ivf (approximate, FAISS, 8-bit vectors: millions of windows) "
                        "or ivfpq (product-quantised: lists a quarter the size, less exact)")
    g.add_argument("--nprobe", type=int, default=d.nprobe, help="ivf, ivfpq: lists searched per query (0: auto)")


def add_check_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checks and filters")
    d = check.CheckParams
    g.add_argument("--max-repeat-frac", type=float, default=d.max_repeat_frac,
                   help="candidate windows' repeat fraction at most this (default %(default)s)")
    g.add_argument("--max-blast-evalue", type=float, default=d.max_blast_evalue,
                   help="a BLAST hit at or below this e-value disqualifies a pair (default %(default)s)")
    g.add_argument("--min-cosine", type=float, default=d.min_cosine, help="candidates need at least this cosine")
    g.add_argument("--max-qvalue", type=float, default=d.max_qvalue,
                   help="candidates need a target-decoy q-value at most this (default %(default)s)")
    g.add_argument("--sw-shuffles", type=int, default=d.sw_shuffles,
                   help="shuffles behind each Smith-Waterman z-score and p-value (default %(default)s)")
    g.add_argument("--min-sw-pvalue", type=float, default=d.min_sw_pvalue,
                   help="a Smith-Waterman p-value below this marks a pair homologous (default %(default)s)")
    g.add_argument("--motif-shuffles", type=int, default=d.motif_shuffles,
                   help="dinucleotide shuffles of each side behind a candidate's motif p-value (default %(default)s)")
    g.add_argument("--families", type=Path, help="TSV of gene and family: flags pairs of one family")


def gene_list(text: str) -> list[str]:
    path = Path(text)
    if path.is_file():
        names = path.read_text().split()
    else:
        names = [g.strip() for g in text.split(",") if g.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no gene names given")
    return names


def int_at_least(minimum: int):
    """An argparse type: an integer of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum} (got {value})")
        return value
    return parse


positive_int, nonnegative_int = int_at_least(1), int_at_least(0)


def mask_sources(text: str) -> list[str]:
    """Mask sources, comma-separated; `none` flags no repeats (said, never an empty value)."""
    if text.strip() == "none":
        return []
    sources = csv(text)
    if not sources:
        raise argparse.ArgumentTypeError(f"names no source; give one or more of {','.join(mask.SOURCES)}, or none")
    return sources


def csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def window_params(a) -> WindowParams:
    return WindowParams(a.window_size, a.stride, a.promoter_upstream, a.promoter_downstream, a.max_n_frac)


def backend_options(a) -> dict:
    """The options of the chosen backend only, so each backend sees what it understands."""
    opts = {"batch_size": a.batch_size} if a.batch_size else {}
    if a.backend == "kmer":
        return {**opts, "k": a.k}
    if a.backend == "motifs":
        return {**opts, "motifs_source": a.motifs, "motif_pvalue": a.motif_pvalue}
    if a.backend == "evo2":
        return {**opts, "model": a.model or "evo2_7b", "layer": a.layer, "pooling": a.pooling,
                "weights": a.weights, "config": a.model_config, "allow_download": a.allow_download,
                "full_forward": a.full_forward}
    if not a.model:
        raise UsageError("--backend hf needs --model DIR (a local Hugging Face model directory)")
    return {**opts, "model": a.model, "layer": a.layer, "pooling": a.pooling}


def search_params(a) -> search.SearchParams:
    return search.SearchParams(a.top_k, a.correction, a.device, a.precision, a.memory_mb, a.index, a.nprobe)


def check_params(a) -> check.CheckParams:
    return check.CheckParams(a.max_repeat_frac, a.max_blast_evalue, a.max_qvalue, a.min_cosine, a.sw_shuffles,
                             a.min_sw_pvalue, motifs=a.motifs, motif_pvalue=a.motif_pvalue,
                             motif_shuffles=a.motif_shuffles)


def chunk_spec(spec: str | None) -> tuple[int, int] | None:
    if spec is None:
        return None
    chunk_range(spec, 1)  # validates I/N
    i, n = spec.split("/")
    return int(i), int(n)


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
                     assembly=a.assembly)


def cmd_run(a) -> None:
    run_pipeline(run_config(a, a.outdir))


def cmd_demo(a) -> None:
    data = a.data or find_demo_data()
    cfg = demo_config(data, a.outdir, a.threads)
    Console(stderr=True).print(f"evoscan demo: 25 real GRCh38 loci from {data}, kmer backend -> {a.outdir}")
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
    p = command("demo", cmd_demo, "run on the 25 real GRCh38 loci (kmer backend) into results/demo")
    p.add_argument("--data", type=Path, help="folder with loci/ and annotation/ (default: the repository's assets/test_data, else shared/data beside it)")
    p.add_argument("--outdir", type=Path, default=Path("results/demo"))
    p.add_argument("--threads", type=positive_int, default=2)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; every failure is one line on stderr (the traceback only with --debug) and a
    non-zero exit: 2 for a usage error, 1 for bad input or environment, 130 when interrupted."""
    args = build_parser().parse_args(argv)
    try:
        check_output(args)
        args.func(args)
    except KeyboardInterrupt:
        print("evoscan: interrupted", file=sys.stderr)
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
    return " ".join(text.split())  # one line, whatever the message held


if __name__ == "__main__":
    sys.exit(main())
