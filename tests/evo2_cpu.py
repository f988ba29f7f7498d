"""Test-only shims that let the real evo2 / Vortex code run on a CPU (no CUDA, flash-attn or Triton).

Nothing here replaces evo2's model, loader or forward: the shims stand in for the GPU-only
extension modules the package imports, make `torch.cuda.device` a no-op, and give Vortex's
rotary embedding its own torch implementation instead of the Triton kernel. Facts behind each
shim: shared/notes/evo2-on-cpu.md. This module lives in tests/ and is never imported by evoscan.
"""

from __future__ import annotations

import contextlib
import importlib.util
import pkgutil
import sys
import tempfile
import types

import torch


class _Anything(types.ModuleType):
    """A module whose every attribute exists (Triton names used in annotations at import time)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return object()


def _identity_decorator(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


def install() -> None:
    """Idempotent: register the stand-ins, then import evo2 and patch Vortex for CPU."""
    if getattr(install, "done", False):
        return
    sys.modules.setdefault("flash_attn_2_cuda", types.ModuleType("flash_attn_2_cuda"))
    if importlib.util.find_spec("triton") is None:
        triton = _Anything("triton")
        triton.jit = triton.autotune = triton.heuristics = _identity_decorator
        triton.Config = lambda *a, **k: None
        language = _Anything("triton.language")
        triton.language = language
        sys.modules["triton"], sys.modules["triton.language"] = triton, language
    torch.cuda.device = lambda device: contextlib.nullcontext()

    import vortex.model.rotary as rotary

    def apply_rotary_torch(x, cos, sin, seqlen_offsets=0, cu_seqlens=None, max_seqlen=None,
                           interleaved=False, inplace=False, conjugate=False):
        seqlen = x.shape[1]
        cos, sin = cos[seqlen_offsets:seqlen_offsets + seqlen], sin[seqlen_offsets:seqlen_offsets + seqlen]
        if conjugate:
            sin = -sin
        out = rotary.apply_rotary_emb_torch(x.float(), cos.float(), sin.float(), interleaved).to(x.dtype)
        if inplace:
            x.copy_(out)
            return x
        return out

    rotary.apply_rotary = apply_rotary_torch
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):  # Vortex opens a log file where evo2 is imported
        import evo2  # noqa: F401  (must import cleanly now)

    # Vortex holds its references now; other libraries (transformers, torch) probe for Triton and
    # must not find the stand-in.
    for name in ("triton", "triton.language"):
        if isinstance(sys.modules.get(name), _Anything):
            del sys.modules[name]
    install.done = True


def tiny_config() -> dict:
    """The 1B config shrunk: every block kind (hcs, hcm, hcl, attention) of the real model, 25 blocks,
    hidden 256, CPU-friendly flags."""
    import yaml

    config = yaml.safe_load(pkgutil.get_data("evo2", "configs/evo2-1b-8k.yml"))
    config.update(hidden_size=256, num_filters=256, hcl_filter_groups=256, num_attention_heads=4,
                  inner_mlp_size=512, use_flash_attn=False, use_fp8_input_projections=False,
                  max_seqlen=1024)
    return config


def save_tiny_model(directory, seed: int = 0):
    """Build the tiny model with random weights and save config YAML + weights .pt, as a user would
    ship a custom checkpoint. Returns (config_path, weights_path)."""
    import yaml
    from vortex.model.model import StripedHyena
    from vortex.model.utils import dotdict

    from evoscan.backends.evo2 import stabilise_random_weights

    install()
    torch.manual_seed(seed)
    config = tiny_config()
    model = StripedHyena(dotdict(config))
    stabilise_random_weights(model)
    config_path, weights_path = directory / "tiny.yml", directory / "tiny.pt"
    config_path.write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), weights_path)
    return config_path, weights_path
