"""The import graph of ``attest/`` and ``admission/`` points one way and has no cycle.

Data flows reference → image access → facts (SBOM, signatures, attestations) → policy
→ decision → record, and the CLI and the Flask apps are doors onto that library
(docs/architecture.md).  This test reads every module with :mod:`ast` (nothing is
imported) and fails on an import that points up that order, on any module of the CI
side that imports ``admission``, and on any cycle.  Imports inside functions count
(they are dependencies all the same); imports under ``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("attest", "admission")

# The layers, lowest first.  A module takes the rank of the longest prefix that names it;
# a module may import only modules of its own rank or below.
LAYERS: dict[str, float] = {
    # shared ground: errors, deadlines, file writing, the test servers
    "attest": 0,
    "attest.errors": 0,
    "attest.deadline": 0,
    "attest.files": 0,
    "attest.testing": 0,
    "attest.testing.images": 1,  # builds an image with attest.oci
    # image access: references, registries, layouts, manifests
    "attest.oci": 1,
    # facts: in-toto Statements and predicates know nothing of signatures ...
    "attest.attestations": 2,
    # ... signatures, attestations as stored, and SBOMs build on them
    "attest.signing": 2.5,
    "attest.sbom": 2.5,
    # checking the facts about one image, and the CI pipeline that produces them
    "attest.attestations.verification": 3,
    "attest.verify": 3,
    "attest.pipeline": 3,
    "attest.promote": 3,
    # policy: Rego engines and bundles
    "attest.policy": 4,
    # decision: the verdict and what it is made from (the webhook's configuration and inputs)
    "admission": 5,
    # record: the tamper-evident decision records
    "admission.decisions": 6,
    # orchestration and doors: deciding a request, the servers, the CLIs
    "admission.decide": 7,
    "admission.suites": 7,
    "admission.runtime": 7,
    "admission.watcher": 7,
    "admission.offline": 7,
    "admission.mutate": 7,
    "admission.app": 7,
    "admission.worker": 7,
    "admission.server": 7,
    "admission.web": 7,
    "admission.cli": 7,
    "admission.testing": 7,  # test and bench scaffolding: configs, signed images, servers
    "attest.cli": 7,
    "attest.__main__": 7,
}


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def _known(name: str) -> str | None:
    """The module of ours that ``name`` (a module, or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_only(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped.update(id(inner) for inner in ast.walk(statement))
    return skipped


def imports_of(module: str) -> set[str]:
    """The modules of ours that ``module`` imports (absolute and relative imports)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(m for alias in node.names if (m := _known(alias.name)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = _known(f"{base}.{alias.name}") or _known(base)
                if target:
                    found.add(target)
    found.discard(module)
    return found


def rank(module: str) -> float:
    name = module
    while name not in LAYERS:
        name = name.rpartition(".")[0]
        assert name, f"{module} is in no layer: add it to LAYERS"
    return LAYERS[name]


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_graph_is_read() -> None:
    """The walk sees real edges (an empty graph would pass everything below)."""
    assert "attest.signing.keys" in GRAPH["attest.signing.bundle_verify"]
    assert "attest.oci.reference" in GRAPH["attest.verify"]
    assert "attest.verify" in GRAPH["admission.decide"]


def test_the_ci_side_never_imports_the_webhook() -> None:
    offending = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.split(".")[0] == "attest"
        for target in targets
        if target.split(".")[0] == "admission"
    )
    assert not offending, "\n".join(offending)


def test_imports_point_down_the_layers() -> None:
    upward = sorted(
        f"{module} (layer {rank(module)}) imports {target} (layer {rank(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if rank(target) > rank(module)
    )
    assert not upward, "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    cycles = _cycles(GRAPH)
    assert not cycles, "\n".join(" ⇄ ".join(cycle) for cycle in cycles)


def _imports_tests(path: Path) -> list[str]:
    """The ``tests`` imports of one file (at any depth: a lazy import is a dependency too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found += [
            f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "tests"
        ]
    return found


def test_benchmarks_never_import_the_tests(tmp_path: Path) -> None:
    """bench/ measures with the scaffolding in attest.testing and admission.testing: the test
    suite is not a library (its conftest hooks and fixtures change with the tests)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import tests.conftest\n\ndef f():\n    from tests.support import x\n")
    assert len(_imports_tests(probe)) == 2  # the check sees both forms, nested too
    benches = sorted((ROOT / "bench").glob("*.py"))
    assert len(benches) >= 5, "the benchmarks were not found"
    offending = [line for path in benches for line in _imports_tests(path)]
    assert not offending, "\n".join(offending)
