"""``attest admission serve`` as a real process (gunicorn, TLS) with both ports, for these tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from admission.testing import webhook
from admission.testing.helpers import TlsFiles
from admission.testing.webhook import Webhook
from attest.testing import free_port

TOKEN = "appsec-view-token-0123456789abcdef"


@dataclass
class Serve(Webhook):
    """A running server with its ops port too: the webhook port, the ops port, its log, token."""

    web_port: int = 0
    token: str = TOKEN
    args: list[str] = field(default_factory=list)

    @property
    def ops_url(self) -> str:
        return f"https://127.0.0.1:{self.web_port}"

    def post(self, path: str, review: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}{path}", json=review, verify=str(self.ca), timeout=timeout
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()["response"]
        return answer

    def ops(self, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.get(
            f"{self.ops_url}{path}", verify=str(self.ca), timeout=10, headers=headers, **kwargs
        )

    def log_lines(self) -> list[dict[str, Any]]:
        """Every log line, each parsed as JSON (fails the test on a line that is not)."""
        lines = []
        for line in self.log.read_text().splitlines():
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    raise AssertionError(f"log line is not JSON: {line[:300]}") from None
        return lines


def serve_command(
    config: Path,
    tls: TlsFiles,
    *,
    port: int,
    web_port: int,
    db: str | None,
    token_file: Path | None,
    workers: int = 1,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The command line with the ops port, the decision database and the view's token file."""
    options: list[str] = []
    if db is not None:
        options += ["--db", db]
    if token_file is not None:
        options += ["--web-token-file", str(token_file)]
    return webhook.serve_command(
        config, tls, port=port, web_port=web_port, workers=workers, extra=(*options, *extra)
    )


def start_serve(
    config: Path,
    tls: TlsFiles,
    workdir: Path,
    *,
    db: str | None,
    token: str | None = TOKEN,
    workers: int = 1,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Serve:
    """Start the server on free loopback ports and wait until both ports answer."""
    port, web_port = free_port(), free_port()
    token_file = None
    if token is not None:
        token_file = workdir / f"token-{web_port}"
        token_file.write_text(token + "\n")
    log = workdir / f"serve-{port}.log"
    command = serve_command(
        config,
        tls,
        port=port,
        web_port=web_port,
        db=db,
        token_file=token_file,
        workers=workers,
        extra=extra,
    )
    process = webhook.launch(command, log, env)
    server = Serve(process, port, tls.ca, log, web_port, token or "", command)
    webhook.wait_until_ready(
        server, lambda: server.get("/healthz").status_code == 200 and server.ops("/healthz").ok
    )
    return server


def wait_for(condition: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something truthy (bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
