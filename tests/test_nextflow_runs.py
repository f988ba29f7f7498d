"""The pipeline run by the real Nextflow (tools/nextflow, `make nextflow`), as users run it: the test
profile on the local executor, scattered at 1, 2 and 3 chunks, in the CPU image with podman, through a
one-node SLURM cluster, resumed after its head was killed, with a killed task retried; every run's
published files equal those `evoscan run` writes for the same input."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from evoscan import __version__
from conftest import REPO, evoscan, write_fasta
from nextflow_run import SAMPLE, assert_same_as_evoscan_run, run_nextflow, running_nextflow, step, trace

pytestmark = pytest.mark.slow

STEPS_AT = lambda chunks: Counter({"WINDOWS": 1, "MASK": 1, "EMBED": chunks, "MERGE embeddings": 1,  # noqa: E731
                                   "SEARCH": chunks, "MERGE neighbours": 1, "CHECK": 1, "REPORT": 1})


def finished(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout[-3000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def test_profile_run(tmp_path_factory):
    """`nextflow run <repo> -profile test` on the local executor (2 embed and 2 search chunks)."""
    launch = tmp_path_factory.mktemp("nf_test")
    proc = run_nextflow(launch, "-profile", "test", "--outdir", launch / "results")
    assert proc.returncode == 0, finished(proc)
    return launch / "results"


def test_test_profile_publishes_what_evoscan_run_writes(test_profile_run, demo_run):
    assert_same_as_evoscan_run(test_profile_run / SAMPLE, demo_run["outdir"])
    rows = trace(test_profile_run)
    assert Counter(step(r) for r in rows) == STEPS_AT(2)
    assert all(r["status"] == "COMPLETED" and r["attempt"] == "1" for r in rows)


def test_run_records_trace_report_timeline_dag_and_versions(test_profile_run):
    info = test_profile_run / "pipeline_info"
    for kind in ("execution_report", "execution_timeline", "pipeline_dag"):
        (page,) = info.glob(f"{kind}_*.html")
        assert page.stat().st_size > 2_000, page
    rows = trace(test_profile_run)
    for row in rows:  # what the README tells users to read from the trace
        assert row["peak_rss"].endswith(("KB", "MB", "GB")) and row["realtime"] and row["%cpu"].endswith("%"), row
    versions = (info / "software_versions.yml").read_text()
    processes = sorted({r["process"].rsplit(":", 1)[-1] for r in rows})
    assert versions == "".join(f"{p}:\n  evoscan: {__version__}\n" for p in processes)


@pytest.mark.parametrize("chunks", [1, 3])
def test_scatter_and_gather_are_exact_at_any_number_of_chunks(tmp_path, demo_run, chunks):
    proc = run_nextflow(tmp_path, "-profile", "test", "--embed_chunks", chunks, "--search_chunks", chunks,
                        "--outdir", tmp_path / "results")
    assert proc.returncode == 0, finished(proc)
    assert Counter(step(r) for r in trace(tmp_path / "results")) == STEPS_AT(chunks)
    assert_same_as_evoscan_run(tmp_path / "results" / SAMPLE, demo_run["outdir"])


# --- other inputs: a genome with genes, a genome with regions, a Hugging Face model directory ------

@pytest.fixture(scope="module")
def genome_inputs(loci_fasta, gtf, tmp_path_factory):
    """A small real genome (three GRCh38 loci written as chromosomes, the GTF shifted to match, as in
    test_inputs_scale), a BED of regions on it, a tiny random Hugging Face DNA model saved to a
    directory, and a small JASPAR file: inputs a samplesheet and the hf backend stage into tasks."""
    from evoscan.io.fasta import parse_locus_header, read_fasta
    from test_hf_backend import save_tiny_dna_bert
    from test_robust_cli import TINY_JASPAR

    out = tmp_path_factory.mktemp("inputs")
    loci = {"ACTB": "chr7", "ANKRD1": "chr10", "AVP": "chr20"}
    shift, seqs = {}, {}
    for rec in read_fasta(loci_fasta):
        if rec.name in loci:
            header = parse_locus_header(rec)
            shift[header.chrom] = header.start - 1000
            seqs[header.chrom] = "N" * 1000 + rec.seq
    write_fasta(out / "genome.fa", seqs)
    with open(out / "genes.gtf", "w") as dest:
        for line in open(gtf):
            f = line.rstrip("\n").split("\t")
            if len(f) == 9 and f[0] in shift:
                f[3], f[4] = str(int(f[3]) - shift[f[0]]), str(int(f[4]) - shift[f[0]])
                dest.write("\t".join(f) + "\n")
    rng = np.random.default_rng(4)
    (out / "regions.bed").write_text("".join(f"{c}\t{s}\t{s + 2000}\tr{c}_{s}\n" for c in seqs for s in
                                             sorted(rng.integers(1000, len(seqs[c]) - 2000, 2))))
    (out / "motifs.jaspar").write_text(TINY_JASPAR)
    save_tiny_dna_bert(out / "tiny-dna-bert")
    return out


def test_genome_inputs_and_a_staged_model_directory_equal_evoscan_run(genome_inputs, tmp_path):
    """Two samples (a genome with three genes; a genome with regions) in one run: each published set
    equals `evoscan run` on that input, with the hf backend reading a model directory Nextflow staged
    into every embed task and a motif file staged into embed and check."""
    d = genome_inputs
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f'sample,genome,gtf,genes,regions\ngenes,{d}/genome.fa,{d}/genes.gtf,"ACTB,ANKRD1,AVP",\n'
                     f"peaks,{d}/genome.fa,,,{d}/regions.bed\n")
    options = {"window_size": 256, "stride": 128, "promoter_upstream": 1000, "promoter_downstream": 200,
               "backend": "hf", "model": d / "tiny-dna-bert", "layer": 1, "motifs": d / "motifs.jaspar",
               "sw_shuffles": 5, "motif_shuffles": 5}
    proc = run_nextflow(tmp_path, "-profile", "test", "--input", sheet, "--outdir", tmp_path / "results",
                        *[a for k, v in options.items() for a in (f"--{k}", v)])
    assert proc.returncode == 0, finished(proc)
    rows = trace(tmp_path / "results")
    assert Counter(step(r) for r in rows) == Counter({s: 2 * n for s, n in STEPS_AT(2).items()})
    for row in rows:
        if step(row) == "EMBED":  # a directory staged as a link, not the submitting machine's path
            staged = Path(row["workdir"]) / "tiny-dna-bert"
            assert staged.is_symlink() and staged.resolve() == d / "tiny-dna-bert"
            assert "--model tiny-dna-bert" in (Path(row["workdir"]) / ".command.sh").read_text()
    cli = [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    for sample, source in (("genes", ["--genes", "ACTB,ANKRD1,AVP", "--gtf", d / "genes.gtf"]),
                           ("peaks", ["--regions", d / "regions.bed"])):
        reference = tmp_path / f"run_{sample}"
        run = evoscan("run", "--genome", d / "genome.fa", *source, *cli, "--threads", "2", "--outdir", reference)
        assert run.returncode == 0, run.stderr[-2000:]
        assert_same_as_evoscan_run(tmp_path / "results" / sample, reference, min_pairs=100)


def test_evo2_with_a_staged_custom_checkpoint_equals_evoscan_run(genome_inputs, tmp_path):
    """The evo2 backend through Nextflow: a custom checkpoint and its architecture YAML (a tiny
    random-weight Evo 2) staged into the embed task under their relative names, embedded by the real
    evo2/Vortex code (on this CPU with the test-only shims of tests/evo2_cpu.py, which a
    sitecustomize installs in the processes that name evo2); published files equal `evoscan run`."""
    import evo2_cpu

    evo2_cpu.install()
    (tmp_path / "model").mkdir()
    config, weights = evo2_cpu.save_tiny_model(tmp_path / "model")
    shims = tmp_path / "shims"
    shims.mkdir()
    tests = str(Path(__file__).parent)
    (shims / "sitecustomize.py").write_text(f"import sys\nif 'evo2' in sys.argv:\n    sys.path.insert(0, {tests!r})\n"
                                            f"    import evo2_cpu\n    sys.path.remove({tests!r})\n"
                                            "    evo2_cpu.install()\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(shims), os.environ.get("PYTHONPATH")]))}
    d = genome_inputs
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"sample,genome,gtf,genes,regions\npeaks,{d}/genome.fa,,,{d}/regions.bed\n")
    options = {"window_size": 256, "stride": 128, "backend": "evo2", "weights": weights, "layer": "blocks.5.mlp.l3",
               "sw_shuffles": 5, "motif_shuffles": 5}
    proc = run_nextflow(tmp_path, "-profile", "test", "--input", sheet, "--outdir", tmp_path / "results",
                        "--model_config", config, "--embed_chunks", 1,
                        *[a for k, v in options.items() for a in (f"--{k}", v)], **env)
    assert proc.returncode == 0, finished(proc)
    (embed_task,) = [r for r in trace(tmp_path / "results") if step(r) == "EMBED"]
    staged = Path(embed_task["workdir"])
    assert (staged / weights.name).is_symlink() and (staged / config.name).resolve() == config
    assert f"--weights {weights.name} --model-config {config.name}" in (staged / ".command.sh").read_text()
    cli = [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    reference = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "evoscan.cli", "run", "--genome", d / "genome.fa", "--regions",
                          d / "regions.bed", *cli, "--model-config", config, "--threads", "2", "--outdir", reference],
                         env={**os.environ, **env}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert_same_as_evoscan_run(tmp_path / "results" / "peaks", reference, min_pairs=100)


def embed_tasks_at_once(launch: Path) -> int:
    """The most EMBED tasks running at one time, from the run's log (submitted and completed lines)."""
    running = most = 0
    for line in (launch / ".nextflow.log").read_text().splitlines():
        if "EVOSCAN_EMBED" in line and ("Submitted process >" in line or "Task completed >" in line):
            running += 1 if "Submitted process >" in line else -1
            most = max(most, running)
    return most


