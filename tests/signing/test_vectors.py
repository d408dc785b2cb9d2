"""Real cosign legacy signatures (containers/image fixtures) verified through our storage code.

Each vector is an image manifest plus the signature cosign stored for it.  We
load both into an OCI layout exactly as cosign lays them out in a registry
(the manifest, and a ``sha256-<hex>.sig`` manifest whose layer is the
simple-signing payload with cosign's annotations) and run ``verify_image``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from attest.oci import mediatypes as mt
from attest.oci.layout import LayoutStore
from attest.signing import keys
from attest.signing.authority import TLOG_IGNORED, KeyAuthority, VerificationPolicy
from attest.signing.legacy import append_layer, parse_cosign_bundle, signature_tag
from attest.signing.tlog import set_payload
from attest.verify import verify_image
from tests.signing.conftest import keyless_policy

SIGNATURE_PREFIX = b"\x00sigstore-json\n"
KEYLESS_IDENTITY = "mitr@redhat.com"
KEYLESS_ISSUER = "https://github.com/login/oauth"


def load_vector(vectors: Path, name: str, tmp_path: Path) -> tuple[str, str]:
    """An OCI layout holding the vector image and its signature; returns (reference, digest)."""
    folder = vectors / "cosign-legacy" / name
    raw = (folder / "signature-1").read_bytes()
    assert raw.startswith(SIGNATURE_PREFIX)
    signature = json.loads(raw[len(SIGNATURE_PREFIX) :])
    path = tmp_path / name
    with LayoutStore(str(path), create=True) as store:
        image = store.push_manifest(
            (folder / "manifest.json").read_bytes(), mt.DOCKER_MANIFEST, "v1"
        )
        append_layer(
            store,
            signature_tag(image.digest),
            signature["mimeType"],
            base64.b64decode(signature["payload"]),
            signature["annotations"],
        )
    return f"oci:{path}:v1", image.digest


def key_policy(vectors: Path, name: str) -> VerificationPolicy:
    """cosign signed these vectors with --tlog-upload=false: verify as --insecure-ignore-tlog."""
    pem = (vectors / "cosign-legacy" / name).read_bytes()
    return VerificationPolicy((KeyAuthority(name, pem, tlog=TLOG_IGNORED),))


def test_cosign_valid_verifies_with_cosign_pub(vectors: Path, tmp_path: Path) -> None:
    reference, digest = load_vector(vectors, "dir-img-cosign-valid", tmp_path)
    result = verify_image(reference, key_policy(vectors, "cosign.pub"))
    assert result.verified and result.digest == digest
    (check,) = result.signatures
    assert check.verified and check.storage == "legacy" and check.tlog is None
    assert check.signer.key_id == keys.key_id(
        keys.load_public_key_file(str(vectors / "cosign-legacy" / "cosign.pub"))
    )


def test_key_rekor_vector_verifies_with_its_key_and_rekor_set(
    vectors: Path, tmp_path: Path
) -> None:
    """The signature and the Rekor entry both name cosign2.pub's key (the README says cosign.pub)."""
    reference, _ = load_vector(vectors, "dir-img-cosign-key-rekor-valid", tmp_path)
    signer_key = keys.load_public_key_file(str(vectors / "cosign-legacy" / "cosign2.pub"))
    result = verify_image(reference, key_policy(vectors, "cosign2.pub"))
    assert result.verified, result.to_dict()
    (check,) = result.signatures
    assert check.tlog is not None and check.tlog["logIndex"] == 11608800
    # The SET verifies with rekor.pub itself (and the public-good root used above holds that key).
    raw = (
        vectors / "cosign-legacy" / "dir-img-cosign-key-rekor-valid" / "signature-1"
    ).read_bytes()
    annotations = json.loads(raw[len(SIGNATURE_PREFIX) :])["annotations"]
    entry = parse_cosign_bundle(annotations["dev.sigstore.cosign/bundle"])
    rekor = keys.load_public_key_file(str(vectors / "cosign-legacy" / "rekor.pub"))
    assert keys.verify_signature(rekor, entry.signed_entry_timestamp, set_payload(entry))
    body = json.loads(entry.body)
    recorded = base64.b64decode(body["spec"]["signature"]["publicKey"]["content"])
    assert keys.public_key_pem(keys.load_public_key(recorded, what="entry")) == keys.public_key_pem(
        signer_key
    )
    assert not verify_image(reference, key_policy(vectors, "cosign.pub")).verified


def test_keyless_vector_verifies_offline_against_public_good_root(
    vectors: Path, tmp_path: Path
) -> None:
    reference, _ = load_vector(vectors, "dir-img-cosign-fulcio-rekor-valid", tmp_path)
    result = verify_image(
        reference, keyless_policy(None, subject=KEYLESS_IDENTITY, issuer=KEYLESS_ISSUER)
    )
    assert result.verified, result.to_dict()
    (check,) = result.signatures
    assert check.signer.to_dict() == {
        "type": "keyless",
        "subject": KEYLESS_IDENTITY,
        "issuer": KEYLESS_ISSUER,
    }
    assert check.tlog["integratedTime"] == 1674247893
    regexp = verify_image(
        reference,
        keyless_policy(
            None,
            subject_regexp=r".*@redhat\.com",
            issuer=None,
            issuer_regexp=r"https://github\.com/.*",
        ),
    )
    assert regexp.verified


@pytest.mark.parametrize(
    ("subject", "subject_regexp", "issuer", "why"),
    [
        ("someone@redhat.com", None, KEYLESS_ISSUER, "does not match"),
        (None, "mitr@redhat", KEYLESS_ISSUER, "does not match"),  # anchored: a prefix is not enough
        (None, "redhat.com", KEYLESS_ISSUER, "does not match"),
        (KEYLESS_IDENTITY, None, "https://accounts.google.com", "issuer"),
    ],
)
def test_keyless_vector_rejects_other_identities(
    vectors: Path, tmp_path: Path, subject, subject_regexp, issuer, why: str
) -> None:
    reference, _ = load_vector(vectors, "dir-img-cosign-fulcio-rekor-valid", tmp_path)
    result = verify_image(
        reference,
        keyless_policy(None, subject=subject, subject_regexp=subject_regexp, issuer=issuer),
    )
    assert not result.verified
    assert why in " ".join(result.signatures[0].reasons)


@pytest.mark.parametrize("name", ["dir-img-cosign-valid", "dir-img-cosign-fulcio-rekor-valid"])
def test_vectors_fail_with_cosign2_pub(vectors: Path, tmp_path: Path, name: str) -> None:
    reference, _ = load_vector(vectors, name, tmp_path)
    result = verify_image(reference, key_policy(vectors, "cosign2.pub"))
    assert not result.verified
    assert result.signatures[0].reasons == ("cosign2.pub: signature does not verify with the key",)


def test_keyed_vectors_fail_keyless_policies(vectors: Path, tmp_path: Path) -> None:
    for name in ("dir-img-cosign-valid", "dir-img-cosign-key-rekor-valid"):
        reference, _ = load_vector(vectors, name, tmp_path)
        result = verify_image(
            reference, keyless_policy(None, subject=KEYLESS_IDENTITY, issuer=KEYLESS_ISSUER)
        )
        assert not result.verified
        assert "no certificate annotation" in result.signatures[0].reasons[0]
