"""The container images. Their pins agree with pyproject.toml and with the environment the tests run
in; the CPU image is built from scratch here (tests/images.py: a Debian base made with debootstrap,
since no registry can be reached, then containers/cpu/Dockerfile unchanged but for that base) and
holds exactly the pinned stack. Nextflow runs the pipeline in it: tests/test_nextflow_runs.py."""

from __future__ import annotations

import json
import re
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

CPU_PINS = REPO / "containers" / "cpu" / "requirements.txt"
GPU_PINS = REPO / "containers" / "gpu" / "requirements.txt"
GPU_PYPI_PINS = REPO / "containers" / "gpu" / "requirements-pypi.txt"  # added to CPU_PINS by Dockerfile.pypi
# What NVIDIA's PyTorch base image provides, built for its CUDA: never re-resolved by pip.
GPU_BASE_OWNS = {"torch", "flash-attn", "transformer-engine", "triton", "numpy"}


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


def test_gpu_image_from_pypi_pins_every_package_once_and_satisfies_pyproject():
    """Dockerfile.pypi installs the CPU pins and its own together: no package pinned twice; between
    them every requirement of evoscan and its evo2/hf extras pinned and met, and everything torch's
    CUDA build and evo2 need, as this environment's copies (the same versions) declare it. The
    image's `pip check` covers the rest (containers/README.md: built and checked here)."""
    cpu, gpu = read_pins(CPU_PINS), read_pins(GPU_PYPI_PINS)
    assert not set(cpu) & set(gpu), f"pinned in both files: {sorted(set(cpu) & set(gpu))}"
    pins = {**cpu, **gpu}
    proj = project()
    assert_pins_satisfy(proj["dependencies"] + proj["optional-dependencies"]["evo2"]
                        + proj["optional-dependencies"]["hf"], pins, "CPU + GPU (PyPI) pins")
    import torch

    if torch.version.cuda:  # PyPI's own build, as here (a CPU build elsewhere declares no CUDA wheels)
        needed = installed_closure(["torch", "evo2"])  # (transformers floats in the test environment)
        assert "nvidia-cublas" in needed and "triton" in needed
        assert not needed - set(pins), f"needed but not pinned: {sorted(needed - set(pins))}"


def installed_closure(roots: list[str]) -> set[str]:
    """Every distribution the installed `roots` need on Linux, extras followed, read from this
    environment's metadata (the test environment holds the same versions the image pins)."""
    env = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix"}
    seen, todo = set(), [(r, frozenset()) for r in roots]
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
                todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}


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
    assert "IMAGE_TAG ?= evoscan:$(VERSION)" in (REPO / "Makefile").read_text()


# --- the CPU image, built and run -----------------------------------------------------------------

# What torch==2.13.0 requires, with every requirement of those (markers for this platform, no extras):
# a CUDA build of torch (the one PyPI serves where no CPU wheel is at hand) brings its CUDA libraries.
TORCH_RUNTIME = """
import importlib.metadata as md, json
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
seen, todo = set(), [("torch", ())]
while todo:
    name, extras = todo.pop()
    for line in md.requires(name) or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            key = canonicalize_name(req.name)
            if (key, tuple(sorted(req.extras))) not in seen:
                seen.add((key, tuple(sorted(req.extras))))
                todo.append((key, tuple(req.extras)))
print(json.dumps(sorted({key for key, _ in seen})))
"""


@pytest.mark.slow
def test_cpu_image_holds_the_pinned_stack_and_runs_as_a_user(podman, cpu_image):
    out = podman("run", "--rm", "--network", "none", cpu_image, "sh", "-c",
                 "id -u; python3 -c 'import sys; print(*sys.version_info[:2])'; python3 -c \"$0\"; pip freeze --all",
                 TORCH_RUNTIME).stdout.split("\n")
    assert out[0] != "0", "the image must not run as root"
    assert out[1] == f"{sys.version_info[0]} {sys.version_info[1]}"  # the tests' Python is the image's
    torch_runtime = set(json.loads(out[2]))
    frozen = {canonicalize_name(r.name): Version(next(iter(r.specifier)).version)
              for r in map(Requirement, filter(None, out[3:])) if "==" in str(r.specifier)}
    frozen = {n: Version(v.public) for n, v in frozen.items() if n not in {"pip", "setuptools", "evoscan"}}
    pins = read_pins(CPU_PINS)
    # nothing unpinned crept in but torch's own runtime (CUDA libraries of a CUDA build), nothing pinned is missing
    assert {n: v for n, v in frozen.items() if n in pins or n not in torch_runtime} == pins
