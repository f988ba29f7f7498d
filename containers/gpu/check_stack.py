#!/usr/bin/env python3
"""Checks the GPU image's Python stack (installed in the image as `evoscan-gpu-check`).

Without a GPU (run while the image builds): every requirement of evoscan and of its evo2 and hf
extras is installed at a version that satisfies it, and the packages the base image built for its
CUDA (torch, triton, flash-attn, Transformer Engine, numpy) are still the base's own versions, as
recorded before pip ran. With --gpu (`docker run --gpus all IMAGE evoscan-gpu-check --gpu`): that
stack and Evo 2's Vortex import, CUDA sees a GPU, and a bf16 matmul runs on it.

    evoscan-gpu-check [--base-stack FILE] [--gpu]
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import Version


def unmet_requirements(dist: str = "evoscan", extras: tuple[str, ...] = ("evo2", "hf")) -> list[str]:
    problems = []
    for line in metadata.requires(dist) or []:
        req = Requirement(line)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            continue
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req.name} is not installed ({dist} needs {req})")
            continue
        if not req.specifier.contains(Version(have), prereleases=True):
            problems.append(f"{req.name} {have} does not satisfy {req}")
    return problems


def replaced_base_packages(record: str) -> list[str]:
    """Base packages whose version differs from the record `pip list --format=freeze` made (empty
    in the image from Debian and PyPI, Dockerfile.pypi, which has no base stack to keep)."""
    problems = []
    if not os.path.exists(record):
        return [f"no record of the base image's packages at {record}: the image was not built by its Dockerfile"]
    with open(record) as lines:
        for line in filter(None, (l.strip() for l in lines)):
            name, _, version = line.partition("==")
            try:
                have = metadata.version(name)
            except metadata.PackageNotFoundError:
                have = "nothing"
            if have == "nothing" or Version(have) != Version(version):  # pip writes versions normalised
                problems.append(f"{name}: the base image had {version}, now {have}")
    return problems


def gpu_smoke() -> str:
    import importlib.util
    import types

    import torch

    attention = "flash-attn" if importlib.util.find_spec("flash_attn") else "torch"
    if attention == "torch":  # as evoscan's evo2 backend does: Vortex imports this module unguarded
        sys.modules.setdefault("flash_attn_2_cuda", types.ModuleType("flash_attn_2_cuda"))
    import vortex  # noqa: F401

    import evo2  # noqa: F401

    if not torch.cuda.is_available():
        raise RuntimeError("CUDA sees no GPU: run the container with --gpus all (Docker) or --nv (Apptainer)")
    a = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
    assert torch.isfinite(a @ a).all()
    te = "with" if importlib.util.find_spec("transformer_engine") else "without"
    return (f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"attention {attention}, {te} Transformer Engine")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-stack", default="/opt/evoscan/base-stack.txt",
                        help="the base image's own packages, recorded before pip ran")
    parser.add_argument("--gpu", action="store_true", help="also import the GPU stack and run on the GPU")
    args = parser.parse_args(argv)
    problems = unmet_requirements() + replaced_base_packages(args.base_stack)
    for problem in problems:
        print(f"evoscan-gpu-check: {problem}", file=sys.stderr)
    if problems:
        return 1
    kept = os.path.getsize(args.base_stack) > 0
    print("evoscan-gpu-check: requirements met" + (", base stack untouched" if kept else ""))
    if args.gpu:
        try:
            print(f"evoscan-gpu-check: {gpu_smoke()}")
        except (RuntimeError, ImportError) as err:
            print(f"evoscan-gpu-check: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
