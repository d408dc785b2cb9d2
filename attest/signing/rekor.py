"""Rekor: the client that submits entries, where a key-based signature is logged, and logging it.

``RekorClient`` submits ``hashedrekord`` and ``dsse`` entries to a Rekor v1 API, and
``hashedrekord/0.0.2`` to a Rekor v2 (rekor-tiles) log, within a deadline on the whole
exchange.

cosign logs every ``--key`` signature in a Rekor transparency log unless told
``--tlog-upload=false``, and ``cosign verify --key`` then requires that entry.
attest does the same.  The log is, in order: ``--rekor-url`` (a Rekor v1 API, as
cosign's flag), the signing config of ``--trust-config`` (Rekor v1 or v2, whose
trusted root also checks the answer), else Sigstore's public-good Rekor from the
signing config shipped with sigstore-python — cosign's default too.  The answer
is checked before it is stored: the entry must record this very signature, and
when a trusted root is known its inclusion proof, checkpoint and SET must verify.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from attest.errors import ServiceUnavailable, SigningError, UsageError
from attest.signing.bundle import SignatureMaterial
from attest.signing.dsse import pae
from attest.signing.keys import PublicKey, public_key_der, public_key_pem
from attest.signing.tlog import (
    TlogEntry,
    TlogError,
    check_dsse,
    check_hashedrekord,
    verify_entry,
)
from attest.signing.trust import PUBLIC_GOOD, TrustConfig, TrustRoot

DEFAULT_TIMEOUT_SECONDS = 30.0
SUPPORTED_API_VERSIONS = (1, 2)
MAX_REKOR_RESPONSE_BYTES = 4 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _read_within(response: requests.Response, deadline: float, limit: int) -> bytes:
    """The response body, read before ``deadline`` (TimeoutError) and at most ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=16384):
        size += len(chunk)
        if size > limit:
            raise SigningError(f"Rekor's answer is larger than {limit} bytes")
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise TimeoutError
    return b"".join(chunks)


