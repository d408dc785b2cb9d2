"""Interop: bundles we make verify with sigstore-js (``@sigstore/verify``), an independent verifier.

``tests/js/verify-bundle.js`` runs sigstore-js's ``Verifier`` over a bundle file
with the local instance's trusted root and either an identity policy (keyless)
or a public key.  A tampered bundle must fail there too, so the harness can fail.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.signing.authority import TLOG_REQUIRED, KeyAuthority, KeylessAuthority
from attest.signing.bundle import SignatureMaterial, make_bundle
from attest.signing.bundle_verify import verify_bundle
from attest.signing.fulcio import IdentityPolicy
from attest.signing.keyless import KeylessSigner
from attest.signing.keys import key_id as key_hint
from attest.signing.rekor import RekorClient
from attest.signing.trust import load_trusted_root
from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT, SigstoreMock
from tests.signing.conftest import sha256_hex, statement
from tests.support.sigstore import verify_with_sigstore_js

IMAGE = "sha256:" + sha256_hex(b"interop image")
PAYLOAD = b"interop payload"


@pytest.fixture(scope="module")
def keyless_bundles(
    sigstore_mock: SigstoreMock, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("interop")
    with KeylessSigner(
        identity_token=sigstore_mock.token(), trust_config=sigstore_mock.trust_config
    ) as signer:
        materials = {
            "message": signer.sign(PAYLOAD),
            "dsse": signer.sign_dsse(
                "application/vnd.in-toto+json", statement(IMAGE.removeprefix("sha256:"))
            ),
        }
    paths = {}
    for name, material in materials.items():
        paths[name] = out / f"{name}.sigstore.json"
        paths[name].write_bytes(make_bundle(material))
    (out / "artifact").write_bytes(PAYLOAD)
    paths["artifact"] = out / "artifact"
    return paths


IDENTITY = ["--identity", DEFAULT_SUBJECT, "--issuer", DEFAULT_ISSUER]


def test_keyless_message_bundle(
    sigstore_mock: SigstoreMock, keyless_bundles: dict[str, Path]
) -> None:
    answer = verify_with_sigstore_js(
        keyless_bundles["message"],
        sigstore_mock.trusted_root,
        *IDENTITY,
        "--artifact",
        str(keyless_bundles["artifact"]),
    )
    assert answer["verified"], answer
    assert answer["signer"]["subjectAlternativeName"] == DEFAULT_SUBJECT
    assert answer["signer"]["extensions"]["issuer"] == DEFAULT_ISSUER


def test_keyless_dsse_bundle(sigstore_mock: SigstoreMock, keyless_bundles: dict[str, Path]) -> None:
    answer = verify_with_sigstore_js(keyless_bundles["dsse"], sigstore_mock.trusted_root, *IDENTITY)
    assert answer["verified"], answer


def test_sigstore_js_rejects_wrong_identity_and_tampering(
    sigstore_mock: SigstoreMock, keyless_bundles: dict[str, Path], tmp_path: Path
) -> None:
    wrong = verify_with_sigstore_js(
        keyless_bundles["dsse"],
        sigstore_mock.trusted_root,
        "--identity",
        "someone-else",
        "--issuer",
        DEFAULT_ISSUER,
    )
    assert not wrong["verified"]
    data = json.loads(keyless_bundles["dsse"].read_bytes())
    data["dsseEnvelope"]["payloadType"] = "application/vnd.example+json"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    assert not verify_with_sigstore_js(tampered, sigstore_mock.trusted_root, *IDENTITY)["verified"]


def _key_and_pem(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "key.pub"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, pem


def test_key_based_bundle_with_log_entry(sigstore_mock: SigstoreMock, tmp_path: Path) -> None:
    key, pem = _key_and_pem(tmp_path)
    signature = key.sign(PAYLOAD, ec.ECDSA(hashes.SHA256()))
    entry = RekorClient(sigstore_mock.url).upload_hashedrekord(
        signature=signature, digest=hashlib.sha256(PAYLOAD).digest(), verifier=key.public_key()
    )
    material = SignatureMaterial(
        signature, PAYLOAD, public_key_hint=key_hint(key.public_key()), tlog_entries=(entry,)
    )
    bundle = tmp_path / "key.sigstore.json"
    bundle.write_bytes(make_bundle(material))
    artifact = tmp_path / "artifact"
    artifact.write_bytes(PAYLOAD)
    answer = verify_with_sigstore_js(
        bundle, sigstore_mock.trusted_root, "--key", str(pem), "--artifact", str(artifact)
    )
    assert answer["verified"], answer
    # Ours agrees, including the log entry.
    ours = verify_bundle(
        bundle.read_bytes(),
        KeyAuthority("k", pem.read_bytes(), tlog=TLOG_REQUIRED),
        artifact=PAYLOAD,
        trusted_root=load_trusted_root(sigstore_mock.trusted_root),
    )
    assert ours.verified, ours.reasons


def test_key_based_dsse_bundle_without_log(sigstore_mock: SigstoreMock, tmp_path: Path) -> None:
    key, pem = _key_and_pem(tmp_path)
    payload = statement(IMAGE.removeprefix("sha256:"))
    kind = b"application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
    material = SignatureMaterial(
        key.sign(pae, ec.ECDSA(hashes.SHA256())),
        payload,
        payload_type=kind.decode(),
        public_key_hint=key_hint(key.public_key()),
    )
    bundle = tmp_path / "dsse.sigstore.json"
    bundle.write_bytes(make_bundle(material))
    answer = verify_with_sigstore_js(
        bundle, sigstore_mock.trusted_root, "--key", str(pem), "--no-tlog"
    )
    assert answer["verified"], answer
    # With the default policy (a log entry required) sigstore-js refuses it, as we do with TLOG_REQUIRED.
    assert not verify_with_sigstore_js(bundle, sigstore_mock.trusted_root, "--key", str(pem))[
        "verified"
    ]
    (tmp_path / "other").mkdir()
    other_pem = _key_and_pem(tmp_path / "other")[1]
    assert not verify_with_sigstore_js(
        bundle, sigstore_mock.trusted_root, "--key", str(other_pem), "--no-tlog"
    )["verified"]


def test_keyless_authority_shape_is_what_verify_uses(
    sigstore_mock: SigstoreMock, keyless_bundles: dict[str, Path]
) -> None:
    """Both verifiers agree on the same bundle (ours through the authority dataclass shape)."""
    authority = KeylessAuthority(
        "ci",
        IdentityPolicy(issuer=DEFAULT_ISSUER, subject=DEFAULT_SUBJECT),
        trusted_root=sigstore_mock.trusted_root,
    )
    assert verify_bundle(
        keyless_bundles["dsse"].read_bytes(), authority, artifact_digest=IMAGE
    ).verified
