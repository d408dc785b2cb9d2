"""RFC 3161 timestamps from the real timestamp authority (sigstore's timestamp-server).

Keyless signing through a signing config that names the TSA (and the real Rekor v2,
whose entries carry no time) gets a timestamp, and verification uses it as the
signing time.  The window in which the trusted root trusts the TSA is closed: a
timestamp exactly at its end is valid, one a second outside is not.  A bundle with
a timestamp but no log entry is accepted only where the trusted root lists no log.
A TSA that is down, slow or answering garbage fails signing with one line, in time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from rfc3161_client import TimestampRequestBuilder, decode_timestamp_response

from attest.signing import keys
from attest.signing.authority import (
    TLOG_IF_PRESENT,
    TLOG_IGNORED,
    TLOG_REQUIRED,
    KeyAuthority,
    KeylessAuthority,
)
from attest.signing.bundle import SignatureMaterial, make_bundle
from attest.signing.bundle_verify import verify_bundle
from attest.signing.fulcio import IdentityPolicy
from attest.signing.keyless import KeylessSigner
from attest.signing.signer import KeySigner
from attest.signing.trust import load_trust_config, load_trusted_root
from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT, QuietHTTPServer, SigstoreMock, free_port
from tests.support.peers import peer_binary
from tests.support.rekor import RekorTiles
from tests.support.trust import Trust, compose
from tests.support.tsa import TimestampAuthority, make_chain

UTC = dt.UTC
ARTIFACT = b"an artifact the TSA vouches for"


def _base(mock: SigstoreMock) -> dict[str, Any]:
    return json.loads(Path(mock.trusted_root).read_text())


def _root_with_tsa(
    directory: Path, mock: SigstoreMock, rekor_v2: RekorTiles, tsa: TimestampAuthority, *,
    start: dt.datetime | None = None, end: dt.datetime | None = None, logs: bool = True,
) -> Any:  # fmt: skip
    """A trusted root (loaded) listing the TSA valid from ``start`` to ``end`` (closed)."""
    trust = compose(
        directory,
        _base(mock),
        fulcio_url=mock.url,
        rekor=None,
        tlogs=None if logs else [],
        extra_tlogs=[rekor_v2.tlog_entry()] if logs else [],
        tsas=[tsa.authority_entry(start=start, end=end)],
    )
    return load_trusted_root(str(trust.root))


def _gen_time(material: SignatureMaterial) -> dt.datetime:
    (raw,) = material.timestamps
    return decode_timestamp_response(raw).tst_info.gen_time


@pytest.fixture(scope="module")
def keyless_material(sigstore_mock: SigstoreMock, trust_v2: Trust) -> SignatureMaterial:
    """A keyless message signature: Fulcio (mock) + Rekor v2 (real) + the real TSA."""
    signer = KeylessSigner(
        identity_token=sigstore_mock.token(), trust=load_trust_config(str(trust_v2.config))
    )
    with signer:
        return signer.sign(ARTIFACT)


KEYLESS = KeylessAuthority("ci", IdentityPolicy(issuer=DEFAULT_ISSUER, subject=DEFAULT_SUBJECT))


# -- keyless signing with a timestamp, and its verification -----------------------------------


def test_keyless_signing_gets_a_timestamp_from_the_real_tsa(
    keyless_material: SignatureMaterial, trust_v2: Trust, tsa: TimestampAuthority
) -> None:
    gen_time = _gen_time(keyless_material)
    assert abs((dt.datetime.now(UTC) - gen_time).total_seconds()) < 600
    (entry,) = keyless_material.tlog_entries
    assert (entry.kind, entry.version, entry.integrated_time) == ("hashedrekord", "0.0.2", None)
    result = verify_bundle(
        make_bundle(keyless_material), KEYLESS, artifact=ARTIFACT,
        trusted_root=load_trusted_root(str(trust_v2.root)),
    )  # fmt: skip
    assert result.verified, result.reasons
    # The TSA's time is the only signing time a Rekor v2 entry leaves.
    assert result.signed_times == (gen_time.isoformat(),)


def test_cli_keyless_sign_and_verify_with_the_tsa(
    cli, registry, repo, push_image, sigstore_mock: SigstoreMock, trust_v2: Trust
) -> None:
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    signed = cli(
        "sign",
        ref,
        "--identity-token",
        sigstore_mock.token(),
        "--trust-config",
        str(trust_v2.config),
    )
    assert signed.exit_code == 0, signed.stderr
    identity = [
        "--certificate-identity",
        DEFAULT_SUBJECT,
        "--certificate-oidc-issuer",
        DEFAULT_ISSUER,
    ]
    verified = cli("verify", ref, *identity, "--trusted-root", str(trust_v2.root), "-o", "json")
    assert verified.exit_code == 0, verified.stdout
    assert verified.json()["signatures"][0]["tlog"]["kind"] == "hashedrekord/0.0.2"


# -- the window in which the root trusts the TSA is closed --------------------------------------


def _key_material_with_timestamp(tsa: TimestampAuthority) -> tuple[KeySigner, SignatureMaterial]:
    """A key-based message signature with a timestamp over it from the real TSA (no log)."""
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    material = signer.sign(ARTIFACT)
    request = TimestampRequestBuilder().data(material.signature).nonce(nonce=True).build()
    response = requests.post(
        tsa.url, data=request.as_bytes(),
        headers={"Content-Type": "application/timestamp-query"}, timeout=10,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return signer, dataclasses.replace(material, timestamps=(response.content,))


@pytest.mark.parametrize("kind", ["keyless", "key"])
def test_tsa_window_is_closed_and_its_end_counts(
    kind: str, keyless_material: SignatureMaterial, tsa: TimestampAuthority,
    sigstore_mock: SigstoreMock, rekor_v2: RekorTiles, tmp_path: Path,
) -> None:  # fmt: skip
    if kind == "keyless":
        material, authority = keyless_material, KEYLESS
    else:
        signer, material = _key_material_with_timestamp(tsa)
        authority = KeyAuthority("k", keys.public_key_pem(signer.public_key), tlog=TLOG_IF_PRESENT)
    bundle = make_bundle(material)
    gen_time = _gen_time(material)
    second = dt.timedelta(seconds=1)
    windows = {
        "ends exactly at the timestamp": (None, gen_time, True),
        "starts exactly at the timestamp": (gen_time, None, True),
        "ended a second before": (None, gen_time - second, False),
        "starts a second after": (gen_time + second, None, False),
    }
    for label, (start, end, valid) in windows.items():
        root = _root_with_tsa(
            tmp_path / label.replace(" ", "-"), sigstore_mock, rekor_v2, tsa,
            start=start or gen_time - dt.timedelta(days=1), end=end,
        )  # fmt: skip
        result = verify_bundle(bundle, authority, artifact=ARTIFACT, trusted_root=root)
        assert result.verified is valid, (label, result.reasons)
        if not valid:
            assert "timestamp" in " ".join(result.reasons) or "time" in " ".join(result.reasons)


def test_tsa_certificate_expiry(
    tmp_path: Path, sigstore_mock: SigstoreMock, rekor_v2: RekorTiles, tsa: TimestampAuthority
) -> None:
    """Timestamps verify at their own time, even after the TSA certificate expired; those the
    TSA issued after it expired do not.  timestamp-server keeps signing past its certificate
    (it checks the chain only when it starts).

    Exactly at notAfter the certificate counts as expired: rfc3161-client verifies through
    OpenSSL, whose X509_cmp_time treats the end as exclusive (RFC 5280 says inclusive).
    """
    now = dt.datetime.now(UTC).replace(microsecond=0)
    not_after = now + dt.timedelta(seconds=3)
    chain = make_chain(
        tmp_path / "chain", not_before=now - dt.timedelta(hours=1), not_after=not_after
    )
    # timestamp-server binds its metrics to :2112 on every interface, whatever it is told:
    # one runs at a time, so the suite's TSA steps aside for this one.
    tsa.stop()
    collected: dict[str, tuple[KeySigner, SignatureMaterial]] = {}
    short_lived = TimestampAuthority(peer_binary("tsa"), chain)
    try:
        short_lived.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(collected) < 3:
            signer, material = _key_material_with_timestamp(short_lived)
            gen = _gen_time(material)
            label = "before" if gen < not_after else "at" if gen == not_after else "after"
            collected.setdefault(label, (signer, material))
            time.sleep(0.2)
    finally:
        short_lived.stop()
        tsa.start()
    assert set(collected) == {"before", "at", "after"}, sorted(collected)
    root = _root_with_tsa(
        tmp_path / "root", sigstore_mock, rekor_v2, short_lived, start=now - dt.timedelta(hours=1)
    )
    outcomes = {}
    for label, (signer, material) in collected.items():
        authority = KeyAuthority("k", keys.public_key_pem(signer.public_key), tlog=TLOG_IF_PRESENT)
        outcomes[label] = verify_bundle(
            make_bundle(material), authority, artifact=ARTIFACT, trusted_root=root
        )
    assert outcomes["before"].verified, outcomes["before"].reasons  # verified after expiry
    for label in ("at", "after"):
        assert not outcomes[label].verified
        assert "does not verify with a trusted timestamp authority" in outcomes[label].reasons[0]


# -- a timestamp but no log entry: the trusted root decides -------------------------------------


def test_timestamp_without_a_log_entry_follows_the_trusted_root(
    keyless_material: SignatureMaterial, tsa: TimestampAuthority, sigstore_mock: SigstoreMock,
    rekor_v2: RekorTiles, tmp_path: Path,
) -> None:  # fmt: skip
    unlogged = make_bundle(dataclasses.replace(keyless_material, tlog_entries=()))
    with_logs = _root_with_tsa(tmp_path / "logs", sigstore_mock, rekor_v2, tsa)
    refused = verify_bundle(unlogged, KEYLESS, artifact=ARTIFACT, trusted_root=with_logs)
    assert not refused.verified and "lists transparency logs" in refused.reasons[0]

    tsa_only = _root_with_tsa(tmp_path / "tsa-only", sigstore_mock, rekor_v2, tsa, logs=False)
    assert not tsa_only.tlogs
    accepted = verify_bundle(unlogged, KEYLESS, artifact=ARTIFACT, trusted_root=tsa_only)
    assert accepted.verified, accepted.reasons
    assert accepted.signed_times == (_gen_time(keyless_material).isoformat(),)
    wrong_identity = KeylessAuthority(
        "ci", IdentityPolicy(issuer=DEFAULT_ISSUER, subject="https://github.com/evil/x")
    )
    assert not verify_bundle(
        unlogged, wrong_identity, artifact=ARTIFACT, trusted_root=tsa_only
    ).verified

    bare = make_bundle(dataclasses.replace(keyless_material, tlog_entries=(), timestamps=()))
    nothing = verify_bundle(bare, KEYLESS, artifact=ARTIFACT, trusted_root=tsa_only)
    assert not nothing.verified and "neither a transparency-log entry nor" in nothing.reasons[0]


def test_key_based_timestamp_without_log_entry_needs_the_opt_out(
    tsa: TimestampAuthority, sigstore_mock: SigstoreMock, rekor_v2: RekorTiles, tmp_path: Path
) -> None:
    """cosign's rule for --key: the log is required unless --insecure-ignore-tlog, timestamp or not."""
    signer, material = _key_material_with_timestamp(tsa)
    authority = KeyAuthority("k", keys.public_key_pem(signer.public_key), tlog=TLOG_REQUIRED)
    root = _root_with_tsa(tmp_path / "root", sigstore_mock, rekor_v2, tsa)
    bundle = make_bundle(material)
    required = verify_bundle(bundle, authority, artifact=ARTIFACT, trusted_root=root)
    assert not required.verified and "no transparency-log entry" in required.reasons[0]
    authority = dataclasses.replace(authority, tlog=TLOG_IGNORED)
    ignored = verify_bundle(bundle, authority, artifact=ARTIFACT, trusted_root=root)
    assert ignored.verified and ignored.signed_times == (_gen_time(material).isoformat(),)
    # The timestamp still has to come from a TSA the root trusts.
    other = make_chain(tmp_path / "other")
    untrusted = _root_with_tsa(
        tmp_path / "untrusted", sigstore_mock, rekor_v2, TimestampAuthority("unused", other)
    )
    refused = verify_bundle(bundle, authority, artifact=ARTIFACT, trusted_root=untrusted)
    assert not refused.verified and "timestamp" in refused.reasons[0]


