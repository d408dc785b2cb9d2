"""attest promote: verify against a policy, then copy and sign a promotion attestation.

The attacks come first: whatever fails verification must leave the destination empty.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.cli.conftest import ENV

PROMOTION = "https://attest.dev/promotion/v1"


def _promote(cli: Any, ref: str, destination: str, verifier: str, signer: str, *extra: str):
    return cli(
        "promote", ref, destination, "--key", verifier, "--insecure-ignore-tlog",
        "--signing-key", signer, "--tlog-upload=false", *extra, env=ENV,
    )  # fmt: skip


def _nothing_at(cli: Any, destination: str) -> None:
    missing = cli("inspect", destination)
    assert missing.exit_code == 4 and "not found" in missing.stderr, missing.stderr


def test_an_unsigned_image_is_not_promoted(
    cli, registry, repo, push_image, make_keys, second_registry
) -> None:
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    trusted, promoter = make_keys("trusted"), make_keys("promoter")
    destination = f"{second_registry.address}/prod/unsigned:v1"
    refused = _promote(cli, ref, destination, trusted.public, promoter.private)
    assert refused.exit_code == 1, refused.stderr
    assert "not promoted, nothing copied: signature" in refused.stderr
    _nothing_at(cli, destination)


def test_an_image_signed_by_another_key_is_not_promoted(
    cli, signed_image, make_keys, second_registry
) -> None:
    ref, _ = signed_image(formats=("bundle",))
    stranger, promoter = make_keys("stranger"), make_keys("promoter")
    destination = f"{second_registry.address}/prod/stranger:v1"
    refused = _promote(cli, ref, destination, stranger.public, promoter.private)
    assert refused.exit_code == 1 and "0 of 1 signature(s) verified" in refused.stderr
    _nothing_at(cli, destination)


def test_a_missing_or_foreign_required_attestation_blocks_promotion(
    cli, signed_image, make_keys, second_registry, predicates
) -> None:
    ref, signer = signed_image(formats=("bundle",))
    promoter, other = make_keys("promoter"), make_keys("other")
    destination = f"{second_registry.address}/prod/attestations:v1"
    missing = _promote(
        cli, ref, destination, signer.public, promoter.private, "--require-attestation", "spdxjson"
    )
    assert missing.exit_code == 1
    assert "attestation https://spdx.dev/Document: 0 of 0" in missing.stderr
    # An attestation of the required type exists, but another key signed it: not enough.
    foreign = cli(
        "attest", ref, "--key", other.private, "--tlog-upload=false",
        "--predicate", predicates["cyclonedx"], "--type", "spdxjson", env=ENV,
    )  # fmt: skip
    assert foreign.exit_code == 0, foreign.stderr
    refused = _promote(
        cli, ref, destination, signer.public, promoter.private, "--require-attestation", "spdxjson"
    )
    assert refused.exit_code == 1
    assert "attestation https://spdx.dev/Document: 0 of 1" in refused.stderr
    _nothing_at(cli, destination)


def test_promotion_copies_and_signs_who_when_where_and_which_checks(
    cli, signed_image, make_keys, second_registry
) -> None:
    ref, signer = signed_image()
    promoter = make_keys("promoter")
    destination = f"{second_registry.address}/prod/app:release"
    promoted = _promote(
        cli, ref, destination, signer.public, promoter.private,
        "--require-attestation", "slsaprovenance1", "--require-attestation", "cyclonedx",
        "-o", "json",
    )  # fmt: skip
    assert promoted.exit_code == 0, promoted.stderr
    result = promoted.json()
    digest = ref.split("@")[1]
    assert result["digest"] == digest and len(result["attached"]) == 5
    verify = ["--insecure-ignore-tlog", "--output", "json"]
    checked = cli(
        "verify-attestation", destination, "--key", promoter.public, "--type", PROMOTION, *verify
    )
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    # The signed statement, as stored at the destination.
    bundles = cli("download", "attestation", destination, "--predicate-type", PROMOTION)
    (bundle,) = (json.loads(line) for line in bundles.stdout.splitlines())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["subject"][0]["digest"] == {"sha256": digest.split(":")[1]}
    predicate = statement["predicate"]
    assert predicate["source"] == ref and predicate["destination"].endswith(f":release@{digest}")
    assert predicate["promoter"]["signer"].startswith(f"key {promoter.private}")
    assert predicate["promotedAt"].endswith("Z")
    assert [(c["check"], c["name"], c["passed"]) for c in predicate["checks"]] == [
        ("signature", signer.public, True),
        ("attestation", "https://slsa.dev/provenance/v1", True),
        ("attestation", "https://cyclonedx.org/bom", True),
    ]
    # The original signatures still verify at the destination, and the promoter's key
    # is not the image signer's: the promotion attestation does not make a signature.
    assert (
        cli("verify", destination, "--key", signer.public, "--insecure-ignore-tlog").exit_code == 0
    )
    assert (
        cli("verify", destination, "--key", promoter.public, "--insecure-ignore-tlog").exit_code
        == 1
    )


def test_a_tag_moved_after_verification_does_not_change_what_is_copied(
    cli, signed_image, make_keys, second_registry, registry, repo, push_image, monkeypatch
) -> None:
    import attest.promote

    ref, signer = signed_image(formats=("bundle",), tag="release")
    verified_digest = ref.split("@")[1]
    by_tag = f"{registry.address}/{repo.repository}:release"
    real_verify = attest.promote.verify_image

    def verify_then_swap(*args: Any, **kwargs: Any) -> Any:
        result = real_verify(*args, **kwargs)
        push_image(repo, "release", marker="swapped-in")  # unsigned, same tag
        return result

    monkeypatch.setattr(attest.promote, "verify_image", verify_then_swap)
    promoter = make_keys("promoter")
    destination = f"{second_registry.address}/prod/raced:v1"
    promoted = _promote(cli, by_tag, destination, signer.public, promoter.private, "-o", "json")
    assert promoted.exit_code == 0, promoted.stderr
    assert promoted.json()["digest"] == verified_digest
    shown = cli("inspect", destination, "-o", "json").json()
    assert verified_digest in json.dumps(shown)
    swapped = cli("inspect", by_tag, "-o", "json").json()
    assert verified_digest not in json.dumps(swapped)  # the tag did move
