"""Bad input through the real CLI, case by case: one line on stderr naming the file (and the record
or line) and what to do, exit status 1 (2 for a usage error), no traceback, nothing partial left
behind, and the refusal before the expensive steps.

The inputs are built here: three random 1.5 kb loci, a two-chromosome genome with a GTF and a BED,
and damaged variants of each. (Cases covered elsewhere: empty, not-FASTA, duplicate id and bad
letter of a loci FASTA, gene not found, window longer than every sequence, intermediates of
another window set or kind, a missing output directory: tests/test_cli_errors.py.)
"""

import contextlib
import gzip
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import evoscan, random_dna, write_fasta
from test_hf_backend import save_tiny_dna_bert

W = ["--window-size", "256", "--stride", "128"]
LOCI = ["g0", "g1", "g2"]
GENES = ["--genes", "GENE0,GENE2"]
TINY_JASPAR = """>MA0001.1 TESTA
A [ 10  0  0  0 10  2 ]
C [  0 10  0  0  0  3 ]
G [  0  0 10  0  0  3 ]
T [  0  0  0 10  0  2 ]
>MA0002.1 TESTB
A [  0  0 10 10  0 ]
C [ 10  0  0  0  0 ]
G [  0 10  0  0  0 ]
T [  0  0  0  0 10 ]
"""


def refused(proc, *messages, status=1) -> str:
    """The CLI refused: the exit status, one line, no traceback, and every message in it."""
    err = proc.stderr.strip()
    assert proc.returncode == status, err
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for message in messages:
        assert message in err, err
    return err


