"""Fixtures for the served webhook with its ops port: TLS, signed images, a server factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.testing.helpers import TlsFiles, make_tls
from admission.testing.serve import Serve, start_serve
from admission.testing.world import World


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("web-tls"))


@pytest.fixture(scope="module")
def world(registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Signed (with provenance and SBOM) and unsigned images in the real registry."""
    world = World(registry, tmp_path_factory.mktemp("web-world"))
    world.images = {  # type: ignore[attr-defined]
        "good": world.signed("good"),
        "good2": world.signed("good2"),
        "unsigned": world.push("unsigned"),
        "other": world.signed("other", key=world.other_key),  # signed, by an untrusted key
    }
    yield world
    world.client.close()


@pytest.fixture
def serve(tls: TlsFiles, tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    """Start ``attest admission serve`` (stopped after the test)."""
    started: list[Serve] = []

    def start(config: Path, **options: Any) -> Serve:
        server = start_serve(config, tls, tmp_path, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
