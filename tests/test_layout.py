"""The package layout of the README ("Layout"): one folder a stage, every import pointing down the
map, no circle between modules, no command importing another command."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "pipeline"

#: folder -> the folders its modules may import (itself included); the README's table.
MAY_IMPORT = {
    "common": {"common"},
    "features": {"common", "features"},
    "model": {"common", "features", "model"},
    "scoring": {"common", "features", "model", "scoring"},
    "apps": {"common", "features", "model", "scoring", "apps"},
    "synth": {"common", "features", "model", "synth"},
}
#: Modules run by ``python -m``: the top-level ones and synth's.
SYNTH_COMMANDS = {"synth.cli", "synth.__main__"}


def modules() -> dict[str, Path]:
    """'features.video' -> its file, for every module of the package."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports(path: Path, names: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (as 'features.video')."""
    found = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            found |= {a.name[len("pipeline."):] for a in n.names if a.name.startswith("pipeline.")}
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or "").startswith("pipeline"):
            base = n.module[len("pipeline."):] if n.module != "pipeline" else ""
            for a in n.names:                              # 'from pipeline.scoring import timeline'
                sub = f"{base}.{a.name}" if base else a.name
                found.add(sub if sub in names else base)
        elif isinstance(n, ast.ImportFrom) and n.level:
            raise AssertionError(f"{path}: relative import; the package uses absolute imports")
    return found - {""}


def is_command(name: str) -> bool:
    return "." not in name or name in SYNTH_COMMANDS


def test_every_module_is_on_the_map():
    for name in modules():
        if name and not is_command(name):
            assert name.split(".")[0] in MAY_IMPORT, f"pipeline/{name}: a folder the README's map lacks"


def test_imports_point_down_the_map():
    mods = modules()
    wrong = []
    for name, path in mods.items():
        for target in imports(path, set(mods)):
            if is_command(name):
                if is_command(target) and target != name and not (name == "synth.__main__" and target == "synth.cli"):
                    wrong.append(f"command {name} imports command {target}")
            elif target.split(".")[0] not in MAY_IMPORT[name.split(".")[0]]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_circle():
    mods = modules()
    graph = {name: imports(path, set(mods)) & set(mods) for name, path in mods.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The check is not vacuous: an upward import in a file is found."""
    p = tmp_path / "x.py"
    p.write_text("def f():\n    from pipeline.apps.detection import detect\n")
    assert imports(p, set(modules())) == {"apps.detection"}
