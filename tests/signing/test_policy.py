"""VerificationPolicy: validation, fingerprints, thresholds, and log entries with key signatures."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from attest.errors import KeyFileError, UsageError
from attest.signing.authority import (
    TLOG_IF_PRESENT,
    TLOG_IGNORED,
    KeyAuthority,
    KeylessAuthority,
    VerificationPolicy,
)
from attest.signing.fulcio import IdentityPolicy
from attest.signing.rekor import RekorClient
from attest.signing.storage import attach_signature
from attest.signing.trust import TrustMaterialError
from attest.verify import verify_image
from tests.signing.conftest import make_key


def test_policy_validation() -> None:
    key = make_key()
    with pytest.raises(UsageError, match="no authorities"):
        VerificationPolicy(())
    with pytest.raises(UsageError, match="threshold 2 must be between 1 and 1"):
        VerificationPolicy((KeyAuthority("a", key.public_pem),), threshold=2)
    with pytest.raises(UsageError, match="names must be unique"):
        VerificationPolicy((KeyAuthority("a", key.public_pem), KeyAuthority("a", key.public_pem)))
    with pytest.raises(UsageError, match="needs an OIDC issuer"):
        KeylessAuthority("k", IdentityPolicy(subject="a@b.c"))


def test_fingerprint_covers_all_trust_material(tmp_path) -> None:
    one, two = make_key(), make_key()
    base = VerificationPolicy((KeyAuthority("a", one.public_pem),))
    assert (
        base.fingerprint() == VerificationPolicy((KeyAuthority("a", one.public_pem),)).fingerprint()
    )
    root = tmp_path / "root.json"
    root.write_text("{}")
    variants = [
        VerificationPolicy((KeyAuthority("a", two.public_pem),)),
        VerificationPolicy((KeyAuthority("a", one.public_pem, trusted_root=str(root)),)),
        VerificationPolicy((KeyAuthority("a", one.public_pem),), required_annotations={"x": "y"}),
        # Relaxing the log requirement must not reuse results verified under the stricter one.
        VerificationPolicy((KeyAuthority("a", one.public_pem, tlog=TLOG_IGNORED),)),
        VerificationPolicy((KeyAuthority("a", one.public_pem, tlog=TLOG_IF_PRESENT),)),
        VerificationPolicy(
            (KeylessAuthority("a", IdentityPolicy(issuer="https://i", subject="s@x")),)
        ),
        VerificationPolicy(
            (KeylessAuthority("a", IdentityPolicy(issuer="https://i", subject_regexp="s@x")),)
        ),
    ]
    prints = {base.fingerprint(), *(v.fingerprint() for v in variants)}
    assert len(prints) == 1 + len(variants)
    with_root = variants[1].fingerprint()
    root.write_text('{"changed": true}')
    assert variants[1].fingerprint() != with_root


def test_threshold_counts_distinct_authorities(layout_image) -> None:
    reference, store, image = layout_image
    alice, bob = make_key(), make_key()
    policy = VerificationPolicy(
        (
            KeyAuthority("alice", alice.public_pem, tlog=TLOG_IGNORED),
            KeyAuthority("bob", bob.public_pem, tlog=TLOG_IGNORED),
        ),
        threshold=2,
    )  # these signers log nowhere: the authorities opt out as --insecure-ignore-tlog
    attach_signature(store, image, alice.signer)
    attach_signature(store, image, alice.signer, legacy=True)
    store.close()
    once = verify_image(reference, policy)
    assert once.satisfied_authorities == ("alice",) and not once.verified
    attach_signature(store, image, bob.signer)
    store.close()
    both = verify_image(reference, policy)
    assert both.satisfied_authorities == ("alice", "bob") and both.verified


def test_unusable_trust_material_raises_before_checking(layout_image, tmp_path) -> None:
    reference, store, image = layout_image
    attach_signature(store, image, make_key().signer)
    store.close()
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        verify_image(reference, VerificationPolicy((KeyAuthority("bad", b"nope"),)))
    with pytest.raises(TrustMaterialError, match="does not exist"):
        verify_image(
            reference,
            VerificationPolicy(
                (
                    KeylessAuthority(
                        "k",
                        IdentityPolicy(issuer="https://i", subject="s"),
                        trusted_root=str(tmp_path / "x"),
                    ),
                )
            ),
        )


def test_key_signature_log_entry_must_verify_against_the_root(layout_image, sigstore_mock) -> None:
    """A Rekor entry next to a key-based signature is optional, but a present one must verify."""
    reference, store, image = layout_image
    rekor, root = RekorClient(sigstore_mock.url), sigstore_mock.trusted_root
    key = make_key()
    logged: list[int] = []

    class LoggingSigner:
        description = "key + mock log"

        def sign(self, data: bytes):
            material = key.signer.sign(data)
            entry = rekor.upload_hashedrekord(
                signature=material.signature,
                digest=hashlib.sha256(data).digest(),
                verifier=key.signer.public_key,
            )
            logged.append(entry.log_index)
            return dataclasses.replace(material, tlog_entries=(entry,))

    attach_signature(store, image, LoggingSigner(), legacy=True)  # type: ignore[arg-type]
    store.close()
    trusted = verify_image(
        reference, VerificationPolicy((KeyAuthority("k", key.public_pem, trusted_root=root),))
    )
    assert trusted.verified and [trusted.signatures[0].tlog["logIndex"]] == logged
    # Even where no entry is required, one that is present must verify (here: not against
    # the public-good root, which does not know this log).
    public_good = verify_image(reference, key.policy(tlog=TLOG_IF_PRESENT))
    assert not public_good.verified
    assert "not in trusted root sigstore-public-good" in public_good.signatures[0].reasons[0]
