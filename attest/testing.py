"""Real servers on loopback for the test suite and the benchmarks (``bench/``).

Both start the same real components, so the one definition lives here rather than
in ``tests/`` (which ``bench/`` must not import): :func:`free_port`,
:func:`wait_http`, :class:`RegistryServer` (a Debian ``docker-registry``,
distribution 2.8, with its own temporary storage) and :class:`SigstoreMock`
(Fulcio and Rekor from @sigstore/mock behind ``tests/js/sigstore-mock-server.js``;
a source checkout with ``npm ci`` run there).  Nothing in the library imports this
module.

``SigstoreMock`` writes the instance's trusted root, signing config and client
trust config, then prints their paths.  ``token()`` mints OIDC identity tokens the
mock Fulcio accepts: it decodes the JWT without checking its signature and
certifies the ``sub`` claim (as a URI SAN) for the ``iss`` claim, so any
HS256-signed token with the usual claims (``aud`` = ``sigstore``) will do.
"""

from __future__ import annotations

import json
import os
import secrets
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
JS_DIR = Path(__file__).resolve().parent.parent / "tests" / "js"
"""The Node harness (``npm ci`` there): a source checkout only, not an installed package."""
DEFAULT_ISSUER = "https://token.attest.test"
DEFAULT_SUBJECT = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


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
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def node_harness_missing() -> str | None:
    """Why the Node harness cannot run, or None (``make test`` installs it)."""
    if shutil.which("node") is None:
        return "node is not installed (make test installs it via scripts/system-deps.sh)"
    if not (JS_DIR / "node_modules" / "@sigstore" / "mock").is_dir():
        return "tests/js/node_modules is missing (make test runs npm ci there)"
    return None


class SigstoreMock:
    """One running instance; ``trusted_root``, ``signing_config``, ``trust_config`` are paths."""

    def __init__(
        self, workdir: Path, *, rekor_time_offset: int = 0, dsse: str = "canonical"
    ) -> None:
        self.workdir = workdir
        self.rekor_time_offset = rekor_time_offset
        self.dsse = dsse
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.trusted_root = ""
        self.signing_config = ""
        self.trust_config = ""

    def start(self, timeout: float = 30.0) -> SigstoreMock:
        command = [
            "node",
            str(JS_DIR / "sigstore-mock-server.js"),
            "--out",
            str(self.workdir),
            "--rekor-time-offset",
            str(self.rekor_time_offset),
            "--dsse",
            self.dsse,
        ]
        stderr = (self.workdir.parent / f"{self.workdir.name}.stderr").open("wb")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=JS_DIR
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and not line:
            line = self.process.stdout.readline()
            if self.process.poll() is not None and not line:
                break
        if not line:
            self.stop()
            raise RuntimeError(f"sigstore mock did not start: see {stderr.name}")
        info = json.loads(line)
        self.url = info["url"]
        self.trusted_root = info["trustedRoot"]
        self.signing_config = info["signingConfig"]
        self.trust_config = info["trustConfig"]
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=5)
        self.process = None

    def issue(
        self,
        public_key_pem: bytes,
        subject: str = DEFAULT_SUBJECT,
        issuer: str = DEFAULT_ISSUER,
        *,
        route: str = "",
        san: str | None = None,
        eku: tuple[str, ...] | None = None,
        not_before: int | None = None,
        lifetime: int | None = None,
    ) -> list[bytes]:
        """A certificate chain (PEM, leaf first) from this Fulcio for ``public_key_pem``.

        ``route`` is a path prefix of the wrapper (``/sct/forged``, ``/ca/stranger``; see
        its header).  Choosing ``san`` (``email``/``uri``; default: ``email`` when
        ``subject`` has no ``://``), ``eku`` (extended key usage names, ``()`` for none),
        ``not_before`` (unix seconds) or ``lifetime`` (seconds) asks the trusted CA for
        that leaf instead (route ``/issue``); unchosen, it is as the mock issues it.
        """
        body: dict[str, Any] = {
            "credentials": {"oidcIdentityToken": self.token(subject, issuer)},
            "publicKeyRequest": {"publicKey": {"content": public_key_pem.decode()}},
        }
        chosen = {
            "san": san,
            "eku": list(eku) if eku is not None else None,
            "notBefore": not_before,
            "lifetime": lifetime,
        }
        if any(value is not None for value in chosen.values()) or "://" not in subject:
            if route:
                raise ValueError(f"route {route!r} issues as the mock does: choose nothing")
            chosen["san"] = san or ("uri" if "://" in subject else "email")
            body["certificate"] = {k: v for k, v in chosen.items() if v is not None}
            route = "/issue"
        request = urllib.request.Request(
            f"{self.url}{route}/api/v2/signingCert",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"sigstore mock refused the certificate: {err.read()!r}") from None
        chain: list[str] = answer["signedCertificateEmbeddedSct"]["chain"]["certificates"]
        return [pem.encode() for pem in chain]

    def rekor_url(self, integrated_time: int | None = None) -> str:
        """The Rekor base URL; with ``integrated_time`` (unix seconds), one whose entries
        are logged at that time."""
        return self.url if integrated_time is None else f"{self.url}/time/{integrated_time}"

    def write_trusted_root(self, path: Path, *, log_valid_from: str | None = None) -> str:
        """A copy of the trusted root at ``path``; ``log_valid_from`` (RFC 3339) moves the
        start of the Rekor key's validity.  Returns the path."""
        root = json.loads(Path(self.trusted_root).read_text())
        if log_valid_from is not None:
            for log in root["tlogs"]:
                log["publicKey"]["validFor"]["start"] = log_valid_from
        path.write_text(json.dumps(root))
        return str(path)

    @staticmethod
    def token(
        subject: str = DEFAULT_SUBJECT,
        issuer: str = DEFAULT_ISSUER,
        *,
        audience: str = "sigstore",
        lifetime: int = 600,
        issued_at: int | None = None,
        **claims: object,
    ) -> str:
        """An OIDC identity token (HS256 with a throwaway secret) for ``subject``/``issuer``."""
        now = int(time.time()) if issued_at is None else issued_at
        body = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            **claims,
        }
        import jwt  # PyJWT, a dependency of sigstore

        return jwt.encode(body, secrets.token_hex(32), algorithm="HS256")
