"""The records' signer is printed one way, by SignerIdentity.describe(), in text and on the web."""

from __future__ import annotations

from admission.decisions import text
from admission.web import views

KEYLESS = {"type": "keyless", "subject": "ci@example.com", "issuer": "https://issuer.example"}


def _check(signer: object) -> dict[str, object]:
    return {
        "verified": True,
        "kind": "signature",
        "storage": "bundle",
        "location": "r@d",
        "signer": signer,
    }


def test_text_and_web_print_a_keyless_signer_the_same_way() -> None:
    line = text._check_lines(_check(KEYLESS), "")[0]
    assert line.endswith("signer keyless ci@example.com (https://issuer.example)")
    assert (
        views._check(_check(KEYLESS))["signer"] == "keyless ci@example.com (https://issuer.example)"
    )


def test_key_signers_old_and_new_spelling() -> None:
    for signer in ({"type": "key", "keyId": "abc"}, {"type": "key", "key_id": "abc"}):
        assert views._check(_check(signer))["signer"] == "key abc"
        assert text._check_lines(_check(signer), "")[0].endswith("signer key abc")


def test_a_missing_or_hostile_signer_prints_nothing_or_unknown() -> None:
    assert views._check(_check(None))["signer"] == ""
    assert views._check(_check("not a dict"))["signer"] == ""
    assert views._check(_check({"type": "other"}))["signer"] == "unknown signer"
    assert text._check_lines(_check(None), "")[0].endswith("r@d")
