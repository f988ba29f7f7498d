"""The Nextflow pipeline, checked without a Nextflow runtime: Nextflow's language server (strict),
the module command lines against the real CLI, the parameter schemas, and the module commands
run in workflow order on the real loci giving the same candidates as `evoscan run`."""

import csv
import gzip
import json
import os
import shlex
import subprocess
import sys

import jsonschema
import pytest

from conftest import REPO
from evoscan.cli import build_parser

TEST_META = {"id": "grch38_loci", "genes": "", "gene_type": ""}


def nextflow_tools(renders=(), configs=("conf/test.config",)) -> dict:
    request = json.dumps({"params_configs": list(configs), "renders": list(renders)})
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "nextflow_tools.py"), str(REPO)],
                          input=request, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def renders_for(data_dir, workdir):
    """Every module in the order the workflow wires them, with the test profile's inputs."""
    fasta = data_dir / "loci" / "grch38_loci.softmasked.fa"
    gtf = data_dir / "annotation" / "lrg_derived_grch38.gtf"
    meta, w = TEST_META, "grch38_loci.windows.h5"
    return [
        {"module": "windows", "bindings": {"meta": meta, "sequences": str(fasta), "gtf": str(gtf), "regions": []}},
        {"module": "mask", "bindings": {"meta": meta, "windows": w, "rmsk": []}},
        {"module": "embed", "bindings": {"meta": meta, "windows": w, "chunk": 1, "chunks": 2, "motifs": [], "weights": [], "model_dir": []}},
        {"module": "embed", "bindings": {"meta": meta, "windows": w, "chunk": 2, "chunks": 2, "motifs": [], "weights": [], "model_dir": []}},
        {"module": "merge", "bindings": {"meta": meta, "windows": w, "kind": "embeddings",
                                         "parts": "parts/grch38_loci.embeddings.1.h5 parts/grch38_loci.embeddings.2.h5"}},
        {"module": "search", "bindings": {"meta": meta, "windows": w, "embeddings": "grch38_loci.embeddings.h5",
                                          "chunk": 1, "chunks": 2}},
        {"module": "search", "bindings": {"meta": meta, "windows": w, "embeddings": "grch38_loci.embeddings.h5",
                                          "chunk": 2, "chunks": 2}},
        {"module": "merge", "bindings": {"meta": meta, "windows": w, "kind": "neighbours",
                                         "parts": "parts/grch38_loci.neighbours.1.h5 parts/grch38_loci.neighbours.2.h5"}},
        {"module": "check", "bindings": {"meta": meta, "windows": w, "masks": "grch38_loci.masks.h5",
                                         "neighbours": "grch38_loci.neighbours.h5", "families": [], "motifs": []}},
        {"module": "report", "bindings": {"meta": meta, "windows": w, "scores": "grch38_loci.scores.h5"}},
    ]


@pytest.fixture(scope="module")
def rendered(data_dir, tmp_path_factory):
    return nextflow_tools(renders_for(data_dir, tmp_path_factory.mktemp("nf")))


def test_language_server_strict_finds_no_errors(rendered):
    assert rendered["errors"] == []


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
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "nextflow_tools.py"), str(tmp_path)],
                          input="{}", capture_output=True, text=True, timeout=300)
    errors = json.loads(proc.stdout)["errors"]
    assert errors and any(message in e for e in errors), errors


def test_every_module_command_parses_against_the_real_cli(rendered):
    parser = build_parser()
    steps = set()
    for script in rendered["commands"]:
        for line in script.splitlines():
            words = shlex.split(line.split(" > ")[0])
            if words and words[0] == "evoscan":
                args = parser.parse_args(words[1:])  # argparse exits on anything it does not know
                steps.add(args.command)
    assert steps == {"windows", "mask", "embed", "merge", "search", "check", "report"}


def test_schema_names_exactly_the_config_params(rendered):
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    names = {p for group in schema["$defs"].values() for p in group["properties"]}
    assert names == set(rendered["params"])
    defaults = {p: spec.get("default") for g in schema["$defs"].values() for p, spec in g["properties"].items()}
    for name, value in rendered["params"].items():  # defaults agree (test profile overrides aside)
        if name not in ("input", "search_chunks", "embed_chunks") and defaults[name] is not None:
            assert str(defaults[name]) == str(value), name
    # the parameters themselves validate against the schema
    values = {k: (float(v) if k in ("max_n_frac", "max_repeat_frac", "max_qvalue", "min_sw_pvalue", "motif_pvalue") else v)
              for k, v in rendered["params"].items() if v is not None}
    jsonschema.validate(values, schema)


