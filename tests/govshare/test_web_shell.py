"""The web UI's shell lives in govshare.web: domains add pages through it, never through each other's views."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = ("directory", "connectors", "approvals", "exchange", "evaluation")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_views(module: str) -> bool:
    return module.rsplit(".", 1)[-1].endswith("views")


def test_no_domain_imports_another_domain_s_pages():
    found = []
    for domain in DOMAINS:
        for path in (ROOT / domain).rglob("*.py"):
            for module in _imported_modules(path):
                top = module.split(".")[0]
                if top in DOMAINS and top != domain and _is_views(module):
                    found.append(f"{path.relative_to(ROOT)} imports {module}")
    assert found == []


def test_the_shell_imports_no_domain():
    found = [f"{path.relative_to(ROOT)} imports {module}"
             for path in (ROOT / "govshare" / "web").rglob("*.py")
             for module in _imported_modules(path) if module.split(".")[0] in DOMAINS]
    assert found == []