def test_the_documented_one_gpu_config_runs_gpu_tasks_one_at_a_time(tmp_path):
    """docs/usage.md's config for GPUs on one machine (the local executor gives every GPU task the
    first GPU): with it the embed tasks run one after another; without it two run at once here."""
    block = (REPO / "docs" / "usage.md").read_text().split("**GPUs on one machine.**")[1].split("```")[1]
    (tmp_path / "one_gpu.config").write_text(block)
    common = ["-profile", "test", "--backend", "kmer", "--embed_chunks", 3, "--search_chunks", 1]
    for launch, extra, most in ((tmp_path / "plain", [], 2), (tmp_path / "one", ["-c", tmp_path / "one_gpu.config"], 1)):
        proc = run_nextflow(launch, *common, *extra, "--outdir", launch / "results")
        assert proc.returncode == 0, finished(proc)
        assert embed_tasks_at_once(launch) == most


# --- in the CPU image, with podman -----------------------------------------------------------------

def test_podman_profile_runs_every_task_in_the_cpu_image(podman, cpu_image, tmp_path, demo_run):
    """Every task in the image, as the calling user, with the network off (no task needs it)."""
    offline = tmp_path / "offline.config"
    offline.write_text("podman.runOptions = '-u $(id -u):$(id -g) --network none'\n")
    proc = run_nextflow(tmp_path, "-profile", "test,podman", "-c", offline, "--cpu_container", cpu_image,
                        "--outdir", tmp_path / "results", **podman.settings)
    assert proc.returncode == 0, finished(proc)
    rows = trace(tmp_path / "results")
    assert Counter(step(r) for r in rows) == STEPS_AT(2)
    for row in rows:
        assert row["container"] == cpu_image
        wrapper = (Path(row["workdir"]) / ".command.run").read_text()
        assert "podman run" in wrapper and "--network none" in wrapper and cpu_image in wrapper
    assert_same_as_evoscan_run(tmp_path / "results" / SAMPLE, demo_run["outdir"])


