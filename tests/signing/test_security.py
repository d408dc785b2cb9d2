"""Attacks a verifier must reject: each test builds the forgery for real and expects a failure."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from attest.attestations.predicates import SIGN_PREDICATE_TYPE
from attest.attestations.statement import IN_TOTO_PAYLOAD_TYPE, signature_statement
from attest.oci import mediatypes as mt
from attest.oci.manifest import Descriptor, Index, Manifest
from attest.oci.referrers import fallback_tag, list_referrers
from attest.oci.store import read_blob
from attest.signing.bundle import make_bundle
from attest.signing.legacy import (
    BUNDLE_ANNOTATION,
    PREDICATE_TYPE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    append_layer,
    signature_tag,
)
from attest.signing.payload import make_payload
from attest.signing.storage import SignedImage, attach_attestation, attach_signature, push_bundle
from attest.testing import SigstoreMock
from attest.verify import verify_image
from tests.signing.conftest import keyless_policy, resolved, statement_for
from tests.support.sigstore import MockKeylessSigner


def _two_images(repo, push_image):
    a = push_image(repo, "a", marker="a")
    b = push_image(repo, "b", marker="b")
    name = f"{repo.client.registry}/{repo.repository}"
    return f"{name}:a", a, f"{name}:b", b


def _append_legacy_signature(repo, digest: str, payload: bytes, signature: bytes) -> None:
    """A cosign simple-signing layer with ``signature`` on the image's legacy .sig tag."""
    append_layer(
        repo,
        signature_tag(digest),
        mt.COSIGN_SIMPLESIGNING,
        payload,
        {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
    )


def _reasons(result) -> str:
    return " | ".join(r for check in result.signatures + result.attestations for r in check.reasons)


# -- signatures naming another image ------------------------------------------------------


def test_legacy_payload_naming_another_digest(repo, push_image, key) -> None:
    ref_a, a, _, b = _two_images(repo, push_image)
    payload = make_payload(f"{repo.client.registry}/{repo.repository}", b.digest, {})
    material = key.signer.sign(payload)
    _append_legacy_signature(repo, a.digest, payload, material.signature)
    result = verify_image(ref_a, key.policy())
    assert not result.verified
    assert f"payload names image {b.digest}, not {a.digest}" in _reasons(result)


def test_bundle_statement_naming_another_digest(repo, push_image, key) -> None:
    ref_a, a, _, b = _two_images(repo, push_image)
    material = key.signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, signature_statement(b.digest))
    push_bundle(repo, a, make_bundle(material), predicate_type=SIGN_PREDICATE_TYPE)
    result = verify_image(ref_a, key.policy())
    assert not result.verified
    assert "no subject of the in-toto statement has digest" in _reasons(result)


def test_legacy_signature_manifest_copied_to_another_image(repo, push_image, key) -> None:
    ref_a, a, ref_b, b = _two_images(repo, push_image)
    attach_signature(repo, resolved(repo, ref_a), key.signer, legacy=True)
    assert verify_image(ref_a, key.policy()).verified
    copied = repo.fetch_manifest(signature_tag(a.digest))
    repo.push_manifest(copied.raw, copied.media_type, signature_tag(b.digest))
    result = verify_image(ref_b, key.policy())
    assert not result.verified and len(result.signatures) == 1
    assert "signature copied from another image?" in _reasons(result)


def test_bundle_referrer_copied_to_another_image(repo, push_image, key) -> None:
    ref_a, a, ref_b, b = _two_images(repo, push_image)
    attach_signature(repo, resolved(repo, ref_a), key.signer)
    (original,) = list_referrers(repo, a.digest, mt.SIGSTORE_BUNDLE_V03)
    # 1. The same referrer manifest listed under B's referrers: its subject is still A.
    listing = Index(mt.OCI_INDEX, (original,))
    repo.push_manifest(listing.to_bytes(), mt.OCI_INDEX, fallback_tag(b.digest))
    listed_only = verify_image(ref_b, key.policy())
    assert not listed_only.verified and not listed_only.signatures
    assert any("referrer's subject is not" in e for e in listed_only.errors)
    # 2. A's bundle blob re-wrapped in a new referrer whose subject is B: the statement names A.
    manifest = repo.fetch_manifest(original.digest).parsed
    assert isinstance(manifest, Manifest)
    bundle = read_blob(repo, manifest.layers[0])
    repo.delete_manifest(fallback_tag(b.digest))
    push_bundle(repo, b, bundle, predicate_type=SIGN_PREDICATE_TYPE)
    rewrapped = verify_image(ref_b, key.policy())
    assert not rewrapped.verified and len(rewrapped.signatures) == 1
    assert f"no subject of the in-toto statement has digest {b.digest}" in _reasons(rewrapped)


