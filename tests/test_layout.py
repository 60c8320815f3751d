"""The shape of the house (STYLE.md, DESIGN.md): no import circles, the shell knows the domains
only where it mounts them, no domain reaches into another's pages, migrations carry their own SQL.

Read from the source (the ast of every .py file of the project's packages), not from what a
test run happens to import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("govshare", "schemas", "directory", "connectors", "approvals", "exchange", "evaluation")
DOMAINS = ("directory", "connectors", "approvals", "exchange", "evaluation")
# The shell's modules that mount the domains: the app (routers, pages) and the command line
# (their commands, imported when a command runs).
SHELL_MOUNTS = {"govshare.app", "govshare.cli"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, *, module_level: bool) -> Iterator[tuple[str, int]]:
    """The project modules ``module`` imports, with the line: at module level only (what runs when it is
    imported; not under ``if TYPE_CHECKING``), or anywhere in it (a function's lazy imports too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    pending: list[ast.AST] = list(ast.parse(path.read_text(), str(path)).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from ((name, node.lineno) for name in [alias.name] if name.split(".")[0] in PACKAGES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                name = f"{base}.{alias.name}"
                yield (name if name in MODULES else base), node.lineno
        elif isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
        elif module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        else:
            pending.extend(ast.iter_child_nodes(node))


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or of one importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_circle_and_no_false_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert _cycles({"a": {"a"}}) == [["a"]]


def test_the_import_reader_sees_module_level_and_lazy_imports_apart():
    module_level = {name for name, _ in _imports("govshare.cli", module_level=True)}
    anywhere = {name for name, _ in _imports("govshare.cli", module_level=False)}
    assert "directory.cli" in module_level and "govshare.settings" not in module_level  # imported when a command runs
    assert "govshare.settings" in anywhere and "exchange.demo" in anywhere


def test_no_import_circle_among_the_projects_modules():
    # A function's import counts too: a circle made lazy (to dodge a partly initialised module)
    # is still two modules that cannot be understood, or moved, one without the other.
    graph = {module: {name for name, _ in _imports(module, module_level=False) if name != module} for module in MODULES}
    assert _cycles(graph) == []


def test_the_shell_imports_the_domains_only_where_it_mounts_them():
    found = [f"{_where(module, line)} imports {name}"
             for module in MODULES if module.split(".")[0] == "govshare" and module not in SHELL_MOUNTS
             for name, line in _imports(module, module_level=False) if name.split(".")[0] in DOMAINS]
    assert found == []


def test_no_domain_imports_another_domains_views():
    found = [f"{_where(module, line)} imports {name}"
             for module in MODULES if module.split(".")[0] in DOMAINS
             for name, line in _imports(module, module_level=False)
             if name.split(".")[0] in DOMAINS and name.split(".")[0] != module.split(".")[0]
             and name.split(".")[-1].endswith("views")]
    assert found == []


def test_migrations_import_no_domain_and_no_live_code_of_the_shell():
    # A migration does the same thing forever: it carries its own SQL. Only the settings (where
    # the store is) may be read; code that can change (a domain's, the shell's) may not be run.
    found = [f"{_where(module, line)} imports {name}"
             for module in MODULES if module.startswith("govshare.migrations")
             for name, line in _imports(module, module_level=False) if name != "govshare.settings"]
    assert found == []


def test_each_delivery_path_of_the_exchange_lives_in_a_subpackage_of_its_own():
    """exchange/ groups by delivery path: a module that declares routes sits in a subpackage
    (interfaces, extracts, intake, sharing, live), never flat beside the shared modules."""
    flat_routes = sorted(
        str(path.relative_to(ROOT))
        for module, path in MODULES.items()
        if module.count(".") == 1 and module.startswith("exchange.") and "APIRouter(" in path.read_text()
    )
    assert flat_routes == []
    subpackages = {module.split(".")[1] for module in MODULES if module.startswith("exchange.") and module.count(".") == 2}
    assert {"interfaces", "stores", "extracts", "intake", "sharing", "live"} <= subpackages
