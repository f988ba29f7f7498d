"""HDF5 interchange: every intermediate carries a schema, provenance and the digest of its window set.

A consumer opens a file with `read_checked`, which refuses the wrong kind of file and a file made
from another window set, so steps can never silently join unrelated data.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .. import __version__
from ..errors import EvoscanError, os_error_message

SCHEMAS = {
    "windows": "evoscan.windows/1",
    "masks": "evoscan.masks/1",
    "embeddings": "evoscan.embeddings/2",
    "neighbours": "evoscan.neighbours/1",
    "blast": "evoscan.blast/1",
    "scores": "evoscan.scores/3",
}

STR = h5py.string_dtype("utf-8")
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Say which output could not be written when the disk is full or the place is read-only, in one
    line (the OSError of a write names no file, h5py's spans lines)."""
    try:
        yield
    except OSError as err:
        if err.errno in WRITE_ERRNOS:
            raise EvoscanError(f"cannot write {os_error_message(err, path)}") from None
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    if not path.parent.exists():
        raise EvoscanError(f"output directory {path.parent} does not exist; create it first")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        with writing(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():  # (on a read-only file system even unlinking a missing file fails)
            tmp.unlink()


class _GuardedFile:
    """A file for h5py to write through that never fails a write: the first error (a full disk) is
    kept and later writes are dropped, so HDF5 can still close the file, and `new_file` raises the
    error after. (HDF5 cannot close a file it failed to flush: it tries again as each of its objects
    is freed, printing errors, and the interpreter crashes at exit.)"""

    def __init__(self, raw):
        self.raw, self.error = raw, None

    def _guarded(self, call, *args, result=None):
        if self.error is None:
            try:
                return call(*args)
            except OSError as err:
                self.error = err
        return result

    def write(self, data) -> int:
        return self._guarded(self.raw.write, data, result=memoryview(data).nbytes)

    def flush(self) -> None:
        self._guarded(self.raw.flush)

    def truncate(self, size=None):
        return self._guarded(self.raw.truncate, size, result=size)

    def read(self, size=-1):
        return self.raw.read(size)

    def readinto(self, buffer):
        return self.raw.readinto(buffer)

    def seek(self, offset, whence=0):
        return self.raw.seek(offset, whence)

    def tell(self):
        return self.raw.tell()


@contextlib.contextmanager
def new_file(path) -> Iterator[h5py.File]:
    """A new HDF5 file at `path`, open for writing; a failed write (a full disk) raises its OSError
    once HDF5 has let go of the file."""
    with open(path, "w+b") as raw:
        guard = _GuardedFile(raw)
        try:
            with h5py.File(guard, "w") as f:
                yield f
        except Exception as err:  # HDF5 tripping over the writes it lost: the lost write is the cause
            if guard.error is not None:
                raise guard.error from err
            raise
        if guard.error is not None:
            raise guard.error
        raw.flush()


def provenance(kind: str, window_digest: str, params: dict, tools: dict | None = None) -> dict:
    """The attributes every evoscan HDF5 file carries."""
    return {
        "schema": SCHEMAS[kind],
        "evoscan_version": __version__,
        "created": created().isoformat(timespec="seconds"),
        "window_digest": window_digest,
        "params": json.dumps(params, sort_keys=True),
        "tool_versions": json.dumps(tools or {}, sort_keys=True),
    }


def created() -> datetime:
    """Now, or SOURCE_DATE_EPOCH when set (the reproducible-builds convention): the one thing that
    makes two identical runs write different HDF5 bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise EvoscanError(f"SOURCE_DATE_EPOCH must be seconds since 1970 (got {epoch!r})") from None
    return datetime.now(timezone.utc)


def write_h5(path, datasets: dict[str, np.ndarray], attrs: dict) -> None:
    """Write `datasets` and `attrs` to `path` atomically (a crash leaves no half-written file)."""
    with atomic_path(path) as tmp, new_file(tmp) as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        for name, data in datasets.items():
            data = np.asarray(data)
            if data.dtype.kind in "OU":
                f.create_dataset(name, data=data.astype(object), dtype=STR)
            else:
                f.create_dataset(name, data=data, compression="gzip" if data.size > 4096 else None)


def open_checked(path, kind: str, window_digest: str | None = None, datasets: tuple[str, ...] = ()) -> h5py.File:
    """Open an evoscan HDF5 file for reading, checking its schema, (optionally) its window set and
    that it holds `datasets`."""
    path = Path(path)
    if not path.exists():
        raise EvoscanError(f"{path}: no such file")
    expected = SCHEMAS[kind]
    f = _open(path, f"an evoscan {kind} file ({expected})")
    schema = str(f.attrs.get("schema", ""))
    if schema != expected:
        f.close()
        if schema.split("/")[0] == expected.split("/")[0]:
            raise EvoscanError(f"{path}: an evoscan {kind} file of another format version ({schema}; this "
                               f"evoscan reads {expected}); rerun `evoscan {kind_step(kind)}` with this version")
        found = f"schema {schema!r}" if schema else "no evoscan schema"
        raise EvoscanError(f"{path}: expected an evoscan {kind} file ({expected}), found {found}")
    if window_digest is not None and str(f.attrs.get("window_digest")) != window_digest:
        f.close()
        raise EvoscanError(
            f"{path} was made from a different window set than the windows file given; "
            f"rerun `evoscan {kind_step(kind)}` on the same windows file"
        )
    missing = [name for name in datasets if name not in f]
    if missing:
        f.close()
        raise EvoscanError(f"{path} lacks {', '.join(missing)}: made by another evoscan version or damaged; "
                           f"rerun `evoscan {kind_step(kind)}`")
    return f


def _open(path: Path, expected: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        if "unable to lock file" in str(err).lower():  # being written, or no locks on this file system
            raise EvoscanError(f"{path}: cannot lock the HDF5 file; another process may be writing it, or the file "
                               "system does not support locking (then set HDF5_USE_FILE_LOCKING=FALSE)") from None
        with open(path, "rb") as fh:
            signature = fh.read(8)
        if signature == HDF5_SIGNATURE:  # the start of an HDF5 file, the rest cut off or damaged
            raise EvoscanError(f"{path}: truncated or damaged HDF5 file; make it again with the step that "
                               "wrote it") from None
        raise EvoscanError(f"{path}: not an HDF5 file; expected {expected}") from None


def schema_kind(path) -> str:
    """The kind (windows, masks, ...) of an evoscan HDF5 file, from its schema attribute."""
    if not Path(path).exists():
        raise EvoscanError(f"{path}: no such file")
    with _open(Path(path), "an evoscan HDF5 file") as f:
        schema = str(f.attrs.get("schema", ""))
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