# -- wrong keys and tampering ---------------------------------------------------------------


def test_wrong_key_rejects_both_formats_and_attestations(repo, push_image, key, other_key) -> None:
    ref_a, a, _, _ = _two_images(repo, push_image)
    image = resolved(repo, ref_a)
    attach_signature(repo, image, key.signer)
    attach_signature(repo, image, key.signer, legacy=True)
    attach_attestation(repo, image, statement_for(a.digest), key.signer)
    attach_attestation(repo, image, statement_for(a.digest), key.signer, legacy=True)
    good = verify_image(ref_a, key.policy())
    assert good.verified and all(c.verified for c in good.signatures + good.attestations)
    assert len(good.signatures) == 2 and len(good.attestations) == 2
    bad = verify_image(ref_a, other_key.policy())
    assert not bad.verified
    assert not any(c.verified for c in bad.signatures + bad.attestations)


def test_tampered_legacy_payload(repo, push_image, key) -> None:
    ref_a, a, _, _ = _two_images(repo, push_image)
    payload = make_payload("x/y", a.digest, {"team": "blue"})
    material = key.signer.sign(payload)
    tampered = payload.replace(b"blue", b"gold")
    _append_legacy_signature(repo, a.digest, tampered, material.signature)
    result = verify_image(ref_a, key.policy())
    assert not result.verified
    assert "signature does not verify with the key" in _reasons(result)


def test_tampered_bundle_payload(repo, push_image, key) -> None:
    ref_a, a, _, _ = _two_images(repo, push_image)
    material = key.signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, signature_statement(a.digest, {"t": "1"}))
    bundle = json.loads(make_bundle(material))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["subject"][0]["annotations"]["t"] = "2"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    push_bundle(repo, a, json.dumps(bundle).encode(), predicate_type=SIGN_PREDICATE_TYPE)
    result = verify_image(ref_a, key.policy())
    assert not result.verified
    assert "DSSE signature does not verify with the key" in _reasons(result)


def test_tampered_signature_annotation(repo, push_image, key) -> None:
    ref_a, a, _, _ = _two_images(repo, push_image)
    payload = make_payload("x/y", a.digest, {})
    other_signature = key.signer.sign(make_payload("x/y", a.digest, {"other": "payload"})).signature
    _append_legacy_signature(repo, a.digest, payload, other_signature)
    assert "signature does not verify" in _reasons(verify_image(ref_a, key.policy()))


def test_annotations_cannot_turn_an_attestation_into_a_signature(repo, push_image, key) -> None:
    ref_a, a, _, _ = _two_images(repo, push_image)
    material = key.signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, statement_for(a.digest))
    # The unsigned manifest annotation claims an image signature; the signed statement does not.
    push_bundle(repo, a, make_bundle(material), predicate_type=SIGN_PREDICATE_TYPE)
    result = verify_image(ref_a, key.policy())
    assert not result.verified and not result.signatures
    (attestation,) = result.attestations
    assert attestation.verified and attestation.predicate_type == "https://example.com/test/v1"


def test_tampered_att_predicate_type_annotation(repo, push_image, key) -> None:
    ref_a, a, _, _ = _two_images(repo, push_image)
    attach_attestation(
        repo, resolved(repo, ref_a), statement_for(a.digest), key.signer, legacy=True
    )
    att = repo.fetch_manifest(signature_tag(a.digest, "att")).parsed
    assert isinstance(att, Manifest)
    (layer,) = att.layers
    forged = Descriptor(
        layer.media_type,
        layer.digest,
        layer.size,
        annotations={
            **layer.annotations,
            PREDICATE_TYPE_ANNOTATION: "https://slsa.dev/provenance/v1",
        },
    )
    repo.push_manifest(
        Manifest(att.media_type, att.config, (forged,)).to_bytes(),
        mt.OCI_MANIFEST,
        signature_tag(a.digest, "att"),
    )
    result = verify_image(ref_a, key.policy())
    (attestation,) = result.attestations
    assert not attestation.verified
    assert "differs from the signed statement's" in " ".join(attestation.reasons)


