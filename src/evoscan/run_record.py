"""What `evoscan run` keeps between runs: a record, beside the outputs, of every finished intermediate
and the settings it was made with, so that the same command after a kill, a crash or an error
reuses each finished step and recomputes only what differs (what Nextflow's -resume gives).

A file is reused only if the record lists it with exactly this run's settings (which name the
window set, the evoscan version and the files it was made from) and it is still the file that was
recorded: same size, same modification time, and readable. Anything else is made again, and the
line that says so names what differed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import __version__

RECORD = ".evoscan-run.json"
SCHEMA = "evoscan.run/1"


def canonical(settings: dict) -> dict:
    """`settings` as the record stores them (JSON types: tuples become lists, paths strings)."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def file_identity(path) -> dict | None:
    """An input file as settings: its path, size and modification time (None: no file given)."""
    if path is None or not Path(path).is_file():
        return None if path is None else {"path": str(path)}
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def differences(old, new, path: tuple = ()) -> list[str]:
    """What differs between recorded and wanted settings, in words a person reads."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted(old.keys() | new.keys())
                for d in differences(old.get(key), new.get(key), (*path, key))]
    if old == new:
        return []
    if path[:1] == ("inputs",) and len(path) > 1:
        change = "is no longer an input" if new is None else "is a new input" if old is None else "was made anew"
        return [f"{path[1]} {change}"]
    if path[:1] == ("windows",):
        return ["other windows"]
    if path[:1] == ("evoscan",):
        return [f"evoscan {old} → {new}"]
    return [f"{'.'.join(path[1:] or path)} {json.dumps(old)} → {json.dumps(new)}"]


def _well_formed(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("settings"), dict)
            and isinstance(entry.get("size"), int) and isinstance(entry.get("mtime_ns"), int))


class RunRecord:
    """The record of one output folder: file name -> {settings, size, mtime_ns}."""

    def __init__(self, outdir: Path):
        self.outdir = Path(outdir)
        self.path = self.outdir / RECORD
        self.files: dict[str, dict] = {}
        try:
            data = json.loads(self.path.read_text())
            if data.get("schema") == SCHEMA:
                self.files = {name: entry for name, entry in dict(data["files"]).items() if _well_formed(entry)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # no record, or an unreadable one: nothing is reused

    def stamp(self, name: str) -> str:
        """Names one recorded version of a file: what a later step's settings say it was made from."""
        text = json.dumps(self.files.get(name), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def made_with(self, name: str, settings: dict) -> bool:
        """Whether the record says `name` was made with `settings` (whatever the file is now)."""
        return self.files.get(name, {}).get("settings") == canonical({**settings, "evoscan": __version__})

    def why_not_reuse(self, names: list[str], settings: dict) -> str | None:
        """None if every file of `names` is recorded with `settings` and unchanged since; else why not."""
        settings = canonical({**settings, "evoscan": __version__})
        for name in names:
            entry, path = self.files.get(name), self.outdir / name
            if not path.is_file():
                return f"no {name} yet" if entry is None else f"{name} is gone"
            if entry is None:
                return f"{name} has no record of how it was made"
            if entry["settings"] != settings:
                return ", ".join(list(dict.fromkeys(differences(entry["settings"], settings)))[:4]) or "other settings"
            st = path.stat()
            if (st.st_size, st.st_mtime_ns) != (entry["size"], entry["mtime_ns"]):
                return f"{name} changed on disk since it was written: truncated, replaced or edited"
        return None

    def finished(self, names: list[str], settings: dict) -> None:
        """Files `names` were just written with `settings` (on disk before the record says so)."""
        settings = canonical({**settings, "evoscan": __version__})
        for name in names:
            with open(self.outdir / name, "rb") as fh:
                os.fsync(fh.fileno())
            st = (self.outdir / name).stat()
            self.files[name] = {"settings": settings, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        self._save()

    def forget(self, names: list[str]) -> None:
        """Remove files `names` (results of other settings than the files they were made from now
        hold) and their records."""
        for name in names:
            (self.outdir / name).unlink(missing_ok=True)
            self.files.pop(name, None)
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as out:
            json.dump({"schema": SCHEMA, "files": self.files}, out, sort_keys=True, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
