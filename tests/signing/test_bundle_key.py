"""Key-based Sigstore bundles (``publicKey`` material): built and verified on ``cryptography``.

sigstore-python cannot verify these, so this is our own path end to end: the
signature over the message digest or the DSSE PAE, the artifact/subject binding,
and — when the bundle has one — a Rekor entry (from the local Rekor) whose
inclusion proof, checkpoint, SET and body must all agree.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from attest.signing.authority import TLOG_IF_PRESENT, TLOG_REQUIRED, KeyAuthority, KeylessAuthority
from attest.signing.bundle import SignatureMaterial, make_bundle, parse_bundle
from attest.signing.bundle_verify import verify_bundle
from attest.signing.fulcio import IdentityPolicy
from attest.signing.keys import key_id as key_hint
from attest.signing.rekor import RekorClient
from attest.signing.tlog import TlogEntry
from attest.signing.trust import load_trusted_root
from attest.testing import SigstoreMock
from tests.signing.conftest import sha256_hex, statement

IN_TOTO = "application/vnd.in-toto+json"
IMAGE_DIGEST = "sha256:" + sha256_hex(b"an image manifest")


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _sign(key: object, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.sign(data)


def _pae(payload_type: str, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def _dsse_material(key: object, payload: bytes, payload_type: str = IN_TOTO) -> SignatureMaterial:
    return SignatureMaterial(
        signature=_sign(key, _pae(payload_type, payload)),
        payload=payload,
        payload_type=payload_type,
        public_key_hint=key_hint(key.public_key()),  # type: ignore[attr-defined]
    )


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def authority(key: ec.EllipticCurvePrivateKey) -> KeyAuthority:
    return KeyAuthority("team-key", _pem(key), tlog=TLOG_IF_PRESENT)


def _edit(bundle: bytes, change: object) -> bytes:
    data = json.loads(bundle)
    change(data)  # type: ignore[operator]
    return json.dumps(data).encode()


# -- message signatures ------------------------------------------------------------------


def test_message_bundle_round_trip(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority
) -> None:
    payload = b'{"critical":{"image":{"docker-manifest-digest":"sha256:abc"}}}'
    bundle = make_bundle(
        SignatureMaterial(_sign(key, payload), payload, public_key_hint=key_hint(key.public_key()))
    )
    data = json.loads(bundle)
    assert data["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert data["verificationMaterial"]["publicKey"]["hint"] == key_hint(key.public_key())
    assert (
        base64.b64decode(data["messageSignature"]["messageDigest"]["digest"])
        == hashlib.sha256(payload).digest()
    )

    result = verify_bundle(bundle, authority, artifact=payload)
    assert result.verified, result.reasons
    assert result.signer.to_dict() == {"type": "key", "keyId": key_hint(key.public_key())}
    assert result.message_digest == "sha256:" + sha256_hex(payload)
    # The digest alone is enough for ECDSA (prehashed verification).
    assert verify_bundle(
        bundle, authority, artifact_digest="sha256:" + sha256_hex(payload)
    ).verified


@pytest.mark.parametrize("kind", ["rsa", "ed25519", "p384"])
def test_other_key_types(kind: str) -> None:
    key: object = {
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
        "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    }[kind]()
    payload = statement(IMAGE_DIGEST.removeprefix("sha256:"))
    bundle = make_bundle(_dsse_material(key, payload))
    authority = KeyAuthority(kind, _pem(key), tlog=TLOG_IF_PRESENT)  # type: ignore[arg-type]
    assert verify_bundle(bundle, authority, artifact_digest=IMAGE_DIGEST).verified


def test_wrong_key_is_rejected(key: ec.EllipticCurvePrivateKey) -> None:
    payload = b"payload"
    bundle = make_bundle(SignatureMaterial(_sign(key, payload), payload))
    other = KeyAuthority(
        "other", _pem(ec.generate_private_key(ec.SECP256R1())), tlog=TLOG_IF_PRESENT
    )
    result = verify_bundle(bundle, other, artifact=payload)
    assert not result.verified and result.reasons == ("signature does not verify with the key",)


def test_tampered_signature_and_other_artifact_are_rejected(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority
) -> None:
    payload = b"payload"
    bundle = make_bundle(SignatureMaterial(_sign(key, payload), payload))

    def flip(data: dict) -> None:
        sig = bytearray(base64.b64decode(data["messageSignature"]["signature"]))
        sig[-1] ^= 1
        data["messageSignature"]["signature"] = base64.b64encode(bytes(sig)).decode()

    assert not verify_bundle(_edit(bundle, flip), authority, artifact=payload).verified
    result = verify_bundle(bundle, authority, artifact=b"payload2")
    assert not result.verified and "digest does not match" in result.reasons[0]

    def drop_digest(data: dict) -> None:
        del data["messageSignature"]["messageDigest"]

    result = verify_bundle(_edit(bundle, drop_digest), authority, artifact=b"payload2")
    assert not result.verified and "does not verify" in result.reasons[0]


# -- DSSE -------------------------------------------------------------------------------------


def test_dsse_bundle_binds_subject_and_payload_type(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority
) -> None:
    payload = statement(IMAGE_DIGEST.removeprefix("sha256:"))
    bundle = make_bundle(_dsse_material(key, payload))
    result = verify_bundle(bundle, authority, artifact_digest=IMAGE_DIGEST)
    assert result.verified, result.reasons
    assert result.statement() == json.loads(payload)

    other_image = verify_bundle(bundle, authority, artifact_digest="sha256:" + "2" * 64)
    assert not other_image.verified and "no subject" in other_image.reasons[0]


def test_dsse_payload_type_confusion_is_rejected(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority
) -> None:
    payload = statement(IMAGE_DIGEST.removeprefix("sha256:"))
    # Signed honestly as another type: the verifier expects in-toto.
    foreign = make_bundle(_dsse_material(key, payload, "application/vnd.example+json"))
    result = verify_bundle(foreign, authority, artifact_digest=IMAGE_DIGEST)
    assert not result.verified and "payloadType" in result.reasons[0]
    # Signed as another type, relabelled in-toto: the PAE no longer matches the signature.
    relabelled = _edit(foreign, lambda d: d["dsseEnvelope"].update(payloadType=IN_TOTO))
    result = verify_bundle(relabelled, authority, artifact_digest=IMAGE_DIGEST)
    assert not result.verified and result.reasons == (
        "DSSE signature does not verify with the key",
    )


def test_tampered_dsse_payload_is_rejected(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority
) -> None:
    payload = statement(IMAGE_DIGEST.removeprefix("sha256:"))
    bundle = make_bundle(_dsse_material(key, payload))
    evil = payload.replace(b'"built":true', b'"built":false')
    tampered = _edit(
        bundle, lambda d: d["dsseEnvelope"].update(payload=base64.b64encode(evil).decode())
    )
    result = verify_bundle(tampered, authority, artifact_digest=IMAGE_DIGEST)
    assert not result.verified and "does not verify" in result.reasons[0]


def test_bundle_must_have_exactly_one_dsse_signature(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority
) -> None:
    bundle = make_bundle(_dsse_material(key, statement("ab" * 32)))
    doubled = _edit(
        bundle, lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0])
    )
    result = verify_bundle(doubled, authority, artifact_digest="sha256:" + "ab" * 32)
    assert not result.verified and "exactly one signature" in result.reasons[0]


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{}", b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}', b"[1]"],
)
def test_malformed_bundles_are_reasons_not_crashes(raw: bytes, authority: KeyAuthority) -> None:
    result = verify_bundle(raw, authority, artifact=b"x")
    assert not result.verified
    assert len(result.reasons) == 1 and "Sigstore bundle" in result.reasons[0]


def test_keyless_authority_rejects_key_based_bundle(key: ec.EllipticCurvePrivateKey) -> None:

    bundle = make_bundle(SignatureMaterial(_sign(key, b"x"), b"x"))
    result = verify_bundle(
        bundle,
        KeylessAuthority("ci", IdentityPolicy(issuer="https://i", subject="s")),
        artifact=b"x",
    )
    assert not result.verified and "not keylessly" in result.reasons[0]


def test_require_tlog(key: ec.EllipticCurvePrivateKey, authority: KeyAuthority) -> None:
    bundle = make_bundle(SignatureMaterial(_sign(key, b"x"), b"x"))
    required = dataclasses.replace(authority, tlog=TLOG_REQUIRED)
    result = verify_bundle(bundle, required, artifact=b"x")
    assert not result.verified and "no transparency-log entry" in result.reasons[0]


# -- with a transparency-log entry from the local Rekor ---------------------------------------


def _logged_message(
    key: ec.EllipticCurvePrivateKey, rekor: RekorClient, payload: bytes
) -> SignatureMaterial:
    signature = _sign(key, payload)
    entry = rekor.upload_hashedrekord(
        signature=signature, digest=hashlib.sha256(payload).digest(), verifier=key.public_key()
    )
    return SignatureMaterial(
        signature, payload, public_key_hint=key_hint(key.public_key()), tlog_entries=(entry,)
    )


def test_logged_message_bundle_verifies_against_the_log(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority, sigstore_mock: SigstoreMock
) -> None:
    root = load_trusted_root(sigstore_mock.trusted_root)
    material = _logged_message(key, RekorClient(sigstore_mock.url), b"logged payload")
    bundle = make_bundle(material)
    required = dataclasses.replace(authority, tlog=TLOG_REQUIRED)
    result = verify_bundle(bundle, required, artifact=b"logged payload", trusted_root=root)
    assert result.verified, result.reasons
    assert result.tlog is not None and result.tlog["kind"] == "hashedrekord/0.0.1"
    assert result.signed_times  # the SET vouches for the integrated time
    # Without the log's key in the root, the entry cannot be trusted.
    result = verify_bundle(bundle, authority, artifact=b"logged payload")
    assert not result.verified and "not in trusted root" in result.reasons[0]


def test_logged_dsse_bundle(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority, sigstore_mock: SigstoreMock
) -> None:
    material = _dsse_material(key, statement(IMAGE_DIGEST.removeprefix("sha256:")))
    envelope = json.dumps(json.loads(make_bundle(material))["dsseEnvelope"]).encode()
    entry = RekorClient(sigstore_mock.url).upload_dsse(
        envelope_json=envelope, verifier=key.public_key()
    )
    bundle = make_bundle(replace(material, tlog_entries=(entry,)))
    root = load_trusted_root(sigstore_mock.trusted_root)
    result = verify_bundle(bundle, authority, artifact_digest=IMAGE_DIGEST, trusted_root=root)
    assert result.verified, result.reasons
    assert result.tlog is not None and result.tlog["kind"] == "dsse/0.0.1"


def _mangle_entry(bundle: bytes, change: object) -> bytes:
    def apply(data: dict) -> None:
        change(data["verificationMaterial"]["tlogEntries"][0])  # type: ignore[operator]

    return _edit(bundle, apply)


def _flip_b64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda e: e.pop("inclusionProof"), "inclusionProof"),
        (
            lambda e: e["inclusionProof"].update(
                rootHash=_flip_b64(e["inclusionProof"]["rootHash"])
            ),
            "root hash",
        ),
        (
            lambda e: e["inclusionProof"]["checkpoint"].update(
                envelope=e["inclusionProof"]["checkpoint"]["envelope"].replace("\u2014", "-")
            ),
            "checkpoint",
        ),
        (
            lambda e: e["inclusionPromise"].update(
                signedEntryTimestamp=_flip_b64(e["inclusionPromise"]["signedEntryTimestamp"])
            ),
            "signed entry timestamp",
        ),
        (
            lambda e: e.update(integratedTime=str(int(e["integratedTime"]) + 1)),
            "signed entry timestamp",
        ),
        (lambda e: e.update(logIndex="-1"), "logIndex"),
    ],
    ids=[
        "no-proof",
        "proof-root",
        "checkpoint-signature",
        "set-signature",
        "integrated-time",
        "negative-index",
    ],
)
def test_broken_log_proofs_are_rejected(
    key: ec.EllipticCurvePrivateKey,
    authority: KeyAuthority,
    sigstore_mock: SigstoreMock,
    mangle: object,
    reason: str,
) -> None:
    root = load_trusted_root(sigstore_mock.trusted_root)
    bundle = make_bundle(_logged_message(key, RekorClient(sigstore_mock.url), b"proof test"))
    result = verify_bundle(
        _mangle_entry(bundle, mangle), authority, artifact=b"proof test", trusted_root=root
    )
    assert not result.verified
    assert reason in result.reasons[0], result.reasons


def test_log_entry_for_another_signature_is_rejected(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority, sigstore_mock: SigstoreMock
) -> None:
    """A valid entry copied from another signature does not vouch for this one."""
    rekor = RekorClient(sigstore_mock.url)
    root = load_trusted_root(sigstore_mock.trusted_root)
    first = _logged_message(key, rekor, b"first")
    second = _logged_message(key, rekor, b"second")
    swapped = make_bundle(replace(second, tlog_entries=first.tlog_entries))
    result = verify_bundle(swapped, authority, artifact=b"second", trusted_root=root)
    assert not result.verified and "different artifact digest" in result.reasons[0]


def test_parse_round_trips_log_entries(
    key: ec.EllipticCurvePrivateKey, sigstore_mock: SigstoreMock
) -> None:
    material = _logged_message(key, RekorClient(sigstore_mock.url), b"round trip")
    parsed = parse_bundle(make_bundle(material))
    assert parsed.tlog_entries == material.tlog_entries
    assert isinstance(parsed.tlog_entries[0], TlogEntry)
    assert parsed.public_key_hint == key_hint(key.public_key())


def test_log_entry_for_another_signature_over_the_same_artifact_is_rejected(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority, sigstore_mock: SigstoreMock
) -> None:
    """Same artifact, same key, another (valid) signature: the entry must record this one."""
    rekor = RekorClient(sigstore_mock.url)
    root = load_trusted_root(sigstore_mock.trusted_root)
    first = _logged_message(key, rekor, b"same artifact")
    second = _logged_message(key, rekor, b"same artifact")
    assert first.signature != second.signature  # ECDSA signatures are randomised
    swapped = make_bundle(replace(second, tlog_entries=first.tlog_entries))
    result = verify_bundle(swapped, authority, artifact=b"same artifact", trusted_root=root)
    assert not result.verified and "records a different signature" in result.reasons[0]


def test_checkpoint_not_signed_by_the_log_is_rejected(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority, sigstore_mock: SigstoreMock
) -> None:
    """The checkpoint's signature line keeps the log's key hint, its signature is another's."""
    root = load_trusted_root(sigstore_mock.trusted_root)
    bundle = make_bundle(_logged_message(key, RekorClient(sigstore_mock.url), b"note"))

    def forge(entry: dict) -> None:
        note = entry["inclusionProof"]["checkpoint"]["envelope"]
        body, _, signature_line = note.rstrip("\n").rpartition("\n")
        dash, name, blob = signature_line.split(" ")
        raw = base64.b64decode(blob)
        stranger = ec.generate_private_key(ec.SECP256R1())
        signed = (body.rstrip("\n") + "\n").encode()
        forged = raw[:4] + stranger.sign(signed, ec.ECDSA(hashes.SHA256()))
        line = f"{dash} {name} {base64.b64encode(forged).decode()}"
        entry["inclusionProof"]["checkpoint"]["envelope"] = f"{body}\n{line}\n"

    result = verify_bundle(
        _mangle_entry(bundle, forge), authority, artifact=b"note", trusted_root=root
    )
    assert not result.verified
    assert "checkpoint is not signed by the transparency log's key" in result.reasons[0]


