"""``attest admission serve`` as a real process (gunicorn, TLS) on a free loopback port.

One launcher for the admission and web tests and the admission benchmarks: the command
line, starting it with its output in a log file, waiting until it answers (bounded, with
the log's tail when it exits or never comes up), and a graceful stop (SIGTERM, then kill).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from attest.testing import free_port, stop_process

START_TIMEOUT = 60.0


class TlsPaths(Protocol):
    """The CA that signed the server certificate, the certificate and its key (PEM files)."""

    ca: Path
    cert: Path
    key: Path


@dataclass
class Webhook:
    """A running ``attest admission serve`` process and its webhook port."""

    process: subprocess.Popen[bytes]
    port: int
    ca: Path
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def validate(
        self, review: dict[str, Any] | bytes, timeout: float = 15
    ) -> tuple[int, dict[str, Any]]:
        """POST an AdmissionReview (a dict, or raw bytes as JSON) to /validate."""
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

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", verify=str(self.ca), timeout=10, **kwargs)

    def stop(self, timeout: float = 30) -> int:
        """Stop gracefully (SIGTERM: workers close their recorders); returns the exit code."""
        stop_process(self.process, timeout=timeout)
        return self.process.returncode


def serve_command(
    config: Path,
    tls: TlsPaths,
    *,
    port: int,
    web_port: int | None = None,
    workers: int = 1,
    threads: int = 4,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``attest admission serve`` command line on 127.0.0.1:``port``."""
    command = [
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
    ]
    if web_port is not None:
        command += ["--web-port", str(web_port)]
    return [*command, "--workers", str(workers), "--threads", str(threads), *extra]


def launch(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` with stdout and stderr in ``log`` (extra ``env`` on top of ours)."""
    return subprocess.Popen(
        command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )


def wait_until_ready(
    server: Webhook, ready: Callable[[], bool], timeout: float = START_TIMEOUT
) -> None:
    """Poll ``ready()`` until true; stop the server and raise (with its log) if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"attest admission serve exited: {_tail(server.log)}")
        try:
            if ready():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"attest admission serve did not come up: {_tail(server.log)}")


def start_webhook(
    config: Path,
    tls: TlsPaths,
    workdir: Path,
    *,
    port: int | None = None,
    workers: int = 1,
    threads: int = 4,
    extra: Sequence[str] = (),
    ready_path: str = "/healthz",
    ready_url: str | None = None,
) -> Webhook:
    """Start the webhook (log in ``workdir``) and wait until ``ready_path`` answers 200 (or
    ``ready_url``: the probe port, when the webhook port asks for a client certificate)."""
    port = port or free_port()
    log = workdir / f"webhook-{port}.log"
    command = serve_command(config, tls, port=port, workers=workers, threads=threads, extra=extra)
    hook = Webhook(launch(command, log), port, tls.ca, log)
    if ready_url:
        wait_until_ready(
            hook, lambda: requests.get(ready_url, verify=str(tls.ca), timeout=5).status_code == 200
        )
    else:
        wait_until_ready(hook, lambda: hook.get(ready_path).status_code == 200)
    return hook


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]
