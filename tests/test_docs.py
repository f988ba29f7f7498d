"""The README's picture of the steps against the code it describes."""

import argparse
import re
from pathlib import Path

from evoscan.cli import build_parser
from evoscan.pipeline import FILES

REPO = Path(__file__).resolve().parents[1]


def steps() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_readme_diagram_matches_the_steps():
    """Every arrow `A -- file --> B` of the README's mermaid diagram is a file step A writes (its
    -o default) and step B reads (the option named after it); every HDF5 file that passes between
    two steps, other than windows.h5 (which every step reads), is drawn."""
    readme = (REPO / "README.md").read_text()
    diagram = re.search(r"```mermaid\n(.*?)```", readme, re.S).group(1)
    arrows = []
    for source, label, targets in re.findall(r"^\s*(\w+) -- \"?([\w.]+)[^>]*--> ([\w &]+)$", diagram, re.M):
        arrows += [(source, label, t.strip()) for t in targets.split("&")]
    parsers = steps()
    assert len(arrows) >= 6
    for source, label, target in arrows:
        writes = next(a.default for a in parsers[source]._actions if "--out" in a.option_strings)
        reads = {a.dest for a in parsers[target]._actions if a.required}
        assert str(writes) == label and label.removesuffix(".h5") in reads, (source, label, target)
    drawn = {label for _, label, _ in arrows}
    passed = {name for kind, name in FILES.items()
              if kind != "blast" and any(kind in {a.dest for a in p._actions if a.required} for p in parsers.values())}
    assert passed - {"windows.h5"} <= drawn
