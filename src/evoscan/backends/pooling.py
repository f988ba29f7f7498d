"""Pooling shared by the language-model backends: token states to one vector per sequence."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..windows import reverse_complement

POOLINGS = ("mean", "last", "rc_mean")


def pool(states, real, how: str):
    """`states` [B, L, D] (float32), `real` [B, L] bool marking real tokens -> [B, D] numpy float32.

    `mean` averages the real tokens, `last` takes the last real token (`rc_mean` pools by mean).
    """
    import torch

    if how == "last":
        last = real.shape[1] - 1 - real.flip(1).int().argmax(1)
        pooled = states[torch.arange(states.shape[0], device=states.device), last]
    else:
        weights = real.to(states.dtype)
        pooled = (states * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)
    return pooled.cpu().numpy().astype(np.float32)


def embed_pooled(pooled: Callable[[list[str]], np.ndarray], seqs: list[str], how: str) -> np.ndarray:
    """Upper-case, then pool; `rc_mean` averages the forward and reverse-complement strands."""
    seqs = [s.upper() for s in seqs]
    if how == "rc_mean":
        both = pooled(seqs + [reverse_complement(s) for s in seqs])
        return (both[:len(seqs)] + both[len(seqs):]) / 2
    return pooled(seqs)
