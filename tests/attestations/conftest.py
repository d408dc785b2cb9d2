"""Fixtures for the attestation tests: the shared vectors folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import VECTORS


@pytest.fixture
def vectors() -> Path:
    """``../shared/vectors``; tests using it skip when it is absent (outside this workplace)."""
    if not (VECTORS / "slsa-verifier").is_dir():
        pytest.skip(f"shared test vectors not found at {VECTORS} (outside this workplace)")
    return VECTORS
