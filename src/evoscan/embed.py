"""Step 3, `evoscan embed`: embeddings of every window and of its decoys from a backend, written
chunk by chunk.

Each window gets `n_decoys` tiled dinucleotide-shuffle decoys (`decoys.py`), embedded by the same
backend: the null of the target-decoy significance, at 1 + D embeddings per window. Rows go to
`<out>.partial/` as they are computed (flat arrays written in place and flushed, then the count
of finished rows written atomically after each batch); a run killed at any moment, even by SIGKILL,
and started again with the same inputs continues from there, and the finished HDF5 file is
written under a temporary name and renamed, so `<out>` only ever exists complete. A run may cover one
chunk of the windows (`--chunk I/N`, for scattering over GPUs); `merge_embeddings` joins chunks.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from .backends import Backend
from .errors import EvoscanError, UsageError
from .io import h5
from .decoys import decoy_sequences, segment_length
from .windows import WindowSet, check_tiling


class _Partial:
    """Rows finished so far, kept crash-safe in `<out>.partial/`: flat .npy arrays written in place
    (a kill cannot damage rows already flushed; plain writes, not a memory map, so the process
    does not hold the file's pages) and `done.json`, rewritten atomically after each batch is
    flushed. A run with another identity (windows, backend settings, rows) starts over."""

    def __init__(self, folder: Path, identity: dict, n: int, dim: int, n_decoys: int):
        self.folder = folder
        stamp, text = folder / "identity.json", json.dumps(identity, sort_keys=True, default=str)
        if folder.is_file():
            folder.unlink()  # an HDF5 partial of evoscan 0.1, not resumable
        if folder.exists() and (not stamp.exists() or stamp.read_text() != text):
            shutil.rmtree(folder)
        fresh = not folder.exists()
        folder.mkdir(exist_ok=True)
        self.shapes = {"embeddings": (n, dim), "decoys": (n, n_decoys, dim)}
        self.offsets = {}
        for name, shape in self.shapes.items():
            path = folder / f"{name}.npy"
            if fresh:  # a .npy header, then the file grown to full size (sparse until written)
                with open(path, "wb") as fh:
                    np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
                    fh.truncate(fh.tell() + int(np.prod(shape)) * 4)
            with open(path, "rb") as fh:
                np.lib.format.read_magic(fh)
                np.lib.format.read_array_header_1_0(fh)
                self.offsets[name] = fh.tell()
        self.files = {name: open(folder / f"{name}.npy", "r+b") for name in self.shapes}
        if fresh:
            self._write(stamp, text)
            self.mark(0)
        self.done = self.rows_done(folder)

    @staticmethod
    def rows_done(folder: Path) -> int:
        try:
            return int(json.loads((folder / "done.json").read_text())["n_done"])
        except (OSError, ValueError, KeyError):
            return 0

    @staticmethod
    def _write(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)

    def write(self, name: str, row: int, values: np.ndarray) -> None:
        row_bytes = int(np.prod(self.shapes[name][1:])) * 4
        fh = self.files[name]
        fh.seek(self.offsets[name] + row * row_bytes)
        fh.write(np.ascontiguousarray(values, dtype=np.float32).tobytes())

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        shape = self.shapes[name]
        row_bytes = int(np.prod(shape[1:])) * 4
        fh = self.files[name]
        fh.seek(self.offsets[name] + start * row_bytes)
        return np.frombuffer(fh.read((stop - start) * row_bytes), np.float32).reshape(stop - start, *shape[1:])

    def mark(self, n_done: int) -> None:
        """Rows 0..n_done are final: flush them to disk first, then say so."""
        for fh in self.files.values():
            fh.flush()
            os.fsync(fh.fileno())
        self._write(self.folder / "done.json", json.dumps({"n_done": n_done}))
        self.done = n_done

    def remove(self) -> None:
        for fh in self.files.values():
            fh.close()
        shutil.rmtree(self.folder)


def _embed_all(backend: Backend, seqs: list[str]) -> np.ndarray:
    """Embed any number of sequences in the backend's batches."""
    return np.concatenate([backend.embed(seqs[i:i + backend.batch_size])
                           for i in range(0, len(seqs), backend.batch_size)])


def embedding_params(ws: WindowSet, backend: Backend, n_decoys: int, seed: int) -> dict:
    """Everything that decides the vectors of an embeddings file, beside its window set."""
    return {**backend.provenance(), **_decoy_params(ws, n_decoys, seed)}


def embedding_identity(ws: WindowSet, backend: Backend, n_decoys: int, seed: int) -> dict:
    """The same as asked for, known before the backend loads a model: what a run's reuse compares."""
    return {**backend.identity(), **_decoy_params(ws, n_decoys, seed)}


def _decoy_params(ws: WindowSet, n_decoys: int, seed: int) -> dict:
    return {"decoys": n_decoys, "decoy_seed": seed, "decoy_segment": segment_length(ws.params.size, ws.params.stride)}


def embed_windows(ws: WindowSet, backend: Backend, out_path, progress: Callable[[int], None] | None = None,
                  rows: tuple[int, int] | None = None, n_decoys: int = 1, seed: int = 1) -> None:
    """Embed windows `rows` (default all) of `ws` with `backend` into `out_path` (resumable), and
    `n_decoys` tiled dinucleotide-shuffle decoys of each window."""
    out_path = Path(out_path)
    if not out_path.parent.exists():
        raise EvoscanError(f"output directory {out_path.parent} does not exist; create it first")
    if n_decoys < 1:
        raise UsageError("--decoys must be at least 1: significance is estimated from the decoys")
    folder = out_path.with_name(out_path.name + ".partial")
    lo, hi = rows or (0, len(ws))
    segment = segment_length(ws.params.size, ws.params.stride)
    params = embedding_params(ws, backend, n_decoys, seed)
    attrs = h5.provenance("embeddings", ws.digest, params)
    attrs.update(backend=backend.name, dim=backend.dim, rows_start=lo, rows_end=hi, n_windows=len(ws))
    table = ws.table
    try:
        with h5.writing(folder):
            partial = _Partial(folder, {"window_digest": ws.digest, "params": attrs["params"], "rows": [lo, hi]},
                               hi - lo, backend.dim, n_decoys)
    except BaseException:
        if _Partial.rows_done(folder) == 0:  # e.g. a full disk before the first row: leave nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if progress and partial.done:
        progress(partial.done)
    try:
        with h5.writing(partial.folder):
            for start in range(lo + partial.done, hi, backend.batch_size):
                end = min(hi, start + backend.batch_size)
                seqs = [s.decode("ascii") for s in ws.seqs[start:end]]
                vectors = backend.embed(seqs)
                if vectors.shape != (end - start, backend.dim):
                    raise EvoscanError(f"backend {backend.name} returned embeddings of shape {vectors.shape} for "
                                       f"windows {start + 1}..{end}, not ({end - start}, {backend.dim})")
                if not np.isfinite(vectors).all():
                    raise EvoscanError(f"backend {backend.name} returned NaN or infinite embeddings for windows "
                                       f"{start + 1}..{end}; its weights may hold NaN, or the layer overflows: "
                                       "check the model, or try another --layer")
                decoys = _embed_all(backend, decoy_sequences(
                    seqs, table["chrom"].iloc[start:end].tolist(), table["start"].iloc[start:end].tolist(),
                    table["strand"].iloc[start:end].tolist(), n_decoys, seed, segment))
                if not np.isfinite(decoys).all():
                    raise EvoscanError(f"backend {backend.name} returned NaN or infinite embeddings for the decoys "
                                       f"of windows {start + 1}..{end}; check the model, or try another --layer")
                partial.write("embeddings", start - lo, vectors)
                partial.write("decoys", start - lo, decoys)
                partial.mark(end - lo)
                if progress:
                    progress(end - start)
    except BaseException:
        if partial.done == 0:  # nothing finished to resume from: leave nothing behind
            partial.remove()
        raise
    rows_per_chunk = max(1, min(backend.batch_size, hi - lo))
    with h5.atomic_path(out_path) as tmp, h5.new_file(tmp) as f:
        f.attrs.update({**attrs, "n_done": hi - lo})
        for name, shape in partial.shapes.items():
            ds = f.create_dataset(name, shape=shape, dtype=np.float32, chunks=(rows_per_chunk, *shape[1:]))
            for r0 in range(0, shape[0], 4096):  # bounded memory whatever the number of windows
                ds[r0:min(shape[0], r0 + 4096)] = partial.read(name, r0, min(shape[0], r0 + 4096))
    partial.remove()


def _read_part(path, ws: WindowSet) -> tuple[h5py.File, int, int]:
    f = h5.open_checked(path, "embeddings", ws.digest, datasets=("embeddings",))
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
    for other in pieces[1:]:
        if other[3]["params"] != pieces[0][3]["params"]:
            first, second = json.loads(pieces[0][3]["params"]), json.loads(other[3]["params"])
            differ = ", ".join(f"{key} {first.get(key)!r} vs {second.get(key)!r}" for key in sorted({*first, *second})
                               if first.get(key) != second.get(key))
            raise EvoscanError(f"{pieces[0][2]} and {other[2]} come from different backend settings ({differ}); "
                               "embed every chunk with the same backend, model and layer")
    check_tiling([(p[0], p[1]) for p in pieces], len(ws), "embedding")
    attrs = {**pieces[0][3], "rows_start": 0, "rows_end": len(ws), "n_done": len(ws)}
    with h5.atomic_path(out_path) as tmp, h5.new_file(tmp) as out:
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
