"""attach_attestation (the storage issue 5 builds on) and finding attestations in verify_image."""

from __future__ import annotations

import json

import pytest

from attest.errors import AttestationError
from attest.oci import mediatypes as mt
from attest.oci.manifest import Manifest
from attest.oci.referrers import list_referrers
from attest.oci.store import read_blob
from attest.signing.legacy import PREDICATE_TYPE_ANNOTATION, signature_tag
from attest.signing.storage import attach_attestation, attach_signature
from attest.verify import verify_image
from tests.signing.conftest import resolved, statement_for

SBOM = "https://cyclonedx.org/bom"
PROVENANCE = "https://slsa.dev/provenance/v1"


@pytest.mark.parametrize("legacy", [False, True])
def test_attestations_round_trip_through_the_registry(repo, push_image, key, legacy: bool) -> None:
    pushed = push_image(repo, "v1")
    reference = f"{repo.client.registry}/{repo.repository}:v1"
    image = resolved(repo, reference)
    attach_signature(repo, image, key.signer, legacy=legacy)
    first = attach_attestation(
        repo, image, statement_for(pushed.digest, SBOM), key.signer, legacy=legacy
    )
    second = attach_attestation(
        repo, image, statement_for(pushed.digest, PROVENANCE), key.signer, legacy=legacy
    )
    assert first.startswith(f"{repo.display}@sha256:")
    if legacy:
        att = repo.fetch_manifest(signature_tag(pushed.digest, "att")).parsed
        assert isinstance(att, Manifest) and len(att.layers) == 2  # appended, not replaced
        assert [layer.annotations[PREDICATE_TYPE_ANNOTATION] for layer in att.layers] == [
            SBOM,
            PROVENANCE,
        ]
        assert {layer.media_type for layer in att.layers} == {mt.DSSE_ENVELOPE}
        envelope = json.loads(read_blob(repo, att.layers[0]))
        assert envelope["payloadType"] == "application/vnd.in-toto+json"
        assert (
            second == f"{repo.display}@{repo.resolve(signature_tag(pushed.digest, 'att')).digest}"
        )
    else:
        referrers = list_referrers(repo, pushed.digest, mt.SIGSTORE_BUNDLE_V03)
        assert len(referrers) == 3
        predicate_types = {
            r.annotations.get("dev.sigstore.bundle.predicateType") for r in referrers
        }
        assert {SBOM, PROVENANCE} <= predicate_types
    result = verify_image(reference, key.policy())
    assert result.verified and len(result.signatures) == 1
    by_type = {a.predicate_type: a for a in result.attestations}
    assert set(by_type) == {SBOM, PROVENANCE}
    assert all(
        a.verified and a.storage == ("legacy" if legacy else "bundle") for a in by_type.values()
    )
    assert by_type[SBOM].statement["predicate"] == {"count": 3}
    without = verify_image(reference, key.policy(), attestations=False)
    assert without.verified and without.attestations == ()


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (b"not json", "statement is not JSON"),
        (b"[1]", "not a JSON object"),
        (
            json.dumps({"_type": "x", "subject": [], "predicateType": "p"}).encode(),
            "is not an in-toto Statement",
        ),
        (
            json.dumps(
                {
                    "_type": "https://in-toto.io/Statement/v1",
                    "subject": [{"digest": {"sha256": "00" * 32}}],
                    "predicateType": "p",
                }
            ).encode(),
            "has no subject with digest",
        ),
        (
            json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}).encode(),
            "has no predicateType",
        ),
    ],
    ids=["not-json", "not-object", "not-in-toto", "other-subject", "no-predicate-type"],
)
@pytest.mark.parametrize("legacy", [False, True])
def test_bad_statements_push_nothing(repo, push_image, key, statement, message, legacy) -> None:
    pushed = push_image(repo, "v1")
    image = resolved(repo, f"{repo.client.registry}/{repo.repository}:v1")
    tags_before = sorted(repo.list_tags())
    with pytest.raises(AttestationError, match=message):
        attach_attestation(repo, image, statement, key.signer, legacy=legacy)
    assert sorted(repo.list_tags()) == tags_before == ["v1"]
    assert list_referrers(repo, pushed.digest) == []


def test_attestation_in_layout_is_found_but_is_not_a_signature(layout_image, key) -> None:
    reference, store, image = layout_image
    attach_attestation(store, image, statement_for(image.digest), key.signer)
    store.close()
    result = verify_image(reference, key.policy())
    (attestation,) = result.attestations
    assert attestation.verified and attestation.signer.kind == "key"
    assert attestation.statement["subject"][0]["digest"]["sha256"] == image.digest.split(":")[1]
    assert not result.verified and result.signatures == ()


def test_signature_listing_labels_only_steer_fetching(layout_image, key) -> None:
    """Without attestations, bundles listed as attestations are skipped; the signed content decides."""
    from attest.attestations.statement import IN_TOTO_PAYLOAD_TYPE, signature_statement
    from attest.signing.bundle import make_bundle
    from attest.signing.storage import push_bundle

    reference, store, image = layout_image
    material = key.signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, signature_statement(image.digest))
    push_bundle(store, image.descriptor, make_bundle(material), predicate_type=SBOM)  # mislabelled
    store.close()
    skipped = verify_image(reference, key.policy(), attestations=False)
    assert not skipped.verified and skipped.signatures == ()  # fails closed
    full = verify_image(reference, key.policy())
    assert (
        full.verified and full.signatures[0].predicate_type == "https://sigstore.dev/cosign/sign/v1"
    )