def test_test_samplesheet_validates(data_dir):
    schema = json.loads((REPO / "assets" / "schema_input.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    sheet = REPO / "assets" / "samplesheet_test.csv"
    rows = [{k: v for k, v in row.items() if v} for row in csv.DictReader(sheet.open())]
    jsonschema.validate(rows, schema)
    for row in rows:  # relative paths resolve from the samplesheet's folder to the real data
        assert (sheet.parent / row["fasta"]).resolve() == (data_dir / "loci" / "grch38_loci.softmasked.fa").resolve()
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


def test_windows_module_renders_genome_inputs_at_scale():
    """A samplesheet row of all genes of a type, or of regions, becomes the right `evoscan windows`."""
    renders = [{"module": "windows", "bindings": {"meta": {"id": "coding", "genes": "all", "gene_type": "protein_coding"},
                                                  "sequences": "g.fa", "gtf": "a.gtf", "regions": []}},
               {"module": "windows", "bindings": {"meta": {"id": "peaks", "genes": "", "gene_type": ""},
                                                  "sequences": "g.fa", "gtf": [], "regions": "peaks.bed"}}]
    commands = nextflow_tools(renders)["commands"]
    parser = build_parser()
    genes = parser.parse_args(shlex.split(commands[0])[1:])
    assert (genes.genome.name, genes.genes, genes.gene_type) == ("g.fa", ["all"], "protein_coding")
    regions = parser.parse_args(shlex.split(commands[1])[1:])
    assert (regions.genome.name, regions.regions.name, regions.gtf) == ("g.fa", "peaks.bed", None)


def test_motif_file_checkpoint_and_model_directory_are_staged_inputs(tmp_path):
    """A motif file, an Evo 2 checkpoint or a Hugging Face model directory given by path reaches
    embed and check as a staged input (its name in the task folder), never as the submitting
    machine's path; a JASPAR release name, an evo2 model name and `--weights random` stay options."""
    def commands(params: str, motifs, weights, model_dir=None, backend="motifs"):
        config = tmp_path / "custom.config"
        config.write_text(f"params {{\n  backend = '{backend}'\n{params}\n}}\n")
        meta, w = TEST_META, "grch38_loci.windows.h5"
        renders = [{"module": "embed", "bindings": {"meta": meta, "windows": w, "chunk": 1, "chunks": 1,
                                                    "motifs": motifs, "weights": weights,
                                                    "model_dir": model_dir or []}},
                   {"module": "check", "bindings": {"meta": meta, "windows": w, "masks": "m.h5", "neighbours": "n.h5",
                                                    "families": [], "motifs": motifs}}]
        rendered = nextflow_tools(renders, configs=(str(config),))["commands"]
        assert not any("/data/" in c or "s3://" in c for c in rendered)  # no path of the submitting side
        return [build_parser().parse_args(shlex.split(c)[1:]) for c in rendered]

    embed, check = commands("  motifs = '/data/my_motifs.jaspar'\n  weights = 's3://bucket/evo2_7b.pt'",
                            motifs="my_motifs.jaspar", weights="evo2_7b.pt")
    assert embed.motifs == check.motifs == "my_motifs.jaspar" and str(embed.weights) == "evo2_7b.pt"
    embed, check = commands("  motifs = 'JASPAR2022'\n  weights = 'random'", motifs=[], weights=[])
    assert embed.motifs == check.motifs == "JASPAR2022" and str(embed.weights) == "random"
    embed, _ = commands("  model = '/data/models/nucleotide-transformer'", motifs=[], weights=[],
                        model_dir="nucleotide-transformer", backend="hf")
    assert embed.backend == "hf" and embed.model == "nucleotide-transformer"
    embed, _ = commands("  model = 'evo2_1b_base'\n  weights = 'random'", motifs=[], weights=[], backend="evo2")
    assert embed.backend == "evo2" and embed.model == "evo2_1b_base"


def run_in_workflow_order(commands, workdir, run):
    """Run each rendered module script in its own task folder, staged as Nextflow stages inputs
    (every earlier output linked in, chunk outputs under parts/ too); `run(script, task)` runs one
    and returns its CompletedProcess. Returns the report folder."""
    produced = {}
    for i, script in enumerate(commands):
        task = workdir / f"task{i}"
        (task / "parts").mkdir(parents=True)
        for name, path in produced.items():
            (task / name).symlink_to(path)
            (task / "parts" / name).symlink_to(path)
        proc = run(script, task)
        assert proc.returncode == 0, f"{script}\n{proc.stderr}"
        for out in task.iterdir():
            if out.is_file() and not out.is_symlink():
                produced[out.name] = out
        if (task / "grch38_loci").is_dir():
            produced["report"] = task / "grch38_loci"
    return produced["report"]


def assert_same_results(report, run_outdir):
    """The same candidates, and every scored pair with its p- and q-values, as `evoscan run`."""
    assert (report / "candidates.tsv").read_text() == (run_outdir / "candidates.tsv").read_text()
    nf = gzip.open(report / "pairs.tsv.gz", "rt").read()
    run = gzip.open(run_outdir / "pairs.tsv.gz", "rt").read()
    assert nf == run and nf.count("\n") > 10_000
    assert "Filter funnel" in (report / "summary.txt").read_text()


@pytest.mark.slow
def test_module_commands_in_workflow_order_equal_evoscan_run(rendered, demo_run, tmp_path):
    """The module scripts, run as Nextflow's local executor would, give what `evoscan run` gave."""
    path = f"{REPO / 'bin'}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}"

    def run(script, task):
        return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=task,
                              env={**os.environ, "PATH": path}, capture_output=True, text=True)

    assert_same_results(run_in_workflow_order(rendered["commands"], tmp_path, run), demo_run["outdir"])


@pytest.mark.slow
def test_a_retried_check_continues_from_the_blocks_its_killed_attempt_kept(demo_run, tmp_path):
    """Nextflow retries a task killed for time or memory in a new work folder; the check module's
    second attempt moves in the blocks its first attempt kept (`task.previousTrace.workdir`) and
    ends with the scores file of an uninterrupted check (but for its `created` time)."""
    import signal
    import time

    import h5py

    path = f"{REPO / 'bin'}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}"
    d = demo_run["outdir"]
    inputs = {"meta": TEST_META, "windows": "windows.h5", "masks": "masks.h5", "neighbours": "neighbours.h5",
              "families": [], "motifs": []}
    first, second = tmp_path / "attempt1", tmp_path / "attempt2"
    renders = [{"module": "check", "bindings": inputs},
               {"module": "check", "bindings": inputs, "attempt": 2, "previous_trace": {"workdir": str(first)}}]
    scripts = nextflow_tools(renders)["commands"]
    assert "previous" not in scripts[0] and str(first) in scripts[1]
    for task in (first, second):
        task.mkdir()
        for name in ("windows.h5", "masks.h5", "neighbours.h5"):
            (task / name).symlink_to(d / name)
    env = {**os.environ, "PATH": path}
    kept = first / "grch38_loci.scores.h5.partial"
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", scripts[0]], cwd=first, env=env,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    while len(list(kept.glob("blast/block*.npz"))) < 5 and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # as a scheduler kills the task's process group
    proc.wait()
    blocks = len(list(kept.glob("blast/block*.npz")))
    assert blocks >= 5 and not (first / "grch38_loci.scores.h5").exists()
    retry = subprocess.run(["bash", "-euo", "pipefail", "-c", scripts[1]], cwd=second, env=env,
                           capture_output=True, text=True)
    assert retry.returncode == 0, retry.stderr
    assert "finished BLAST block(s)" in retry.stderr and not kept.exists()
    out = second / "grch38_loci.scores.h5"
    with h5py.File(out) as got, h5py.File(d / "scores.h5") as want:
        when = (got.attrs["created"].encode(), want.attrs["created"].encode())
    assert out.read_bytes().replace(*when) == (d / "scores.h5").read_bytes()
