"""Step 3, `evoscan embed`: embeddings of every window and of its decoys from a backend, written
chunk by chunk.

Each window gets `n_decoys` tiled dinucleotide-shuffle decoys (`decoys.py`), embedded by the same
backend: the null of the target-decoy significance, at 1 + D embeddings per window. Rows go to
`<out>.partial` as they are computed, with the number of finished rows recorded after
each batch; a killed run started again with the same inputs continues from there, and the
finished file is renamed into place, so `<out>` only ever exists complete. A run may cover one
chunk of the windows (`--chunk I/N`, for scattering over GPUs); `merge_embeddings` joins chunks.
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
from .decoys import decoy_sequences, segment_length
from .windows import WindowSet, check_tiling


def _open_partial(partial: Path, n: int, dim: int, attrs: dict, batch: int, n_decoys: int) -> h5py.File:
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
    rows = max(1, min(batch, n))
    f.create_dataset("embeddings", shape=(n, dim), dtype=np.float32, chunks=(rows, dim))
    if n_decoys:  # same precision as the windows: decoys and targets must be scored alike
        f.create_dataset("decoys", shape=(n, n_decoys, dim), dtype=np.float32, chunks=(rows, n_decoys, dim))
    return f


def _embed_all(backend: Backend, seqs: list[str]) -> np.ndarray:
    """Embed any number of sequences in the backend's batches."""
    return np.concatenate([backend.embed(seqs[i:i + backend.batch_size])
                           for i in range(0, len(seqs), backend.batch_size)])


def embed_windows(ws: WindowSet, backend: Backend, out_path, progress: Callable[[int], None] | None = None,
                  rows: tuple[int, int] | None = None, n_decoys: int = 1, seed: int = 1) -> None:
    """Embed windows `rows` (default all) of `ws` with `backend` into `out_path` (resumable), and
    `n_decoys` tiled dinucleotide-shuffle decoys of each window."""
    out_path = Path(out_path)
    if not out_path.parent.exists():
        raise EvoscanError(f"output directory {out_path.parent} does not exist; create it first")
    if n_decoys < 1:
        raise EvoscanError("--decoys must be at least 1: significance is estimated from the decoys")
    partial = out_path.with_name(out_path.name + ".partial")
    lo, hi = rows or (0, len(ws))
    segment = segment_length(ws.params.size, ws.params.stride)
    params = {**backend.provenance(), "decoys": n_decoys, "decoy_seed": seed, "decoy_segment": segment}
    attrs = h5.provenance("embeddings", ws.digest, params)
    attrs.update(backend=backend.name, dim=backend.dim, rows_start=lo, rows_end=hi, n_windows=len(ws))
    table = ws.table
    with _open_partial(partial, hi - lo, backend.dim, attrs, backend.batch_size, n_decoys) as f:
        done = int(f.attrs["n_done"])
        if progress and done:
            progress(done)
        for start in range(lo + done, hi, backend.batch_size):
            end = min(hi, start + backend.batch_size)
            seqs = [s.decode("ascii") for s in ws.seqs[start:end]]
            vectors = backend.embed(seqs)
            if vectors.shape != (end - start, backend.dim) or not np.isfinite(vectors).all():
                raise EvoscanError(f"backend {backend.name} returned bad embeddings for windows {start}..{end}")
            f["embeddings"][start - lo:end - lo] = vectors
            decoys = _embed_all(backend, decoy_sequences(
                seqs, table["chrom"].iloc[start:end].tolist(), table["start"].iloc[start:end].tolist(),
                table["strand"].iloc[start:end].tolist(), n_decoys, seed, segment))
            if not np.isfinite(decoys).all():
                raise EvoscanError(f"backend {backend.name} returned bad decoy embeddings for windows {start}..{end}")
            f["decoys"][start - lo:end - lo] = decoys.reshape(end - start, n_decoys, -1)
            f.attrs["n_done"] = end - lo
            f.flush()
            if progress:
                progress(end - start)
    os.replace(partial, out_path)


def _read_part(path, ws: WindowSet) -> tuple[h5py.File, int, int]:
    f = h5.open_checked(path, "embeddings", ws.digest)
    lo, hi = int(f.attrs.get("rows_start", 0)), int(f.attrs.get("rows_end", len(ws)))
    if int(f.attrs.get("n_done", -1)) != hi - lo:
        f.close()
        raise EvoscanError(f"{path} is incomplete; rerun `evoscan embed` to finish it")
    return f, lo, hi


def read_embeddings(path, ws: WindowSet) -> tuple[np.ndarray, dict]:
    """The `[N, D]` matrix of an embeddings file made from `ws`, and its backend provenance."""
    f, lo, hi = _read_part(path, ws)
    with f:
        if (lo, hi) != (0, len(ws)):
            raise EvoscanError(f"{path} holds windows {lo}..{hi} of {len(ws)} only; "
                               "join the chunks with `evoscan merge` first")
        return f["embeddings"][()], json.loads(f.attrs["params"])


def open_embeddings(path, ws: WindowSet) -> h5py.File:
    """An embeddings file of all of `ws`'s windows, open for streaming reads (`embeddings` [N, D],
    `decoys` [N, n_decoys, D])."""
    f, lo, hi = _read_part(path, ws)
    if (lo, hi) != (0, len(ws)):
        f.close()
        raise EvoscanError(f"{path} holds windows {lo}..{hi} of {len(ws)} only; "
                           "join the chunks with `evoscan merge` first")
    if "decoys" not in f:
        f.close()
        raise EvoscanError(f"{path} has no decoy embeddings; rerun `evoscan embed` (evoscan >= 0.2)")
    return f


def merge_embeddings(parts: list, ws: WindowSet, out_path) -> None:
    """Join chunk files (any order) into one embeddings file; they must tile the windows exactly,
    come from the same backend settings, and not overlap."""
    pieces = []  # (start, end, path, attrs): only metadata in memory, rows are streamed below
    for path in parts:
        f, lo, hi = _read_part(path, ws)
        with f:
            pieces.append((lo, hi, path, dict(f.attrs)))
    pieces.sort(key=lambda p: p[0])
    if len({p[3]["params"] for p in pieces}) != 1:
        raise EvoscanError("embedding chunks come from different backend settings; re-embed them alike")
    check_tiling([(p[0], p[1]) for p in pieces], len(ws), "embedding")
    attrs = {**pieces[0][3], "rows_start": 0, "rows_end": len(ws), "n_done": len(ws)}
    with h5.atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        out.attrs.update(attrs)
        with h5py.File(pieces[0][2], "r") as first:
            shapes = {name: (first[name].shape[1:], first[name].dtype) for name in first}
        for name, (shape, dtype) in shapes.items():
            out.create_dataset(name, shape=(len(ws), *shape), dtype=dtype, chunks=(min(256, len(ws)), *shape))
        for lo, hi, path, _ in pieces:
            with h5py.File(path, "r") as f:
                for name in shapes:
                    for start in range(lo, hi, 256):  # bounded memory whatever the chunk size
                        end = min(hi, start + 256)
                        out[name][start:end] = f[name][start - lo:end - lo]