@pytest.mark.parametrize("legacy", [False, True])
def test_dsse_payload_type_confusion(repo, push_image, key, legacy: bool) -> None:
    ref_a, a, _, _ = _two_images(repo, push_image)
    # A correctly signed envelope over a valid statement, but not typed as in-toto.
    material = key.signer.sign_dsse(mt.COSIGN_SIMPLESIGNING, signature_statement(a.digest))
    if legacy:
        append_layer(
            repo,
            signature_tag(a.digest, "att"),
            mt.DSSE_ENVELOPE,
            material.envelope().to_json(),
            {SIGNATURE_ANNOTATION: ""},
        )
    else:
        push_bundle(repo, a, make_bundle(material), predicate_type=SIGN_PREDICATE_TYPE)
    result = verify_image(ref_a, key.policy())
    assert not result.verified
    assert "payloadType" in _reasons(result)
    assert not any(c.verified for c in result.signatures + result.attestations)


# -- keyless: identities, roots, times, logs --------------------------------------------------


@pytest.fixture
def keyless_image(layout_image):
    reference, store, image = layout_image
    return reference, store, SignedImage.of(image)


def _sign_keyless(store, image, signer, legacy: bool) -> None:
    attach_signature(store, image, signer, legacy=legacy)


def _signer(
    mock: SigstoreMock, subject: str, issuer: str = "https://issuer.test", **chosen
) -> MockKeylessSigner:
    """A keyless signer for ``subject`` (an email SAN unless it has ``://``) from ``issuer``,
    the issuer ``keyless_policy`` expects by default."""
    return MockKeylessSigner(mock, subject=subject, issuer=issuer, **chosen)


@pytest.mark.parametrize("legacy", [False, True])
def test_keyless_identity_regex_is_anchored(keyless_image, sigstore_mock, legacy: bool) -> None:
    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    _sign_keyless(store, image, _signer(sigstore, "evil@example.com.attacker.io"), legacy)
    _sign_keyless(store, image, _signer(sigstore, "alice@example.com"), legacy)
    result = verify_image(reference, keyless_policy(root, subject_regexp=".*@example.com"))
    assert result.verified
    by_subject = {c.signer.subject: c for c in result.signatures}
    assert by_subject["alice@example.com"].verified
    evil = by_subject["evil@example.com.attacker.io"]
    assert not evil.verified and "does not match '.*@example.com'" in " ".join(evil.reasons)
    only_evil = verify_image(reference, keyless_policy(root, subject="evil@example.com"))
    assert not only_evil.verified


@pytest.mark.parametrize("legacy", [False, True])
def test_keyless_issuer_mismatch_and_anchoring(keyless_image, sigstore_mock, legacy: bool) -> None:
    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    signer = _signer(sigstore, "ci@example.com", "https://issuer.test.evil.io")
    _sign_keyless(store, image, signer, legacy)
    exact = verify_image(reference, keyless_policy(root, subject="ci@example.com"))
    assert not exact.verified and "certificate issuer" in _reasons(exact)
    anchored = verify_image(
        reference,
        keyless_policy(
            root, subject="ci@example.com", issuer=None, issuer_regexp=r"https://issuer\.test"
        ),
    )
    assert not anchored.verified
    loose = verify_image(
        reference,
        keyless_policy(
            root, subject="ci@example.com", issuer=None, issuer_regexp=r"https://issuer\.test.*"
        ),
    )
    assert loose.verified


@pytest.mark.parametrize("legacy", [False, True])
def test_keyless_untrusted_root(keyless_image, sigstore_mock, other_sigstore, legacy: bool) -> None:
    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    _sign_keyless(store, image, _signer(sigstore, "alice@example.com"), legacy)
    assert verify_image(reference, keyless_policy(root, subject="alice@example.com")).verified
    for other in (other_sigstore.trusted_root, None):  # another private root, public good
        result = verify_image(reference, keyless_policy(other, subject="alice@example.com"))
        assert not result.verified
        reasons = _reasons(result)
        assert "not in trusted root" in reasons or "chain" in reasons


