"""The layers point one way: attest/ (the CI side and the library) never imports admission/
(the webhook), so `pip install attest` works without the webhook's libraries and the two
packages form no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (also inside functions and TYPE_CHECKING)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            modules.add(str(node.args[0].value))
    return modules


def test_attest_never_imports_admission() -> None:
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "attest").rglob("*.py")
        for module in imported_modules(path)
        if module == "admission" or module.startswith("admission.")
    )
    assert offenders == []


def test_the_check_sees_imports_in_functions(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "def f():\n    from admission.cli import x\n    import admission.web\n"
        "importlib.import_module('admission.decide')\n"
    )
    assert imported_modules(sample) == {"admission.cli", "admission.web", "admission.decide"}
