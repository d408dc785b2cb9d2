"""Canonical JSON (what the chain hashes) equals RFC 8785, and columns derive from documents."""

from __future__ import annotations

import pytest
import rfc8785

from admission.decisions.model import canonical_bytes, normalise_time, record_fields
from admission.testing.samples import decision
from attest.errors import UsageError

TRICKY = [
    0.1,
    12.0,
    -0.0,
    0.0,
    1e-6,
    1e-7,
    5e-324,
    1e16,
    1e21,
    123456789.125,
    -2.5e-5,
    2**53,
    -(2**53),
    2**53 + 1,
    10**30,
    True,
    False,
    None,
    "plain",
    "tab\there",
    "nl\nand\rcr",
    "\x00\x1f\x7f",
    'quote"back\\slash',
    "ünïcode",
    "emoji 😀",
    "\u2028\u2029",
    "<script>&amp;</script>",
]


@pytest.mark.parametrize("value", TRICKY, ids=repr)
def test_canonical_bytes_match_rfc8785(value) -> None:
    document = {"value": value, "list": [value, {"nested": value}]}
    try:
        expected = rfc8785.dumps(document)
    except rfc8785.IntegerDomainError:  # beyond 2**53 - 1: written exactly (an extension)
        assert str(value).encode() in canonical_bytes(document)
        assert canonical_bytes(document) == canonical_bytes(dict(reversed(document.items())))
        return
    assert canonical_bytes(document) == expected


def test_canonical_bytes_sort_non_ascii_keys_like_rfc8785() -> None:
    document = {"\ue000": 1, "😀": 2, "a": 3, "é": 4}
    assert canonical_bytes(document) == rfc8785.dumps(document)


def test_a_whole_decision_is_canonical() -> None:
    document = decision(warnings=["ünïcode"])
    assert canonical_bytes(document) == rfc8785.dumps(document)


def test_times_are_normalised_to_fixed_width_utc() -> None:
    expected = "2024-05-14T08:00:00.000000Z"
    assert normalise_time("2024-05-14T10:00:00+02:00") == expected
    assert normalise_time("2024-05-14T08:00:00Z") == expected
    assert normalise_time(1715673600.0) == expected
    with pytest.raises(UsageError):
        normalise_time("last tuesday")
    with pytest.raises(UsageError):
        normalise_time(None)


def test_fields_accept_both_spellings_of_the_contract() -> None:
    camel = decision()
    camel["bundleHash"] = camel.pop("bundle_hash")
    camel["trustFingerprint"] = camel.pop("trust_fingerprint")
    camel["user"] = {"username": "alice", "groups": ["dev"]}
    fields = record_fields(camel)
    assert fields.bundle_hash.startswith("sha256:b") and fields.trust_fingerprint.startswith(
        "sha256:f"
    )
    assert fields.user == "alice" and fields.result == "allowed" and fields.operation == "CREATE"
