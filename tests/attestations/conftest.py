"""Fixtures for the attestation tests: the shared vectors folder, an environment without CI."""

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


@pytest.fixture
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CI variables or ambient OIDC token: detection and keyless signing see a plain shell."""
    for name in (
        "GITHUB_ACTIONS",
        "GITLAB_CI",
        "SIGSTORE_ID_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
    ):
        monkeypatch.delenv(name, raising=False)
