"""Step 1, `evoscan windows`: cut fixed-size windows over gene bodies and promoters, or over regions.

Windows are tiled 5'->3' in gene (or region) orientation and their sequence is stored in that
orientation (reverse-complemented on the minus strand), case kept; coordinates are genomic,
0-based half-open, on the forward strand. Only full windows are cut; a region shorter than a
window gets one window centred on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from .errors import EvoscanError, UsageError
from .io import h5
from .io.bed import read_bed
from .io.fasta import LocusHeader, Record, parse_locus_header, read_fasta
from .io.gtf import GeneModel, all_gene_models, gene_models, read_gtf

COLUMNS = ["id", "gene", "chrom", "start", "end", "strand", "region",
           "gc", "cpg_oe", "n_frac", "softmask_frac"]
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


@dataclass(frozen=True)
class WindowParams:
    size: int = 512
    stride: int = 256
    promoter_upstream: int = 2000
    promoter_downstream: int = 500
    max_n_frac: float = 0.1

    def __post_init__(self):
        if self.size < 16:
            raise UsageError(f"--window-size must be at least 16 (got {self.size})")
        if self.stride < 1:
            raise UsageError(f"--stride must be at least 1 (got {self.stride}): windows step along the sequence")
        if self.promoter_upstream < 0 or self.promoter_downstream < 0:
            raise UsageError("--promoter-upstream and --promoter-downstream must be 0 or more (bases from the TSS "
                             f"each way; got {self.promoter_upstream} and {self.promoter_downstream})")
        if not 0 <= self.max_n_frac <= 1:
            raise UsageError(f"--max-n-frac must lie between 0 and 1 (got {self.max_n_frac})")


@dataclass
class WindowSet:
    table: pd.DataFrame  # one row per window, columns COLUMNS
    seqs: np.ndarray  # bytes, gene orientation, case kept
    params: WindowParams
    n_dropped_n: int = 0
    source: str = ""
    n_genes_skipped: int = 0  # genes (--genes all) or regions on chromosomes the genome lacks

    def __len__(self) -> int:
        return len(self.table)

    @property
    def digest(self) -> str:
        return window_digest(self.table, self.seqs)


def window_digest(table: pd.DataFrame, seqs: np.ndarray) -> str:
    """Identity of a window set: every step's output records it, every consumer checks it."""
    h = hashlib.sha256()
    for col in ("id", "chrom", "start", "end", "strand"):
        h.update("\x1f".join(map(str, table[col].tolist())).encode())
        h.update(b"\x1e")
    for r0 in range(0, len(seqs), 65_536):  # the same digest as all at once, without a copy of them all
        h.update(b"".join(seqs[r0:r0 + 65_536].tolist()))
    return h.hexdigest()[:32]


def chunk_range(spec: str | None, n: int) -> tuple[int, int]:
    """Rows [start, end) of chunk `I/N` (1-based) of n windows, near-equal sizes; all rows for None."""
    if spec is None:
        return 0, n
    try:
        i, parts = (int(x) for x in spec.split("/"))
    except ValueError:
        i, parts = 0, 0
    if not 1 <= i <= parts:
        raise UsageError(f"--chunk must look like I/N with 1 <= I <= N (got {spec!r})")
    return n * (i - 1) // parts, n * i // parts


def check_tiling(edges: list[tuple[int, int]], n: int, what: str) -> None:
    """Chunks (sorted by start) must cover rows 0..n exactly once."""
    if not edges or edges[0][0] != 0 or edges[-1][1] != n or any(a[1] != b[0] for a, b in zip(edges, edges[1:])):
        raise EvoscanError(f"{what} chunks cover windows {edges}, not 0..{n} exactly once; pass every chunk "
                           "file of the run, each once")


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


def tile_starts(length: int, size: int, stride: int) -> np.ndarray:
    """Offsets of all full windows over a sequence of `length`, first window at 0."""
    if length < size:
        return np.empty(0, dtype=np.int64)
    return np.arange(0, length - size + 1, stride, dtype=np.int64)


