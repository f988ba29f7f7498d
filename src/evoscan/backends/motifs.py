"""The `motifs` backend: a window's binding potential for the JASPAR CORE vertebrate matrices.

Regulatory grammar without a language model, on a CPU or a GPU: each window becomes, per cluster
of near-identical matrices, its binding potential beyond what its dinucleotide composition
predicts (`motifs.py` says why each choice), as a z-score against random sequence. The search's
per-dimension standardisation then compares windows by which factors they could bind more or
less than usual.
"""

from __future__ import annotations

import numpy as np

from .. import motifs
from . import register


class MotifBackend:
    name = "motifs"

    def __init__(self, source: str = motifs.DEFAULT_SOURCE, pvalue: float = motifs.DEFAULT_PVALUE,
                 cluster_r: float = motifs.DEFAULT_CLUSTER_R, device: str | None = None, batch_size: int = 256):
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.profiler = motifs.motif_profiler(source, pvalue, cluster_r, device)  # shared with the check
        self.dim, self.batch_size = self.profiler.dim, batch_size

    def embed(self, seqs: list[str]) -> np.ndarray:
        return self.profiler.vectors(seqs)

    def provenance(self) -> dict:
        return {"backend": self.name, **self.profiler.provenance(),
                "feature": "log2 mean odds over both strands beyond the dinucleotide expectation, "
                           "cluster mean, z against random sequence"}

    identity = provenance  # nothing to load

    def close(self) -> None:
        pass  # nothing held


@register("motifs")
def make(motifs_source: str = motifs.DEFAULT_SOURCE, motif_pvalue: float = motifs.DEFAULT_PVALUE,
         motif_cluster_r: float = motifs.DEFAULT_CLUSTER_R, batch_size: int = 256) -> MotifBackend:
    return MotifBackend(motifs_source, motif_pvalue, motif_cluster_r, batch_size=batch_size)
