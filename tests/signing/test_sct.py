"""Signed certificate timestamps: a keyless certificate must carry an SCT from a trusted CT log.

Without the SCT check, a certificate the Fulcio CA issued but never disclosed in the
certificate-transparency log (a mis-issuance nobody can audit) would be trusted.  The
certificates here come from the local Sigstore's own CA (tests/js/sigstore-mock-server.js):
one with a valid SCT, and ones without, with a forged one (the trusted log's id, another
key), with one from a CT log the trusted root does not list, and with one the trusted log
signed over other data.  Each is signed with, logged in the local Rekor and stored in both
formats (Sigstore bundle referrer, cosign legacy tags), as a signature and as an
attestation; the verifier must refuse every bad one and accept the good one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from attest.oci.layout import LayoutStore
from attest.signing.authority import KeylessAuthority, VerificationPolicy
from attest.signing.fulcio import CertificateError, IdentityPolicy, verify_scts
from attest.signing.storage import SignedImage, attach_attestation, attach_signature
from attest.signing.trust import load_trusted_root
from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT, SigstoreMock
from attest.testing.images import simple_image
from attest.verify import ImageVerification, verify_image
from tests.signing.conftest import resolved, statement_for
from tests.support.sigstore import MockKeylessSigner

BAD_SCTS = {
    "none": "certificate has no embedded signed certificate timestamp",
    "forged": "no embedded SCT verifies with a CT log of the trusted root",
    "unknown-log": "no embedded SCT verifies with a CT log of the trusted root",
    "mismatched": "no embedded SCT verifies with a CT log of the trusted root",
}


@pytest.fixture
def image(tmp_path: Path) -> Iterator[tuple[str, LayoutStore, SignedImage]]:
    path = tmp_path / "layout"
    store = LayoutStore(str(path), create=True)
    simple_image(tmp_path).build(tmp_path / "build").push(store, "v1")
    reference = f"oci:{path}:v1"
    yield reference, store, SignedImage.of(resolved(store, reference))
    store.close()


def policy(mock: SigstoreMock) -> VerificationPolicy:
    authority = KeylessAuthority(
        "ci",
        IdentityPolicy(issuer=DEFAULT_ISSUER, subject=DEFAULT_SUBJECT),
        trusted_root=mock.trusted_root,
    )
    return VerificationPolicy((authority,))


def sign_everything(store: LayoutStore, image: SignedImage, signer: MockKeylessSigner) -> None:
    for legacy in (False, True):
        attach_signature(store, image, signer, legacy=legacy)
        attach_attestation(store, image, statement_for(image.digest), signer, legacy=legacy)


def checks(result: ImageVerification) -> dict[tuple[str, str], tuple[bool, str]]:
    return {
        (check.kind, check.storage): (check.verified, " | ".join(check.reasons))
        for check in (*result.signatures, *result.attestations)
    }


def test_a_certificate_with_a_valid_sct_verifies_in_both_formats(
    sigstore_mock: SigstoreMock, image
) -> None:
    reference, store, signed = image
    sign_everything(store, signed, MockKeylessSigner(sigstore_mock))
    found = checks(verify_image(reference, policy(sigstore_mock)))
    assert found == {
        (kind, storage): (True, "")
        for kind in ("signature", "attestation")
        for storage in ("bundle", "legacy")
    }


@pytest.mark.parametrize("sct", sorted(BAD_SCTS))
def test_a_certificate_without_a_trusted_sct_is_refused_in_both_formats(
    sigstore_mock: SigstoreMock, image, sct: str
) -> None:
    reference, store, signed = image
    sign_everything(store, signed, MockKeylessSigner(sigstore_mock, sct=sct))
    result = verify_image(reference, policy(sigstore_mock))
    assert not result.verified
    found = checks(result)
    assert set(found) == {
        (kind, storage) for kind in ("signature", "attestation") for storage in ("bundle", "legacy")
    }
    for (kind, storage), (verified, reasons) in found.items():
        assert not verified, (kind, storage)
        if storage == "legacy":  # our check; bundles go through sigstore-python's
            assert BAD_SCTS[sct] in reasons, (kind, reasons)
        else:
            assert "SCT" in reasons or "signed certificate timestamp" in reasons, reasons


@pytest.mark.parametrize("sct", sorted(BAD_SCTS))
def test_verify_scts_refuses_each_bad_sct(sigstore_mock: SigstoreMock, sct: str) -> None:
    """The check itself, on the certificate and the issuer it names."""
    root = load_trusted_root(sigstore_mock.trusted_root)
    good = MockKeylessSigner(sigstore_mock)
    verify_scts(good.certificate, good.chain[0], root)
    bad = MockKeylessSigner(sigstore_mock, sct=sct)
    assert isinstance(bad.chain[0], x509.Certificate)
    with pytest.raises(CertificateError, match=BAD_SCTS[sct]):
        verify_scts(bad.certificate, bad.chain[0], root)


def test_a_certificate_from_an_untrusted_ca_is_refused_despite_a_valid_sct(
    sigstore_mock: SigstoreMock, image
) -> None:
    """A CA outside the trusted root got its certificate into the trusted CT log: the SCT is
    genuine, the chain is not; the certificate's own chain annotation must not be trusted."""
    reference, store, signed = image
    signer = MockKeylessSigner(sigstore_mock, stranger_ca=True)
    root = load_trusted_root(sigstore_mock.trusted_root)
    verify_scts(signer.certificate, signer.chain[0], root)  # the SCT itself is fine
    sign_everything(store, signed, signer)
    result = verify_image(reference, policy(sigstore_mock))
    assert not result.verified
    for (kind, storage), (verified, reasons) in checks(result).items():
        assert not verified, (kind, storage)
        if storage == "legacy":
            assert "does not chain to a trusted Fulcio CA" in reasons, reasons
