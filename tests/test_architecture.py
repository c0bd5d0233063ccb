"""The import layers of ARCHITECTURE.md hold: every import points down (or within a package), no circles."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "smac_lightning"
# ARCHITECTURE.md's layers, bottom first: a module may import its own package and the layers below.
LAYERS = [
    {"errors"},
    {"envs", "nn", "losses", "tracking", "checkpoints", "precision", "plots", "options_help"},
    {"rollout"},
    {"data"},
    {"callbacks"},
    {"algos", "compare", "report"},
    {"cli"},
    {"data_commands"},
    {"__main__", "__init__"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every ``smac_lightning`` module ``path`` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smac_lightning"):
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.startswith("smac_lightning"))
    return out


def _resolve(name: str, modules) -> str | None:
    name = name.removeprefix("smac_lightning").lstrip(".")
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_every_import_points_down_the_layers():
    modules = _modules()
    assert set(RANK) >= {name.split(".")[0] for name in modules}, "a new room: give it a layer here and in ARCHITECTURE.md"
    upward = []
    for name, path in modules.items():
        room = name.split(".")[0]
        for target in filter(None, (_resolve(i, modules) for i in _imports(path))):
            other = target.split(".")[0]
            if other != room and RANK[other] >= RANK[room]:
                upward.append(f"{name} -> {target}")
    assert not upward, upward


def test_no_import_circles_between_modules():
    modules = _modules()
    graph = {name: {t for t in (_resolve(i, modules) for i in _imports(path)) if t and t != name} for name, path in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                if nxt == goal:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    circles = sorted(name for name in graph if reaches(name, name))
    assert not circles, circles
