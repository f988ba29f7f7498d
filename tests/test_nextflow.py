"""The Nextflow pipeline, checked in seconds: Nextflow's language server (strict), the configuration
as the real Nextflow reads it against the parameter schemas, bad input stopped by a real `nextflow
run` before any task, a stub run that wires the GPU backends' staged files and images, and the
nf-core linter. The runs that compute are in tests/test_nextflow_runs.py."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO
from nextflow_run import NEXTFLOW, nextflow_env, run_nextflow, step, trace


def language_server_errors(root: Path) -> list[str]:
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "nextflow_tools.py"), str(root)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)["errors"]


def test_language_server_strict_finds_no_errors():
    assert language_server_errors(REPO) == []


@pytest.mark.parametrize("old,new,message", [
    ("'../modules/local/mask'", "'../modules/local/maks'", "Invalid include source"),
    ("EVOSCAN_CHECK(ch_check)", "EVOSCAN_CHECK(ch_check, ch_windows)", "expects 1 argument"),
    ("EVOSCAN_CHECK.out.scores", "EVOSCAN_CHECK.out.score", "score"),
])
def test_language_server_catches_a_broken_workflow(tmp_path, old, new, message):
    """The check can fail: a bad include, a wrong argument count, an unknown output."""
    import shutil

    for name in ("main.nf", "nextflow.config", "modules", "subworkflows", "workflows", "conf", "assets"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    wf = tmp_path / "workflows" / "evoscan.nf"
    assert old in wf.read_text()
    wf.write_text(wf.read_text().replace(old, new, 1))
    errors = language_server_errors(tmp_path)
    assert errors and any(message in e for e in errors), errors


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    """The test profile's configuration as Nextflow resolves it (`nextflow config -o json`)."""
    launch = tmp_path_factory.mktemp("config")
    proc = subprocess.run([str(NEXTFLOW), "config", str(REPO), "-profile", "test", "-o", "json"], cwd=launch,
                          env=nextflow_env(launch), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_schema_names_exactly_the_config_params(config):
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    params = config["params"]
    specs = {p: spec for group in schema["$defs"].values() for p, spec in group["properties"].items()}
    assert specs.keys() == params.keys()
    test_profile = {"input", "search_chunks", "embed_chunks", "trace_report_suffix"}
    for name, value in params.items():  # defaults agree (what the test profile sets aside)
        if name not in test_profile and specs[name].get("default") is not None:
            assert specs[name]["default"] == value, name
    jsonschema.validate({k: v for k, v in params.items() if v is not None}, schema)


@pytest.mark.parametrize("profile", ["test,slurm", "test,gpu,podman"])
def test_profiles_add_to_the_process_settings_and_keep_the_rest(tmp_path, profile):
    """A profile that sets one selector's option must not replace the selector's other settings."""
    proc = subprocess.run([str(NEXTFLOW), "config", str(REPO), "-profile", profile, "-flat"], cwd=tmp_path,
                          env=nextflow_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    gpu_label = {line.split(" = ")[0].split(".")[-1] for line in proc.stdout.splitlines()
                 if line.startswith("process.'withLabel:process_gpu'.")}
    assert {"cpus", "memory", "time", "accelerator", "containerOptions"} <= gpu_label
    assert "process.'withName:EVOSCAN_SEARCH'.ext.args" in proc.stdout
    if "slurm" in profile:
        assert "clusterOptions" in gpu_label
    if "gpu" in profile:  # the search's budget is the card's memory there, not the CPU default
        flat = dict(line.split(" = ", 1) for line in proc.stdout.splitlines() if " = " in line)
        assert flat["params.search_device"] == "'cuda'" and int(flat["params.search_memory"]) > 2048 * 8


def test_manifest_states_the_nextflow_this_suite_runs(config):
    pom = (REPO / "tools" / "nextflow" / "pom.xml").read_text()
    version = pom.split("<nextflow.version>")[1].split("<")[0]
    assert config["manifest"]["nextflowVersion"] == f"!>={version}"
    out = subprocess.run([str(NEXTFLOW), "-version"], capture_output=True, text=True, timeout=120).stdout
    assert f"version {version}" in out
    assert f"Nextflow {version}" in (REPO / "README.md").read_text()


def test_test_samplesheet_validates(test_data):
    schema = json.loads((REPO / "assets" / "schema_input.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    sheet = REPO / "assets" / "samplesheet_test.csv"
    rows = [{k: v for k, v in row.items() if v} for row in csv.DictReader(sheet.open())]
    jsonschema.validate(rows, schema)
    for row in rows:  # relative paths resolve from the samplesheet's folder to the data in the repository
        assert (sheet.parent / row["fasta"]).resolve() == test_data / "loci" / "grch38_loci.softmasked.fa"
        assert (sheet.parent / row["gtf"]).resolve() == test_data / "annotation" / "lrg_derived_grch38.gtf"
    bad = [{"sample": "x", "fasta": "a.fa", "genome": "g.fa", "gtf": "a.gtf", "genes": "VIM"}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    scale = [{"sample": "all_coding", "genome": "g.fa", "gtf": "a.gtf", "genes": "all", "gene_type": "protein_coding"},
             {"sample": "peaks", "genome": "g.fa.gz", "regions": "peaks.bed.gz"}]
    jsonschema.validate(scale, schema)
    for bad_row in ({"sample": "x", "genome": "g.fa", "regions": "r.bed", "genes": "VIM"},  # regions or genes
                    {"sample": "x", "fasta": "a.fa", "regions": "r.bed"},  # regions need a genome
                    {"sample": "x", "fasta": "a.fa", "gene_type": "protein_coding"}):  # a type needs genes
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate([bad_row], schema)


# --- bad input: a real `nextflow run` stops before any task, with one line that names the problem ----

LOCI = "assets/test_data/loci/grch38_loci.softmasked.fa"
GTF = "assets/test_data/annotation/lrg_derived_grch38.gtf"
BAD_INPUTS = {
    "missing column": ("sample,gtf\nx,{repo}/" + GTF + "\n", [],
                       "the header line must name a 'sample' column and a 'fasta' or 'genome' column"),
    "missing file": ("sample,fasta\nx,{launch}/nowhere/loci.fa\n", [],
                     "line 2: fasta file not found: {launch}/nowhere/loci.fa"),
    "duplicate sample": ("sample,fasta\nx,{repo}/" + LOCI + "\ny,{repo}/" + LOCI + "\nx,{repo}/" + LOCI + "\n", [],
                         "sample 'x' is on 2 rows; each sample needs its own name"),
    "genes without a genome": ("sample,fasta,genes\nx,{repo}/" + LOCI + ",VIM\n", [],
                               "line 2: genes and regions need a genome column"),
    "unknown backend": ("sample,fasta\nx,{repo}/" + LOCI + "\n", ["--backend", "evo3"],
                        "--backend evo3: must be one of kmer, motifs, evo2, hf"),
    "not a number": ("sample,fasta\nx,{repo}/" + LOCI + "\n", ["--embed_chunks", "two"],
                     "--embed_chunks two: not a whole number"),
    "out of range": ("sample,fasta\nx,{repo}/" + LOCI + "\n", ["--max_qvalue", "5"],
                     "--max_qvalue 5: must be at most 1"),
    "no value": ("sample,fasta\nx,{repo}/" + LOCI + "\n", ["--assembly"], "--assembly: a value is needed"),
    "evo2 option, other backend": ("sample,fasta\nx,{repo}/" + LOCI + "\n", ["--weights", "random"],
                                   "--weights is an option of the evo2 backend, not of motifs; add --backend evo2"),
    "pooling, kmer": ("sample,fasta\nx,{repo}/" + LOCI + "\n", ["--backend", "kmer", "--pooling", "last"],
                      "--pooling is an option of the evo2 and hf backends, not of kmer; add --backend evo2 or"),
    "hf, no model": ("sample,fasta\nx,{repo}/" + LOCI + "\n", ["--backend", "hf"],
                     "--backend hf needs --model DIR (a local Hugging Face model directory)"),
    "architecture, no weights": ("sample,fasta\nx,{repo}/" + LOCI + "\n", ["--backend", "evo2", "--model_config",
                                 "arch.yml"], "--model_config needs --weights: the checkpoint made with that"),
    "dashes": ("sample,fasta\nx,{repo}/" + LOCI + "\n", ["--embed-chunks", "3"],
               "--embed-chunks: evoscan's parameters are written with underscores: --embed_chunks"),
    "sample name": ("sample,fasta\n..,{repo}/" + LOCI + "\n", [], "line 2: sample '..' does not match"),
    "spaces in genes": ('sample,genome,gtf,genes\nx,{repo}/' + LOCI + ",{repo}/" + GTF + ',"VIM, DES"\n', [],
                        "line 2: genes 'VIM, DES' does not match"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_stops_the_run_before_any_task(tmp_path, case):
    sheet, options, message = BAD_INPUTS[case]
    (tmp_path / "sheet.csv").write_text(sheet.format(repo=REPO, launch=tmp_path))
    proc = run_nextflow(tmp_path, "-profile", "test", "--input", tmp_path / "sheet.csv", "--outdir",
                        tmp_path / "out", *options, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    lines = [line for line in out.splitlines() if message.format(launch=tmp_path) in line]
    assert len(lines) == 1, out[-3000:]
    assert not list(tmp_path.glob("work/*/*")), "a task ran"
    assert "Access to undefined parameter" not in out


def test_an_unknown_parameter_is_named_in_a_warning_and_a_missing_samplesheet_stops(tmp_path):
    proc = run_nextflow(tmp_path, "--input", tmp_path / "nowhere.csv", "--backnd", "evo2", "--outdir", tmp_path / "o")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "parameter(s) not in nextflow_schema.json, ignored: --backnd" in out
    assert f"samplesheet not found: {tmp_path / 'nowhere.csv'} (--input)" in out


# --- a stub run: the GPU backends' wiring, without a GPU -------------------------------------------

def test_evo2_stub_run_stages_the_checkpoint_and_runs_embedding_in_the_gpu_image(tmp_path):
    """-stub runs each task's stub block: the channels, staging, images and publishing are Nextflow's
    own. An Evo 2 checkpoint given by path reaches every embed task as a staged file; embedding runs in
    the GPU image, everything else in the CPU image (the search too, unless told to use the GPU)."""
    weights = tmp_path / "data" / "evo2_7b.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"not really weights")
    proc = run_nextflow(tmp_path, "-stub", "-profile", "test", "--backend", "evo2", "--model", "evo2_7b",
                        "--weights", weights, "--embed_chunks", 3, "--search_chunks", 2, "--outdir", tmp_path / "out",
                        "--speedups", "conv,compile",
                        "--motif_pvalue", "1e-5", "--max_blast_evalue", ".5")  # numbers Nextflow 24.10 passes as text
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rows = trace(tmp_path / "out")
    steps = sorted(step(r) for r in rows)
    assert steps == sorted(["WINDOWS", "MASK", *["EMBED"] * 3, "MERGE embeddings", *["SEARCH"] * 2,
                            "MERGE neighbours", "CHECK", "REPORT"])
    for row in rows:
        assert row["container"] == ("evoscan-gpu:0.1.0" if step(row) == "EMBED" else "evoscan:0.1.0"), row
        if step(row) == "EMBED":
            staged = Path(row["workdir"]) / "evo2_7b.pt"
            assert staged.is_symlink() and staged.resolve() == weights
            assert "--speedups conv,compile" in (Path(row["workdir"]) / ".command.sh").read_text()
    assert (tmp_path / "out" / "grch38_loci" / "embeddings.h5").exists()


# --- the nf-core yardstick -------------------------------------------------------------------------

def nf_core(*args, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**nextflow_env(cwd), "PATH": f"{NEXTFLOW.parent}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([str(Path(sys.executable).parent / "nf-core"), "--log-file", "/dev/null", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def documented_lint_failures() -> set[tuple[str, str]]:
    """The checks docs/nf-core-lint.md lists as failing only because evoscan is no nf-core template."""
    rows = [line.split("|") for line in (REPO / "docs" / "nf-core-lint.md").read_text().splitlines()
            if line.startswith("| `")]
    return {(r[1].strip().strip("`"), r[2].strip().strip("`")) for r in rows}


def test_nf_core_pipelines_lint_fails_exactly_the_documented_checks(tmp_path):
    proc = nf_core("pipelines", "lint", "--dir", REPO, "--json", tmp_path / "lint.json", cwd=tmp_path)
    assert (tmp_path / "lint.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "lint.json").read_text())
    failed = {(test, message.replace("`", "").splitlines()[0].strip()) for test, message in result["tests_failed"]}
    assert failed == documented_lint_failures()
    assert result["num_tests_pass"] > 100


def test_nf_core_schema_lint_passes(tmp_path):
    proc = nf_core("pipelines", "schema", "lint", "--dir", REPO, REPO / "nextflow_schema.json", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Pipeline schema looks valid" in out and "WARNING" not in out
