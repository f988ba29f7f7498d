"""The options of each step, as argparse groups shared by the step's subcommand and `run`, and
what they become: each step's option group beside the function that turns the parsed values into
the step's settings."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from . import blast, check, mask, motifs, search
from .backends import names as backend_names
from .backends.evo2_speed import parse_speedups
from .errors import UsageError
from .windows import WindowParams, chunk_range


# ---- windows: the input and how it is cut ----------------------------------------------------

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


def gene_list(text: str) -> list[str]:
    path = Path(text)
    if path.is_file():
        names = path.read_text().split()
    else:
        names = [g.strip() for g in text.split(",") if g.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no gene names given")
    return names


def window_params(a) -> WindowParams:
    return WindowParams(a.window_size, a.stride, a.promoter_upstream, a.promoter_downstream, a.max_n_frac)



# ---- mask ------------------------------------------------------------------------------------

def add_mask_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("repeat masking")
    g.add_argument("--mask-sources", type=mask_sources, default=list(mask.SOURCES),
                   help="comma-separated, from " + ",".join(mask.SOURCES) + ", or none (default all)")
    g.add_argument("--rmsk", type=Path, help="RepeatMasker .out or BED of repeats (genome coordinates)")


def mask_sources(text: str) -> list[str]:
    """Mask sources, comma-separated; `none` flags no repeats (said, never an empty value)."""
    if text.strip() == "none":
        return []
    sources = csv(text)
    if not sources:
        raise argparse.ArgumentTypeError(f"names no source; give one or more of {','.join(mask.SOURCES)}, or none")
    return sources



# ---- embed: the backend, its decoys ----------------------------------------------------------

def add_backend_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embedding backend")
    g.add_argument("--backend", default="motifs", choices=backend_names(),
                   help="motifs (default: JASPAR binding potential beyond composition, CPU or GPU), kmer (composition only), evo2 or hf (language models)")
    g.add_argument("--batch-size", type=positive_int,
                   help="windows per backend call (kmer 1024, motifs 256, evo2 16, hf 16)")
    g.add_argument("--k", type=int, help="kmer: k-mer length (default 6)")
    g.add_argument("--model", help="evo2: model name (default evo2_7b); hf: model directory")
    g.add_argument("--layer", help="evo2: blocks.N or blocks.N.mlp.l3 (default per model); hf: hidden-state index")
    g.add_argument("--pooling", choices=["mean", "last", "rc_mean"],
                   help="evo2/hf: mean over real tokens (default), last token, or mean of both strands")
    g.add_argument("--weights", type=Path, help="evo2: merged checkpoint .pt (default $HF_HOME/<model>.pt)")
    g.add_argument("--model-config", type=Path, help="evo2: architecture YAML of a custom checkpoint")
    g.add_argument("--allow-download", action="store_true", help="evo2: fetch missing weights from the hub")
    g.add_argument("--full-forward", action="store_true",
                   help="evo2: run every block and the logits instead of stopping at --layer")
    g.add_argument("--speedups", type=speedups, default=None, metavar="LIST",
                   help="evo2: any of conv,kernels,compile,graphs,fp8, or none; the list replaces the default "
                        "(conv: the one that sped up a GPU without moving the vectors, docs/benchmarks.md); "
                        "kernels, compile and fp8 move the vectors; what cannot run here is skipped with a warning")
    g.add_argument("--decoys", type=positive_int, default=1,
                   help="dinucleotide-shuffle decoys per window, embedded for the target-decoy q-values "
                        "(default %(default)s)")
    g.add_argument("--decoy-seed", type=nonnegative_int, default=1)


def speedups(text: str) -> tuple[str, ...]:
    try:
        return parse_speedups(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def backend_options(a) -> dict:
    """The options of the chosen backend only, so each backend sees what it understands."""
    opts = {"batch_size": a.batch_size} if a.batch_size else {}
    evo2_only = {"--weights": a.weights, "--model-config": a.model_config, "--allow-download": a.allow_download,
                 "--full-forward": a.full_forward, "--speedups": a.speedups}
    for name, value in evo2_only.items():
        if a.backend != "evo2" and value not in (None, False):
            raise UsageError(f"{name} is an option of the evo2 backend, not of {a.backend}; add --backend evo2")
    for name, value in {"--model": a.model, "--layer": a.layer, "--pooling": a.pooling}.items():
        if a.backend not in ("evo2", "hf") and value is not None:
            raise UsageError(f"{name} is an option of the evo2 and hf backends, not of {a.backend}; "
                             "add --backend evo2 or --backend hf")
    if a.k is not None and a.backend != "kmer":  # (kmer was the default backend until 2026-12)
        raise UsageError(f"--k is an option of the kmer backend, not of {a.backend}; add --backend kmer")
    if a.backend == "kmer":
        return {**opts, "k": 6 if a.k is None else a.k}
    if a.backend == "motifs":
        return {**opts, "motifs_source": a.motifs, "motif_pvalue": a.motif_pvalue}
    if a.backend == "evo2":
        return {**opts, "model": a.model or "evo2_7b", "layer": a.layer, "pooling": a.pooling or "mean",
                "weights": a.weights, "config": a.model_config, "allow_download": a.allow_download,
                "full_forward": a.full_forward, "speedups": a.speedups}
    if not a.model:
        raise UsageError("--backend hf needs --model DIR (a local Hugging Face model directory)")
    return {**opts, "model": a.model, "layer": a.layer, "pooling": a.pooling or "mean"}



# ---- motifs: the motifs backend, the check's motif control and evidence ----------------------

def add_motif_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("motifs (the motifs backend, the motif_cosine control, motif evidence)")
    g.add_argument("--motifs", default=motifs.DEFAULT_SOURCE,
                   help="a JASPAR release shipped with pyjaspar (CORE vertebrates) or a JASPAR/MEME motif file "
                        "(default %(default)s)")
    g.add_argument("--motif-pvalue", type=float, default=motifs.DEFAULT_PVALUE,
                   help="a site scores what random sequence reaches with this probability (default %(default)s)")



# ---- search ----------------------------------------------------------------------------------

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


def search_params(a) -> search.SearchParams:
    return search.SearchParams(a.top_k, a.correction, a.device, a.precision, a.memory_mb, a.index, a.nprobe)


def chunk_spec(spec: str | None) -> tuple[int, int] | None:
    if spec is None:
        return None
    chunk_range(spec, 1)  # validates I/N
    i, n = spec.split("/")
    return int(i), int(n)



# ---- BLAST -----------------------------------------------------------------------------------

def add_blast_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("BLAST")
    g.add_argument("--blast-args", default=blast.DEFAULT_ARGS, help="blastn options (default: %(default)s)")
    g.add_argument("--threads", type=positive_int, default=1, help="blastn threads (default %(default)s)")



# ---- check -----------------------------------------------------------------------------------

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


def check_params(a) -> check.CheckParams:
    return check.CheckParams(a.max_repeat_frac, a.max_blast_evalue, a.max_qvalue, a.min_cosine, a.sw_shuffles,
                             a.min_sw_pvalue, motifs=a.motifs, motif_pvalue=a.motif_pvalue,
                             motif_shuffles=a.motif_shuffles)



# ---- report ----------------------------------------------------------------------------------

def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--assembly", default="hg38", type=assembly_name,
                   help="UCSC assembly name for the browser links of report.html (default %(default)s; "
                        "hg38 also links to Ensembl)")


def assembly_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.]+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a UCSC assembly name (e.g. hg38, mm39)")
    return text



# ---- values ----------------------------------------------------------------------------------

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


def csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]
