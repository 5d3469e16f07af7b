"""The house's rules, checked on the source: layers import downwards only, no cycles, SQL in the store only,
probes and renderers registered by declaration."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# source folder -> installed package (pyproject's package-dir)
PACKAGES = {"footprint": "footprint", "probes": "footprint.probes", "reports": "footprint.reports"}
# bottom to top; a module may import its own layer or any below it, never one above
LAYERS = ["footprint.common", "footprint.probes", "footprint.core", "footprint.reports", "footprint"]


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def layer(module: str) -> str:
    return max((lay for lay in LAYERS if module == lay or module.startswith(lay + ".")), key=len)


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ours that `module` imports, at the top, inside functions or under TYPE_CHECKING."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from pkg import mod` imports the module; `from mod import name` the module that holds the name
            names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        for name in names:
            # the deepest module of ours this name refers to ("footprint.core.model.load_run" -> the module)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


def test_every_import_goes_down_the_layers():
    wrong = []
    for mod, deps in graph().items():
        for dep in deps:
            if dep == "footprint" and mod != "footprint":
                wrong.append(f"{mod} -> footprint (the package facade: import the module that defines the name)")
            elif LAYERS.index(layer(dep)) > LAYERS.index(layer(mod)):
                wrong.append(f"{mod} ({layer(mod)}) -> {dep} ({layer(dep)})")
    assert not wrong, "imports up the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for mod in sorted(g):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_test_sees_real_edges():
    g = graph()  # a check of the checker: these edges exist, so a broken parser cannot pass silently
    assert "footprint.core.store" in g["footprint.core.sampler"]
    assert "footprint.probes.base" in g["footprint.probes.nvml"]  # a relative import
    assert "footprint.core.model" in g["footprint.reports.console"]
    assert "footprint.run" in g["footprint.cli"]  # a function-level import


SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|VIEW))\b")


def test_sql_lives_in_the_store_only():
    offenders = []
    for mod, path in modules().items():
        if mod == "footprint.core.store":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                if "\n" in node.value and not node.value.strip().upper().startswith(("SELECT", "INSERT")):
                    continue  # prose (a docstring) that happens to mention a keyword
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.strip()[:60]!r}")
            if isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany", "executescript"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}(...)")
    assert not offenders, "SQL outside footprint/core/store.py:\n" + "\n".join(offenders)


def test_importing_the_probes_does_not_load_the_run_machinery():
    code = ("import sys, footprint.probes, footprint.probes.fake; "
            "heavy = [m for m in ('footprint.run', 'footprint.core.store', 'footprint.core.sampler', "
            "'footprint.reports', 'sqlite3', 'rich') if m in sys.modules]; print(heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_probe_and_renderer_registries_list_every_module():
    import footprint.probes as probes
    import footprint.reports as reports
    from footprint.probes.base import Probe
    from footprint.reports.base import Renderer

    for name in probes.PROBE_MODULES:
        assert (ROOT / "probes" / f"{name}.py").is_file()
    classes = probes.registered()
    assert {c.name for c in classes} == {"nvml", "amdsmi", "rapl", "hwmon", "jetson", "rpi", "macmon",
                                          "powermetrics", "ipmi", "powermeter", "battery", "rpi-estimate",
                                          "cpu-estimate", "ram-estimate"}
    assert all(issubclass(c, Probe) and c.kinds for c in classes)
    assert reports.renderer_names() == ["console", "json", "csv", "csv-spans", "emissions-csv", "html"]
    for name in reports.renderer_names():
        renderer = reports.renderer_for(name)
        assert isinstance(renderer, Renderer) and renderer.name == name


@pytest.mark.parametrize("ext, name", [(".json", "json"), (".csv", "csv"), (".html", "html"), (".txt", "console")])
def test_renderers_are_picked_by_extension(ext: str, name: str):
    from footprint.reports import renderer_for

    assert renderer_for(f"out{ext}").name == name