def test_checkpoint_of_another_tree_is_rejected(
    key: ec.EllipticCurvePrivateKey, authority: KeyAuthority, sigstore_mock: SigstoreMock
) -> None:
    """A genuine checkpoint of the same log, but for another tree than the proof's."""
    rekor = RekorClient(sigstore_mock.url)
    root = load_trusted_root(sigstore_mock.trusted_root)
    first = _logged_message(key, rekor, b"first tree")
    later = _logged_message(key, rekor, b"later tree")
    later_proof = later.tlog_entries[0].inclusion_proof
    assert later_proof is not None and later_proof.checkpoint is not None
    bundle = make_bundle(first)
    assert verify_bundle(bundle, authority, artifact=b"first tree", trusted_root=root).verified
    swapped = _mangle_entry(
        bundle,
        lambda e: e["inclusionProof"]["checkpoint"].update(envelope=later_proof.checkpoint),
    )
    result = verify_bundle(swapped, authority, artifact=b"first tree", trusted_root=root)
    assert not result.verified
    assert "checkpoint names another tree size or root hash" in result.reasons[0]


def test_log_entry_recording_another_key_is_rejected(
    key: ec.EllipticCurvePrivateKey, sigstore_mock: SigstoreMock
) -> None:
    """The body must name the key that verified the signature, not just any key."""
    from attest.signing.tlog import TlogError, check_dsse, check_hashedrekord

    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    rekor = RekorClient(sigstore_mock.url)
    message = _logged_message(key, rekor, b"whose key")
    (entry,) = message.tlog_entries
    digest = hashlib.sha256(b"whose key").digest()
    check_hashedrekord(entry, signature=message.signature, digest=digest, verifier=key.public_key())
    with pytest.raises(TlogError, match="different public key"):
        check_hashedrekord(entry, signature=message.signature, digest=digest, verifier=stranger)

    material = _dsse_material(key, statement(IMAGE_DIGEST.removeprefix("sha256:")))
    envelope = json.dumps(json.loads(make_bundle(material))["dsseEnvelope"]).encode()
    dsse = rekor.upload_dsse(envelope_json=envelope, verifier=key.public_key())
    signatures = (material.signature,)
    check_dsse(dsse, payload=material.payload, signatures=signatures, verifier=key.public_key())
    with pytest.raises(TlogError, match="different public key"):
        check_dsse(dsse, payload=material.payload, signatures=signatures, verifier=stranger)
    other = statement("cd" * 32)
    with pytest.raises(TlogError, match="different DSSE payload"):
        check_dsse(dsse, payload=other, signatures=signatures, verifier=key.public_key())


def test_an_entry_without_inclusion_proof_needs_a_set_and_permission(
    key: ec.EllipticCurvePrivateKey, sigstore_mock: SigstoreMock
) -> None:
    """A SET alone vouches for an entry only where the format allows it (v0.1, legacy)."""
    from attest.signing.tlog import TlogError, verify_entry

    root = load_trusted_root(sigstore_mock.trusted_root)
    (entry,) = _logged_message(key, RekorClient(sigstore_mock.url), b"promise").tlog_entries
    promise_only = replace(entry, inclusion_proof=None)
    assert verify_entry(promise_only, root, require_proof=False) is not None
    with pytest.raises(TlogError, match="log entry has no inclusion proof"):
        verify_entry(promise_only, root, require_proof=True)
    nothing = replace(promise_only, signed_entry_timestamp=None)
    with pytest.raises(TlogError, match="neither an inclusion proof nor a signed entry timestamp"):
        verify_entry(nothing, root, require_proof=False)
