"""Test-only helpers around the local Sigstore (:class:`attest.testing.SigstoreMock`).

``MockKeylessSigner`` signs the way a keyless client does, step by step (a fresh
key, a certificate from the mock Fulcio, the signature logged in the mock Rekor),
so that it can also use certificates a real client would refuse: the mock Fulcio
issues them with a missing, forged, unknown-log or mismatched SCT, or from a CA
the trusted root does not list, on request.  ``verify_with_sigstore_js`` asks
@sigstore/verify for a second opinion on a bundle.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.signing.bundle import SignatureMaterial
from attest.signing.dsse import Envelope, EnvelopeSignature, pae
from attest.signing.rekor import RekorClient
from attest.signing.tlog import TlogEntry
from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT, JS_DIR, SigstoreMock


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
