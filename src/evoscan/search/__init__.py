"""Step 4, `evoscan search`: every window's nearest windows of other groups (genes or regions),
and its nearest decoys, in the corrected embedding space.

The package: `space` (the corrected space, the overlap exclusions, the query grid), `neighbours`
(settings, results, kept blocks, neighbours.h5), `exact` (below) and `approximate` (FAISS indexes,
`--index ivf|ivfpq`), both built on the first two.

Exact and streamed: embeddings and decoys are read from HDF5 one block of rows at a time, every
similarity is computed (torch matmul, CPU or GPU, fp32 or an fp16/bf16 option), and a running
top-k per query is kept. Memory is bounded by `memory_mb` (a query block, a database block of
windows and their decoys, and their similarity blocks), never by N x N or N x decoys x D. Where
the transformed database fits half the budget it is held, and the file is read once: the pass
that computes the correction's statistics keeps what it reads.

Same-group pairs and pairs of windows that overlap in the genome are excluded, for decoys as for
windows (a decoy stands in for its window). A pair (a, b) has 1 + 2D scores: a with b, a with
b's D decoys, and a's D decoys with b; both ends of the pair see the same ones. Each query keeps
k slots, the pairs whose best of those scores is highest (a selection blind to which score is
the real one), with all their scores: the target-decoy competition of `check`. On the way, the
search sums each query window's similarities to the windows it may pair with and to their
decoys, and each of its decoys' similarities to those windows (sum, sum of squares, count): the
means and spreads behind the normalised scores in `check`, each score measured against the
cohort of its partner's kind (a decoy's partner is a window, a window's partner a window or a
decoy).

Query rows are processed in blocks of a fixed grid that depends only on the data's shape and the
parameters, and `--chunk I/N` takes whole blocks of that grid, so a search scattered over chunks
and merged computes exactly what one whole search does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import h5py

from ..windows import WindowSet
from .approximate import approximate_search, require_enough_windows
from .exact import block_rows, exact_search
from .neighbours import (CORRECTIONS, INDEXES, PRECISIONS, Neighbours, SearchParams, merge_neighbours,
                         read_neighbours, write_neighbours)
from .space import block_moments, chunk_rows, cross_group_overlaps, embedding_stats, overlapping_pairs

__all__ = ["CORRECTIONS", "INDEXES", "PRECISIONS", "Neighbours", "SearchParams", "block_moments", "block_rows",
           "chunk_rows", "cross_group_overlaps", "embedding_stats", "merge_neighbours", "overlapping_pairs",
           "read_neighbours", "require_enough_windows", "search", "write_neighbours"]


def search(f: h5py.File, ws: WindowSet, params: SearchParams, chunk: tuple[int, int] | None = None,
           progress: Callable[[int], None] | None = None, resume_dir: Path | None = None) -> Neighbours:
    """The k slots of every query window of `chunk` (default all): exact, or approximate (ivf, ivfpq).

    With `resume_dir`, every finished query block is kept there, and a search killed and started
    again continues from them."""
    run = exact_search if params.index == "exact" else approximate_search
    return run(f, ws, params, chunk, progress, resume_dir)
