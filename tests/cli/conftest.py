"""Fixtures for the CLI tests: key pairs, a second real registry, signed images."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from attest.signing import keys
from attest.testing import RegistryServer

PASSWORD = "cli-test-password"
ENV = {"ATTEST_PASSWORD": PASSWORD}
CYCLONEDX = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": []}
PROVENANCE = {
    "buildDefinition": {
        "buildType": "https://attest.dev/buildtypes/generic/v1",
        "externalParameters": {"source": {"uri": "git+https://github.com/acme/app"}},
        "resolvedDependencies": [],
    },
    "runDetails": {"builder": {"id": "https://ci.example.com/builder"}},
}


@dataclass(frozen=True)
class Keys:
    private: str
    public: str


@pytest.fixture
def make_keys(tmp_path: Path) -> Callable[[str], Keys]:
    """A cosign-format key pair written by attest (password ``PASSWORD``)."""

    def make(name: str = "signer") -> Keys:
        pair = keys.generate_key_pair(PASSWORD.encode())
        (tmp_path / f"{name}.key").write_bytes(pair.private_pem)
        (tmp_path / f"{name}.pub").write_bytes(pair.public_pem)
        return Keys(str(tmp_path / f"{name}.key"), str(tmp_path / f"{name}.pub"))

    return make


@pytest.fixture(scope="session")
def second_registry() -> Iterator[RegistryServer]:
    """Another real docker-registry: copies go across registries."""
    server = RegistryServer().start()
    yield server
    server.stop()


@pytest.fixture
def predicates(tmp_path: Path) -> dict[str, str]:
    """Predicate files: an SBOM (CycloneDX) and SLSA provenance."""
    paths = {}
    for name, document in (("cyclonedx", CYCLONEDX), ("slsaprovenance1", PROVENANCE)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document))
        paths[name] = str(path)
    return paths


@pytest.fixture
def signed_image(
    cli: Any, registry: RegistryServer, repo: Any, push_image: Any, make_keys: Any,
    predicates: dict[str, str],
) -> Callable[..., tuple[str, Keys]]:  # fmt: skip
    """Push an image, sign it and attest an SBOM and provenance, in both storage formats
    (or only ``formats``); returns its reference by digest and the keys."""

    def make(
        formats: tuple[str, ...] = ("bundle", "legacy"), tag: str = "v1", **push: Any
    ) -> tuple[str, Keys]:
        digest = push_image(repo, tag, **push).digest
        ref = f"{registry.address}/{repo.repository}@{digest}"
        signer = make_keys()
        for storage in formats:
            legacy = ["--legacy"] if storage == "legacy" else []
            common = ["--key", signer.private, "--tlog-upload=false", *legacy]
            done = cli("sign", ref, *common, env=ENV)
            assert done.exit_code == 0, done.stderr
            for kind, path in predicates.items():
                done = cli("attest", ref, *common, "--predicate", path, "--type", kind, env=ENV)
                assert done.exit_code == 0, done.stderr
        return ref, signer

    return make
