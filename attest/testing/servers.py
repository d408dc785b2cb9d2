"""Real servers on loopback: :func:`free_port`, :func:`wait_http`, :class:`QuietHTTPServer`
and :class:`RegistryServer` (a Debian ``docker-registry``, distribution 2.8, with its own
temporary storage)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


class QuietHTTPServer(ThreadingHTTPServer):
    """A loopback test server whose handler errors print nothing.

    The CLI under test runs in the test process and its stderr is captured: a handler's
    broken pipe or refused upstream (the client gave up, as it should, or a fixture was
    stopped under a straggling request) must not land in another test's captured output.
    """

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Stop a server process gracefully: SIGTERM, then SIGKILL if it is still running after
    ``timeout`` seconds (every fixture that starts a real peer stops it this way)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_http(
    url: str,
    *,
    timeout: float = 20.0,
    ok_statuses: tuple[int, ...] = (200, 401),
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll ``url`` until it answers with one of ``ok_statuses`` (bounded by ``timeout``)."""
    end = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status in ok_statuses:
                    return
        except urllib.error.HTTPError as err:
            if err.code in ok_statuses:
                return
            last = err
        except OSError as err:
            last = err
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout}s: {last}")


@dataclass
class RegistryServer:
    """One registry process with its own temporary storage."""

    auth: dict[str, Any] | None = None
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
        http: dict[str, Any] = {"addr": f"127.0.0.1:{self.port}", "secret": "attest-test-secret"}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if self.auth:
            config["auth"] = self.auth
        if self.tls:
            http["tls"] = {"certificate": self.tls[0], "key": self.tls[1]}
        config_path = self.workdir / "config.yml"
        config_path.write_text(json.dumps(config))  # JSON is YAML: no PyYAML needed
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
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)
