"""External programs: find them, name their package when missing, run them, record their versions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import EvoscanError

PACKAGES = {
    "blastn": "ncbi-blast+",
    "makeblastdb": "ncbi-blast+",
    "dustmasker": "ncbi-blast+",
    "trf": "trf",
}
VERSION_ARGS = {"blastn": ["-version"], "makeblastdb": ["-version"], "dustmasker": ["-version"], "trf": ["-v"]}


def require(tool: str) -> str:
    """Absolute path of `tool`, or an error that says which package provides it."""
    path = shutil.which(tool)
    if path is None:
        package = PACKAGES.get(tool, tool)
        raise EvoscanError(
            f"{tool} not found on PATH; install the {package} package "
            f"(Debian/Ubuntu: apt-get install {package}; conda: bioconda::{package.replace('ncbi-', '')}) "
            "or run evoscan in its container"
        )
    return path


def run(args: list[str], ok_codes: tuple[int, ...] = (0,), cwd: str | Path | None = None, hint: str = "") -> str:
    """Run a tool, return its stdout; a failure is an EvoscanError carrying the tool's own message
    (summarised to one line) and `hint`, what the user can do about it."""
    require(args[0])
    proc = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if proc.returncode not in ok_codes:
        raise EvoscanError(f"{args[0]} failed (exit {proc.returncode}): {summarise(proc.stderr or proc.stdout)}"
                           + (f"; {hint}" if hint else ""))
    return proc.stdout


def summarise(message: str, width: int = 200) -> str:
    """A tool's message in one line: its first line that says 'error', else its last line."""
    lines = [" ".join(line.split()) for line in message.splitlines() if line.strip()]
    if not lines:
        return "no message"
    line = next((x for x in lines if "error" in x.lower()), lines[-1])
    return line if len(line) <= width else line[:width - 3] + "..."


def version(tool: str) -> str:
    """The tool's version line, for provenance."""
    proc = subprocess.run([require(tool), *VERSION_ARGS.get(tool, ["--version"])],
                          capture_output=True, text=True)
    for line in (proc.stdout + proc.stderr).splitlines():
        if any(ch.isdigit() for ch in line):
            return line.strip()
    return "unknown"
