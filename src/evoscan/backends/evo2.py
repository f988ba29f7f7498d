"""The `evo2` backend: pooled hidden states of an Evo 2 layer, through the `evo2` package.

- Weights: `--weights PATH.pt` (a merged checkpoint), else `$HF_HOME/<model>.pt` where the evo2
  package keeps merged downloads; a download happens only with `allow_download`. `--weights
  random` builds the real architecture with random weights (bf16, no checkpoint): a dry run for
  set-up checks and benchmarks, whose vectors mean nothing.
- Layers: `blocks.N` is the residual stream after block N; `blocks.N.mlp.l3` is the MLP branch of
  block N before it is added to the stream (the layer the Evo 2 authors embed from). The default
  is the MLP branch at 7/8 depth: `blocks.28.mlp.l3` for the 32-block 7B models (as in the
  authors' embedding example), blocks.22 (1B, 25 blocks), 21 (20B, 24), 44 (40B, 50).
- Sequences are upper-cased before tokenising (the tokenizer is byte-level: soft-masked `a` is a
  different token from `A`); N stays N, a token the model knows; windows with many N are dropped
  upstream by `evoscan windows`.
- Pooling: `mean` over real tokens, `last` token, or `rc_mean` (mean pooling of the forward and
  reverse-complement passes, averaged: strand-symmetric like the kmer backend). Output float32.
- The forward pass stops after the requested layer (no later blocks, no final norm, no logits)
  unless `full_forward` is asked for; Evo 2 is causal, so right padding never changes the
  states of real tokens.
- Speed-ups (`speedups`; evo2_speed.py): Vortex's fused kernels, torch.compile, CUDA
  graphs and opt-in FP8 matmuls for the forward to the layer; what cannot run here falls back to
  the plain path with a logged line, and the provenance records those that ran and change the vectors.
- The model is loaded on first use, not when the backend is made: `evoscan run` decides whether
  its embeddings can be reused from `identity()` alone, and a run that reuses them never loads it.
- One GPU per process: unless CUDA_VISIBLE_DEVICES is set, only the first GPU is made visible
  (Vortex would otherwise spread the layers over every visible GPU).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import logging
import os
import pickle
import re
import sys
import tempfile
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EvoscanError, UsageError, first_line
from . import register
from .evo2_speed import DEFAULT_SPEEDUPS, LayerForward, log, parse_speedups, vector_changing
from .model_files import file_digest
from .pooling import POOLINGS, embed_pooled, pool

_LAYER = re.compile(r"^blocks\.(\d+)(\..+)?$")


@dataclass(frozen=True)
class ModelSpec:
    config: str  # YAML inside the evo2 package
    needs_fp8: bool  # Transformer Engine FP8: GPUs of compute capability >= 8.9 (H100, L40S, RTX 4090)


MODELS = {
    "evo2_1b_base": ModelSpec("configs/evo2-1b-8k.yml", True),
    "evo2_7b": ModelSpec("configs/evo2-7b-1m.yml", False),
    "evo2_7b_base": ModelSpec("configs/evo2-7b-8k.yml", False),
    "evo2_7b_262k": ModelSpec("configs/evo2-7b-262k.yml", False),
    "evo2_20b": ModelSpec("configs/evo2-20b-1m.yml", True),
    "evo2_40b": ModelSpec("configs/evo2-40b-1m.yml", True),
    "evo2_40b_base": ModelSpec("configs/evo2-40b-8k.yml", True),
}


def _evo2_dir() -> Path:
    spec = importlib.util.find_spec("evo2")  # locates the package without importing it (needs CUDA)
    if spec is None or not spec.submodule_search_locations:
        raise EvoscanError("the evo2 package is not installed; install it (pip install evo2, after torch) "
                           "or use the evoscan GPU container")
    return Path(list(spec.submodule_search_locations)[0])


def read_config(model: str, config: str | Path | None = None) -> dict:
    """The model's architecture: a user config YAML, or the one the evo2 package ships for `model`."""
    import yaml

    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise EvoscanError(f"{path}: no such model config")
    else:
        if model not in MODELS:
            raise EvoscanError(f"unknown Evo 2 model {model!r}; choose from {', '.join(MODELS)}")
        path = _evo2_dir() / MODELS[model].config
    try:
        arch = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise EvoscanError(f"{path}: not YAML ({first_line(err)}); give the architecture YAML of the "
                           "checkpoint") from None
    missing = [key for key in ("hidden_size", "num_layers") if not isinstance(arch, dict) or key not in arch]
    if missing:
        raise EvoscanError(f"{path}: not an Evo 2 architecture (no {' or '.join(missing)}); give the architecture "
                           "YAML the checkpoint was made with, as the evo2 package's configs/ hold them")
    return arch


