"""Images in a registry, signed in every way the admission tests and benches need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from admission.testing.helpers import Key, key_policy, new_key, sign_image, write_config
from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.testing.images import simple_image

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
