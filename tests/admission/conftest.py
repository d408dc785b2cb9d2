"""Fixtures for admission tests: TLS material and the webhook served by gunicorn over HTTPS."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from attest.oci.registry import RegistryClient, RegistryOptions, RegistryRepository
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
from tests.support.net import free_port


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@dataclass
class Webhook:
    """A running ``attest admission serve`` process."""

    process: subprocess.Popen[bytes]
    port: int
    ca: Path
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def validate(self, review: dict[str, Any] | bytes, timeout: float = 15) -> tuple[int, dict]:
        if isinstance(review, bytes):
            response = requests.post(
                f"{self.url}/validate",
                data=review,
                headers={"Content-Type": "application/json"},
                verify=str(self.ca),
                timeout=timeout,
            )
        else:
            response = requests.post(
                f"{self.url}/validate", json=review, verify=str(self.ca), timeout=timeout
            )
        return response.status_code, response.json()

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", verify=str(self.ca), timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_webhook(config: Path, tls: TlsFiles, workdir: Path, *, threads: int = 4) -> Webhook:
    """Start the webhook under gunicorn with TLS on a free loopback port and wait for /healthz."""
    port = free_port()
    log = workdir / f"webhook-{port}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "attest",
            "admission",
            "serve",
            "--config",
            str(config),
            "--tls-cert",
            str(tls.cert),
            "--tls-key",
            str(tls.key),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            str(threads),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    hook = Webhook(process, port, tls.ca, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"webhook exited: {log.read_text()[-3000:]}")
        try:
            if hook.get("/healthz").status_code == 200:
                return hook
        except requests.RequestException:
            time.sleep(0.1)
    hook.stop()
    raise RuntimeError(f"webhook did not come up: {log.read_text()[-3000:]}")


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
