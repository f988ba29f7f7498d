"""The container images. Their pins agree with pyproject.toml and with the environment the tests run
in; the CPU image is built from scratch here (a Debian base made with debootstrap, since no registry
can be reached, then containers/cpu/Dockerfile unchanged but for that base) and, with the network
off, runs the pipeline's module commands in workflow order to exactly the results of `evoscan run`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import evoscan
from conftest import REPO
from test_nextflow import assert_same_results, nextflow_tools, renders_for, run_in_workflow_order

CPU_PINS = REPO / "containers" / "cpu" / "requirements.txt"
GPU_PINS = REPO / "containers" / "gpu" / "requirements.txt"
# What NVIDIA's PyTorch base image provides, built for its CUDA: never re-resolved by pip.
GPU_BASE_OWNS = {"torch", "flash-attn", "transformer-engine", "triton", "numpy"}
TASK_USER = "1234:1234"  # a user's id as the docker profile passes it (-u $(id -u):$(id -g)), no passwd entry


def read_pins(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def assert_pins_satisfy(requirements: list[str], pins: dict[str, Version], where: str) -> None:
    for line in requirements:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{where} does not pin {name} (required by pyproject.toml: {line})"
        assert req.specifier.contains(pins[name], prereleases=True), f"{where}: {name}=={pins[name]} breaks {line}"


def test_cpu_pins_cover_and_satisfy_pyproject():
    assert_pins_satisfy(project()["dependencies"], read_pins(CPU_PINS), CPU_PINS.name)


def test_tests_run_the_versions_the_cpu_image_ships():
    """`make venv` installs with the CPU pins as constraints: the tested stack is the shipped one."""
    for name, pinned in read_pins(CPU_PINS).items():
        installed = Version(metadata.version(name))
        assert Version(installed.public) == pinned, f"{name}: {installed} installed, {pinned} pinned"


def test_gpu_pins_leave_the_base_stack_alone_and_satisfy_pyproject():
    pins = read_pins(GPU_PINS)
    assert not GPU_BASE_OWNS & set(pins), "the GPU image must keep its base image's torch/CUDA stack"
    proj = project()
    needed = [r for r in proj["dependencies"] + proj["optional-dependencies"]["evo2"]
              + proj["optional-dependencies"]["hf"] if canonicalize_name(Requirement(r).name) not in GPU_BASE_OWNS]
    assert_pins_satisfy(needed, pins, GPU_PINS.name)


def test_gpu_pins_ship_for_the_base_python_and_agree_with_each_other(tmp_path):
    """Every GPU pin has a wheel for the base image's CPython 3.12 on linux x86_64 (pip checks each
    wheel's Requires-Python too), and what those wheels require of one another the pins satisfy."""
    platforms = [f"--platform=manylinux_{v}_x86_64" for v in ("2_28", "2_27", "2_24", "2_17", "2_12", "2_5")]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                           "--python-version=3.12", "--implementation=cp", "--abi=cp312", "--abi=abi3",
                           "--abi=none", *platforms, "--requirement", GPU_PINS, "--dest", tmp_path],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pins = read_pins(GPU_PINS)
    py312 = {"python_version": "3.12", "python_full_version": "3.12.3", "extra": ""}
    wheels = sorted(tmp_path.glob("*.whl"))
    assert len(wheels) == len(pins)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            text = z.read(meta).decode()
        for line in re.findall(r"^Requires-Dist: (.+)$", text, re.M):
            req = Requirement(line)
            name = canonicalize_name(req.name)
            if name in pins and (req.marker is None or req.marker.evaluate(py312)):
                assert req.specifier.contains(pins[name], prereleases=True), f"{wheel.name} needs {req}"


