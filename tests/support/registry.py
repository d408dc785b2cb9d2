"""A real Debian ``docker-registry`` (distribution 2.8) on a free loopback port."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.support.net import free_port, wait_http

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


@dataclass
class RegistryServer:
    """One registry process with its own temporary storage."""

    auth: dict | None = None
    tls: tuple[str, str] | None = None  # (certificate, key) files: serve HTTPS
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="attest-registry-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def start(self) -> RegistryServer:
        if not os.path.exists(REGISTRY_BINARY):
            raise RuntimeError(
                "docker-registry is not installed; run `make test` (scripts/system-deps.sh installs it)"
            )
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": "attest-test-secret"},
        }
        if self.auth:
            config["auth"] = self.auth
        if self.tls:
            config["http"]["tls"] = {"certificate": self.tls[0], "key": self.tls[1]}
        config_path = self.workdir / "config.yml"
        config_path.write_text(yaml.safe_dump(config))
        log = open(self.workdir / "registry.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            context = None
            if self.tls:  # the test CA is not the system's: only wait for the server here
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            wait_http(f"{self.url}/v2/", context=context)
        except RuntimeError:
            self.stop()
            raise RuntimeError(
                f"registry failed to start: {(self.workdir / 'registry.log').read_text()[-2000:]}"
            ) from None
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
