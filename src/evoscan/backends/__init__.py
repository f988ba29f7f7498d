"""Embedding backends: batches of DNA sequences in, `[N, D]` float32 out, with a name and provenance.

A backend module registers a factory under its name; heavy backends (evo2, hf) are imported only
when asked for, so the kmer default needs neither a GPU nor model weights.
"""

from __future__ import annotations

import importlib
from typing import Callable, Protocol

import numpy as np

from ..errors import EvoscanError


class Backend(Protocol):
    name: str
    dim: int
    batch_size: int  # sequences per call that fit the device comfortably

    def embed(self, seqs: list[str]) -> np.ndarray:
        """Embeddings of `seqs` as float32 `[len(seqs), dim]`; row i depends on seqs[i] only."""

    def provenance(self) -> dict:
        """Everything needed to reproduce the vectors (model, weights digest, layer, pooling, ...)."""

    def close(self) -> None:
        """Let go of what embedding held (a model, a GPU's memory), once the embedding is done."""

    def identity(self) -> dict:
        """The provenance as far as it is known before a model is loaded (what was asked for where
        what ran may differ): the settings by which `evoscan run` decides to reuse embeddings."""


_REGISTRY: dict[str, Callable[..., Backend]] = {}
_MODULES = {"kmer": "kmer", "evo2": "evo2", "hf": "hf", "motifs": "motifs"}


def register(name: str):
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory
    return wrap


def names() -> list[str]:
    return sorted(_MODULES)


def get_backend(name: str, **options) -> Backend:
    if name not in _MODULES:
        raise EvoscanError(f"unknown backend {name!r}; choose from {', '.join(names())}")
    importlib.import_module(f"{__name__}.{_MODULES[name]}")
    return _REGISTRY[name](**options)
