"""The `hf` backend: any Hugging Face DNA language model stored in a local directory.

Loaded with transformers' AutoTokenizer / AutoModel from the directory only (never the hub), on
the GPU when there is one, at the first batch to embed. `layer` indexes the model's hidden states
(0 = embeddings, -1 = last, the default). Pooling as for evo2: `mean` over real tokens (special tokens and padding excluded),
the `last` real token, or `rc_mean` (both strands). Sequences are upper-cased; output float32.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import pickle
from pathlib import Path

import numpy as np

from ..errors import EvoscanError
from . import register
from .pooling import POOLINGS, embed_pooled, pool

log = logging.getLogger("evoscan.hf")


def directory_digest(path: Path) -> str:
    """Identity of a model directory: names and sizes of its files, and its config."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
        if f.name == "config.json":
            h.update(f.read_bytes())
    return h.hexdigest()[:32]


class HFBackend:
    name = "hf"

    def __init__(self, model: str | Path, layer: str | int | None = None, pooling: str = "mean",
                 batch_size: int = 16):
        if pooling not in POOLINGS:
            raise EvoscanError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        self.path = Path(model)
        if not (self.path / "config.json").is_file():
            raise EvoscanError(f"{self.path}: not a Hugging Face model directory (no config.json); "
                               "give a local directory saved with save_pretrained")
        try:
            self.layer = int(layer) if layer is not None else -1
        except ValueError:
            raise EvoscanError(f"--layer for the hf backend is a hidden-state index (e.g. -1), not {layer!r}") from None
        self.pooling, self.batch_size = pooling, batch_size
        try:
            from transformers import AutoConfig
            from transformers.utils import logging as transformers_logging
        except ImportError:
            raise EvoscanError("the hf backend needs transformers: pip install transformers") from None
        transformers_logging.disable_progress_bar()  # stderr is for evoscan's one-line errors, not bars
        try:
            config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise EvoscanError(f"{self.path}: cannot read the model's config.json ({str(err).splitlines()[0]})") from None
        n_states = config.num_hidden_layers + 1
        if not -n_states <= self.layer < n_states:
            raise EvoscanError(f"layer {self.layer} does not exist: the model has hidden states 0..{n_states - 1} "
                               "(0 = embeddings, -1 = last)")
        self.dim, self.architecture = int(config.hidden_size), config.model_type
        self._digest = directory_digest(self.path)

    # The model is loaded on first use, so a run that reuses its embeddings never loads it; what
    # the provenance needs comes from config.json.

    @functools.cached_property
    def _loaded(self):
        import torch
        from safetensors import SafetensorError
        from transformers import AutoModel, AutoTokenizer

        log.info("hf: loading %s", self.path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        except pickle.UnpicklingError:
            raise EvoscanError(f"{self.path}: refused to load weights that hold Python objects beyond tensors "
                               "(loading them could run code); use safetensors weights") from None
        except (OSError, ValueError, SafetensorError) as err:  # missing, damaged or truncated files
            raise EvoscanError(f"{self.path}: cannot load the model ({str(err).splitlines()[0]})") from None
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return tokenizer, model.to(device), device

    def _pooled(self, seqs: list[str]) -> np.ndarray:
        import torch

        tokenizer, model, device = self._loaded
        enc = tokenizer(seqs, padding=True, return_tensors="pt", return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask")
        real = (enc["attention_mask"].bool() & ~special.bool()).to(device)
        with torch.inference_mode():
            out = model(**{k: v.to(device) for k, v in enc.items()}, output_hidden_states=True)
        return pool(out.hidden_states[self.layer].float(), real, self.pooling)

    def embed(self, seqs: list[str]) -> np.ndarray:
        return embed_pooled(self._pooled, seqs, self.pooling)

    def provenance(self) -> dict:
        versions = {}
        for package in ("transformers", "torch"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                versions[package] = importlib.metadata.version(package)
        return {"backend": self.name, "model": str(self.path), "model_digest": self._digest,
                "architecture": self.architecture, "layer": self.layer,
                "pooling": self.pooling, "uppercase": True, "versions": versions}

    identity = provenance  # known from config.json and the directory, before the model loads

    def close(self) -> None:
        """Drop the model and tokenizer; a later call loads them again."""
        self.__dict__.pop("_loaded", None)


@register("hf")
def make(**options) -> HFBackend:
    return HFBackend(**options)