def test_gpu_stack_check_finds_unmet_requirements_and_a_replaced_base(tmp_path):
    """The check the GPU image runs while it builds, run here on the test environment (which holds
    evoscan with its evo2 and hf extras): it passes, and it fails when the base's torch was replaced."""
    check = [sys.executable, REPO / "containers" / "gpu" / "check_stack.py", "--base-stack"]
    record = tmp_path / "base-stack.txt"
    record.write_text(f"torch=={metadata.version('torch')}\nnumpy=={metadata.version('numpy')}\n")
    ok = subprocess.run([*check, record], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    record.write_text("torch==2.7.0a0+79aa17489c.nv25.4\n")
    replaced = subprocess.run([*check, record], capture_output=True, text=True)
    assert replaced.returncode == 1
    assert f"torch: the base image had 2.7.0a0+79aa17489c.nv25.4, now {metadata.version('torch')}" in replaced.stderr


def test_image_tags_follow_the_version():
    config = (REPO / "nextflow.config").read_text()
    v = evoscan.__version__
    assert f"cpu_container        = 'evoscan:{v}'" in config
    assert f"gpu_container        = 'evoscan-gpu:{v}'" in config
    assert f"version         = '{v}'" in config
    assert f"evoscan:{v}" in (REPO / "containers" / "cpu" / "Dockerfile").read_text()
    assert f"IMAGE_TAG ?= evoscan:$(VERSION)" in (REPO / "Makefile").read_text()


# --- the CPU image, built and run -----------------------------------------------------------------

def host_pip_settings() -> tuple[str, list[str]]:
    """A pip.conf for the build reaching the indexes and wheel folders the host's pip uses (with
    its CA bundle, which a TLS proxy may need), and the host folders to mount for it."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, check=True).stdout
    settings = {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        settings[key.rsplit(".", 1)[-1]] = value.strip("'\"")
    conf, mounts = ["[global]"], []
    if settings.get("cert"):
        conf.append("cert = /run/host-ca.crt")
        mounts.append(f"{settings['cert']}:/run/host-ca.crt:ro")
    for key in ("index-url", "extra-index-url", "find-links"):
        if settings.get(key):
            conf.append(f"{key} = {settings[key]}")
            for where in settings[key].split():
                path = Path(where.removeprefix("file://"))
                if path.is_absolute() and path.exists():
                    folder = path.parent if path.name == "simple" else path  # its pages link to ../files
                    mounts.append(f"{folder}:{folder}:ro")
    return "\n".join(conf) + "\n", mounts


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap fetches the base from it)."""
    for source in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if source.exists():
            match = re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", source.read_text(), re.M)
            if match:
                return match.group(1)
    pytest.fail("no Debian mirror in /etc/apt: debootstrap needs one to make the base image")


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """podman with its storage in a folder of the test's own and the two settings this VM needs
    (runc, as crun refuses hybrid cgroups; ulimits root may set): ../shared/notes/containers.md."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (`make test-tools` installs it): the CPU image cannot be built")
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("making the Debian base needs root and debootstrap (`make test-tools` installs it)")
    tmp = tmp_path_factory.mktemp("podman")
    hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip()
    (tmp / "containers.conf").write_text(
        f'[containers]\ndefault_ulimits = ["nofile={hard}:{hard}", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n')
    env = {**os.environ, "CONTAINERS_CONF": str(tmp / "containers.conf")}
    base = ["podman", "--root", str(tmp / "storage"), "--runroot", str(tmp / "run")]

    def podman(*args, check=True, **kw):
        proc = subprocess.run([*base, *map(str, args)], env=env, capture_output=True, text=True, **kw)
        assert not check or proc.returncode == 0, f"podman {' '.join(map(str, args))}\n{proc.stderr[-3000:]}"
        return proc

    probe = podman("info", check=False)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run here: {probe.stderr.strip().splitlines()[-1:]}")
    yield podman, tmp
    podman("rmi", "--all", "--force", check=False)  # (not `system reset`: it also drops host networks)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cpu_image(podman):
    """Debian 12 minbase from debootstrap → containers/cpu/Dockerfile built on it, unchanged."""
    podman, tmp = podman
    rootfs = tmp / "rootfs"
    boot = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", rootfs, debian_mirror()],
                          capture_output=True, text=True)
    assert boot.returncode == 0, boot.stdout[-2000:] + boot.stderr[-2000:]
    subprocess.run(["tar", "-C", rootfs, "--numeric-owner", "--exclude=./dev/*", "-cf", tmp / "base.tar", "."], check=True)
    shutil.rmtree(rootfs)
    podman("import", "--quiet", tmp / "base.tar", "localhost/evoscan-base:bookworm")
    (tmp / "base.tar").unlink()
    conf, mounts = host_pip_settings()
    (tmp / "pip.conf").write_text(conf)
    tag = f"localhost/evoscan:{evoscan.__version__}"
    podman("build", "--build-arg", "BASE=localhost/evoscan-base:bookworm",
           *[f"--volume={m}" for m in [*mounts, f"{tmp / 'pip.conf'}:/etc/pip.conf:ro"]],
           "--file", REPO / "containers" / "cpu" / "Dockerfile", "--tag", tag, REPO, timeout=1800)
    return tag


@pytest.mark.slow
def test_cpu_image_holds_the_pinned_stack_and_runs_as_a_user(podman, cpu_image):
    podman, _ = podman
    out = podman("run", "--rm", "--network", "none", cpu_image, "sh", "-c",
                 "id -u; python3 -c 'import sys; print(*sys.version_info[:2])'; pip freeze --all").stdout.split("\n")
    assert out[0] != "0", "the image must not run as root"
    assert out[1] == f"{sys.version_info[0]} {sys.version_info[1]}"  # the tests' Python is the image's
    frozen = {canonicalize_name(r.name): Version(next(iter(r.specifier)).version)
              for r in map(Requirement, filter(None, out[2:])) if "==" in str(r.specifier)}
    frozen = {n: Version(v.public) for n, v in frozen.items() if n not in {"pip", "setuptools", "evoscan"}}
    assert frozen == read_pins(CPU_PINS)  # nothing unpinned crept in, nothing pinned is missing


@pytest.mark.slow
def test_module_commands_in_the_image_equal_evoscan_run(podman, cpu_image, data_dir, demo_run, tmp_path):
    """The docker profile without Nextflow: each rendered module script runs in its own container
    (network off, a non-root user's id, the task folder and inputs mounted at their own paths, the
    pipeline's bin/ on PATH), in workflow order; the results equal those of `evoscan run`."""
    podman, _ = podman
    rendered = nextflow_tools(renders_for(data_dir, tmp_path))
    assert rendered["errors"] == []
    uid, gid = map(int, TASK_USER.split(":"))
    os.chown(tmp_path, uid, gid)
    path = f"{REPO / 'bin'}:/opt/evoscan/venv/bin:/usr/local/bin:/usr/bin:/bin"

    def run(script, task):
        for folder in (task, task / "parts"):
            os.chown(folder, uid, gid)
        return podman("run", "--rm", "--network", "none", "--user", TASK_USER, "--env", f"PATH={path}",
                      "--volume", f"{tmp_path}:{tmp_path}", "--volume", f"{data_dir}:{data_dir}:ro",
                      "--volume", f"{REPO / 'bin'}:{REPO / 'bin'}:ro", "--workdir", task,
                      cpu_image, "bash", "-euo", "pipefail", "-c", script, check=False)

    assert_same_results(run_in_workflow_order(rendered["commands"], tmp_path, run), demo_run["outdir"])
