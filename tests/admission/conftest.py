"""Fixtures for admission tests: TLS material and the webhook served by gunicorn over HTTPS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from tests.admission.helpers import (
    Key,
    TlsFiles,
    key_policy,
    make_tls,
    new_key,
    sign_image,
    write_config,
)
from tests.conftest import simple_image
from tests.support.webhook import Webhook, start_webhook


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


REPO = "admission-e2e"


class World:
    """Images in the registry, signed in every way the tests need (once per module)."""

    def __init__(self, registry: Any, workdir: Path) -> None:
        self.registry = registry
        self.workdir = workdir
        self.key = new_key()
        self.other_key = new_key()
        self.key_file = self.key.write(workdir / "release.pub")
        self.client = RegistryClient(registry.address, options=RegistryOptions(timeout=60))

    def store(self, name: str) -> RegistryRepository:
        return RegistryRepository(self.client, f"{REPO}/{name}")

    def push(self, name: str) -> str:
        builder = simple_image(self.workdir, marker=name)
        builder.build(self.workdir / f"build-{name}").push(self.store(name), "v1")
        return f"{self.registry.address}/{REPO}/{name}:v1"

    def signed(self, name: str, key: Key | None = None, **options: Any) -> str:
        reference = self.push(name)
        sign_image(self.store(name), reference, (key or self.key).signer, **options)
        return reference

    def config(self, path: Path, **extra: Any) -> Path:
        policy = key_policy("apps", [f"127.0.0.1:*/{REPO}/*"], self.key_file)
        return write_config(path, [policy], **extra)


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
