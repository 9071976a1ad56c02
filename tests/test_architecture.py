"""The layout is a contract: layers as folders, no import cycle, and docs/architecture.md naming exactly what exists.
(`make test` also runs `lint-imports`, whose layers contract in pyproject.toml says which layer imports which, and
`ruff check`.)"""

from __future__ import annotations

import re
from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cxrres"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _picture() -> str:
    """The data-flow picture: the first fenced block of docs/architecture.md."""
    return ARCHITECTURE.read_text(encoding="utf-8").split("```")[1]


def test_at_most_eight_modules_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top


def test_no_import_cycle_anywhere() -> None:
    """No module reaches itself through imports, counting imports inside functions (grimp reads them all)."""
    graph = grimp.build_graph("cxrres", cache_dir=None)
    modules = sorted(graph.modules)
    for module in modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == module:
                continue
            path = graph.find_shortest_chain(importer=imported, imported=module)
            assert path is None, f"import cycle: {module} -> {' -> '.join(path)}"


def test_architecture_names_every_package_and_only_real_modules() -> None:
    picture = _picture()
    named_files = set(re.findall(r"\b((?:[a-z_]+/)*[a-z_]+\.py)\b", picture))
    named_dirs = set(re.findall(r"\b((?:[a-z_]+/)*[a-z_]+)/(?![a-z_])", picture))
    missing = sorted(f for f in named_files if not (PACKAGE / f).is_file())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
    assert not sorted(d for d in named_dirs if not (PACKAGE / d).is_dir())
    packages = sorted(str(p.parent.relative_to(PACKAGE)) for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE)
    unnamed = [p for p in packages if p not in named_dirs and p.split("/")[-1] not in named_dirs]
    assert not unnamed, f"docs/architecture.md does not name the packages {unnamed}"
    modules = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    unlisted = [m for m in modules if m not in named_files]
    assert not unlisted, f"docs/architecture.md's picture does not list {unlisted}"
