"""Keyless signing end to end against a local Sigstore, verified offline with its root.

``KeylessSigner`` gets a Fulcio certificate for a minted OIDC token and logs in
the local Rekor; ``verify_bundle`` then checks chain, SCT, identity, inclusion
proof, SET and entry consistency through sigstore-python (our code for intoto).
Each security case must be rejected.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from attest.errors import SigningError
from attest.signing.authority import KeylessAuthority
from attest.signing.bundle import SignatureMaterial, make_bundle
from attest.signing.bundle_verify import verify_bundle
from attest.signing.fulcio import IdentityPolicy
from attest.signing.keyless import KeylessSigner
from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT, SigstoreMock, free_port
from tests.signing.conftest import sha256_hex, statement

IMAGE = "sha256:" + sha256_hex(b"keyless image manifest")
PAYLOAD = b'{"critical":{"identity":{"docker-reference":"registry.test/app"}}}'


def _authority(mock: SigstoreMock, **fields: str | None) -> KeylessAuthority:
    values: dict[str, str | None] = {"subject": DEFAULT_SUBJECT, "issuer": DEFAULT_ISSUER}
    values.update(fields)
    root = values.pop("trusted_root", mock.trusted_root)
    return KeylessAuthority("ci", IdentityPolicy(**values), trusted_root=root)


@pytest.fixture(scope="module")
def signed(sigstore_mock: SigstoreMock) -> Iterator[dict[str, SignatureMaterial]]:
    """One message signature and one DSSE attestation, signed once for the module."""
    with KeylessSigner(
        identity_token=sigstore_mock.token(), trust_config=sigstore_mock.trust_config
    ) as signer:
        yield {
            "message": signer.sign(PAYLOAD),
            "dsse": signer.sign_dsse(
                "application/vnd.in-toto+json", statement(IMAGE.removeprefix("sha256:"))
            ),
        }


def test_message_signature_verifies_offline(
    sigstore_mock: SigstoreMock, signed: dict[str, SignatureMaterial]
) -> None:
    material = signed["message"]
    assert material.certificate is not None and material.chain, (
        "cert and CA chain for legacy storage"
    )
    cert = x509.load_der_x509_certificate(material.certificate)
    assert cert.issuer == x509.load_der_x509_certificate(material.chain[0]).subject
    bundle = make_bundle(material)
    assert "certificate" in json.loads(bundle)["verificationMaterial"]
    result = verify_bundle(bundle, _authority(sigstore_mock), artifact=PAYLOAD)
    assert result.verified, result.reasons
    assert result.signer.to_dict() == {
        "type": "keyless",
        "subject": DEFAULT_SUBJECT,
        "issuer": DEFAULT_ISSUER,
    }
    assert result.tlog is not None and result.tlog["kind"] == "hashedrekord/0.0.1"
    assert result.signed_times


def test_dsse_attestation_verifies_offline(
    sigstore_mock: SigstoreMock, signed: dict[str, SignatureMaterial]
) -> None:
    result = verify_bundle(
        make_bundle(signed["dsse"]), _authority(sigstore_mock), artifact_digest=IMAGE
    )
    assert result.verified, result.reasons
    assert result.tlog is not None and result.tlog["kind"] == "dsse/0.0.1"
    assert result.statement() is not None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (
            {
                "subject": "https://github.com/acme/other/.github/workflows/release.yml@refs/heads/main"
            },
            "identity",
        ),
        ({"issuer": "https://token.actions.githubusercontent.com"}, "issuer"),
        ({"subject": None, "subject_regexp": "https://github.com/acme/app/"}, "identity"),
        ({"issuer": None, "issuer_regexp": "https://token.attest"}, "issuer"),
    ],
    ids=["other-identity", "other-issuer", "identity-prefix-regexp", "issuer-prefix-regexp"],
)
def test_identity_and_issuer_mismatch(
    sigstore_mock: SigstoreMock,
    signed: dict[str, SignatureMaterial],
    fields: dict[str, str | None],
    reason: str,
) -> None:
    result = verify_bundle(
        make_bundle(signed["message"]), _authority(sigstore_mock, **fields), artifact=PAYLOAD
    )
    assert not result.verified
    assert reason in result.reasons[0]


def test_regexp_is_anchored_at_both_ends(sigstore_mock: SigstoreMock) -> None:
    """``.*@example.com`` matches alice@example.com but not evil@example.com.attacker.io."""
    policy = {"subject": None, "subject_regexp": ".*@example.com"}
    for subject, expected in (("alice@example.com", True), ("evil@example.com.attacker.io", False)):
        token = sigstore_mock.token(subject=subject)
        with KeylessSigner(identity_token=token, trust_config=sigstore_mock.trust_config) as signer:
            bundle = make_bundle(signer.sign(PAYLOAD))
        result = verify_bundle(bundle, _authority(sigstore_mock, **policy), artifact=PAYLOAD)
        assert result.verified is expected, (subject, result.reasons)


def test_chain_to_untrusted_root_is_rejected(
    signed: dict[str, SignatureMaterial], other_sigstore: SigstoreMock
) -> None:
    result = verify_bundle(
        make_bundle(signed["message"]), _authority(other_sigstore), artifact=PAYLOAD
    )
    assert not result.verified
    assert "certificate chain" in result.reasons[0]
    # And the public-good root (the default) does not trust the local Fulcio either.
    default = KeylessAuthority("ci", IdentityPolicy(issuer=DEFAULT_ISSUER, subject=DEFAULT_SUBJECT))
    assert not verify_bundle(make_bundle(signed["message"]), default, artifact=PAYLOAD).verified


def test_certificate_expired_at_log_time_is_rejected(skewed_sigstore: SigstoreMock) -> None:
    """Rekor integrated the entry an hour after the 10-minute certificate expired."""
    with KeylessSigner(
        identity_token=skewed_sigstore.token(), trust_config=skewed_sigstore.trust_config
    ) as signer:
        bundle = make_bundle(signer.sign(PAYLOAD))
    result = verify_bundle(bundle, _authority(skewed_sigstore), artifact=PAYLOAD)
    assert not result.verified
    assert "not valid" in result.reasons[0] or "expired" in result.reasons[0]


def _edit(bundle: bytes, change: object) -> bytes:
    data = json.loads(bundle)
    change(data)  # type: ignore[operator]
    return json.dumps(data).encode()


def _flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["verificationMaterial"].update(tlogEntries=[]), "log entry"),
        (
            lambda d: d["verificationMaterial"]["tlogEntries"][0].pop("inclusionProof"),
            "inclusionProof",
        ),
        (
            lambda d: d["verificationMaterial"]["tlogEntries"][0]["inclusionProof"].update(
                rootHash=_flip(
                    d["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["rootHash"]
                )
            ),
            "root hash",
        ),
        (
            lambda d: d["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"].update(
                signedEntryTimestamp=_flip(
                    d["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"][
                        "signedEntryTimestamp"
                    ]
                )
            ),
            "SET",
        ),
        (
            lambda d: d["messageSignature"].update(
                signature=_flip(d["messageSignature"]["signature"])
            ),
            "Signature is invalid",
        ),
    ],
    ids=["no-entry", "no-proof", "bad-proof", "bad-set", "tampered-signature"],
)
def test_missing_or_invalid_log_proof_and_tampering(
    sigstore_mock: SigstoreMock, signed: dict[str, SignatureMaterial], change: object, reason: str
) -> None:
    tampered = _edit(make_bundle(signed["message"]), change)
    result = verify_bundle(tampered, _authority(sigstore_mock), artifact=PAYLOAD)
    assert not result.verified
    assert reason in result.reasons[0], result.reasons


def test_tampered_payload_and_payload_type_confusion(
    sigstore_mock: SigstoreMock, signed: dict[str, SignatureMaterial]
) -> None:
    bundle = make_bundle(signed["dsse"])
    assert not verify_bundle(
        bundle, _authority(sigstore_mock), artifact=b"another artifact"
    ).verified
    evil = statement(IMAGE.removeprefix("sha256:"), predicate_type="https://evil.example/v1")
    tampered = _edit(
        bundle, lambda d: d["dsseEnvelope"].update(payload=base64.b64encode(evil).decode())
    )
    assert not verify_bundle(tampered, _authority(sigstore_mock), artifact_digest=IMAGE).verified
    relabelled = _edit(
        bundle, lambda d: d["dsseEnvelope"].update(payloadType="application/vnd.example+json")
    )
    result = verify_bundle(relabelled, _authority(sigstore_mock), artifact_digest=IMAGE)
    assert not result.verified and "payloadType" in result.reasons[0]
    result = verify_bundle(
        relabelled,
        _authority(sigstore_mock),
        artifact_digest=IMAGE,
        payload_type="application/vnd.example+json",
    )
    assert not result.verified  # the PAE covers the type: the signature breaks


def test_raw_mock_dsse_entries_are_refused(echo_sigstore: SigstoreMock) -> None:
    """The unwrapped mock logs DSSE proposals as-is: we cannot bind them, so we refuse them.

    Message signatures (hashedrekord, canonical as proposed) still verify there.
    """
    token = echo_sigstore.token()
    with KeylessSigner(identity_token=token, trust_config=echo_sigstore.trust_config) as signer:
        dsse = make_bundle(
            signer.sign_dsse(
                "application/vnd.in-toto+json", statement(IMAGE.removeprefix("sha256:"))
            )
        )
        message = make_bundle(signer.sign(PAYLOAD))
    assert not verify_bundle(dsse, _authority(echo_sigstore), artifact_digest=IMAGE).verified
    assert verify_bundle(message, _authority(echo_sigstore), artifact=PAYLOAD).verified


def test_signer_describes_identity_and_refuses_non_in_toto_dsse(
    sigstore_mock: SigstoreMock,
) -> None:
    with KeylessSigner(
        identity_token=sigstore_mock.token(), trust_config=sigstore_mock.trust_config
    ) as signer:
        assert signer.identity == DEFAULT_SUBJECT and signer.issuer == DEFAULT_ISSUER
        assert DEFAULT_SUBJECT in signer.description
        with pytest.raises(SigningError, match="in-toto"):
            signer.sign_dsse("application/vnd.example+json", b"{}")
        with pytest.raises(SigningError, match="not an in-toto statement"):
            signer.sign_dsse("application/vnd.in-toto+json", b'{"not": "a statement"}')


def test_unreachable_fulcio_is_one_clear_error(sigstore_mock: SigstoreMock, tmp_path: Path) -> None:
    config = json.loads(Path(sigstore_mock.trust_config).read_text())
    dead = f"http://127.0.0.1:{free_port()}"
    for service in config["signingConfig"]["caUrls"] + config["signingConfig"]["rekorTlogUrls"]:
        service["url"] = dead
    path = tmp_path / "dead.json"
    path.write_text(json.dumps(config))
    signer = KeylessSigner(identity_token=sigstore_mock.token(), trust_config=str(path))
    with pytest.raises(SigningError, match="Fulcio") as err:
        signer.sign(PAYLOAD)
    assert "\n" not in str(err.value)


def _intoto_material(mock: SigstoreMock) -> SignatureMaterial:
    """A DSSE statement signed with a mock Fulcio certificate and logged as ``intoto/0.0.2``
    (a kind sigstore-python refuses, so our own keyless path checks it)."""
    import hashlib
    from dataclasses import replace

    import requests
    from cryptography.hazmat.primitives import serialization

    from attest.signing.tlog import TlogEntry
    from tests.support.sigstore import MockKeylessSigner

    signer = MockKeylessSigner(mock)
    payload = statement(IMAGE.removeprefix("sha256:"))
    material = signer.sign_dsse("application/vnd.in-toto+json", payload)
    pem = signer.certificate.public_bytes(serialization.Encoding.PEM)
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [
            {
                "sig": base64.b64encode(base64.b64encode(material.signature)).decode(),
                "publicKey": base64.b64encode(pem).decode(),
            }
        ],
    }
    body = {
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": envelope,
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
            }
        },
    }
    answer = requests.post(f"{mock.url}/api/v1/log/entries", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    return replace(material, tlog_entries=(TlogEntry.from_rekor_response(answer.json()),))


def test_intoto_entry_verifies_only_with_a_vouched_signing_time(
    sigstore_mock: SigstoreMock,
) -> None:
    """Without a SET (or timestamp) nothing says when the short-lived certificate signed."""
    material = _intoto_material(sigstore_mock)
    bundle = make_bundle(material)
    result = verify_bundle(bundle, _authority(sigstore_mock), artifact_digest=IMAGE)
    assert result.verified, result.reasons
    assert result.tlog is not None and result.tlog["kind"] == "intoto/0.0.2"
    no_promise = _edit(
        bundle, lambda d: d["verificationMaterial"]["tlogEntries"][0].pop("inclusionPromise")
    )
    result = verify_bundle(no_promise, _authority(sigstore_mock), artifact_digest=IMAGE)
    assert not result.verified
    assert "no verified signing time" in result.reasons[0]