def key_details(key: PublicKey) -> str:
    """The ``PublicKeyDetails`` name Rekor v2 wants for ``key`` (the usual SHA-2 pairings)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        bits = {"secp256r1": 256, "secp384r1": 384, "secp521r1": 521}.get(key.curve.name)
        if bits is None:
            raise SigningError(f"ECDSA curve {key.curve.name} cannot be logged in Rekor v2")
        return f"PKIX_ECDSA_P{bits}_SHA_{512 if bits == 521 else bits}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    size = key.key_size
    if size not in (2048, 3072, 4096):
        raise SigningError(f"an RSA key of {size} bits cannot be logged in Rekor v2")
    return f"PKIX_RSA_PKCS1V15_{size}_SHA256"


def _pem_b64(verifier: PublicKey | x509.Certificate) -> str:
    if isinstance(verifier, x509.Certificate):
        return _b64(verifier.public_bytes(serialization.Encoding.PEM))
    return _b64(public_key_pem(verifier))


class RekorClient:
    """Submit entries to a Rekor log: v1 (``POST /api/v1/log/entries``) or v2 (rekor-tiles).

    ``timeout`` bounds the whole exchange, not single reads: a log that trickles
    bytes or never answers fails at the deadline with a one-line ``SigningError``.
    """

    def __init__(self, url: str, *, timeout: float = 30.0, api_version: int = 1) -> None:
        if api_version not in (1, 2):
            raise SigningError(f"Rekor at {url}: API version {api_version} is not supported")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.api_version = api_version

    def _exchange(self, path: str, proposed: dict[str, Any], deadline: float) -> tuple[int, bytes]:
        with requests.post(
            f"{self.url}{path}",
            json=proposed,
            timeout=self.timeout,
            stream=True,
            headers={"Accept": "application/json"},
        ) as response:
            return response.status_code, _read_within(response, deadline, MAX_REKOR_RESPONSE_BYTES)

    def _post(self, path: str, proposed: dict[str, Any]) -> Any:
        deadline = time.monotonic() + self.timeout
        # A worker thread, so that the deadline bounds the wall time of the whole exchange
        # (requests' own timeout bounds each socket read, not a log that trickles bytes).
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="attest-rekor")
        try:
            status, body = pool.submit(self._exchange, path, proposed, deadline).result(
                timeout=self.timeout
            )
        except requests.ConnectionError as err:
            if isinstance(err, requests.ConnectTimeout):
                raise ServiceUnavailable(
                    f"Rekor at {self.url} did not answer within {self.timeout:g} s"
                ) from None
            raise ServiceUnavailable(
                f"Rekor at {self.url} is unreachable ({type(err).__name__})"
            ) from None
        except requests.RequestException as err:
            if isinstance(err, requests.Timeout):
                raise ServiceUnavailable(
                    f"Rekor at {self.url} did not answer within {self.timeout:g} s"
                ) from None
            raise ServiceUnavailable(f"Rekor at {self.url}: {type(err).__name__}") from None
        except (TimeoutError, concurrent.futures.TimeoutError):
            raise ServiceUnavailable(
                f"Rekor at {self.url} did not answer within {self.timeout:g} s"
            ) from None
        finally:
            pool.shutdown(wait=False)
        if status not in (200, 201):
            text = " ".join(body.decode("utf-8", "replace").split())[:200]
            failed = ServiceUnavailable if status >= 500 else SigningError  # 4xx: this entry
            raise failed(f"Rekor at {self.url} refused the entry: HTTP {status} {text}")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SigningError(
                f"Rekor at {self.url} answered with something other than JSON"
            ) from None

    def _submit(self, proposed: dict[str, Any]) -> TlogEntry:
        answer = self._post("/api/v1/log/entries", proposed)
        try:
            return TlogEntry.from_rekor_response(answer)
        except TlogError as err:
            raise SigningError(f"Rekor at {self.url}: {err}") from None

    def upload_hashedrekord_v2(
        self, *, signature: bytes, digest: bytes, verifier: PublicKey
    ) -> TlogEntry:
        """Log a signature over SHA-256 ``digest`` in a Rekor v2 log (``hashedrekord/0.0.2``)."""
        answer = self._post(
            "/api/v2/log/entries",
            {
                "hashedRekordRequestV002": {
                    "digest": _b64(digest),
                    "signature": {
                        "content": _b64(signature),
                        "verifier": {
                            "publicKey": {"rawBytes": _b64(public_key_der(verifier))},
                            "keyDetails": key_details(verifier),
                        },
                    },
                }
            },
        )
        try:
            if not isinstance(answer, dict):
                raise TlogError("Rekor answered with something other than a log entry")
            return TlogEntry.from_bundle_dict(answer)
        except (KeyError, TypeError, ValueError, binascii.Error, TlogError) as err:
            raise SigningError(
                f"Rekor at {self.url}: the log entry is malformed ({type(err).__name__}: {err})"
            ) from None

    def upload_hashedrekord(
        self, *, signature: bytes, digest: bytes, verifier: PublicKey | x509.Certificate
    ) -> TlogEntry:
        """Log a signature over an artifact whose SHA-256 is ``digest``."""
        return self._submit(
            {
                "apiVersion": "0.0.1",
                "kind": "hashedrekord",
                "spec": {
                    "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
                    "signature": {
                        "content": _b64(signature),
                        "publicKey": {"content": _pem_b64(verifier)},
                    },
                },
            }
        )

    def upload_dsse(
        self, *, envelope_json: bytes, verifier: PublicKey | x509.Certificate
    ) -> TlogEntry:
        """Log a DSSE envelope (Rekor canonicalises it to payload hash + signatures)."""
        return self._submit(
            {
                "apiVersion": "0.0.1",
                "kind": "dsse",
                "spec": {
                    "proposedContent": {
                        "envelope": envelope_json.decode(),
                        "verifiers": [_pem_b64(verifier)],
                    }
                },
            }
        )


# -- where a key-based signature is logged ----------------------------------------------


@dataclass(frozen=True)
class RekorTarget:
    """One Rekor log to submit to, and the root (if known) that must vouch for its answer."""

    url: str
    api_version: int
    root: TrustRoot | None
    source: str  # where the choice came from, for messages

    @property
    def description(self) -> str:
        return f"Rekor v{self.api_version} at {self.url} ({self.source})"


def _from_signing_config(trust: TrustConfig) -> RekorTarget:
    """The newest supported Rekor the trust config's signing config names, valid now."""
    now = datetime.now(UTC)
    services = []
    for service in trust.sigstore.signing_config._inner.rekor_tlog_urls:
        valid = service.valid_for
        start = valid.start if valid and valid.start else None
        end = valid.end if valid and valid.end else None
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        if end is not None and end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        current = (start is None or start <= now) and (end is None or now <= end)
        if current and service.major_api_version in SUPPORTED_API_VERSIONS:
            services.append(service)
    if not services:
        raise UsageError(
            f"signing config {trust.name} names no Rekor log usable now (API v1 or v2); "
            "pass --rekor-url, or --tlog-upload=false to sign without a log"
        )
    chosen = max(services, key=lambda s: s.major_api_version)
    source = "Sigstore public good" if trust.name == PUBLIC_GOOD else f"trust config {trust.name}"
    return RekorTarget(chosen.url, chosen.major_api_version, trust.root, source)


