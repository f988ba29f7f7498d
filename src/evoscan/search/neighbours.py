"""What a search finds and how it is kept, shared by the exact and the approximate search: the
settings (`SearchParams`), the neighbours of every query window (`Neighbours`), finished query
blocks kept for a killed search (`block_store`) and joined (`run_query_blocks`), and the
neighbours.h5 file (write, read, merge of chunks)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pandas as pd

from .. import heap
from ..errors import EvoscanError, UsageError
from ..io import h5
from ..io.checkpoint import BlockStore
from ..windows import WindowSet, check_tiling

CORRECTIONS = ("none", "center", "standardize")
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
INDEXES = ("exact", "ivf", "ivfpq")  # ivf, ivfpq: approximate (approximate.py)
ENTRY_COLUMNS = {"query": np.int64, "neighbour": np.int64, "score": np.float32, "cosine": np.float32}
BLOCK_COLUMNS = ["query", "neighbour", "score", "cosine", "decoy_scores"]


@dataclass(frozen=True)
class SearchParams:
    top_k: int = 10
    correction: str = "standardize"
    device: str = "cpu"
    precision: str = "fp32"
    memory_mb: int = 2048
    index: str = "exact"  # or "ivf" / "ivfpq": approximate, FAISS (approximate.py)
    nprobe: int = 0  # ivf, ivfpq: lists searched per query (0: 1/8 of them, at most 64)

    def __post_init__(self):
        if self.top_k < 1:
            raise UsageError("--top-k must be at least 1")
        if self.correction not in CORRECTIONS:
            raise UsageError(f"--correction must be one of {', '.join(CORRECTIONS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.memory_mb < 64:
            raise UsageError("--memory must be at least 64 (MB)")
        if self.index not in INDEXES:
            raise UsageError(f"--index must be one of {', '.join(INDEXES)}")
        if self.nprobe < 0:
            raise UsageError(f"--nprobe must be at least 0 (0: chosen from the index; got {self.nprobe})")
        if not re.fullmatch(r"(cpu|cuda|mps|xpu)(:\d+)?", self.device):
            raise UsageError(f"--device must be a torch device: cpu, cuda or cuda:N (or mps, xpu; got {self.device!r})")


@dataclass
class Neighbours:
    """Search results, one entry per (query, slot): the neighbour window, its corrected-space
    `score` and raw `cosine`, and the pair's decoy scores: the query against the neighbour's D
    decoys, then the query's D decoys against the neighbour."""

    entries: pd.DataFrame  # query, neighbour, score, cosine
    decoy_scores: np.ndarray  # [entries, 2D]
    n_decoys: int
    rows: tuple[int, int]
    # sum, sum of squares and count of each query window's similarities to the windows it may pair
    # with [N, 3], to their decoys [N, 3], and of each of its decoys to those windows [N, D, 3]
    # (rows outside this chunk: 0)
    window_sums: np.ndarray
    window_decoy_sums: np.ndarray
    decoy_sums: np.ndarray
    resumed_blocks: int = 0  # query blocks a killed search had finished (not stored)


def block_store(resume_dir: Path | None, f: h5py.File, ws: WindowSet, params: SearchParams, rows: tuple[int, int],
                grid: int, **more) -> BlockStore | None:
    """Where the finished query blocks of a search are kept (None: nowhere), for these inputs and
    settings (and `more` of them)."""
    if resume_dir is None:
        return None
    return BlockStore(resume_dir, {"window_digest": ws.digest, "params": asdict(params), "rows": list(rows),
                                   "grid": grid, "embeddings": f.attrs.get("params", ""), **more})


