"""Build the GPU image from Debian and PyPI (containers/gpu/Dockerfile.pypi) here, time it, and check it
(the figures of containers/README.md): a Debian 12 minbase made with debootstrap as its base (no
registry is reachable here), podman with this VM's settings and the host's pip settings, as
tests/images.py builds the CPU image; then `pip check`, `evoscan-gpu-check`, and `--gpu`, which
must say in one line that it sees no GPU where there is none.

    python benchmarks/build_gpu_image.py [--keep]     (root, podman and debootstrap; ~6 GB of disk)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from images import debian_mirror, host_pip_settings, podman_in  # noqa: E402

import evoscan  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the image and its storage folder")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gpu-image-"))
    podman = podman_in(tmp)
    t = time.perf_counter()
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", tmp / "rootfs", debian_mirror()],
                   check=True, capture_output=True)
    subprocess.run(["tar", "-C", tmp / "rootfs", "--numeric-owner", "--exclude=./dev/*", "-cf", tmp / "base.tar", "."],
                   check=True)
    podman("import", "--quiet", tmp / "base.tar", "localhost/evoscan-base:bookworm")
    print(f"base (debootstrap + import): {time.perf_counter() - t:.0f} s", flush=True)
    conf, mounts = host_pip_settings()
    (tmp / "pip.conf").write_text(conf)
    tag = f"localhost/evoscan-gpu:{evoscan.__version__}"
    t = time.perf_counter()
    podman("build", "--build-arg", "BASE=localhost/evoscan-base:bookworm",
           *[f"--volume={m}" for m in [*mounts, f"{tmp / 'pip.conf'}:/etc/pip.conf:ro"]],
           "--file", REPO / "containers" / "gpu" / "Dockerfile.pypi", "--tag", tag, REPO, timeout=3600)
    print(f"build: {time.perf_counter() - t:.0f} s", flush=True)
    size = json.loads(podman("image", "inspect", tag).stdout)[0]["Size"]
    print(f"image {tag}: {size / 1e9:.2f} GB")
    checked = podman("run", "--rm", "--network", "none", tag, "sh", "-c", "pip check && evoscan-gpu-check")
    print(checked.stdout.strip())
    gpu = podman("run", "--rm", "--network", "none", tag, "evoscan-gpu-check", "--gpu", check=False)
    print(f"--gpu: exit {gpu.returncode}: {(gpu.stdout + gpu.stderr).strip().splitlines()[-1]}")
    if not a.keep:
        podman("rmi", "--all", "--force", check=False)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
