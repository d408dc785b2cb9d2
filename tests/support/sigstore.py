"""Test-only helpers around the local Sigstore (:class:`attest.testing.SigstoreMock`).

``MockKeylessSigner`` signs the way a keyless client does, step by step (a fresh
key, a certificate from the mock Fulcio, the signature logged in the mock Rekor),
so that it can also use certificates a real client would refuse: the mock Fulcio
issues them with a missing, forged, unknown-log or mismatched SCT, from a CA the
trusted root does not list, for an email or URI identity, with another (or no)
extended key usage or a back-dated validity, and the mock Rekor logs at a chosen
time or not at all, on request.  ``verify_with_sigstore_js`` asks
@sigstore/verify for a second opinion on a bundle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path

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
    """A Signer whose Fulcio certificate carries the SCT ``sct`` asks for (see SCT_MODES),
    or the SAN, extended key usage and validity a test chooses (``SigstoreMock.issue``)."""

    def __init__(
        self,
        mock: SigstoreMock,
        *,
        sct: str = "valid",
        stranger_ca: bool = False,
        subject: str = DEFAULT_SUBJECT,
        issuer: str = DEFAULT_ISSUER,
        eku: tuple[str, ...] | None = None,
        not_before: dt.datetime | None = None,
        log_time: dt.datetime | None = None,
        with_log: bool = True,
    ) -> None:
        """``stranger_ca``: a CA the trusted root does not list (with a valid SCT).
        ``eku``: the certificate's extended key usages (``()``: none); ``not_before``: the
        start of its 10 minutes; ``log_time``: the integrated time of its log entries
        (default: now, or a minute into a chosen validity); ``with_log=False``: no entry."""
        if sct not in SCT_MODES:
            raise ValueError(f"sct {sct!r}: one of {SCT_MODES}")
        if stranger_ca and sct != "valid":
            raise ValueError("the stranger CA issues certificates with valid SCTs only")
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        prefix = "/ca/stranger" if stranger_ca else "" if sct == "valid" else f"/sct/{sct}"
        start = None if not_before is None else int(not_before.timestamp())
        chain = mock.issue(public, subject, issuer, route=prefix, eku=eku, not_before=start)
        certificates = [x509.load_pem_x509_certificate(pem) for pem in chain]
        self.certificate, self.chain = certificates[0], tuple(certificates[1:])
        if log_time is None and not_before is not None:
            log_time = not_before + dt.timedelta(minutes=1)
        when = None if log_time is None else int(log_time.timestamp())
        self.rekor = RekorClient(mock.rekor_url(when)) if with_log else None
        self.description = f"mock keyless {subject} (SCT: {sct})"

    def log_hashedrekord(self, signature: bytes, data: bytes) -> TlogEntry:
        """Log ``signature`` over ``data`` with this certificate (the log checks nothing)."""
        assert self.rekor is not None
        return self.rekor.upload_hashedrekord(
            signature=signature, digest=hashlib.sha256(data).digest(), verifier=self.certificate
        )

    def _material(
        self, signature: bytes, payload: bytes, payload_type: str | None, entry: TlogEntry | None
    ) -> SignatureMaterial:
        der = serialization.Encoding.DER
        return SignatureMaterial(
            signature=signature,
            payload=payload,
            payload_type=payload_type,
            certificate=self.certificate.public_bytes(der),
            tlog_entries=() if entry is None else (entry,),
            chain=tuple(cert.public_bytes(der) for cert in self.chain),
        )

    def sign(self, data: bytes) -> SignatureMaterial:
        signature = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        entry = None if self.rekor is None else self.log_hashedrekord(signature, data)
        return self._material(signature, data, None, entry)

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        signature = self.key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        envelope = Envelope(payload_type, payload, (EnvelopeSignature(signature),))
        entry = (
            None
            if self.rekor is None
            else self.rekor.upload_dsse(envelope_json=envelope.to_json(), verifier=self.certificate)
        )
        return self._material(signature, payload, payload_type, entry)
