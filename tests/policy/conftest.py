"""Fixtures for policy tests: Rego bundles written to tmp dirs (the real OPA is in tests/peers/)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

POLICY = """package attest.admission
import rego.v1

deny contains msg if {
  some img in input.images
  not img.ok
  msg := sprintf("%s: not ok", [img.ref])
}

warn contains "labels missing" if not input.labels
"""


@pytest.fixture
def write_bundle(tmp_path: Path) -> Callable[..., Path]:
    """Write ``{name: text}`` modules into a fresh directory and return it."""
    counter = iter(range(1000))

    def write(modules: dict[str, str]) -> Path:
        root = tmp_path / f"bundle{next(counter)}"
        root.mkdir()
        for name, text in modules.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        return root

    return write
