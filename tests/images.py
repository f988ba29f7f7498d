"""The CPU image, built once per test session with podman from a Debian base made with debootstrap
(no registry can be reached here), then containers/cpu/Dockerfile unchanged but for that base.
Its storage and the two settings this VM needs live in a folder of the session's own, named by
CONTAINERS_CONF and CONTAINERS_STORAGE_CONF, so any podman given `Podman.env` (a test's, or the
one Nextflow's podman profile starts) sees the same image: ../shared/notes/containers.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import evoscan

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Podman:
    env: dict  # os.environ with CONTAINERS_CONF and CONTAINERS_STORAGE_CONF of the session's folder

    @property
    def settings(self) -> dict:
        """The two variables that point a podman (Nextflow's too) at this storage and configuration."""
        return {k: self.env[k] for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")}

    def __call__(self, *args, check=True, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(["podman", *map(str, args)], env=self.env, capture_output=True, text=True, **kw)
        assert not check or proc.returncode == 0, f"podman {' '.join(map(str, args))}\n{proc.stderr[-3000:]}"
        return proc


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


def podman_in(tmp: Path) -> Podman:
    """podman with its storage in the folder `tmp` and the two settings this VM needs (runc, as
    crun refuses hybrid cgroups; ulimits root may set)."""
    hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip()
    (tmp / "containers.conf").write_text(
        f'[containers]\ndefault_ulimits = ["nofile={hard}:{hard}", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n')
    (tmp / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp / "storage"}"\nrunroot = "{tmp / "run"}"\n')
    return Podman({**os.environ, "CONTAINERS_CONF": str(tmp / "containers.conf"),
                   "CONTAINERS_STORAGE_CONF": str(tmp / "storage.conf")})


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    """podman_in a folder of the session's own, or a skip naming what is missing."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (`make test-tools` installs it): the CPU image cannot be built")
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("making the Debian base needs root and debootstrap (`make test-tools` installs it)")
    tmp = tmp_path_factory.mktemp("podman")
    podman = podman_in(tmp)
    probe = podman("info", check=False)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run here: {probe.stderr.strip().splitlines()[-1:]}")
    yield podman
    podman("rmi", "--all", "--force", check=False)  # (not `system reset`: it also drops host networks)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def cpu_image(podman, tmp_path_factory):
    """Debian 12 minbase from debootstrap → containers/cpu/Dockerfile built on it, unchanged."""
    tmp = tmp_path_factory.mktemp("image")
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