def default_layer(num_blocks: int) -> str:
    return f"blocks.{round(num_blocks * 7 / 8)}.mlp.l3"


def check_layer(layer: str, model: str, num_blocks: int) -> int:
    """The block index of `layer`, or an error that says which layers the model has."""
    match = _LAYER.match(layer)
    if not match or int(match[1]) >= num_blocks:
        raise UsageError(
            f"layer {layer!r} does not exist in {model} ({num_blocks} blocks: blocks.0 .. blocks.{num_blocks - 1}); "
            f"use blocks.N (residual stream) or blocks.N.mlp.l3 (MLP branch), e.g. {default_layer(num_blocks)}"
        )
    return int(match[1])


def find_weights(model: str, weights: str | Path | None) -> Path | str | None:
    """The local checkpoint to load, "random", or None when only a download could provide it."""
    if str(weights) == "random":
        return "random"
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            what = "a folder, not a" if path.is_dir() else "no such"
            raise EvoscanError(f"{path}: {what} weights file; give the merged {model}.pt checkpoint")
        if not zipfile.is_zipfile(path):  # what torch.save writes; loading maps it, which needs the zip form
            raise EvoscanError(f"{path}: not a torch checkpoint (or a truncated one); give the merged {model}.pt "
                               "checkpoint as evo2 writes it")
        return path
    from huggingface_hub import constants

    merged = Path(os.path.dirname(constants.HF_HUB_CACHE)) / f"{model}.pt"  # where evo2 keeps merged files
    return merged if merged.is_file() else None


def stabilise_random_weights(model) -> None:
    """Random weights that behave like trained ones where it matters: Vortex draws log-poles from a
    standard normal, and a positive log-pole grows as exp(t) along the sequence (inf, then NaN);
    the zero-initialised skip terms D get small values so every path carries signal."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("log_poles"):
                p.copy_(-p.abs() - 0.05)
            elif name.endswith("filter.D") and not p.any():
                p.normal_(0, 0.02)


@contextlib.contextmanager
def _quiet_import():
    """Import evo2/Vortex without their side effects on the user: INFO logging to the root logger,
    tqdm bars, prints on stdout, an activations_debug.log in the working directory."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp), contextlib.redirect_stdout(sys.stderr):
        yield