@pytest.mark.parametrize("legacy", [False, True])
def test_keyless_certificate_expired_at_log_time(keyless_image, sigstore_mock, legacy) -> None:
    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    late = _signer(
        sigstore, "alice@example.com", not_before=start, log_time=start + dt.timedelta(minutes=30)
    )
    _sign_keyless(store, image, late, legacy)
    result = verify_image(reference, keyless_policy(root, subject="alice@example.com"))
    assert not result.verified
    reasons = _reasons(result)
    # sigstore-python (bundles): "cert is not valid at validation time"; ours (legacy):
    # "certificate was not valid at the signing time".
    assert "not valid at" in reasons
    in_time = _signer(
        sigstore, "alice@example.com", not_before=start, log_time=start + dt.timedelta(minutes=5)
    )
    _sign_keyless(store, image, in_time, legacy)
    assert verify_image(reference, keyless_policy(root, subject="alice@example.com")).verified


def test_keyless_legacy_without_log_entry(keyless_image, sigstore_mock) -> None:
    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    signer = _signer(sigstore, "alice@example.com", with_log=False)
    _sign_keyless(store, image, signer, True)
    result = verify_image(reference, keyless_policy(root, subject="alice@example.com"))
    assert not result.verified
    assert "no transparency-log entry" in _reasons(result)


def test_keyless_legacy_with_forged_log_entry(keyless_image, sigstore_mock) -> None:
    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    _sign_keyless(store, image, _signer(sigstore, "alice@example.com"), True)
    sig = store.fetch_manifest(signature_tag(image.digest)).parsed
    assert isinstance(sig, Manifest)
    (layer,) = sig.layers
    bundle = json.loads(layer.annotations[BUNDLE_ANNOTATION])
    bundle["Payload"]["integratedTime"] += 1  # move the entry's time: the SET no longer covers it
    forged = Descriptor(
        layer.media_type,
        layer.digest,
        layer.size,
        annotations={**layer.annotations, BUNDLE_ANNOTATION: json.dumps(bundle)},
    )
    store.push_manifest(
        Manifest(sig.media_type, sig.config, (forged,)).to_bytes(),
        mt.OCI_MANIFEST,
        signature_tag(image.digest),
    )
    result = verify_image(reference, keyless_policy(root, subject="alice@example.com"))
    assert not result.verified
    assert "signed entry timestamp does not verify" in _reasons(result)


def test_keyless_log_entry_for_another_signature(keyless_image, sigstore_mock) -> None:
    """A genuine log entry, but for a different payload: the entry body must match."""
    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    signer = _signer(sigstore, "alice@example.com")
    other = signer.sign(b"some other payload")
    honest = signer.sign(make_payload("x/y", image.digest, {}))
    from attest.signing.legacy import layer_annotations

    annotations = layer_annotations(honest, attestation=False)
    annotations[BUNDLE_ANNOTATION] = layer_annotations(other, attestation=False)[BUNDLE_ANNOTATION]
    append_layer(
        store, signature_tag(image.digest), mt.COSIGN_SIMPLESIGNING, honest.payload, annotations
    )
    result = verify_image(reference, keyless_policy(root, subject="alice@example.com"))
    assert not result.verified
    assert "log entry records a different" in _reasons(result)


# -- statements and payloads that are about something else -----------------------------------


def _legacy_attestation(repo, digest: str, statement: bytes, signer) -> None:
    material = signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, statement)
    append_layer(
        repo,
        signature_tag(digest, "att"),
        mt.DSSE_ENVELOPE,
        material.envelope().to_json(),
        {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: "https://example.com/test/v1"},
    )


def test_legacy_attestation_naming_another_digest(repo, push_image, key) -> None:
    """An attestation about image B, signed by the trusted key, stored under image A's .att."""
    ref_a, a, _, b = _two_images(repo, push_image)
    _legacy_attestation(repo, a.digest, statement_for(b.digest), key.signer)
    (attestation,) = verify_image(ref_a, key.policy()).attestations
    assert not attestation.verified
    assert f"statement has no subject with the image digest {a.digest}" in attestation.reasons


@pytest.mark.parametrize("digest", ["prefix", "empty", "other-algorithm"])
def test_statement_subject_must_carry_the_exact_digest(repo, push_image, key, digest) -> None:
    ref_a, a, _, _ = _two_images(repo, push_image)
    hex_part = a.digest.removeprefix("sha256:")
    subject = {
        "prefix": {"sha256": hex_part[:12]},
        "empty": {"sha256": ""},
        "other-algorithm": {"sha512": hex_part},
    }[digest]
    statement = json.loads(statement_for(a.digest))
    statement["subject"][0]["digest"] = subject
    _legacy_attestation(repo, a.digest, json.dumps(statement).encode(), key.signer)
    (attestation,) = verify_image(ref_a, key.policy()).attestations
    assert not attestation.verified
    assert any("no subject with the image digest" in r for r in attestation.reasons)


