"""Identities of model files, read in about a second whatever their size: what a backend's
provenance records, so that other weights under the same name are never taken for the same model
(a rerun would otherwise reuse, or resume, embeddings made with the old ones)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_SAMPLE = 16 * 2**20


def file_digest(path: Path) -> str:
    """SHA-256 of the size and the first and last 16 MiB of a file (as evo2 checkpoints were always
    identified: recorded digests stay valid)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_SAMPLE))
        fh.seek(max(0, size - _SAMPLE))
        h.update(fh.read())
    return h.hexdigest()[:32]


def directory_digest(path: Path) -> str:
    """A model directory: the relative name and digest of each of its files (not of hidden ones,
    such as the download metadata in .cache/, which changes when the same model is fetched again)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)):
        h.update(f"{f.relative_to(path)}:{file_digest(f)}\n".encode())
    return h.hexdigest()[:32]
