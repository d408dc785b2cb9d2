"""Fixtures for admission tests: TLS material and the webhook served by gunicorn over HTTPS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from admission.testing.helpers import (
    TlsFiles,
    make_tls,
)
from admission.testing.webhook import Webhook, start_webhook
from admission.testing.world import World


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def webhook(tls: TlsFiles, tmp_path: Path) -> Iterator[Callable[[Path], Webhook]]:
    started: list[Webhook] = []

    def start(config: Path) -> Webhook:
        hook = start_webhook(config, tls, tmp_path)
        started.append(hook)
        return hook

    yield start
    for hook in started:
        hook.stop()


@pytest.fixture(scope="module")
def world(registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(registry, tmp_path_factory.mktemp("admission-e2e"))
    world.images = {  # type: ignore[attr-defined]
        "good": world.signed("good"),
        "nosbom": world.signed("nosbom", sbom=False),
        "noprov": world.signed("noprov", provenance=False),
        "evil": world.signed("evil", builder="https://evil.example/builder"),
        "other": world.signed("other", key=world.other_key),
        "unsigned": world.push("unsigned"),
    }
    yield world
    world.client.close()
