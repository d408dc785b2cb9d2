"""The cosign-written Sigstore bundle (DSSE attestation) from ../shared/vectors/cosign-bundle."""

from __future__ import annotations

import base64
import json

import pytest

from attest.signing.authority import KeylessAuthority
from attest.signing.bundle_verify import verify_bundle
from attest.signing.fulcio import IdentityPolicy
from attest.testing import SigstoreMock
from tests.signing.conftest import COSIGN_BUNDLE, needs_vectors

pytestmark = needs_vectors("cosign-bundle")

IDENTITY = "cody@soyland.com"
ISSUER = "https://github.com/login/oauth"


def _bundle() -> bytes:
    return (COSIGN_BUNDLE / "oci-attestation.sigstore.json").read_bytes()


def _subject_digest() -> str:
    payload = json.loads(base64.b64decode(json.loads(_bundle())["dsseEnvelope"]["payload"]))
    return "sha256:" + payload["subject"][0]["digest"]["sha256"]


def _authority(**overrides: str | None) -> KeylessAuthority:
    fields: dict[str, str | None] = {
        "subject": IDENTITY,
        "issuer": ISSUER,
        "trusted_root": str(COSIGN_BUNDLE / "trusted_root_pgi.json"),
    }
    fields.update(overrides)
    root = fields.pop("trusted_root")
    return KeylessAuthority("cosign", IdentityPolicy(**fields), trusted_root=root)


def test_verifies_offline_with_its_trusted_root() -> None:
    result = verify_bundle(_bundle(), _authority(), artifact_digest=_subject_digest())
    assert result.verified, result.reasons
    assert result.signer.to_dict() == {"type": "keyless", "subject": IDENTITY, "issuer": ISSUER}
    assert result.content == "dsse"
    assert result.tlog is not None and result.tlog["kind"] == "dsse/0.0.1"
    statement = result.statement()
    assert (
        statement is not None
        and statement["predicateType"] == "https://cosign.sigstore.dev/attestation/v1"
    )


def test_regexp_identity_policy_matches_whole_values() -> None:
    ok = _authority(
        subject=None,
        subject_regexp=r".*@soyland\.com",
        issuer=None,
        issuer_regexp=r"https://github\.com/.*",
    )
    assert verify_bundle(_bundle(), ok, artifact_digest=_subject_digest()).verified
    prefix_only = _authority(subject=None, subject_regexp="cody@soyland")
    result = verify_bundle(_bundle(), prefix_only, artifact_digest=_subject_digest())
    assert not result.verified and "does not match" in result.reasons[0]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"subject": "mallory@soyland.com"}, "identity"),
        ({"issuer": "https://accounts.google.com"}, "issuer"),
    ],
)
def test_rejects_other_identity_issuer_or_root(
    overrides: dict[str, str | None], reason: str
) -> None:
    result = verify_bundle(_bundle(), _authority(**overrides), artifact_digest=_subject_digest())
    assert not result.verified
    assert reason in " ".join(result.reasons).lower()


def test_verifies_with_the_embedded_public_good_root_too() -> None:
    """trusted_root_pgi.json is the public-good root: our offline default must agree."""
    result = verify_bundle(
        _bundle(), _authority(trusted_root=None), artifact_digest=_subject_digest()
    )
    assert result.verified, result.reasons


def test_rejects_chain_to_an_untrusted_root(sigstore_mock: SigstoreMock) -> None:
    untrusted = _authority(trusted_root=sigstore_mock.trusted_root)
    result = verify_bundle(_bundle(), untrusted, artifact_digest=_subject_digest())
    assert not result.verified
    assert "certificate" in result.reasons[0] or "chain" in result.reasons[0]


def test_rejects_another_subject_digest() -> None:
    result = verify_bundle(_bundle(), _authority(), artifact_digest="sha256:" + "1" * 64)
    assert not result.verified and "no subject" in result.reasons[0]