def rekor_target(*, rekor_url: str | None, trust: TrustConfig | None) -> RekorTarget:
    """The log a key-based signature goes to: ``--rekor-url``, the trust config's, public good."""
    if rekor_url:
        if not rekor_url.startswith(("http://", "https://")):
            raise UsageError(f"--rekor-url {rekor_url!r} is not an http(s) URL")
        root = trust.root if trust is not None else None
        return RekorTarget(rekor_url, 1, root, "--rekor-url")
    if trust is None:
        from attest.signing.trust import load_trust_config

        trust = load_trust_config(None)
    return _from_signing_config(trust)


def _check_answer(
    entry: TlogEntry, material: SignatureMaterial, verifier: PublicKey, root: TrustRoot | None
) -> None:
    """The log's answer records this signature (and verifies against ``root`` when given)."""
    try:
        if material.payload_type is not None:
            check_dsse(
                entry,
                payload=material.payload,
                signatures=(material.signature,),
                verifier=verifier,
                pae=pae(material.payload_type, material.payload),
            )
        else:
            check_hashedrekord(
                entry,
                signature=material.signature,
                digest=hashlib.sha256(material.payload).digest(),
                verifier=verifier,
            )
        if root is not None:
            verify_entry(entry, root, require_proof=True)
    except TlogError as err:
        raise SigningError(f"the transparency log's answer does not check out: {err}") from None


def log_material(
    material: SignatureMaterial,
    target: RekorTarget,
    verifier: PublicKey,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> SignatureMaterial:
    """Log ``material`` (a signature by ``verifier``'s key) and return it with the entry.

    Rekor v1 gets a ``hashedrekord`` (message) or ``dsse`` (envelope) entry, as cosign
    submits them; Rekor v2 a ``hashedrekord/0.0.2`` over the message or the DSSE PAE,
    as sigstore-go does.  Unreachable, refusing or lying logs are one-line
    ``SigningError``s within ``timeout``.
    """
    client = RekorClient(target.url, timeout=timeout, api_version=target.api_version)
    signed = (
        pae(material.payload_type, material.payload)
        if material.payload_type is not None
        else material.payload
    )
    if target.api_version == 2:
        entry = client.upload_hashedrekord_v2(
            signature=material.signature,
            digest=hashlib.sha256(signed).digest(),
            verifier=verifier,
        )
    elif material.payload_type is not None:
        entry = client.upload_dsse(envelope_json=material.envelope().to_json(), verifier=verifier)
    else:
        entry = client.upload_hashedrekord(
            signature=material.signature,
            digest=hashlib.sha256(material.payload).digest(),
            verifier=verifier,
        )
    _check_answer(entry, material, verifier, target.root)
    return dataclasses.replace(material, tlog_entries=(entry,))
