"""HDF5 interchange: every intermediate carries a schema, provenance and the digest of its window set.

A consumer opens a file with `read_checked`, which refuses the wrong kind of file and a file made
from another window set, so steps can never silently join unrelated data.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .. import __version__
from ..errors import EvoscanError

SCHEMAS = {
    "windows": "evoscan.windows/1",
    "masks": "evoscan.masks/1",
    "embeddings": "evoscan.embeddings/2",
    "neighbours": "evoscan.neighbours/1",
    "blast": "evoscan.blast/1",
    "scores": "evoscan.scores/3",
}

STR = h5py.string_dtype("utf-8")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    if not path.parent.exists():
        raise EvoscanError(f"output directory {path.parent} does not exist; create it first")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def provenance(kind: str, window_digest: str, params: dict, tools: dict | None = None) -> dict:
    """The attributes every evoscan HDF5 file carries."""
    return {
        "schema": SCHEMAS[kind],
        "evoscan_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "window_digest": window_digest,
        "params": json.dumps(params, sort_keys=True),
        "tool_versions": json.dumps(tools or {}, sort_keys=True),
    }


def write_h5(path, datasets: dict[str, np.ndarray], attrs: dict) -> None:
    """Write `datasets` and `attrs` to `path` atomically (a crash leaves no half-written file)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        for name, data in datasets.items():
            data = np.asarray(data)
            if data.dtype.kind in "OU":
                f.create_dataset(name, data=data.astype(object), dtype=STR)
            else:
                f.create_dataset(name, data=data, compression="gzip" if data.size > 4096 else None)


def open_checked(path, kind: str, window_digest: str | None = None) -> h5py.File:
    """Open an evoscan HDF5 file for reading, checking its schema and (optionally) its window set."""
    path = Path(path)
    if not path.exists():
        raise EvoscanError(f"{path}: no such file")
    expected = SCHEMAS[kind]
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise EvoscanError(f"{path}: not an HDF5 file; expected an evoscan {kind} file ({expected})") from None
    schema = str(f.attrs.get("schema", ""))
    if schema != expected:
        f.close()
        found = f"schema {schema!r}" if schema else "no evoscan schema"
        raise EvoscanError(f"{path}: expected an evoscan {kind} file ({expected}), found {found}")
    if window_digest is not None and str(f.attrs.get("window_digest")) != window_digest:
        f.close()
        raise EvoscanError(
            f"{path} was made from a different window set than the windows file given; "
            f"rerun `evoscan {kind_step(kind)}` on the same windows file"
        )
    return f


def schema_kind(path) -> str:
    """The kind (windows, masks, ...) of an evoscan HDF5 file, from its schema attribute."""
    try:
        with h5py.File(path, "r") as f:
            schema = str(f.attrs.get("schema", ""))
    except OSError:
        raise EvoscanError(f"{path}: not an HDF5 file") from None
    for kind, name in SCHEMAS.items():
        if schema == name:
            return kind
    raise EvoscanError(f"{path}: not an evoscan file (schema {schema!r})")


def kind_step(kind: str) -> str:
    return {"masks": "mask", "embeddings": "embed", "neighbours": "search", "scores": "check"}.get(kind, kind)


def read_strings(ds) -> np.ndarray:
    """A string dataset as a numpy array of Python str."""
    return ds.asstr()[()].astype(object) if ds.shape else np.array([], dtype=object)


def params_of(f: h5py.File) -> dict:
    return json.loads(f.attrs.get("params", "{}"))
