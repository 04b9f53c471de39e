"""The core (`amiagent/` less the simulator) never imports `amiagent.sim`: a real robot needs no pybullet."""

from __future__ import annotations

import ast
from pathlib import Path

import amiagent

CORE = Path(amiagent.__file__).parent
SIMULATOR = ("sim", "pybullet", "pybullet_data", "pybullet_utils")


def _imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `source`, a module of `package`; relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            found.append((node.lineno, ".".join(p for p in (base, node.module or "") if p)))
    return found


def _simulator(module: str) -> bool:
    parts = module.split(".")
    return parts[:2] == ["amiagent", "sim"] or parts[0] in SIMULATOR


def test_no_core_module_imports_the_simulator():
    files = [p for p in CORE.rglob("*.py") if p.relative_to(CORE).parts[0] != "sim"]
    assert len(files) > 20  # the core itself, not an empty glob
    offenders = []
    for path in files:
        package = ".".join(("amiagent", *path.relative_to(CORE).parent.parts))
        offenders += [f"{path.relative_to(CORE.parent)}:{line} imports {module}"
                      for line, module in _imports(path.read_text(), package) if _simulator(module)]
    assert offenders == []


def test_the_check_sees_every_way_of_importing_the_simulator():
    source = ("import amiagent.sim.worlds\nfrom amiagent.sim.geometry import zone_gap\nfrom .sim import body\n"
              "from ..sim.arm import ArmBody\nimport pybullet as p\nfrom amiagent.geometry import box_sd\n")
    flagged = [line for line, module in _imports(source, "amiagent.learning") if _simulator(module)]
    assert flagged == [1, 2, 4, 5]  # `.sim` inside amiagent.learning is amiagent.learning.sim: not the simulator
    assert [line for line, m in _imports("from .sim import body\n", "amiagent") if _simulator(m)] == [1]
