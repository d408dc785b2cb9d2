"""A local Sigstore instance for tests: Fulcio + Rekor from @sigstore/mock behind a Node server.

``SigstoreMock`` starts ``tests/js/sigstore-mock-server.js`` on a free 127.0.0.1
port; the server writes the instance's trusted root, signing config and client
trust config, then prints their paths.  ``token()`` mints OIDC identity tokens the
mock Fulcio accepts: it decodes the JWT without checking its signature and
certifies the ``sub`` claim (as a URI SAN) for the ``iss`` claim, so any
HS256-signed token with the usual claims (``aud`` = ``sigstore``) will do.

``MockKeylessSigner`` signs the way a keyless client does, step by step (a fresh
key, a certificate from the mock Fulcio, the signature logged in the mock Rekor),
so that it can also use certificates a real client would refuse: the mock Fulcio
issues them with a missing, forged, unknown-log or mismatched SCT, or from a CA
the trusted root does not list, on request.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.signing.bundle import SignatureMaterial
from attest.signing.dsse import Envelope, EnvelopeSignature, pae
from attest.signing.rekor import RekorClient
from attest.signing.tlog import TlogEntry

ROOT = Path(__file__).resolve().parent.parent.parent
JS_DIR = ROOT / "tests" / "js"
DEFAULT_ISSUER = "https://token.attest.test"
DEFAULT_SUBJECT = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


def verify_with_sigstore_js(bundle: Path, trusted_root: str, *args: str) -> dict:
    """Run @sigstore/verify (tests/js/verify-bundle.js) on ``bundle``; its one-line JSON answer.

    ``args`` are the trust flags (``--key PEM --no-tlog``, ``--certificate-identity …``).
    """
    done = subprocess.run(
        [
            "node",
            str(JS_DIR / "verify-bundle.js"),
            "--bundle",
            str(bundle),
            "--trusted-root",
            trusted_root,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=JS_DIR,
    )
    assert done.returncode in (0, 1), done.stderr
    answer = json.loads(done.stdout)
    assert answer["verified"] is (done.returncode == 0)
    return answer


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
        return jwt.encode(body, secrets.token_hex(32), algorithm="HS256")


SCT_MODES = ("valid", "none", "forged", "unknown-log", "mismatched")


class MockKeylessSigner:
    """A Signer whose Fulcio certificate carries the SCT ``sct`` asks for (see SCT_MODES)."""

    def __init__(
        self,
        mock: SigstoreMock,
        *,
        sct: str = "valid",
        stranger_ca: bool = False,
        subject: str = DEFAULT_SUBJECT,
        issuer: str = DEFAULT_ISSUER,
    ) -> None:
        """``stranger_ca``: a CA the trusted root does not list (with a valid SCT)."""
        if sct not in SCT_MODES:
            raise ValueError(f"sct {sct!r}: one of {SCT_MODES}")
        if stranger_ca and sct != "valid":
            raise ValueError("the stranger CA issues certificates with valid SCTs only")
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        prefix = "/ca/stranger" if stranger_ca else "" if sct == "valid" else f"/sct/{sct}"
        response = requests.post(
            f"{mock.url}{prefix}/api/v2/signingCert",
            json={
                "credentials": {"oidcIdentityToken": mock.token(subject, issuer)},
                "publicKeyRequest": {"publicKey": {"content": public.decode()}},
            },
            timeout=30,
        )
        assert response.status_code in (200, 201), response.text  # real Fulcio: 200
        chain = response.json()["signedCertificateEmbeddedSct"]["chain"]["certificates"]
        certificates = [x509.load_pem_x509_certificate(pem.encode()) for pem in chain]
        self.certificate, self.chain = certificates[0], tuple(certificates[1:])
        self.rekor = RekorClient(mock.url)
        self.description = f"mock keyless {subject} (SCT: {sct})"

    def _material(
        self, signature: bytes, payload: bytes, payload_type: str | None, entry: TlogEntry
    ) -> SignatureMaterial:
        der = serialization.Encoding.DER
        return SignatureMaterial(
            signature=signature,
            payload=payload,
            payload_type=payload_type,
            certificate=self.certificate.public_bytes(der),
            tlog_entries=(entry,),
            chain=tuple(cert.public_bytes(der) for cert in self.chain),
        )

    def sign(self, data: bytes) -> SignatureMaterial:
        signature = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        entry = self.rekor.upload_hashedrekord(
            signature=signature, digest=hashlib.sha256(data).digest(), verifier=self.certificate
        )
        return self._material(signature, data, None, entry)

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        signature = self.key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        envelope = Envelope(payload_type, payload, (EnvelopeSignature(signature),))
        entry = self.rekor.upload_dsse(envelope_json=envelope.to_json(), verifier=self.certificate)
        return self._material(signature, payload, payload_type, entry)
