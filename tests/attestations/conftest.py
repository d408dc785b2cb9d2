"""Fixtures for the attestation tests: the shared vectors folder, an environment without CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import vector


@pytest.fixture
def vectors() -> Path:
    """The vectors folder (tests/vectors); its absence fails the test."""
    return vector("slsa-verifier").parent


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
