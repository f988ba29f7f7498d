"""FASTA input (plain or gzipped, any line width, strictly validated, case kept) and the FASTA the
external tools read."""

from __future__ import annotations

import contextlib
import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO

import numpy as np
from Bio.SeqIO.FastaIO import SimpleFastaParser

from ..errors import EvoscanError

IUPAC_AMBIGUOUS = "RYKMSWBDHVrykmswbdhv"
_VALID = np.zeros(256, dtype=bool)
_VALID[np.frombuffer(b"ACGTNacgtn", dtype=np.uint8)] = True
_TO_N = str.maketrans(IUPAC_AMBIGUOUS, "N" * 10 + "n" * 10)


@dataclass(frozen=True)
class Record:
    name: str
    description: str
    seq: str


def open_text(path: str | Path) -> TextIO:
    """Open a FASTA/GTF/BED file for reading as text, gunzipping when the file is gzipped."""
    path = Path(path)
    if not path.is_file():
        raise EvoscanError(f"{path}: {'a directory; give a file' if path.is_dir() else 'no such file'}")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt")
    return open(path, "rt")


@contextlib.contextmanager
def reading(path, what: str) -> Iterator[None]:
    """Turn what a damaged file raises while it is read (a gzip stream cut short or corrupt, bytes
    that are not text) into one EvoscanError naming the file."""
    try:
        yield
    except EOFError:
        raise EvoscanError(f"{path}: the gzip data ends early (truncated file); copy or download it again") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise EvoscanError(f"{path}: corrupt gzip data ({err}); copy or download it again") from None
    except UnicodeDecodeError:
        raise EvoscanError(f"{path}: not a text {what} file (binary data); expected {what}, "
                           "plain or gzipped") from None


def _first_line(handle: TextIO) -> str:
    for line in handle:
        if line.strip():
            return line
    return ""


def check_letters(name: str, seq: str, path, ambiguous_as_n: bool) -> str:
    """Return `seq` (ambiguity codes as N if asked) or raise naming the first bad letter."""
    if ambiguous_as_n:
        seq = seq.translate(_TO_N)
    codes = np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)
    bad = np.flatnonzero(~_VALID[codes])
    if bad.size:
        pos = int(bad[0])
        letter = seq[pos]
        hint = (
            " (IUPAC ambiguity codes can be read as N with --ambiguous-as-n)"
            if letter in IUPAC_AMBIGUOUS and not ambiguous_as_n
            else ""
        )
        raise EvoscanError(
            f"{path}: record {name!r} has {letter!r} at position {pos + 1}; "
            f"only A, C, G, T and N are allowed in DNA sequences{hint}"
        )
    return seq


def read_fasta(path: str | Path, ambiguous_as_n: bool = False) -> Iterator[Record]:
    """Yield validated records; raise EvoscanError on anything that is not clean DNA FASTA."""
    with open_text(path) as handle, reading(path, "FASTA"):
        first = _first_line(handle)
        if not first:
            raise EvoscanError(f"{path}: file is empty; expected DNA sequences in FASTA format")
        if not first.startswith(">"):
            raise EvoscanError(
                f"{path}: not FASTA (first line does not start with '>'): {first.strip()[:40]!r}"
            )
        handle.seek(0)
        seen: set[str] = set()
        for title, seq in SimpleFastaParser(handle):
            name = title.split(maxsplit=1)[0] if title.strip() else ""
            if not name:
                raise EvoscanError(f"{path}: a FASTA header has no name ('>' alone)")
            if name in seen:
                raise EvoscanError(f"{path}: duplicate sequence id {name!r}; ids must be unique")
            seen.add(name)
            if not seq:
                raise EvoscanError(f"{path}: record {name!r} has no sequence (a truncated file?)")
            yield Record(name, title, check_letters(name, seq, path, ambiguous_as_n))


_REGION = re.compile(r"^(?P<chrom>[^:\s]+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")


@dataclass(frozen=True)
class LocusHeader:
    """What a loci FASTA header says about where the sequence lies (0-based, half-open)."""

    chrom: str
    start: int
    strand: str
    tss: int | None  # 0-based position of the first transcribed base, if the header names one


def write_fasta_upper(path: str | Path, seqs: Sequence[bytes], index: Iterable[int] | None = None) -> None:
    """Sequences (those at `index`, default all) as FASTA named w<index>, upper case: the tools that
    read it (dustmasker, trf, BLAST) must see the bases, not the soft-masking."""
    with open(path, "wb") as out:
        for i in range(len(seqs)) if index is None else index:
            out.write(b">w%d\n%s\n" % (i, seqs[i].upper()))


def parse_locus_header(record: Record, path="") -> LocusHeader:
    """Read `chrN:start-end` (1-based inclusive), `gene_strand=` and `tss=`/`lrg_t1_tss=` tokens.

    A header without coordinates places the sequence on its own name from position 0, + strand.
    """
    chrom, start, strand, tss = record.name, 0, "+", None
    for token in record.description.split()[1:]:
        match = _REGION.match(token)
        if match:
            chrom = match["chrom"]
            start = int(match["start"].replace(",", "")) - 1
            end = int(match["end"].replace(",", ""))
            if end - start != len(record.seq):
                raise EvoscanError(
                    f"{path or 'FASTA'}: record {record.name!r}: header says {token} ({end - start} bp) "
                    f"but the sequence has {len(record.seq)} bp; is the file truncated?"
                )
        key, _, value = token.partition("=")
        if key in ("gene_strand", "strand") and value in ("+", "-"):
            strand = value
        elif key in ("tss", "lrg_t1_tss") and value.isdigit():
            tss = int(value) - 1
    return LocusHeader(chrom, start, strand, tss)