class Evo2Backend:
    name = "evo2"

    def __init__(self, model: str = "evo2_7b", layer: str | None = None, pooling: str = "mean",
                 weights: str | Path | None = None, config: str | Path | None = None,
                 allow_download: bool = False, batch_size: int = 16, full_forward: bool = False,
                 speedups: tuple[str, ...] | None = None):
        if pooling not in POOLINGS:
            raise EvoscanError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        quiet = speedups is None
        try:
            speedups = DEFAULT_SPEEDUPS if quiet else parse_speedups(speedups)
        except ValueError as err:
            raise EvoscanError(str(err)) from None
        if full_forward and not quiet and speedups:
            raise EvoscanError("--speedups apply to the forward that stops at the layer; drop --full-forward "
                               "or --speedups")
        arch = read_config(model, config)
        self.model_name, self.pooling, self.batch_size = model, pooling, batch_size
        self.full_forward, self.config = full_forward, config
        self.dim, num_blocks = int(arch["hidden_size"]), int(arch["num_layers"])
        self.layer = layer or default_layer(num_blocks)
        self.block = check_layer(self.layer, model if config is None else str(config), num_blocks)
        if config is None and MODELS[model].needs_fp8 and importlib.util.find_spec("transformer_engine") is None:
            raise EvoscanError(f"{model} needs FP8 through Transformer Engine (a GPU of compute capability >= 8.9 "
                               "such as H100 or L40S); install transformer_engine, or use a 7B model")
        if config is not None and weights is None:  # (not the stock $HF_HOME/<model>.pt: other keys, not loaded)
            raise EvoscanError("--model-config needs --weights: the checkpoint made with that architecture")
        self.weights = find_weights(model, weights)
        if self.weights is None and not allow_download:
            raise EvoscanError(
                f"no weights for {model}: pass --weights /path/{model}.pt, or put the merged checkpoint at "
                f"$HF_HOME/{model}.pt, or add --allow-download to fetch arcinstitute/{model} from the Hugging Face hub"
            )
        # Without flash-attn (PyPI's torch has none; the GPU image from Debian and PyPI), attention
        # runs through PyTorch, and evo2's downloader (which builds the model with flash-attn) cannot.
        self.attention = "flash-attn" if importlib.util.find_spec("flash_attn") else "torch"
        if self.weights is None and self.attention == "torch":
            raise EvoscanError(f"no flash-attn here, and evo2's downloader builds the model with it: "
                               f"download the {self.model_name} checkpoint once and pass --weights")
        if importlib.util.find_spec("evo2") is None:
            raise EvoscanError("cannot import evo2 (it is not installed); install evo2 after torch, or use the "
                               "evoscan GPU container")
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")  # one GPU per task
        self._digest = file_digest(self.weights) if isinstance(self.weights, Path) else ""
        # loaded by absolute path: the import runs in a scratch folder (_quiet_import), and Nextflow
        # stages the file under a relative name; the provenance keeps the name as given
        self._weights_file = str(self.weights.absolute()) if isinstance(self.weights, Path) else None
        self._arch, self._speedups, self._quiet = arch, speedups, quiet

    # The model is loaded when first needed (minutes for 7B, and most of a GPU's memory): a run that
    # reuses its embeddings never loads it; `identity()` is known without it.

    @functools.cached_property
    def evo2(self):
        log.info("evo2: loading %s (weights %s)", self.model_name, self.weights)
        loaded = self._load(self._arch)
        self._submodule(loaded, self.layer)  # the layer is one of its modules (checked for the full forward too)
        return loaded

    @functools.cached_property
    def _module(self):
        return self._submodule(self.evo2, self.layer)

    @functools.cached_property
    def forward(self) -> LayerForward | None:
        if self.full_forward:
            return None
        return LayerForward(self.evo2.model, self.block, self._module, self._speedups, self._quiet)

    def _load(self, arch: dict):
        import torch

        # Vortex builds each block inside torch.cuda.device(its device), which torch refuses for the
        # CPU: without a GPU the model cannot be built. (tests/evo2_cpu.py lifts this for CPU tests.)
        if not torch.cuda.is_available():
            try:
                torch.cuda.device("cpu")
            except ValueError:
                raise EvoscanError("evo2 builds its model on a CUDA GPU and torch sees none here; run the embedding "
                                   "on a GPU machine (Nextflow: -profile gpu), or choose a CPU backend") from None
        # Vortex imports flash-attn's CUDA module unguarded: without flash-attn a stand-in is
        # registered, which `use_flash_attn: False` keeps from ever being called.
        if self.attention == "torch":
            sys.modules.setdefault("flash_attn_2_cuda", types.ModuleType("flash_attn_2_cuda"))
            arch = {**arch, "use_flash_attn": False}
        with _quiet_import():
            try:
                import evo2
                from vortex.model.layers import HAS_TE
                from vortex.model.model import StripedHyena
                from vortex.model.tokenizer import CharLevelTokenizer
                from vortex.model.utils import dotdict, load_checkpoint
            except ImportError as err:
                raise EvoscanError(f"cannot import evo2 ({err}); install evo2 after torch, or use the evoscan "
                                   "GPU container") from None
            try:
                if self.config is None and self.weights != "random" and self.attention == "flash-attn":
                    return evo2.Evo2(self.model_name, local_path=self._weights_file)
                # The steps of Evo2(..., local_path=...) with this architecture: a user's config, a dry
                # run (random weights) or torch attention; bf16 projections where FP8 cannot run.
                if self.weights == "random" or not HAS_TE:
                    arch = {**arch, "use_fp8_input_projections": False}
                model = StripedHyena(dotdict(arch))
                if self.weights == "random":
                    model.to_bfloat16_except_pr_lc(to_float32=True)
                    stabilise_random_weights(model)
                else:
                    try:
                        load_checkpoint(model, self._weights_file)
                    except RuntimeError as err:  # torch's load_state_dict: keys or shapes that do not fit
                        if "state_dict" not in str(err):
                            raise
                        raise EvoscanError(f"{self.weights}: the checkpoint does not fit the architecture of "
                                           f"{self.config or self.model_name} ({first_line(err)}); give the YAML "
                                           "it was made with (--model-config)") from None
                wrapper = object.__new__(evo2.Evo2)
                wrapper.model, wrapper.tokenizer = model, CharLevelTokenizer(512)
                return wrapper
            except ImportError as err:  # evo2's own FP8 check
                raise EvoscanError(f"{self.model_name}: {str(err).splitlines()[0]}") from None
            except pickle.UnpicklingError:  # torch.load(weights_only=True) met more than tensors
                raise EvoscanError(f"{self.weights}: refused to load a checkpoint that holds Python objects beyond "
                                   "tensors (loading it could run code); use the published evo2 checkpoint") from None

    def _submodule(self, loaded, name: str):
        try:
            return loaded.model.get_submodule(name)
        except AttributeError:
            raise EvoscanError(f"layer {name!r} is not a module of {self.model_name}; "
                               f"use blocks.N or blocks.N.mlp.l3") from None

    # ---- forward ---------------------------------------------------------------------------

    def hidden_states(self, input_ids):
        """Hidden states `[B, L, D]` at the chosen layer, stopping the forward pass there."""
        if self.full_forward:
            _, states = self.evo2(input_ids, return_embeddings=True, layer_names=[self.layer])
            return states[self.layer]
        return self.forward(input_ids)

    def _pooled(self, seqs: list[str]) -> np.ndarray:
        """Pool one batch: right-padded token ids, real tokens only, fp32."""
        import torch

        tokenizer = self.evo2.tokenizer
        lengths = torch.tensor([len(s) for s in seqs])
        ids = torch.full((len(seqs), int(lengths.max())), tokenizer.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(tokenizer.tokenize(s), dtype=torch.long)
        device = next(self.evo2.model.parameters()).device
        states = self.hidden_states(ids.to(device)).float()
        real = torch.arange(states.shape[1], device=states.device)[None, :] < lengths.to(states.device)[:, None]
        return pool(states, real, self.pooling)

    def embed(self, seqs: list[str]) -> np.ndarray:
        """Embeddings of `seqs`, batched by length; halves the batch when the GPU runs out of memory."""
        import torch

        order = np.argsort([len(s) for s in seqs], kind="stable")
        out = np.empty((len(seqs), self.dim), dtype=np.float32)
        start, batch = 0, max(1, self.batch_size)
        while start < len(seqs):
            idx = order[start:start + batch]
            try:
                out[idx] = embed_pooled(self._pooled, [seqs[i] for i in idx], self.pooling)
            except torch.cuda.OutOfMemoryError:
                if batch == 1:
                    raise EvoscanError("the GPU runs out of memory for a single window; use shorter windows "
                                       "or a GPU with more memory") from None
                torch.cuda.empty_cache()
                batch //= 2
                self.batch_size = batch  # later calls start at the size that fits
                continue
            start += len(idx)
        return out

    def close(self) -> None:
        """Drop the model (most of a GPU's memory): nothing of the backend refers to it after (the
        forward holds it, compiled blocks included); a later call loads it again."""
        for name in ("forward", "_module", "evo2"):
            self.__dict__.pop(name, None)

    def identity(self) -> dict:
        """The provenance as asked for, without loading the model: the vector-changing speed-ups
        requested, where the provenance has those that ran."""
        versions = {}
        for package in ("evo2", "vtx", "torch"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[package] = importlib.metadata.version(package)
        return {
            "backend": self.name, "model": self.model_name, "layer": self.layer, "pooling": self.pooling,
            "weights": str(self.weights or f"hub:arcinstitute/{self.model_name}"),
            "weights_digest": self._digest,
            "config": str(self.config or MODELS[self.model_name].config), "uppercase": True,
            "stop_at_layer": not self.full_forward, "versions": versions, "attention": self.attention,
            "speedups": [] if self.full_forward else vector_changing(self._speedups),
        }

    def provenance(self) -> dict:
        return {**self.identity(), "speedups": self.forward.changing() if self.forward else []}


@register("evo2")
def make(**options) -> Evo2Backend:
    return Evo2Backend(**options)