def run_query_blocks(query_block: Callable[[int, int], dict], rows: tuple[int, int], grid: int, n: int,
                     n_decoys: int, store: BlockStore | None = None,
                     progress: Callable[[int], None] | None = None) -> Neighbours:
    """Neighbours of query rows `rows`, `grid` rows per block: each block from `store` if a killed
    run finished it, else from `query_block(q0, q1)` (BLOCK_COLUMNS and the rows' sums) and kept."""
    lo, hi = rows
    results = []
    for q0 in range(lo, hi, grid):
        q1 = min(hi, q0 + grid)
        block = store.load(q0) if store else None
        if block is None:
            block = query_block(q0, q1)
            if store:
                store.save(q0, block)
        results.append((q0, q1, block))
        if progress:
            progress(q1 - q0)
    window_sums, window_decoy_sums = np.zeros((n, 3)), np.zeros((n, 3))
    decoy_sums = np.zeros((n, n_decoys, 3))
    for q0, q1, block in results:
        window_sums[q0:q1], window_decoy_sums[q0:q1] = block.pop("window_sums"), block.pop("window_decoy_sums")
        decoy_sums[q0:q1] = block.pop("decoy_sums")
    # each column gathered with its blocks' parts let go at once: the results are held about once,
    # not three times (blocks, joined columns, the table's copies: +0.8 GB at a million windows)
    def gathered(column: str, dtype, empty_shape) -> np.ndarray:
        heap.trim()  # the parts of the columns gathered before: small, freed inside the heap
        parts = [block.pop(column) for _, _, block in results]
        return np.asarray(np.concatenate(parts) if parts else np.empty(empty_shape), dtype)

    entries = pd.DataFrame({c: gathered(c, dtype, 0) for c, dtype in ENTRY_COLUMNS.items()}, copy=False)
    decoy_scores = gathered("decoy_scores", np.float32, (0, 2 * n_decoys)).reshape(-1, 2 * n_decoys)
    heap.trim()
    nb = Neighbours(entries=entries, decoy_scores=decoy_scores, n_decoys=n_decoys, rows=rows,
                    window_sums=window_sums, window_decoy_sums=window_decoy_sums, decoy_sums=decoy_sums)
    nb.resumed_blocks = store.resumed if store else 0
    return nb


# ---- HDF5 I/O --------------------------------------------------------------------------------

def write_neighbours(path, ws: WindowSet, nb: Neighbours, params: SearchParams, embeddings_meta: dict) -> None:
    attrs = h5.provenance("neighbours", ws.digest, asdict(params))
    attrs.update(rows_start=nb.rows[0], rows_end=nb.rows[1], n_decoys=nb.n_decoys,
                 backend=json.dumps(embeddings_meta))
    data = {c: nb.entries[c].to_numpy() for c in ENTRY_COLUMNS}
    data.update(decoy_scores=nb.decoy_scores, window_sums=nb.window_sums, window_decoy_sums=nb.window_decoy_sums,
                decoy_sums=nb.decoy_sums)
    h5.write_h5(path, data, attrs)


def _read_part(path, ws: WindowSet) -> tuple[Neighbours, dict]:
    sums = ("window_sums", "window_decoy_sums", "decoy_sums")
    with h5.open_checked(path, "neighbours", ws.digest, datasets=(*ENTRY_COLUMNS, "decoy_scores", *sums)) as f:
        nb = Neighbours(entries=pd.DataFrame({c: f[c][()] for c in ENTRY_COLUMNS}),
                        decoy_scores=f["decoy_scores"][()], n_decoys=int(f.attrs["n_decoys"]),
                        rows=(int(f.attrs["rows_start"]), int(f.attrs["rows_end"])),
                        **{name: f[name][()] for name in sums})
        return nb, dict(f.attrs)


def read_neighbours(path, ws: WindowSet) -> tuple[Neighbours, dict]:
    """All windows' neighbours, the search parameters and the embeddings' provenance."""
    nb, attrs = _read_part(path, ws)
    if nb.rows != (0, len(ws)):
        raise EvoscanError(f"{path} holds the neighbours of query windows {nb.rows[0]}..{nb.rows[1]} of "
                           f"{len(ws)} only; join the chunks with `evoscan merge` first")
    return nb, {"params": json.loads(attrs["params"]), "backend": json.loads(attrs["backend"])}


def merge_neighbours(parts: list, ws: WindowSet, out_path) -> None:
    """Join query-chunk files (any order); they must tile the windows and share every setting."""
    pieces = sorted((_read_part(p, ws) for p in parts), key=lambda p: p[0].rows)
    if len({(p[1]["params"], p[1]["backend"]) for p in pieces}) != 1:
        raise EvoscanError("search chunks were made with different settings or embeddings; rerun them alike")
    check_tiling([p[0].rows for p in pieces if p[0].rows[0] < p[0].rows[1]], len(ws), "search")  # chunks may be empty
    merged = Neighbours(entries=pd.concat([p[0].entries for p in pieces], ignore_index=True),
                        decoy_scores=np.concatenate([p[0].decoy_scores for p in pieces]),
                        n_decoys=pieces[0][0].n_decoys, rows=(0, len(ws)),
                        # each chunk holds its own rows (zeros elsewhere): adding them is exact
                        window_sums=sum(p[0].window_sums for p in pieces),
                        window_decoy_sums=sum(p[0].window_decoy_sums for p in pieces),
                        decoy_sums=sum(p[0].decoy_sums for p in pieces))
    attrs = pieces[0][1]
    params = SearchParams(**json.loads(attrs["params"]))
    write_neighbours(out_path, ws, merged, params, json.loads(attrs["backend"]))
