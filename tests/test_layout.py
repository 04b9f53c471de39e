"""The layout's rules, checked on the source: no import cycles between modules, no source file over 400 lines.

Only imports that run when a module is imported count (module level, outside `if TYPE_CHECKING:`);
an import inside a function is deliberate lazy loading. A module importing its own package (for a
sibling: `from amiagent.cli import common`) is how packages work, not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import amiagent

MAX_LINES = 400


def _roots() -> dict[str, Path]:
    """Package name -> its folder: the framework, and the first-party plugins and simulator that an
    editable install maps into the `amiagent` namespace from other folders."""
    import amiagent.plugins
    import amiagent.sim

    return {name: Path(module.__file__).parent
            for name, module in (("amiagent", amiagent), ("amiagent.plugins", amiagent.plugins),
                                 ("amiagent.sim", amiagent.sim))}


def _sources() -> dict[str, Path]:
    """Dotted module name -> file, for every module installed under `amiagent` (plugins and sim included)."""
    found = {}
    for package, root in _roots().items():
        for path in root.rglob("*.py"):
            parts = [*package.split("."), *path.relative_to(root).with_suffix("").parts]
            found.setdefault(".".join(parts[:-1] if parts[-1] == "__init__" else parts), path)
    return found


def _imports_at_load(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:  # module level; `if TYPE_CHECKING:` blocks are not run
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    graph = {}
    for name, path in sources.items():
        ancestors = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        graph[name] = {m for m in _imports_at_load(name, path) if m in sources and m != name and m not in ancestors}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back_when_loaded():
    graph = _graph()
    assert {"amiagent.agent.core", "amiagent.plugins.actor.mpc", "amiagent.sim.worlds"} <= set(graph)
    assert _cycles(graph) == []


def test_no_source_file_is_over_400_lines():
    long = {name: n for name, path in _sources().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_package_is_installed_by_pyproject():
    """pyproject lists packages by hand (plugins/, sim/ and agents/ are mapped into `amiagent`): a package
    missing from the list is missing from a non-editable install, and setuptools warns about it."""
    import tomllib

    import amiagent.agents

    project = Path(amiagent.__file__).parent.parent / "pyproject.toml"
    listed = set(tomllib.loads(project.read_text())["tool"]["setuptools"]["packages"])
    roots = {**_roots(), "amiagent.agents": Path(amiagent.agents.__file__).parent}
    folders = {name if rel == Path(".") else ".".join([name, *rel.parts])
               for name, root in roots.items()
               for rel in (p.parent.relative_to(root) for p in root.rglob("*.py") if "__pycache__" not in p.parts)}
    folders |= {".".join([name, *p.relative_to(roots[name]).parts])  # config folders: YAML only
                for name in ("amiagent.agents",) for p in roots[name].rglob("*") if p.is_dir()
                and "__pycache__" not in p.parts}
    assert folders - listed == set()
