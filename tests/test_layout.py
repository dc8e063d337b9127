"""The package's import graph has no circles, counting imports inside functions too (issue 24)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "critiquelab"


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for f in SRC.glob("*.py"):
        deps = graph.setdefault(f.stem, set())
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "critiquelab":
                parts = node.module.split(".")
                deps.update(parts[1:2] if len(parts) > 1 else (a.name for a in node.names))
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("critiquelab."))
    return graph


def test_no_module_imports_one_that_imports_it_back():
    graph = _imports()
    assert {"cli", "experiment", "executors", "cell", "grid", "report", "results"} <= set(graph)

    def reaches(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for t in graph.get(todo.pop(), ()):
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return seen

    circles = sorted(m for m in graph if m in reaches(m))
    assert circles == [], f"modules on an import circle: {circles}"
    assert "cli" not in reaches("executors") and "executors" not in reaches("cell")