def listing(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*"))


def cli(*args, env=None) -> subprocess.CompletedProcess:
    """The real CLI with a changed environment (PATH without a tool, SOURCE_DATE_EPOCH)."""
    return subprocess.run([sys.executable, "-m", "evoscan.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def gzip_variants(folder: Path, name: str, text: str) -> None:
    """name.trunc.gz (a gzip cut in half) and name.corrupt.gz (two bytes flipped mid-stream)."""
    data = gzip.compress(text.encode(), mtime=0)
    (folder / f"{name}.trunc.gz").write_bytes(data[:len(data) // 2])
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0xFF
    bad[len(data) // 2 + 1] ^= 0xFF
    (folder / f"{name}.corrupt.gz").write_bytes(bytes(bad))


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """The good inputs and their damaged variants, as paths."""
    tmp = tmp_path_factory.mktemp("robust")
    rng = np.random.default_rng(11)
    loci = {name: random_dna(rng, 1500) for name in LOCI}
    write_fasta(tmp / "loci.fa", loci)
    text = (tmp / "loci.fa").read_text()
    (tmp / "loci_crlf.fa").write_bytes(text.replace("\n", "\r\n").encode())
    gzip_variants(tmp, "loci.fa", text)
    write_fasta(tmp / "lower.fa", {k: v.lower() for k, v in loci.items()})
    write_fasta(tmp / "all_n.fa", {k: "N" * 1500 for k in loci})
    write_fasta(tmp / "mostly_n.fa", {k: v[:700] + "N" * 800 for k, v in loci.items()})
    write_fasta(tmp / "one.fa", {"g0": loci["g0"]})
    genome = {"chr10": random_dna(rng, 8000), "chr11": random_dna(rng, 8000)}
    write_fasta(tmp / "genome.fa", genome)
    write_fasta(tmp / "genome_ensembl.fa", {"10": genome["chr10"], "11": genome["chr11"]})
    (tmp / "genome_dup.fa").write_text(">chr10\nACGT\n" + (tmp / "genome.fa").read_text())
    gzip_variants(tmp, "genome.fa", (tmp / "genome.fa").read_text())
    gtf = ""
    for i, (chrom, start, end, strand) in enumerate([("chr10", 1001, 3000, "+"), ("chr10", 5001, 6000, "-"),
                                                      ("chr11", 2001, 5000, "+")]):
        attrs = f'gene_id "G{i}"; gene_name "GENE{i}"; transcript_id "T{i}";'
        for feature in ("gene", "transcript", "exon"):
            gtf += f"{chrom}\tt\t{feature}\t{start}\t{end}\t.\t{strand}\t.\t{attrs}\n"
    (tmp / "genes.gtf").write_text(gtf)
    (tmp / "genes_crlf.gtf").write_bytes(gtf.replace("\n", "\r\n").encode())
    gzip_variants(tmp, "genes.gtf", gtf * 20)
    bed = "chr10\t100\t2000\tr1\nchr11\t500\t3000\tr2\n"
    (tmp / "regions.bed").write_text(bed)
    (tmp / "regions_crlf.bed").write_bytes(bed.replace("\n", "\r\n").encode())
    (tmp / "one.bed").write_text("chr10\t100\t2000\tr1\n")
    gzip_variants(tmp, "regions.bed", bed * 50)
    (tmp / "tiny.jaspar").write_text(TINY_JASPAR)
    return types.SimpleNamespace(tmp=tmp, gtf=gtf, **{p.name.replace(".", "_"): p for p in tmp.iterdir()})


@pytest.fixture
def out(tmp_path):
    """An empty output folder; each test checks it stays empty when the CLI refuses."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# ---- FASTA, GTF, BED ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,content,messages", [
    ("loci.fa.trunc.gz", None, ["the gzip data ends early (truncated file); copy or download it again"]),
    ("loci.fa.corrupt.gz", None, ["corrupt gzip data"]),
    ("empty.fa.gz", gzip.compress(b"", mtime=0), ["file is empty"]),
    ("binary.fa", b"\x89HDF\r\n\x1a\n\xff\xfe" + bytes(range(256)), ["not a text FASTA file (binary data)"]),
    ("iupac.fa", b">g0\nACGTRACGT\n>g1\nACGT\n", ["record 'g0' has 'R' at position 5", "--ambiguous-as-n"]),
    ("gap.fa", b">g0\nACGT-ACGT\n", ["record 'g0' has '-' at position 5", "only A, C, G, T and N"]),
    ("accent.fa", ">g0\nACGTéACGT\n".encode(), ["record 'g0' has 'é' at position 5"]),
    ("cut_record.fa", b">g0\nACGTACGT\n>g1\n", ["record 'g1' has no sequence (a truncated file?)"]),
    ("cut_coordinates.fa", b">g0 chr1:1001-2000\n" + b"ACGT" * 150 + b"\n>g1 chr1:5001-5400\n" + b"ACGT" * 100,
     ["record 'g0': header says chr1:1001-2000 (1000 bp) but the sequence has 600 bp; is the file truncated?"]),
])
def test_bad_loci_fasta(d, out, name, content, messages):
    path = d.tmp / name if content is None else out.parent / name
    if content is not None:
        path.write_bytes(content)
    refused(evoscan("windows", "--fasta", path, *W, "-o", out / "w.h5"), path.name, *messages)
    assert listing(out) == []


def test_ambiguity_codes_read_as_n_when_asked(tmp_path):
    fa = write_fasta(tmp_path / "iupac.fa", {"g0": "ACGTRYKM" * 40, "g1": "ACGT" * 80})
    proc = evoscan("windows", "--fasta", fa, "--ambiguous-as-n", "--max-n-frac", "0.6", *W, "-o", tmp_path / "w.h5")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "w.h5") as f:
        assert b"R" not in f["seq"][0] and f["n_frac"][0] == pytest.approx(0.5)


@pytest.mark.parametrize("genome,messages", [
    ("genome_fa_trunc_gz", ["the gzip data ends early"]),
    ("genome_fa_corrupt_gz", ["corrupt gzip data"]),
    ("genome_dup_fa", ["duplicate sequence id 'chr10'; ids must be unique"]),
])
def test_bad_genome_fasta(d, out, genome, messages):
    path = getattr(d, genome)
    refused(evoscan("windows", "--genome", path, "--gtf", d.genes_gtf, *GENES, *W, "-o", out / "w.h5"),
            path.name, *messages)
    assert listing(out) == []


@pytest.mark.parametrize("name,extra,messages", [
    ("genes.gtf.trunc.gz", None, ["the gzip data ends early"]),
    ("genes.gtf.corrupt.gz", None, ["corrupt gzip data"]),
    ("empty.gtf", "", ["file is empty"]),
    ("short_line.gtf", "chr10\tt\texon\t100\n", ["line 10: 4 tab-separated column(s), a GTF line has 9"]),
    ("bad_start.gtf", 'chr10\tt\texon\tabc\t200\t.\t+\t.\tgene_id "X";\n',
     ["line 10: start and end (columns 4 and 5) must be integers (got 'abc', '200')"]),
    ("reversed.gtf", 'chr10\tt\texon\t500\t100\t.\t+\t.\tgene_id "X";\n',
     ["line 10: start 500 and end 100 are not 1-based with start <= end"]),
    ("fasta_as.gtf", ">g0\nACGT\n", ["line 1: 1 tab-separated column(s), a GTF line has 9"]),
])
def test_bad_gtf(d, out, name, extra, messages):
    path = d.tmp / name
    if extra is not None:
        path = out.parent / name
        path.write_text("" if name == "empty.gtf" else extra if name.startswith("fasta") else d.gtf + extra)
    refused(evoscan("windows", "--genome", d.genome_fa, "--gtf", path, *GENES, *W, "-o", out / "w.h5"),
            path.name, *messages)
    assert listing(out) == []


@pytest.mark.parametrize("name,content,messages", [
    ("regions.bed.trunc.gz", None, ["the gzip data ends early"]),
    ("regions.bed.corrupt.gz", None, ["corrupt gzip data"]),
    ("empty.bed", "", ["no regions (expected BED lines"]),
    ("fasta_as.bed", ">g0\nACGT\n", ["line 1: a BED line needs at least chrom, start and end"]),
])
def test_bad_bed(d, out, name, content, messages):
    path = d.tmp / name
    if content is not None:
        path = out.parent / name
        path.write_text(content)
    refused(evoscan("windows", "--genome", d.genome_fa, "--regions", path, *W, "-o", out / "w.h5"),
            path.name, *messages)
    assert listing(out) == []


def test_windows_line_endings_give_the_same_windows(d, tmp_path):
    """CRLF FASTA, GTF and BED are read as their LF originals: same windows, same region classes."""
    made = {}
    for name, args in {"loci": ["--fasta", d.loci_fa], "loci_crlf": ["--fasta", d.loci_crlf_fa],
                       "gtf": ["--genome", d.genome_fa, "--gtf", d.genes_gtf, *GENES],
                       "gtf_crlf": ["--genome", d.genome_fa, "--gtf", d.genes_crlf_gtf, *GENES],
                       "bed": ["--genome", d.genome_fa, "--regions", d.regions_bed],
                       "bed_crlf": ["--genome", d.genome_fa, "--regions", d.regions_crlf_bed]}.items():
        proc = evoscan("windows", *args, *W, "-o", tmp_path / f"{name}.h5")
        assert proc.returncode == 0, proc.stderr
        with h5py.File(tmp_path / f"{name}.h5") as f:
            made[name] = (f.attrs["window_digest"], f["region"][()].tolist(), f["id"][()].tolist())
    for name in ("loci", "gtf", "bed"):
        assert made[name] == made[f"{name}_crlf"], name
    assert b"promoter" in made["gtf"][1] and b"\r" not in b"".join(made["gtf"][2])


def test_all_n_refused_and_mostly_n_windows_dropped_and_counted(d, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    refused(evoscan("windows", "--fasta", d.all_n_fa, *W, "-o", out / "w.h5"),
            "all_n.fa: every window is all N or has more than 10% N; nothing to scan")
    assert listing(out) == []
    for limit, dropped in (("0.1", 18), ("1", 12)):  # 1: an all-N window is dropped all the same
        proc = evoscan("windows", "--fasta", d.mostly_n_fa, "--max-n-frac", limit, *W, "-o", out / "w.h5")
        assert proc.returncode == 0, proc.stderr
        assert f"({dropped} dropped for N)" in proc.stderr
        with h5py.File(out / "w.h5") as f:
            assert len(f["n_frac"]) == 30 - dropped and f["n_frac"][()].max() <= min(float(limit), 0.99)


def test_lowercase_only_input_is_refused_before_embedding(d, tmp_path):
    refused(evoscan("run", "--fasta", d.lower_fa, *W, "--outdir", tmp_path / "results"),
            "lower.fa: every base is lowercase, so soft-masking marks every window a repeat",
            "uppercase it or leave softmask out of --mask-sources")
    assert listing(tmp_path) == []
    assert evoscan("windows", "--fasta", d.lower_fa, *W, "-o", tmp_path / "w.h5").returncode == 0
    refused(evoscan("mask", "--windows", tmp_path / "w.h5", "-o", tmp_path / "m.h5"), "every base is lowercase")
    proc = evoscan("mask", "--windows", tmp_path / "w.h5", "--mask-sources", "dust", "-o", tmp_path / "m.h5")
    assert proc.returncode == 0, proc.stderr  # what the message says to do works
    assert listing(tmp_path) == ["m.h5", "w.h5"]


@pytest.mark.parametrize("inputs,messages", [
    (["--gtf", "genes_gtf", *GENES], ["no chromosome of the GTF is in the genome FASTA: the chromosome names differ",
                                      "(GTF 'chr10', genome FASTA '10')"]),
    (["--regions", "regions_bed"], ["no chromosome of the BED is in the genome FASTA: the chromosome names differ",
                                    "(BED 'chr10', genome FASTA '10')"]),
])
def test_chromosome_names_that_differ_say_so(d, out, inputs, messages):
    args = [getattr(d, a) if hasattr(d, a) else a for a in inputs]
    refused(evoscan("windows", "--genome", d.genome_ensembl_fa, *args, *W, "-o", out / "w.h5"),
            "genome_ensembl.fa", *messages)
    assert listing(out) == []


@pytest.mark.parametrize("options,message", [
    (["--stride", "0"], "--stride must be at least 1 (got 0)"),
    (["--stride", "-128"], "--stride must be at least 1 (got -128)"),
    (["--stride", "abc"], "argument --stride: invalid int value: 'abc'"),
    (["--window-size", "8"], "--window-size must be at least 16 (got 8)"),
    (["--max-n-frac", "2"], "--max-n-frac must lie between 0 and 1 (got 2.0)"),
    (["--top-k", "0"], "--top-k must be at least 1"),
    (["--decoys", "0"], "argument --decoys: must be at least 1 (got 0)"),
    (["--mask-sources", "softmask,rm"], "unknown mask source(s) rm; choose from softmask, dust, trf"),
    (["--k", "4"], "--k is an option of the kmer backend, not of motifs; add --backend kmer"),  # (the default)
    (["--weights", "random"], "--weights is an option of the evo2 backend, not of motifs; add --backend evo2"),
    (["--backend", "kmer", "--full-forward"], "--full-forward is an option of the evo2 backend, not of kmer"),
    (["--model-config", "arch.yml"], "--model-config is an option of the evo2 backend, not of motifs"),
    (["--allow-download"], "--allow-download is an option of the evo2 backend, not of motifs"),
    (["--speedups", "conv"], "--speedups is an option of the evo2 backend, not of motifs"),
    (["--layer", "blocks.3"], "--layer is an option of the evo2 and hf backends, not of motifs; add --backend evo2 or"),
    (["--backend", "kmer", "--pooling", "last"], "--pooling is an option of the evo2 and hf backends, not of kmer"),
])
def test_usage_errors_exit_2_before_any_work(d, tmp_path, options, message):
    refused(evoscan("run", "--fasta", d.loci_fa, *W, *options, "--outdir", tmp_path / "results"), message, status=2)
    assert listing(tmp_path) == []


# ---- one gene -----------------------------------------------------------------------------------

def test_one_gene_is_refused_by_run_before_any_work(d, tmp_path):
    refused(evoscan("run", "--genome", d.genome_fa, "--gtf", d.genes_gtf, "--genes", "GENE0", *W,
                    "--outdir", tmp_path / "results"),
            "--genes names one gene (GENE0); evoscan pairs windows of different genes, give at least two", status=2)
    refused(evoscan("run", "--fasta", d.one_fa, *W, "--outdir", tmp_path / "results"),
            "one.fa: every window belongs to one gene or region (g0)")
    assert listing(tmp_path) == []


def test_one_region_windows_file_is_refused_by_the_next_steps(d, tmp_path):
    proc = evoscan("windows", "--genome", d.genome_fa, "--regions", d.one_bed, *W, "-o", tmp_path / "w.h5")
    assert proc.returncode == 0 and "one group only: mask, embed and run refuse it" in proc.stderr
    for step in ("mask", "embed"):
        refused(evoscan(step, "--windows", tmp_path / "w.h5", "-o", tmp_path / f"{step}.h5"),
                "genome.fa: every window belongs to one gene or region (r1)")
    assert listing(tmp_path) == ["w.h5"]


# ---- HDF5 intermediates -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def steps(d, tmp_path_factory):
    """windows, masks, embeddings (k=4, and halves with k=4 and k=5), neighbours and scores of the loci."""
    tmp = tmp_path_factory.mktemp("steps")
    w = tmp / "windows.h5"
    for args in (["windows", "--fasta", d.loci_fa, *W, "-o", w],
                 ["mask", "--windows", w, "--mask-sources", "softmask", "-o", tmp / "masks.h5"],
                 ["embed", "--windows", w, "--backend", "kmer", "--k", "4", "-o", tmp / "embeddings.h5"],
                 ["embed", "--windows", w, "--backend", "kmer", "--k", "4", "--chunk", "1/2", "-o", tmp / "k4.part1.h5"],
                 ["embed", "--windows", w, "--backend", "kmer", "--k", "5", "--chunk", "2/2", "-o", tmp / "k5.part2.h5"],
                 ["search", "--windows", w, "--embeddings", tmp / "embeddings.h5", "-o", tmp / "neighbours.h5"],
                 ["check", "--windows", w, "--masks", tmp / "masks.h5", "--neighbours", tmp / "neighbours.h5",
                  "--motifs", d.tiny_jaspar, "--sw-shuffles", "3", "--motif-shuffles", "3", "-o", tmp / "scores.h5"]):
        proc = evoscan(*args)
        assert proc.returncode == 0, proc.stderr
    return tmp


def damaged_copy(source: Path, dest: Path, change) -> Path:
    shutil.copy(source, dest)
    if change == "truncate":
        dest.write_bytes(source.read_bytes()[:source.stat().st_size // 2])
    else:
        with h5py.File(dest, "a") as f:
            change(f)
    return dest


def test_truncated_hdf5_is_refused(steps, out):
    w = damaged_copy(steps / "windows.h5", out.parent / "windows.h5", "truncate")
    refused(evoscan("mask", "--windows", w, "-o", out / "m.h5"),
            "windows.h5: truncated or damaged HDF5 file; make it again with the step that wrote it")
    e = damaged_copy(steps / "embeddings.h5", out.parent / "embeddings.h5", "truncate")
    refused(evoscan("search", "--windows", steps / "windows.h5", "--embeddings", e, "-o", out / "n.h5"),
            "embeddings.h5: truncated or damaged HDF5 file")
    assert listing(out) == []


def test_hdf5_of_another_version_or_missing_data_is_refused(steps, out):
    def old_schema(f):
        f.attrs["schema"] = "evoscan.embeddings/1"

    e = damaged_copy(steps / "embeddings.h5", out.parent / "old.h5", old_schema)
    refused(evoscan("search", "--windows", steps / "windows.h5", "--embeddings", e, "-o", out / "n.h5"),
            "old.h5: an evoscan embeddings file of another format version (evoscan.embeddings/1; "
            "this evoscan reads evoscan.embeddings/2); rerun `evoscan embed` with this version")
    w = damaged_copy(steps / "windows.h5", out.parent / "noseq.h5", lambda f: f.__delitem__("seq"))
    refused(evoscan("embed", "--windows", w, "-o", out / "e.h5"),
            "noseq.h5 lacks seq: made by another evoscan version or damaged; rerun `evoscan windows`")
    assert listing(out) == []


def test_embeddings_of_another_model_are_not_merged(steps, out):
    refused(evoscan("merge", "--windows", steps / "windows.h5", "-o", out / "e.h5",
                    steps / "k4.part1.h5", steps / "k5.part2.h5"),
            "k4.part1.h5 and", "k5.part2.h5 come from different backend settings (k 4 vs 5); "
            "embed every chunk with the same backend, model and layer")
    assert listing(out) == []


@pytest.mark.parametrize("dataset,value,what", [("embeddings", np.nan, "the embedding of window 4"),
                                                ("decoys", np.inf, "the decoy embedding of window 4")])
def test_nan_or_inf_embeddings_are_refused(steps, out, dataset, value, what):
    def poison(f):
        x = f[dataset][()]
        x[3, ..., 5] = value
        f[dataset][...] = x

    e = damaged_copy(steps / "embeddings.h5", out.parent / "bad.h5", poison)
    refused(evoscan("search", "--windows", steps / "windows.h5", "--embeddings", e, "-o", out / "n.h5"),
            f"bad.h5: {what} (1-based) holds NaN or infinite values; the file is damaged or the backend failed: "
            "rerun `evoscan embed`")
    assert listing(out) == []


def test_backend_returning_nan_is_refused_and_leaves_nothing(steps, out):
    model = save_tiny_dna_bert(out.parent / "nan-bert", nan=True)
    refused(evoscan("embed", "--windows", steps / "windows.h5", "--backend", "hf", "--model", model,
                    "-o", out / "e.h5"),
            "backend hf returned NaN or infinite embeddings for windows 1..16; its weights may hold NaN")
    assert listing(out) == []  # no e.h5, and no e.h5.partial: no finished row to resume from


def test_weights_are_never_unpickled(steps, out):
    """A model whose weights are a pickle that would run code: refused, and the code never runs."""
    import torch
    from transformers import BertConfig

    model = out.parent / "evil-bert"
    BertConfig(vocab_size=10, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64).save_pretrained(model)
    marker = out.parent / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": Payload()}, model / "pytorch_model.bin")
    refused(evoscan("embed", "--windows", steps / "windows.h5", "--backend", "hf", "--model", model,
                    "-o", out / "e.h5"),
            "evil-bert: refused to load weights that are not plain tensors", "use safetensors")
    assert not marker.exists()
    assert listing(out) == []


# ---- external tools -----------------------------------------------------------------------------

def path_without(tool: str, folder: Path) -> str:
    """A PATH folder with every tool evoscan runs but `tool` (real programs, linked)."""
    folder.mkdir(exist_ok=True)
    for name in ("blastn", "makeblastdb", "dustmasker", "trf"):
        if name != tool:
            (folder / name).symlink_to(shutil.which(name))
    return str(folder)


def test_missing_tool_is_named_with_its_package(d, steps, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    no_trf = {"PATH": path_without("trf", tmp_path / "no-trf")}
    refused(cli("mask", "--windows", steps / "windows.h5", "-o", out / "m.h5", env=no_trf),
            "trf not found on PATH; install the trf package (Debian/Ubuntu: apt-get install trf")
    no_blast = {"PATH": path_without("blastn", tmp_path / "no-blastn")}
    refused(cli("run", "--fasta", d.loci_fa, *W, "--outdir", out / "results", env=no_blast),
            "blastn not found on PATH; install the ncbi-blast+ package")
    refused(cli("check", "--windows", steps / "windows.h5", "--masks", steps / "masks.h5", "--neighbours",
                steps / "neighbours.h5", "-o", out / "s.h5", env=no_blast), "blastn not found on PATH")
    assert listing(out) == []


def test_failing_tool_is_summarised_in_one_line(d, steps, out):
    """blastn rejecting the user's options fails at once, with blastn's own words."""
    for step in (["check", "--windows", steps / "windows.h5", "--masks", steps / "masks.h5",
                  "--neighbours", steps / "neighbours.h5", "-o", out / "s.h5"],
                 ["run", "--fasta", d.loci_fa, *W, "--outdir", out / "results"]):
        refused(evoscan(*step, "--blast-args", "-word_size 1"), "blastn failed (exit 1): Error:",
                "Argument \"word_size\". Illegal value, expected >=4", "check --blast-args '-word_size 1'")
    refused(evoscan("blast", "--windows", steps / "windows.h5", "--blast-args", "-frobnicate 3", "-o", out / "b.h5"),
            "blastn failed (exit 1)", 'Unknown argument: "frobnicate"')
    assert listing(out) == []


# ---- where the outputs go -----------------------------------------------------------------------

@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str):
    """A tmpfs of its own at `folder` (root only): a full disk or a read-only place, for real."""
    folder.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (to fill a disk or make a read-only place for real)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def readonly(tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as folder:
        yield folder


@pytest.fixture
def tiny_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "size=64k") as folder:
        yield folder


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` up to `leave` free bytes."""
    stat = os.statvfs(folder)
    (folder / "filler").write_bytes(b"x" * max(0, stat.f_bavail * stat.f_frsize - leave))


def test_unwritable_output_is_refused_before_any_work(d, steps, readonly):
    for args in (["windows", "--fasta", d.loci_fa, *W, "-o", readonly / "w.h5"],
                 ["run", "--fasta", d.loci_fa, *W, "--outdir", readonly / "results"],
                 ["report", "--windows", steps / "windows.h5", "--scores", steps / "scores.h5", "--outdir", readonly]):
        refused(evoscan(*args), f"output directory {readonly} is not writable (read-only or no permission); "
                                "choose another, or fix its permissions")
    assert listing(readonly) == []


def test_full_disk_run_keeps_what_finished_and_continues_when_there_is_room(d, tiny_disk):
    run = ("run", "--fasta", d.loci_fa, *W, "--backend", "kmer", "--outdir", tiny_disk / "results")
    refused(evoscan(*run), "no space left on the device; free some space or write elsewhere, then run again",
            f"of the finished steps are kept in {tiny_disk / 'results'}: the same command continues from them")
    kept = listing(tiny_disk / "results")
    assert "windows.h5" in kept and "scores.h5" not in kept and not [k for k in kept if k.endswith(".part")]
    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_disk)], check=True)  # room made
    proc = evoscan(*run)
    assert proc.returncode == 0 and "windows: reusing windows.h5 (the same window set)" in proc.stderr, proc.stderr
    assert {"scores.h5", "report.html"} <= set(listing(tiny_disk / "results"))


def test_full_disk_steps_leave_nothing(d, steps, tiny_disk):
    fill(tiny_disk, leave=8192)
    refused(evoscan("windows", "--fasta", d.loci_fa, *W, "-o", tiny_disk / "w.h5"),
            f"cannot write {tiny_disk / 'w.h5'}: no space left on the device")
    refused(evoscan("embed", "--windows", steps / "windows.h5", "-o", tiny_disk / "e.h5"),
            "e.h5.partial: no space left on the device")
    refused(evoscan("report", "--windows", steps / "windows.h5", "--scores", steps / "scores.h5",
                    "--outdir", tiny_disk), "no space left on the device")
    assert listing(tiny_disk) == ["filler"]


# ---- --debug and the unexpected -----------------------------------------------------------------

def test_debug_shows_the_traceback(d, tmp_path):
    for args in (["--debug", "windows"], ["windows", "--debug"]):
        proc = evoscan(*args, "--fasta", d.all_n_fa, *W, "-o", tmp_path / "w.h5")
        assert proc.returncode == 1 and "Traceback" in proc.stderr
        assert "EvoscanError: " in proc.stderr and "every window is all N" in proc.stderr


def test_an_internal_error_is_one_line_too(d, tmp_path, monkeypatch, capsys):
    from evoscan import cli

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(cli, "make_windows", broken)
    assert cli.main(["windows", "--fasta", str(d.loci_fa), "-o", str(tmp_path / "w.h5")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("evoscan windows: error: internal error (KeyError: 'boom'); please report it, "
                   "with the traceback that --debug shows")


@pytest.mark.parametrize("options,env,status,message", [
    (["--genes", "GENE0"], {}, 2, "--genes names one gene"),
    (["--genes", "GENE0,GENE2", "--stride", "0"], {}, 2, "--stride must be at least 1"),
    (["--genes", "GENE0,GENE2", "--blast-args", "-word_size 1"], {}, 1, "Illegal value, expected >=4"),
    (["--genes", "GENE0,GENE2"], {"PATH": "no-blastn"}, 1, "blastn not found on PATH"),
    (["--genes", "GENE0,GENE2", "--motifs", "missing.jaspar"], {}, 1, "--motifs missing.jaspar: no such file"),
])
def test_run_refuses_before_reading_the_genome(d, tmp_path, monkeypatch, capsys, options, env, status, message):
    """In process, with the first step spied on: these refusals come before any input is read."""
    from evoscan import cli, pipeline

    started = []
    monkeypatch.setattr(pipeline, "make_windows", lambda *a, **k: started.append(1))
    if env:
        monkeypatch.setenv("PATH", path_without("blastn", tmp_path / "bin"))
    code = cli.main(["run", "--genome", str(d.genome_fa), "--gtf", str(d.genes_gtf), *options,
                     "--outdir", str(tmp_path / "results")])
    assert code == status and message in capsys.readouterr().err
    assert not started and not (tmp_path / "results").exists()


@pytest.mark.parametrize("fasta,message", [("one_fa", "every window belongs to one gene"),
                                           ("lower_fa", "every base is lowercase")])
def test_run_refuses_before_embedding(d, tmp_path, monkeypatch, capsys, fasta, message):
    """These need the windows cut (cheap) to be seen; they still come before the embedding."""
    from evoscan import cli, embed

    started = []
    monkeypatch.setattr(embed, "embed_windows", lambda *a, **k: started.append(1))
    code = cli.main(["run", "--fasta", str(getattr(d, fasta)), *W, "--outdir", str(tmp_path / "results")])
    assert code == 1 and message in capsys.readouterr().err
    assert not started and not (tmp_path / "results").exists()
