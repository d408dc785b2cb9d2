"""Where a key-based signature is logged, and logging it (cosign's ``--tlog-upload``).

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

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from attest.errors import SigningError, UsageError
from attest.signing.bundle import SignatureMaterial
from attest.signing.dsse import pae
from attest.signing.keys import PublicKey
from attest.signing.tlog import (
    RekorClient,
    TlogEntry,
    TlogError,
    check_dsse,
    check_hashedrekord,
    verify_entry,
)
from attest.signing.trust import PUBLIC_GOOD, TrustConfig, TrustRoot

DEFAULT_TIMEOUT_SECONDS = 30.0
SUPPORTED_API_VERSIONS = (1, 2)


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
