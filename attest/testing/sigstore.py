"""The local Sigstore: :class:`SigstoreMock` runs Fulcio, Rekor (v1) and a TSA from
@sigstore/mock behind ``tests/js/sigstore-mock-server.js`` (a source checkout with
``npm ci`` run there).

``SigstoreMock`` writes the instance's trusted root, signing config and client
trust config, then prints their paths.  ``token()`` mints OIDC identity tokens the
mock Fulcio accepts: it decodes the JWT without checking its signature and
certifies the ``sub`` claim (as a URI SAN) for the ``iss`` claim, so any
HS256-signed token with the usual claims (``aud`` = ``sigstore``) will do.
``issue()`` asks it for certificates a real Fulcio would not give (an email SAN,
another or no extended key usage, a back-dated validity, a bad SCT, an untrusted CA)
and ``rekor_url()`` for a log that records entries at a chosen time: it is the suite's
one Sigstore fake, for the happy paths and the attacks alike.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parents[2] / "tests" / "js"
"""The Node harness (``npm ci`` there): a source checkout only, not an installed package."""
DEFAULT_ISSUER = "https://token.attest.test"
DEFAULT_SUBJECT = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


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