def test_legacy_payload_of_another_type(repo, push_image, key) -> None:
    """A signed simple-signing payload whose critical.type is not an image signature."""
    ref_a, a, _, _ = _two_images(repo, push_image)
    document = json.loads(make_payload("x/y", a.digest, {}))
    document["critical"]["type"] = "atomic container signature for something else"
    payload = json.dumps(document).encode()
    _append_legacy_signature(repo, a.digest, payload, key.signer.sign(payload).signature)
    result = verify_image(ref_a, key.policy())
    assert not result.verified
    assert "payload type 'atomic container signature for something else'" in _reasons(result)


def test_statement_of_another_type(repo, push_image, key) -> None:
    """A signed JSON document shaped like a statement but not an in-toto Statement."""
    ref_a, a, _, _ = _two_images(repo, push_image)
    statement = json.loads(signature_statement(a.digest))
    statement["_type"] = "https://example.com/NotAStatement/v1"
    material = key.signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, json.dumps(statement).encode())
    push_bundle(repo, a, make_bundle(material), predicate_type=SIGN_PREDICATE_TYPE)
    result = verify_image(ref_a, key.policy())
    assert not result.verified
    assert "is not an in-toto Statement" in _reasons(result)


# -- keyless certificates that must not count ---------------------------------------------------


@pytest.mark.parametrize("eku", [("clientAuth",), ()], ids=["client-auth", "no-eku"])
@pytest.mark.parametrize("legacy", [False, True])
def test_keyless_certificate_without_code_signing(
    keyless_image, sigstore_mock, legacy, eku
) -> None:
    """A certificate from the trusted CA for another purpose (TLS client), or with no
    extended key usage at all, is not a signing one."""
    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    client = _signer(sigstore, "alice@example.com", eku=eku)
    _sign_keyless(store, image, client, legacy)
    result = verify_image(reference, keyless_policy(root, subject="alice@example.com"))
    assert not result.verified
    reasons = _reasons(result)
    # sigstore-python (bundles) names the missing extension by its class: ExtendedKeyUsage.
    assert any(
        word in reasons for word in ("code signing", "extended key usage", "ExtendedKeyUsage")
    ), reasons


def test_keyless_legacy_signature_by_another_key(keyless_image, sigstore_mock) -> None:
    """Alice's certificate and a log entry naming it, but the signature is Mallory's key's.

    (A real Rekor would refuse to log it; a log entry is only evidence, the signature must
    still verify with the certificate.)"""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from attest.signing.legacy import layer_annotations

    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    alice = _signer(sigstore, "alice@example.com")
    payload = make_payload("x/y", image.digest, {})
    forged = ec.generate_private_key(ec.SECP256R1()).sign(payload, ec.ECDSA(hashes.SHA256()))
    entry = alice.log_hashedrekord(forged, payload)  # Alice's certificate, Mallory's signature
    honest = alice.sign(payload)
    from dataclasses import replace

    material = replace(honest, signature=forged, tlog_entries=(entry,))
    append_layer(
        store,
        signature_tag(image.digest),
        mt.COSIGN_SIMPLESIGNING,
        payload,
        layer_annotations(material, attestation=False),
    )
    result = verify_image(reference, keyless_policy(root, subject="alice@example.com"))
    assert not result.verified
    assert "signature does not verify with the certificate's key" in _reasons(result)


def test_log_entry_outside_the_log_key_validity(keyless_image, sigstore_mock, tmp_path) -> None:
    """The trusted root says the Rekor key became valid after the entry was integrated."""
    reference, store, image = keyless_image
    sigstore, root = sigstore_mock, sigstore_mock.trusted_root
    _sign_keyless(store, image, _signer(sigstore, "alice@example.com"), True)
    assert verify_image(reference, keyless_policy(root, subject="alice@example.com")).verified
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = sigstore.write_trusted_root(tmp_path / "later.json", log_valid_from=tomorrow)
    result = verify_image(reference, keyless_policy(later, subject="alice@example.com"))
    assert not result.verified
    assert "outside the transparency log key's validity" in _reasons(result)