# --- through a real scheduler: a one-node SLURM cluster on this machine -----------------------------

@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """slurmctld and slurmd on localhost with munge, a configuration of the test's own (no cgroups,
    no accounting database; finished jobs go to a job-completion file that `sacct -c` reads):
    ../shared/notes/slurm.md. The daemons are stopped at the end."""
    for tool in ("slurmctld", "slurmd", "munged", "sbatch"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (`make test-tools` installs slurm-wlm and munge)")
    if os.geteuid() != 0:
        pytest.skip("the one-node SLURM cluster runs its daemons as root")
    tmp = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20 - 2048
    conf = tmp / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=evoscan-test", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "ReturnToService=2",
        "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={tmp / 'jobcomp.txt'}", "JobAcctGatherType=jobacct_gather/linux", "MpiDefault=none",
        f"StateSaveLocation={tmp / 'state'}", f"SlurmdSpoolDir={tmp / 'spool'}",
        f"SlurmctldPidFile={tmp / 'slurmctld.pid'}", f"SlurmdPidFile={tmp / 'slurmd.pid'}",
        f"SlurmctldLogFile={tmp / 'slurmctld.log'}", f"SlurmdLogFile={tmp / 'slurmd.log'}",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
    for folder in ("state", "spool"):
        (tmp / folder).mkdir()
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge_pid = Path("/run/munge/munged.pid")
    started_munge = subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0
    daemons = [tmp / "slurmd.pid", tmp / "slurmctld.pid", *([munge_pid] if started_munge else [])]
    try:
        if started_munge:
            for folder in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
                os.makedirs(folder, exist_ok=True)
                shutil.chown(folder, "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        subprocess.run(["slurmctld", "-f", conf], env=env, check=True)
        subprocess.run(["slurmd", "-f", conf], env=env, check=True)
        deadline = time.time() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout:
            assert time.time() < deadline, (tmp / "slurmctld.log").read_text()[-2000:]
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
        for pid_file in daemons:
            if pid_file.exists():
                pid = int(pid_file.read_text())
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.time() + 30
                while Path(f"/proc/{pid}").exists() and time.time() < deadline:
                    time.sleep(0.2)


def test_slurm_profile_submits_every_task_through_sbatch(slurm, tmp_path, demo_run):
    fast = tmp_path / "poll.config"  # the executor's default polling (5 s to 1 min) is for real clusters
    fast.write_text("executor {\n    pollInterval = '1 sec'\n    queueStatInterval = '2 sec'\n}\n")
    proc = run_nextflow(tmp_path, "-profile", "test,slurm", "-c", fast, "--outdir", tmp_path / "results",
                        SLURM_CONF=slurm["SLURM_CONF"])
    assert proc.returncode == 0, finished(proc)
    rows = trace(tmp_path / "results")
    assert Counter(step(r) for r in rows) == STEPS_AT(2)
    jobs = {r["native_id"] for r in rows}
    assert all(job.isdigit() for job in jobs) and len(jobs) == len(rows)  # SLURM job ids, one per task
    sacct = subprocess.run(["sacct", "--completion", "--noheader", "--parsable2", "--format", "JobID,State",
                            "--jobs", ",".join(sorted(jobs))], env=slurm, capture_output=True, text=True)
    assert sacct.returncode == 0, sacct.stderr
    assert dict(line.split("|") for line in sacct.stdout.split()) == {job: "COMPLETED" for job in jobs}
    assert_same_as_evoscan_run(tmp_path / "results" / SAMPLE, demo_run["outdir"])


# --- resume and retry --------------------------------------------------------------------------------

def wait_for(condition, proc: subprocess.Popen, what: str, limit: float = 600):
    deadline = time.time() + limit
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"no {what} in {limit} s"
        time.sleep(0.05)


def traced(launch: Path, name: str) -> bool:
    """Whether the running head has recorded a finished task of this name in its trace."""
    return any(name in line and "COMPLETED" in line
               for f in (launch / "results" / "pipeline_info").glob("execution_trace_*.txt") for line in open(f))


def test_a_run_whose_head_was_killed_resumes_from_its_finished_tasks(tmp_path, demo_run):
    with running_nextflow(tmp_path, "-profile", "test", "--outdir", tmp_path / "results") as head:
        wait_for(lambda: traced(tmp_path, "EVOSCAN_MERGE (grch38_loci embeddings)"), head, "finished embedding")
        time.sleep(1)  # the cache entry is written beside the trace line
        os.kill(head.pid, signal.SIGKILL)  # the Nextflow head: the JVM the launcher became
    # (leaving the block killed its orphaned local tasks too, as a lost login node takes them)
    assert not (tmp_path / "results" / SAMPLE / "report.html").exists()
    time.sleep(2)  # (a new trace file name: its suffix is the start time, to the second)
    proc = run_nextflow(tmp_path, "-profile", "test", "--outdir", tmp_path / "results", "-resume")
    assert proc.returncode == 0, finished(proc)
    status = {}
    for row in trace(tmp_path / "results"):
        status.setdefault(step(row), set()).add(row["status"])
    assert status["WINDOWS"] == status["EMBED"] == status["MERGE embeddings"] == {"CACHED"}
    assert status["CHECK"] == status["REPORT"] == {"COMPLETED"}
    assert_same_as_evoscan_run(tmp_path / "results" / SAMPLE, demo_run["outdir"])


def test_a_killed_check_is_retried_and_continues_from_the_blocks_it_kept(tmp_path, demo_run):
    """SIGKILL of the `evoscan check` process of the running task: exit 137, which the pipeline's
    errorStrategy retries; the second attempt moves in the BLAST blocks of the first
    (task.previousTrace.workdir) and continues; the results equal an uninterrupted run's."""
    blocks = lambda: list(tmp_path.glob(f"work/*/*/{SAMPLE}.scores.h5.partial/blast/block*.npz"))  # noqa: E731
    with running_nextflow(tmp_path, "-profile", "test", "--outdir", tmp_path / "results") as head:
        wait_for(lambda: len(blocks()) >= 5, head, "five BLAST blocks")
        task = blocks()[0].parents[2]
        found = subprocess.run(["pgrep", "-f", f"evoscan check .* -o {SAMPLE}.scores.h5"], capture_output=True, text=True)
        pids = [int(p) for p in found.stdout.split() if Path(f"/proc/{p}/cwd").resolve() == task]
        assert len(pids) == 1, f"no single `evoscan check` running in {task}: {found.stdout!r}"
        os.kill(pids[0], signal.SIGKILL)
        kept = len(blocks())
        assert head.wait(timeout=900) == 0, (tmp_path / "nextflow.out").read_text()[-3000:]
    checks = sorted((r for r in trace(tmp_path / "results") if step(r) == "CHECK"), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"], r["exit"]) for r in checks] == [("1", "FAILED", "137"), ("2", "COMPLETED", "0")]
    assert Path(checks[0]["workdir"]) == task
    retried = (Path(checks[1]["workdir"]) / ".command.err").read_text()
    resumed = re.search(r"resumed (\d+) finished BLAST block\(s\)", retried)
    assert resumed and 5 <= int(resumed[1]) <= kept, retried[-2000:]
    assert_same_as_evoscan_run(tmp_path / "results" / SAMPLE, demo_run["outdir"])