def sequence_stats(seqs: np.ndarray, block: int = 65_536) -> dict[str, np.ndarray]:
    """GC, CpG observed/expected, N and soft-mask fractions of equal-length sequences, `block` at a
    time (the base-by-base masks of a million windows at once took 2.5 GB)."""
    if len(seqs) == 0:
        return {name: np.empty(0, np.float32) for name in ("gc", "cpg_oe", "n_frac", "softmask_frac")}
    parts = [_block_stats(seqs[r0:r0 + block]) for r0 in range(0, len(seqs), block)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _block_stats(seqs: np.ndarray) -> dict[str, np.ndarray]:
    raw = np.frombuffer(b"".join(seqs.tolist()), dtype=np.uint8).reshape(len(seqs), -1)
    upper = raw & 0xDF  # ASCII upper case
    is_c, is_g, is_n = upper == ord("C"), upper == ord("G"), upper == ord("N")
    called = np.maximum(raw.shape[1] - is_n.sum(1), 1)
    c, g = is_c.sum(1), is_g.sum(1)
    cpg = (is_c[:, :-1] & is_g[:, 1:]).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cpg_oe = np.where(c * g > 0, cpg * called / (c * g), 0.0)
    return {
        "gc": ((c + g) / called).astype(np.float32),
        "cpg_oe": cpg_oe.astype(np.float32),
        "n_frac": (is_n.sum(1) / raw.shape[1]).astype(np.float32),
        "softmask_frac": ((raw >= ord("a")).sum(1) / raw.shape[1]).astype(np.float32),
    }


def promoter_interval(tss: int, strand: str, params: WindowParams) -> tuple[int, int]:
    """TSS - upstream .. TSS + downstream in gene orientation, as a forward-strand interval."""
    if strand == "+":
        return tss - params.promoter_upstream, tss + params.promoter_downstream
    return tss - params.promoter_downstream + 1, tss + params.promoter_upstream + 1


def classify_regions(centers: np.ndarray, strand: str, params: WindowParams,
                     model: GeneModel | None = None, tss: int | None = None) -> np.ndarray:
    """Region class of each window centre: promoter > exon > 5'UTR > 3'UTR > intron > flank.

    Without a gene model only the promoter is known (from a TSS), everything else is 'unannotated'.
    """
    regions = np.full(len(centers), "unannotated" if model is None else "flank", dtype=object)
    if model is not None:
        tss = model.tss
        inside = (centers >= model.start) & (centers < model.end)
        regions[inside] = "intron"
        ranks = {"exon": 3, "5'UTR": 2, "3'UTR": 1}
        best = np.zeros(len(centers), dtype=np.int8)
        names = {0: None, 3: "exon", 2: "5'UTR", 1: "3'UTR"}
        for tx in model.transcripts:
            in_exon = ((centers[:, None] >= tx.exons[:, 0]) & (centers[:, None] < tx.exons[:, 1])).any(1)
            if tx.coding is None:
                rank = np.where(in_exon, ranks["exon"], 0)
            else:
                lo, hi = tx.coding
                before, after = centers < lo, centers >= hi
                upstream, downstream = (before, after) if strand == "+" else (after, before)
                rank = np.select([upstream, downstream], [ranks["5'UTR"], ranks["3'UTR"]], ranks["exon"])
                rank = np.where(in_exon, rank, 0)
            best = np.maximum(best, rank)
        for rank, name in names.items():
            if name:
                regions[best == rank] = name
    if tss is not None:
        lo, hi = promoter_interval(tss, strand, params)
        regions[(centers >= lo) & (centers < hi)] = "promoter"
    return regions


def _cut(gene: str, chrom: str, offset: int, seq: str, strand: str, params: WindowParams,
         model: GeneModel | None, tss: int | None, region: str | None = None) -> tuple[dict, list[bytes]]:
    """Windows over `seq` (forward strand, starting at genome position `offset`), as columns: one
    DataFrame per gene would cost more than the cutting for the ~60k genes of a whole GTF."""
    starts = tile_starts(len(seq), params.size, params.stride)
    if strand == "-":  # tile from the gene's 5' end, which is the sequence's right end
        starts = (len(seq) - params.size - starts)
    seqs = [seq[s:s + params.size] for s in starts]
    if strand == "-":
        seqs = [reverse_complement(s) for s in seqs]
    genome_starts = offset + starts
    n = len(starts)
    columns = {
        "id": np.array([f"{gene}_w{i + 1}" for i in range(n)], dtype=object),
        "gene": np.full(n, gene, dtype=object), "chrom": np.full(n, chrom, dtype=object),
        "start": genome_starts, "end": genome_starts + params.size, "strand": np.full(n, strand, dtype=object),
        "region": (np.full(n, region, dtype=object) if region is not None else
                   classify_regions(genome_starts + params.size // 2, strand, params, model, tss)),
    }
    return columns, [s.encode("ascii") for s in seqs]


def _assemble(parts: list[tuple[dict, list[bytes]]], params: WindowParams, source: str,
              longest: int) -> WindowSet:
    parts = [p for p in parts if len(p[1])]
    if not parts:
        raise EvoscanError(
            f"window size {params.size} is longer than every sequence (longest: {longest} bp); "
            "use a smaller --window-size"
        )
    table = pd.DataFrame({col: np.concatenate([p[0][col] for p in parts]) for col in parts[0][0]})
    seqs = np.array([s for p in parts for s in p[1]], dtype=f"S{params.size}")
    for name, values in sequence_stats(seqs).items():
        table[name] = values
    n_frac = table["n_frac"].to_numpy()
    keep = (n_frac <= params.max_n_frac) & (n_frac < 1)  # an all-N window says nothing, whatever the limit
    if not keep.any():
        raise EvoscanError(f"{source}: every window is all N or has more than {params.max_n_frac:.0%} N; "
                           "nothing to scan (is the sequence hard-masked? use the soft-masked or unmasked one)")
    return WindowSet(table[keep].reset_index(drop=True)[COLUMNS], seqs[keep], params,
                     n_dropped_n=int((~keep).sum()), source=source)


def require_two_groups(ws: WindowSet) -> None:
    """The search pairs windows of different genes (or regions): with one there is nothing to pair,
    so `run`, `mask` and `embed` refuse it before any work rather than at the search. (`windows`
    only cuts, cheaply; it writes the file and says that the next steps will refuse it.)"""
    groups = ws.table["gene"].unique()
    if len(groups) < 2:
        raise EvoscanError(f"{ws.source or 'the input'}: every window belongs to one gene or region "
                           f"({groups[0] if len(groups) else 'none'}); evoscan pairs windows of different genes, "
                           "give at least two")


def require_two_genes(genes: list[str] | None) -> None:
    """`run` refuses a gene list of one gene before the genome is read (see `require_two_groups`)."""
    if genes and genes != ["all"] and len(set(genes)) == 1:
        raise UsageError(f"--genes names one gene ({genes[0]}); evoscan pairs windows of different genes, "
                         "give at least two (or all)")


def windows_from_loci(records: Iterable[Record], params: WindowParams,
                      models: dict[str, GeneModel] | None = None, source: str = "") -> WindowSet:
    """Windows over whole loci (one FASTA record per gene, named by the gene)."""
    parts, longest = [], 0
    for record in records:
        header: LocusHeader = parse_locus_header(record, source)
        model = models.get(record.name) if models else None
        strand = model.strand if model else header.strand
        longest = max(longest, len(record.seq))
        parts.append(_cut(record.name, header.chrom, header.start, record.seq, strand, params,
                          model, header.tss))
    return _assemble(parts, params, source, longest)


def _missing_chromosomes(wanted: set[str], seen: dict[str, None], what: str, source: str,
                         skip: bool) -> set[str]:
    """Chromosomes named in the GTF/BED that the genome lacks: skipped when `skip`, else an error.

    None of them present is always an error: the names differ (chr10 vs 10) or the assemblies do.
    """
    missing = wanted - seen.keys()
    if wanted and missing == wanted:
        other = {c: c[3:] if c.startswith("chr") else "chr" + c for c in wanted}
        pair = next(((c, other[c]) for c in sorted(wanted) if other[c] in seen), None)
        hint = "the chromosome names differ" if pair else "the chromosome names differ, or the assemblies do"
        pair = pair or (sorted(wanted)[0], next(iter(seen)))
        raise EvoscanError(f"{source}: no chromosome of the {what} is in the genome FASTA: {hint} "
                           f"({what} {pair[0]!r}, genome FASTA {pair[1]!r})")
    if missing and not skip:
        raise EvoscanError(f"{source}: chromosome(s) {', '.join(sorted(missing))} named in the {what} "
                           "are not in the genome FASTA")
    return missing


def windows_from_genome(records: Iterable[Record], models: dict[str, GeneModel], params: WindowParams,
                        source: str = "", skip_missing: bool = False) -> WindowSet:
    """Windows over each gene body plus its promoter, cut from a genome streamed one chromosome at a time.

    Genes on chromosomes the genome lacks are an error, or, with `skip_missing` (--genes all, where a
    GTF's scaffolds and patches are expected to miss), skipped and counted.
    """
    by_chrom: dict[str, list[GeneModel]] = {}
    for model in models.values():
        by_chrom.setdefault(model.chrom, []).append(model)
    parts, longest, seen, past_end = [], 0, {}, []  # seen: record names, in order
    for record in records:
        for model in by_chrom.get(record.name, []):
            if model.end > len(record.seq):  # (only a promoter may reach past a chromosome's end: clipped)
                past_end.append(f"gene {model.name} ({record.name}:{model.start + 1}-{model.end}) ends past the end "
                                f"of {record.name} in {source} ({len(record.seq)} bp)")
                continue
            lo, hi = promoter_interval(model.tss, model.strand, params)
            start, end = max(0, min(model.start, lo)), min(len(record.seq), max(model.end, hi))
            longest = max(longest, end - start)
            parts.append(_cut(model.name, record.name, start, record.seq[start:end], model.strand,
                              params, model, model.tss))
        seen[record.name] = None
        if by_chrom.keys() <= seen.keys():
            break
    if past_end:  # (said after the chromosomes were read, so a damaged FASTA is named first)
        more = f" (and {len(past_end) - 1} more gene(s))" if len(past_end) > 1 else ""
        raise EvoscanError(f"{past_end[0]}{more}; is the GTF for another assembly?")
    missing = _missing_chromosomes(set(by_chrom), seen, "GTF", source, skip_missing)
    order = {name: i for i, name in enumerate(models)}  # the user's gene order, not the genome's
    parts.sort(key=lambda p: order[p[0]["gene"][0]] if len(p[1]) else 0)
    ws = _assemble(parts, params, source, longest)
    ws.n_genes_skipped = sum(len(by_chrom[c]) for c in missing)
    return ws


def region_names(regions: pd.DataFrame) -> pd.Series:
    """Group of each region: its BED name, else `chrom:start-end` (1-based, as samtools writes regions);
    `name|chrom:start-end` where names repeat, so every region stays its own group."""
    coords = regions["chrom"] + ":" + (regions["start"] + 1).astype(str) + "-" + regions["end"].astype(str)
    name = regions["name"]
    names = name.where(~name.duplicated(keep=False), name + "|" + coords).fillna(coords)
    repeat = names.groupby(names).cumcount()  # the same interval on both strands
    return names.where(repeat == 0, names + "#" + (repeat + 1).astype(str))


def region_span(start: int, end: int, chrom_length: int, size: int) -> tuple[int, int] | None:
    """The interval to tile for a region: the region itself, or, when it is shorter than a window, one
    window centred on it and kept inside the chromosome; None if the chromosome is shorter than a window."""
    if end - start >= size:
        return start, end
    if chrom_length < size:
        return None
    left = min(max(0, (start + end) // 2 - size // 2), chrom_length - size)
    return left, left + size


def windows_from_regions(records: Iterable[Record], regions: pd.DataFrame, params: WindowParams,
                         source: str = "") -> WindowSet:
    """Windows over each region of a BED (each region its own group, class 'region'), cut from a genome
    streamed one chromosome at a time; regions on chromosomes the genome lacks are skipped and counted."""
    regions = regions.assign(group=region_names(regions).to_numpy())
    by_chrom = dict(tuple(regions.groupby("chrom", sort=False)))
    parts, longest, seen = [], 0, {}  # seen: record names, in order
    for record in records:
        for r in by_chrom[record.name].itertuples() if record.name in by_chrom else ():
            if r.end > len(record.seq):
                raise EvoscanError(f"region {r.group} ends past the end of {record.name} in {source} "
                                   f"({len(record.seq)} bp); is the BED for another assembly?")
            span = region_span(r.start, r.end, len(record.seq), params.size)
            if span is None:
                continue
            start, end = span
            longest = max(longest, end - start)
            parts.append(_cut(r.group, record.name, start, record.seq[start:end], r.strand, params,
                              None, None, region="region"))
        seen[record.name] = None
        if by_chrom.keys() <= seen.keys():
            break
    missing = _missing_chromosomes(set(by_chrom), seen, "BED", source, skip=True)
    order = {name: i for i, name in enumerate(regions["group"])}  # the BED's order
    parts.sort(key=lambda p: order[p[0]["gene"][0]])
    ws = _assemble(parts, params, source, longest)
    ws.n_genes_skipped = int(regions["chrom"].isin(missing).sum())
    return ws


def make_windows(params: WindowParams, fasta=None, genome=None, gtf=None, genes: list[str] | None = None,
                 ambiguous_as_n: bool = False, regions=None, gene_type: str | None = None) -> WindowSet:
    """Windows from a loci FASTA (optionally annotated by a GTF), from a genome + GTF + gene list (or
    `all` genes, optionally of one gene type), or from a genome + regions BED."""
    all_genes = genes == ["all"]
    if gene_type is not None and (not all_genes or gtf is None):
        raise UsageError("--gene-type needs --genes all and --gtf")
    if regions is not None:
        if genome is None or fasta is not None or gtf is not None or genes:
            raise UsageError("--regions needs --genome and takes no --fasta, --gtf or --genes")
        table = read_bed(regions).drop_duplicates(ignore_index=True)
        return windows_from_regions(read_fasta(genome, ambiguous_as_n), table, params, source=str(genome))
    if (fasta is None) == (genome is None):
        raise UsageError("give either --fasta (loci) or --genome with --gtf and --genes (or --regions)")
    if genome is not None:
        if gtf is None or not genes:
            raise UsageError("--genome needs --gtf and --genes (gene names, or all), or --regions")
        table = read_gtf(gtf)
        models = all_gene_models(table, gene_type, gtf) if all_genes else gene_models(table, genes, gtf)
        return windows_from_genome(read_fasta(genome, ambiguous_as_n), models, params, source=str(genome),
                                   skip_missing=all_genes)
    records = list(read_fasta(fasta, ambiguous_as_n))
    models = None
    if gtf is not None:
        table = read_gtf(gtf)
        if all_genes:
            models = all_gene_models(table, gene_type, gtf)
        else:
            models = gene_models(table, genes or [r.name for r in records], gtf)
        records = [r for r in records if r.name in models]
        if not records:
            raise EvoscanError(f"{fasta}: no record is named after a gene of {gtf}"
                               + (f" of type {gene_type!r}" if gene_type else ""))
    return windows_from_loci(records, params, models, source=str(fasta))


# ---- HDF5 I/O --------------------------------------------------------------------------------

def write_windows(path, ws: WindowSet) -> None:
    data = {col: ws.table[col].to_numpy() for col in COLUMNS}
    data["seq"] = ws.seqs
    attrs = h5.provenance("windows", ws.digest, asdict(ws.params))
    attrs.update(n_dropped_n=ws.n_dropped_n, source=ws.source, n_windows=len(ws))
    h5.write_h5(path, data, attrs)


def read_windows(path) -> WindowSet:
    with h5.open_checked(path, "windows", datasets=(*COLUMNS, "seq")) as f:
        table = pd.DataFrame({
            col: h5.read_strings(f[col]) if f[col].dtype.kind == "O" else f[col][()]
            for col in COLUMNS
        })
        seqs = f["seq"][()]
        params = WindowParams(**h5.params_of(f))
        ws = WindowSet(table, seqs, params, int(f.attrs["n_dropped_n"]), str(f.attrs["source"]))
        if ws.digest != f.attrs["window_digest"]:
            raise EvoscanError(f"{path}: window table does not match its recorded digest; the file is corrupt")
        return ws