# -- a TSA that is down, slow or answers garbage -----------------------------------------------


class FakeTsa:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/timestamp"

    def start(self) -> FakeTsa:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fake.behaviour == "slow":
                    time.sleep(30)
                    return
                body = {"garbage": b"\x30\x03\x02\x01\x09 not a TimeStampResp", "refuses": b"nope"}[
                    fake.behaviour
                ]
                self.send_response(200 if fake.behaviour == "garbage" else 503)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = QuietHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def faulty_trust(
    request: pytest.FixtureRequest,
    sigstore_mock: SigstoreMock,
    tsa: TimestampAuthority,
    tmp_path: Path,
) -> Iterator[Trust]:
    behaviour = request.param
    fake = FakeTsa(behaviour).start() if behaviour != "down" else None
    url = fake.url if fake else f"http://127.0.0.1:{free_port()}/api/v1/timestamp"
    yield compose(
        tmp_path / "faulty", _base(sigstore_mock), fulcio_url=sigstore_mock.url,
        rekor=(sigstore_mock.url, 1), tsa_url=url, tsas=[tsa.authority_entry()],
    )  # fmt: skip
    if fake:
        fake.stop()


@pytest.mark.parametrize(
    ("faulty_trust", "cause"),
    [
        ("down", "Connection"),
        ("slow", "timed out"),
        ("garbage", "invalid response"),
        ("refuses", "503"),
    ],
    indirect=["faulty_trust"],
)
def test_tsa_faults_fail_signing_in_one_line_and_in_time(
    cli, registry, repo, push_image, sigstore_mock: SigstoreMock, faulty_trust: Trust, cause: str
) -> None:
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    began = time.monotonic()
    result = cli(
        "sign",
        ref,
        "--identity-token",
        sigstore_mock.token(),
        "--trust-config",
        str(faulty_trust.config),
    )
    assert time.monotonic() - began < 25  # sigstore-python's 5 s TSA timeout, well within bounds
    assert result.exit_code == 1
    assert result.stderr.startswith("attest: error: the timestamp authority of"), result.stderr
    assert cause in result.stderr and result.stderr.count("\n") == 1, result.stderr
    # Nothing stored: no signature without the timestamp the signing config asked for.
    identity = [
        "--certificate-identity",
        DEFAULT_SUBJECT,
        "--certificate-oidc-issuer",
        DEFAULT_ISSUER,
    ]
    assert cli("verify", ref, *identity, "--trusted-root", str(faulty_trust.root)).exit_code == 1


def test_digest_of_artifact_is_what_the_tsa_signed(keyless_material: SignatureMaterial) -> None:
    """The timestamp covers the signature (Sigstore's rule), not the artifact."""
    (raw,) = keyless_material.timestamps
    info = decode_timestamp_response(raw).tst_info
    assert info.message_imprint.message == hashlib.sha256(keyless_material.signature).digest()
