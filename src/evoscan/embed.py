"""Step 4, `evoscan embed`: embeddings of every window from a backend, written chunk by chunk.

Rows go to `<out>.partial` as they are computed, with the number of finished rows recorded after
each batch; a killed run started again with the same inputs continues from there, and the
finished file is renamed into place, so `<out>` only ever exists complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from .backends import Backend
from .errors import EvoscanError
from .io import h5
from .windows import WindowSet


def _open_partial(partial: Path, n: int, dim: int, attrs: dict, batch: int) -> h5py.File:
    """Reopen a partial file made by the same backend from the same windows, or start a new one."""
    if partial.exists():
        try:
            f = h5py.File(partial, "a")
            same = (f.attrs.get("window_digest") == attrs["window_digest"]
                    and f.attrs.get("params") == attrs["params"]
                    and f["embeddings"].shape == (n, dim))
            if same:
                return f
            f.close()
        except (OSError, KeyError):
            pass  # unreadable leftovers of a killed run: start over
        partial.unlink()
    f = h5py.File(partial, "w")
    for key, value in attrs.items():
        f.attrs[key] = value
    f.attrs["n_done"] = 0
    f.create_dataset("embeddings", shape=(n, dim), dtype=np.float32, chunks=(max(1, min(batch, n)), dim))
    return f


def embed_windows(ws: WindowSet, backend: Backend, out_path, progress: Callable[[int], None] | None = None) -> None:
    """Embed every window of `ws` with `backend` into `out_path` (resumable)."""
    out_path = Path(out_path)
    if not out_path.parent.exists():
        raise EvoscanError(f"output directory {out_path.parent} does not exist; create it first")
    partial = out_path.with_name(out_path.name + ".partial")
    attrs = h5.provenance("embeddings", ws.digest, backend.provenance())
    attrs.update(backend=backend.name, dim=backend.dim)
    n = len(ws)
    with _open_partial(partial, n, backend.dim, attrs, backend.batch_size) as f:
        done = int(f.attrs["n_done"])
        if progress and done:
            progress(done)
        for start in range(done, n, backend.batch_size):
            end = min(n, start + backend.batch_size)
            vectors = backend.embed([s.decode("ascii") for s in ws.seqs[start:end]])
            if vectors.shape != (end - start, backend.dim) or not np.isfinite(vectors).all():
                raise EvoscanError(f"backend {backend.name} returned bad embeddings for windows {start}..{end}")
            f["embeddings"][start:end] = vectors
            f.attrs["n_done"] = end
            f.flush()
            if progress:
                progress(end - start)
    os.replace(partial, out_path)


def read_embeddings(path, ws: WindowSet) -> tuple[np.ndarray, dict]:
    """The `[N, D]` matrix of an embeddings file made from `ws`, and its backend provenance."""
    with h5.open_checked(path, "embeddings", ws.digest) as f:
        if int(f.attrs.get("n_done", -1)) != len(ws):
            raise EvoscanError(f"{path} is incomplete; rerun `evoscan embed` to finish it")
        return f["embeddings"][()], json.loads(f.attrs["params"])
