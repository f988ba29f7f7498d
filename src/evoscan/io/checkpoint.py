"""Crash-safe progress of long steps: finished blocks kept as files, so a killed step resumes."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from .. import __version__
from .h5 import writing


class BlockStore:
    """Finished blocks of a long step, one .npz file each, written atomically (temporary name,
    then rename): a step killed at any moment keeps every finished block, and a rerun with the
    same inputs and settings (checked against `identity`) computes only the missing ones."""

    def __init__(self, folder: Path, identity: dict):
        self.folder = Path(folder)
        stamp = self.folder / "identity.json"
        text = json.dumps({**identity, "evoscan": __version__}, sort_keys=True, default=str)
        if self.folder.exists() and (not stamp.exists() or stamp.read_text() != text):
            shutil.rmtree(self.folder)  # left by another run: nothing to reuse
        self.folder.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            tmp = stamp.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, stamp)
        self.resumed = 0
        self._lock = threading.Lock()  # blocks may be loaded from several threads

    def load(self, key: int) -> dict | None:
        path = self.folder / f"block{key:012d}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                block = {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError):
            return None  # unreadable: compute it again
        with self._lock:
            self.resumed += 1
        return block

    def save(self, key: int, block: dict) -> None:
        tmp = self.folder / f".block{key:012d}.{os.getpid()}.{threading.get_ident()}.npz"
        try:
            with writing(self.folder), open(tmp, "wb") as out:
                np.savez(out, **block)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a half-written block is no block
            raise
        os.replace(tmp, self.folder / f"block{key:012d}.npz")
