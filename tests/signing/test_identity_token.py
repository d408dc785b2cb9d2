"""Where keyless signing gets its OIDC token: flag, file, SIGSTORE_ID_TOKEN, GitHub Actions."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from attest.errors import SigningError
from attest.signing.keyless import KeylessSigner, resolve_identity_token
from attest.testing import DEFAULT_SUBJECT, QuietHTTPServer, SigstoreMock

ENV = ("SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


class _ActionsOIDC(BaseHTTPRequestHandler):
    """GitHub Actions' token endpoint: bearer-authenticated GET with ?audience=…"""

    token = ""
    status = 200
    seen: ClassVar[list[dict]] = []

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        type(self).seen.append({"auth": self.headers.get("Authorization"), "query": query})
        if self.headers.get("Authorization") != "bearer runner-secret":
            self.send_response(401)
            self.end_headers()
            return
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"value": self.token}).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def actions_endpoint() -> Iterator[tuple[str, type[_ActionsOIDC]]]:
    handler = type("Handler", (_ActionsOIDC,), {"seen": [], "token": "", "status": 200})
    server = QuietHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0", handler
    server.shutdown()
    server.server_close()


def test_explicit_token_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    token = SigstoreMock.token()
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", SigstoreMock.token(subject="env"))
    assert resolve_identity_token(token) == (token, "--identity-token")


def test_token_file(tmp_path: Path) -> None:
    token = SigstoreMock.token()
    path = tmp_path / "token"
    path.write_text(token + "\n")
    raw, source = resolve_identity_token(str(path))
    assert raw == token and str(path) in source
    with pytest.raises(SigningError, match="neither a JWT nor a readable file"):
        resolve_identity_token(str(tmp_path / "missing"))


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    token = SigstoreMock.token()
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", token)
    assert resolve_identity_token(None) == (token, "SIGSTORE_ID_TOKEN")


def test_github_actions_ambient_token(
    monkeypatch: pytest.MonkeyPatch, actions_endpoint: tuple[str, type[_ActionsOIDC]]
) -> None:
    url, handler = actions_endpoint
    handler.token = SigstoreMock.token()
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", url)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-secret")
    raw, source = resolve_identity_token(None)
    assert raw == handler.token and source == "GitHub Actions OIDC"
    assert handler.seen[-1]["query"]["audience"] == ["sigstore"]
    assert handler.seen[-1]["query"]["api-version"] == ["2.0"]


def test_github_actions_errors(
    monkeypatch: pytest.MonkeyPatch, actions_endpoint: tuple[str, type[_ActionsOIDC]]
) -> None:
    url, handler = actions_endpoint
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", url)
    with pytest.raises(SigningError, match="ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set"):
        resolve_identity_token(None)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong")
    with pytest.raises(SigningError, match="HTTP 401"):
        resolve_identity_token(None)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-secret")
    handler.token = ""
    with pytest.raises(SigningError, match="without a token"):
        resolve_identity_token(None)


def test_no_token_anywhere_is_one_clear_error() -> None:
    with pytest.raises(SigningError) as err:
        resolve_identity_token(None)
    message = str(err.value)
    assert "--identity-token" in message and "SIGSTORE_ID_TOKEN" in message and "\n" not in message


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("a.b.c", "unusable"),
        (SigstoreMock.token(audience="not-sigstore"), "unusable"),
        (SigstoreMock.token(issued_at=1_000_000, lifetime=60), "unusable"),
    ],
    ids=["garbage", "wrong-audience", "expired"],
)
def test_bad_tokens_are_refused_before_any_request(token: str, reason: str) -> None:
    with pytest.raises(SigningError, match=reason):
        KeylessSigner(identity_token=token)


def test_signer_uses_environment_token(
    monkeypatch: pytest.MonkeyPatch, sigstore_mock: SigstoreMock
) -> None:
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", sigstore_mock.token())
    signer = KeylessSigner(trust_config=sigstore_mock.trust_config)
    assert signer.identity == DEFAULT_SUBJECT
    assert signer.sign(b"x").certificate is not None
    signer.close()
