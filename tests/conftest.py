"""Shared fixtures: real registries on loopback, image builders, and the CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attest.cli.main import main as attest_main
from attest.oci.builder import ImageBuilder, push_index
from attest.oci.manifest import Descriptor
from attest.oci.registry import RegistryRepository
from attest.oci.store import ImageStore
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.testing import RegistryServer, SigstoreMock, node_harness_missing
from attest.testing.images import simple_image
from tests.support.tokenserver import TokenServer

ROOT = Path(__file__).resolve().parent.parent
# Other implementations' data, copied into the repository (tests/vectors/README.md);
# a missing vector is a failure, never a skip.
VECTORS = Path(os.environ.get("ATTEST_VECTORS", ROOT / "tests" / "vectors"))


def vector(*parts: str) -> Path:
    """A path under the vectors; fails the test (never skips) when it is missing."""
    path = VECTORS.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test vector missing: {path} (tests/vectors/ is part of the repository)")
    return path


def vector_files(folder: str, pattern: str) -> list[Path]:
    """The vector files to parametrize over; an empty match is a collection error, not zero tests."""
    found = sorted((VECTORS / folder).glob(pattern))
    if not found:
        raise FileNotFoundError(f"no test vectors match {VECTORS / folder / pattern}")
    return found


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    """A plain (anonymous) docker-registry shared by the session; use distinct repositories."""
    server = RegistryServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def htpasswd_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegistryServer, str, str]]:
    """A docker-registry with htpasswd (basic) auth; yields (server, user, password)."""
    workdir = tmp_path_factory.mktemp("htpasswd")
    user, password = "alice", "s3cret-pass"
    line = subprocess.run(
        ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True
    ).stdout
    (workdir / "htpasswd").write_text(line)
    server = RegistryServer(
        auth={"htpasswd": {"realm": "attest-test", "path": str(workdir / "htpasswd")}}
    ).start()
    yield server, user, password
    server.stop()


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegistryServer, TokenServer]]:
    """A docker-registry with bearer-token auth backed by a real token service."""
    workdir = tmp_path_factory.mktemp("token")
    tokens = TokenServer(workdir, {"bob": "hunter2-token"}).start()
    server = RegistryServer(auth=tokens.registry_auth_config()).start()
    yield server, tokens
    server.stop()
    tokens.stop()


@pytest.fixture(scope="session")
def sigstore_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigstoreMock]:
    """A local Sigstore (Fulcio + Rekor from @sigstore/mock) on loopback; ``.token()`` mints
    identity tokens, ``.trust_config`` / ``.trusted_root`` are its trust files."""
    missing = node_harness_missing()
    if missing:
        pytest.fail(missing)
    server = SigstoreMock(tmp_path_factory.mktemp("sigstore")).start()
    yield server
    server.stop()


def docker_config(path: Path, registry: str, user: str, password: str) -> Path:
    """Write a Docker config.json with basic credentials for ``registry``."""
    import base64

    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.mkdir(parents=True, exist_ok=True)
    config = path / "config.json"
    config.write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    return config


@pytest.fixture
def repo(registry: RegistryServer, request: pytest.FixtureRequest) -> Iterator[RegistryRepository]:
    """A fresh repository (named after the test) on the shared registry."""
    name = (
        "test/"
        + "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")[:100]
    )
    client = RegistryClient(registry.address, options=RegistryOptions(timeout=60))
    store = RegistryRepository(client, name)
    yield store
    store.close()


@dataclass
class SimpleImage:
    descriptor: Descriptor
    builder: ImageBuilder


@pytest.fixture
def push_image(tmp_path: Path) -> object:
    """Push a small image (or a two-platform index with ``platforms``) into a store."""

    def push(
        store: ImageStore,
        tag: str | None = "v1",
        *,
        marker: str = "one",
        platforms: tuple[str, ...] = (),
    ) -> Descriptor:
        if platforms:
            images = [
                simple_image(tmp_path, marker=f"{marker}-{arch}", architecture=arch).build(
                    tmp_path / arch
                )
                for arch in platforms
            ]
            return push_index(store, images, tag)
        return simple_image(tmp_path, marker=marker).build(tmp_path / "build").push(store, tag)

    return push


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str]) -> object:
    """Run ``attest`` in-process; returns exit code, stdout and stderr."""

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        old = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            capfd.readouterr()
            code = attest_main(list(args))
            out, err = capfd.readouterr()
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return CliResult(code, out, err)

    return run
