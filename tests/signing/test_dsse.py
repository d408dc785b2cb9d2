"""DSSE: the spec's PAE vector, both base64 alphabets, malformed envelopes, payloadType binding."""

from __future__ import annotations

import base64
import json

import pytest

from attest.errors import SignatureFormatError
from attest.signing import keys
from attest.signing.dsse import Envelope, decode_base64, pae, verify_envelope
from tests.signing.conftest import make_key


def test_pae_matches_the_spec_vector() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


def _signed_envelope(
    payload: bytes = b'{"a":1}', payload_type: str = "application/vnd.in-toto+json"
):
    key = make_key()
    material = key.signer.sign_dsse(payload_type, payload)
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(material.signature).decode()}],
    }
    return key, envelope, material.signature


def _verifier(key):
    return lambda sig, data: keys.verify_signature(key.signer.public_key, sig, data)


@pytest.mark.parametrize("encode", ["standard", "urlsafe", "unpadded-urlsafe", "unpadded"])
def test_both_base64_alphabets_are_accepted(encode: str) -> None:
    payload = b"\xfb\xff\xfe payload with bytes that differ between alphabets"
    key, envelope, signature = _signed_envelope(payload)
    coder = base64.urlsafe_b64encode if "urlsafe" in encode else base64.b64encode
    envelope["payload"] = coder(payload).decode()
    envelope["signatures"][0]["sig"] = coder(signature).decode()
    if encode.startswith("unpadded") or encode == "unpadded":
        envelope["payload"] = envelope["payload"].rstrip("=")
        envelope["signatures"][0]["sig"] = envelope["signatures"][0]["sig"].rstrip("=")
    parsed = Envelope.from_dict(envelope)
    assert parsed.payload == payload
    assert verify_envelope(parsed, _verifier(key))


def test_payload_type_is_bound_by_the_signature() -> None:
    key, envelope, _ = _signed_envelope()
    assert verify_envelope(Envelope.from_dict(envelope), _verifier(key))
    envelope["payloadType"] = "application/vnd.dev.cosign.simplesigning.v1+json"
    assert not verify_envelope(Envelope.from_dict(envelope), _verifier(key))


def test_tampered_payload_fails() -> None:
    key, envelope, _ = _signed_envelope(b'{"a":1}')
    envelope["payload"] = base64.b64encode(b'{"a":2}').decode()
    assert not verify_envelope(Envelope.from_dict(envelope), _verifier(key))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.update(signatures=[]), "has no signatures"),
        (lambda e: e.pop("payloadType"), "has no payloadType"),
        (lambda e: e.update(payload="not base64!"), "payload is not base64"),
        (
            lambda e: e["signatures"].append(dict(e["signatures"][0])),
            "same signature more than once",
        ),
        (lambda e: e["signatures"][0].update(sig=""), "sig is empty"),
        (lambda e: e["signatures"][0].update(sig="a"), "bad length"),
    ],
)
def test_malformed_envelopes_are_rejected(mutate, message: str) -> None:
    _, envelope, _ = _signed_envelope()
    mutate(envelope)
    with pytest.raises(SignatureFormatError, match=message):
        Envelope.parse(json.dumps(envelope).encode())


def test_round_trip_writes_standard_padded_base64() -> None:
    _, envelope, _ = _signed_envelope(b"ab")
    parsed = Envelope.from_dict(envelope)
    again = json.loads(parsed.to_json())
    assert again["payload"] == "YWI="
    assert decode_base64(again["signatures"][0]["sig"], what="sig") == parsed.signatures[0].sig
