"""The house's rules, checked on the code: no import cycles, every room says what it holds, functions stay short,
and every error a user can cause carries a kind that the one error policy maps."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("extractor", "pooling", "indexer")
#: The longest function allowed in ``indexer/`` (lines, decorators and docstring included).
LONGEST = 80


def modules() -> dict[str, Path]:
    """Every module of the installed package ``poolvec``, by dotted name."""
    out = {"poolvec": ROOT / "__init__.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("poolvec", *parts[:-1])) if parts[-1] == "__init__" else ".".join(("poolvec", *parts))
            out[name] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, known: set[str]) -> set[str]:
    """The poolvec modules ``path`` imports when it runs (at the top or inside functions; not for type checking)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                found.add(full if full in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in known}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_module_imports_itself_through_others():
    mods = modules()
    known = set(mods)
    # A package's own __init__ importing its children is the package, not a cycle through it.
    graph = {m: {d for d in imports(p, known) if d != m and not m.startswith(d + ".")} for m, p in mods.items()}
    assert cycles(graph) == []


def test_every_room_says_what_it_holds():
    for package in PACKAGES:
        for init in (ROOT / package).rglob("__init__.py"):
            doc = ast.get_docstring(ast.parse(init.read_text()))
            assert doc, f"{init.relative_to(ROOT)} has no docstring saying what lives there"


def test_functions_in_the_indexer_stay_short():
    long = []
    for path in (ROOT / "indexer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - first + 1 > LONGEST:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []


def test_the_installed_names_are_poolvecs_own():
    # `extractor`, `pooling` and `indexer` are names of other distributions on PyPI: nothing imports them as such.
    offenders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                top = node.module.split(".")[0]
            elif isinstance(node, ast.Import):
                top = node.names[0].name.split(".")[0]
            else:
                continue
            if top in PACKAGES:
                offenders.append(f"{name}: {ast.unparse(node)}")
    assert offenders == []


def test_every_package_folder_is_installed():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(("poolvec", *i.parent.relative_to(ROOT).parts))
        for p in PACKAGES
        for i in (ROOT / p).rglob("__init__.py")
    }
    assert found | {"poolvec"} == listed


def test_pypis_own_pooling_installs_beside_poolvec(tmp_path):
    # The test extra installs PyPI's unrelated `pooling` (0.1.12, a connection pool) into the same environment.
    code = (
        "import pooling, poolvec.pooling; "
        "print(hasattr(pooling, 'Pool'), poolvec.pooling.build('gem(p=3) | l2').out_dim(8), pooling.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    has_pool, dim, where = out.stdout.split()
    assert (has_pool, dim) == ("True", "8") and not where.startswith(str(ROOT / "pooling"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("poolvec.indexer.errors", fromlist=["x"]).IndexerError("x"),
        lambda: __import__("poolvec.indexer.errors", fromlist=["x"]).BackendError("x"),
        lambda: __import__("poolvec.indexer.errors", fromlist=["x"]).ConfigMismatchError("x"),
        lambda: __import__("poolvec.extractor.errors", fromlist=["x"]).ExtractorError("x"),
        lambda: __import__("poolvec.pooling.spec", fromlist=["x"]).PoolingError("x"),
        *(
            (lambda k=k: __import__("poolvec.extractor.errors", fromlist=["x"]).ImageError("f.jpg", "why", k))
            for k in ("not_found", "too_large", "not_image", "unreadable")
        ),
    ],
)
def test_every_error_a_user_can_cause_has_a_kind_in_the_one_policy(make):
    from poolvec.indexer.errors import POLICY, kind_of, policy

    error = make()
    assert kind_of(error) == error.kind and error.kind in POLICY
    outcome = policy(error)
    assert outcome.exit_code in (2, 3) and 400 <= outcome.http_status < 600


def test_the_policy_maps_kinds_as_readme_says():
    from poolvec.extractor.errors import ImageError
    from poolvec.indexer.errors import BackendError, IndexerError, policy

    assert (policy(IndexerError("bad")).exit_code, policy(IndexerError("bad")).http_status) == (2, 400)
    assert (policy(BackendError("down")).exit_code, policy(BackendError("down")).http_status) == (3, 503)
    assert policy(ImageError("a.jpg", "too big", "too_large")).http_status == 413
    assert policy(ImageError("a.jpg", "text", "not_image")).http_status == 415
    assert policy(ImageError("a.jpg", "gone", "not_found")).http_status == 404
    assert (policy(KeyboardInterrupt()).exit_code, policy(RuntimeError("bug")).exit_code) == (130, 4)
    assert policy(RuntimeError("bug")).http_status == 500
    with pytest.raises(ValueError):
        IndexerError("x", kind="no such kind")
