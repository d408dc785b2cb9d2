"""Transparency logs for key-based signatures, as cosign has them, against real Rekors.

attest logs ``--key`` signatures in Rekor by default (``--tlog-upload=false`` opts out)
and key-based verification requires a verified entry that records this very signature
(``--insecure-ignore-tlog`` opts out).  The logs are the real Rekor v2 (rekor-tiles)
and the mock's Rekor v1.  The attacks — entry removed, forged, copied from another
signature, from a log the root does not trust — are refused by default and accepted
only when the log is ignored.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from admission.config import parse_config
from admission.errors import ConfigError
from attest.errors import SigningError
from attest.oci.access import resolve_image
from attest.oci.layout import LayoutStore
from attest.oci.reference import parse_target
from attest.signing import keys
from attest.signing.authority import (
    TLOG_IF_PRESENT,
    TLOG_IGNORED,
    TLOG_REQUIRED,
    KeyAuthority,
    TlogMode,
    VerificationPolicy,
)
from attest.signing.bundle import SignatureMaterial
from attest.signing.rekor import RekorTarget, rekor_target
from attest.signing.signer import KeySigner
from attest.signing.storage import attach_attestation, attach_signature
from attest.signing.tlog import TlogEntry
from attest.signing.trust import PUBLIC_GOOD, load_trusted_root
from attest.testing import QuietHTTPServer, SigstoreMock, free_port
from attest.testing.images import simple_image
from attest.verify import verify_image
from tests.peers.conftest import ENV, KeyPair
from tests.support.rekor import RekorTiles
from tests.support.trust import Trust, compose

# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[tuple[str, LayoutStore, Any]]:
    path = tmp_path / "layout"
    store = LayoutStore(str(path), create=True)
    simple_image(tmp_path).build(tmp_path / "build").push(store, "v1")
    reference = f"oci:{path}:v1"
    yield reference, store, resolve_image(store, parse_target(reference))  # type: ignore[arg-type]
    store.close()


@pytest.fixture(scope="module")
def only_v2_root(
    sigstore_mock: SigstoreMock, rekor_v2: RekorTiles, tmp_path_factory: pytest.TempPathFactory
) -> Trust:
    """A root that trusts the Rekor v2 only: the mock's Rekor v1 is an untrusted log for it."""
    base = json.loads(Path(sigstore_mock.trusted_root).read_text())
    return compose(
        tmp_path_factory.mktemp("only-v2"),
        base,
        fulcio_url=sigstore_mock.url,
        rekor=(rekor_v2.url, 2),
        tlogs=[rekor_v2.tlog_entry()],
    )


def _signer(trust: Trust, log: str, sigstore_mock: SigstoreMock, rekor_v2: RekorTiles) -> KeySigner:
    root = load_trusted_root(str(trust.root))
    target = {
        "v1": RekorTarget(sigstore_mock.url, 1, root, "test"),
        "v2": RekorTarget(rekor_v2.url, 2, root, "test"),
    }[log]
    return KeySigner(ec.generate_private_key(ec.SECP256R1()), rekor=target)


def _policy(signer: KeySigner, trust: Trust, tlog: TlogMode = TLOG_REQUIRED) -> VerificationPolicy:
    pem = keys.public_key_pem(signer.public_key)
    return VerificationPolicy((KeyAuthority("k", pem, trusted_root=str(trust.root), tlog=tlog),))


class Tampering:
    """A signer that logs honestly, then hands storage a doctored log entry."""

    def __init__(
        self, inner: KeySigner, change: Callable[[SignatureMaterial], SignatureMaterial]
    ) -> None:
        self.inner = inner
        self.change = change
        self.description = "tampering " + inner.description

    def sign(self, data: bytes) -> SignatureMaterial:
        return self.change(self.inner.sign(data))

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        return self.change(self.inner.sign_dsse(payload_type, payload))


def _flip(data: bytes) -> bytes:
    raw = bytearray(data)
    raw[len(raw) // 2] ^= 0x01
    return bytes(raw)


def _removed(material: SignatureMaterial) -> SignatureMaterial:
    return dataclasses.replace(material, tlog_entries=())


def _forged_body(material: SignatureMaterial) -> SignatureMaterial:
    """The body says what the attacker wants; proof, checkpoint and SET no longer match it."""
    (entry,) = material.tlog_entries
    body = json.loads(entry.body)
    body["spec"]["forged"] = True
    forged = dataclasses.replace(entry, body=json.dumps(body).encode())
    return dataclasses.replace(material, tlog_entries=(forged,))


def _forged_proof(material: SignatureMaterial) -> SignatureMaterial:
    (entry,) = material.tlog_entries
    assert entry.inclusion_proof is not None
    proof = dataclasses.replace(
        entry.inclusion_proof, root_hash=_flip(entry.inclusion_proof.root_hash)
    )
    return dataclasses.replace(
        material, tlog_entries=(dataclasses.replace(entry, inclusion_proof=proof),)
    )


# -- signing logs by default, verifying requires the entry --------------------------------------


@pytest.mark.parametrize(("log", "storage"), [("v1", "bundle"), ("v1", "legacy"), ("v2", "bundle")])
def test_key_signatures_are_logged_and_verified_against_the_log(
    layout, trust_v1: Trust, sigstore_mock, rekor_v2, log: str, storage: str
) -> None:
    reference, store, image = layout
    signer = _signer(trust_v1, log, sigstore_mock, rekor_v2)
    attach_signature(store, image, signer, legacy=storage == "legacy")
    store.close()
    result = verify_image(reference, _policy(signer, trust_v1), attestations=False)
    assert result.verified, result.to_dict()
    (check,) = result.signatures
    expected = (
        {"v1": "dsse/0.0.1", "v2": "hashedrekord/0.0.2"}[log]
        if storage == "bundle"
        else "hashedrekord/0.0.1"
    )
    assert check.tlog is not None and check.tlog["kind"] == expected


def test_legacy_attestations_are_logged_as_dsse(
    layout, trust_v1: Trust, sigstore_mock, rekor_v2
) -> None:
    reference, store, image = layout
    signer = _signer(trust_v1, "v1", sigstore_mock, rekor_v2)
    statement = json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "x", "digest": {"sha256": image.digest.split(":")[1]}}],
        "predicateType": "https://example.com/p/v1", "predicate": {},
    }).encode()  # fmt: skip
    attach_attestation(store, image, statement, signer, legacy=True)
    store.close()
    result = verify_image(reference, _policy(signer, trust_v1))
    (attestation,) = result.attestations
    assert attestation.verified and attestation.tlog["kind"] == "dsse/0.0.1", attestation.reasons


def test_legacy_storage_refuses_an_entry_without_a_set(
    layout, trust_v1: Trust, sigstore_mock, rekor_v2
) -> None:
    """cosign's .sig annotation holds a v1 SET; a v2 entry is refused, never silently dropped."""
    _, store, image = layout
    signer = _signer(trust_v1, "v2", sigstore_mock, rekor_v2)
    with pytest.raises(SigningError, match="needs a Rekor v1 entry"):
        attach_signature(store, image, signer, legacy=True)


ATTACKS = {
    "removed": _removed,
    "forged-body": _forged_body,
    "forged-proof": _forged_proof,
}
CASES = [
    (attack, log, storage)
    for attack in sorted(ATTACKS)
    for log, storage in (("v1", "bundle"), ("v1", "legacy"), ("v2", "bundle"))
    # cosign's legacy annotation carries the SET, not the inclusion proof
    if not (storage == "legacy" and attack == "forged-proof")
]


@pytest.mark.parametrize(("attack", "log", "storage"), CASES)
def test_doctored_log_entries_are_refused_unless_the_log_is_ignored(
    layout, trust_v1: Trust, sigstore_mock, rekor_v2, attack: str, log: str, storage: str
) -> None:
    reference, store, image = layout
    signer = _signer(trust_v1, log, sigstore_mock, rekor_v2)
    attach_signature(store, image, Tampering(signer, ATTACKS[attack]), legacy=storage == "legacy")  # type: ignore[arg-type]
    store.close()
    refused = verify_image(reference, _policy(signer, trust_v1), attestations=False)
    assert not refused.verified
    (check,) = refused.signatures
    reason = " ".join(check.reasons)
    if attack == "removed":
        assert "no transparency-log entry" in reason
    else:
        assert "transparency log" in reason, reason
    ignored = verify_image(reference, _policy(signer, trust_v1, TLOG_IGNORED), attestations=False)
    assert ignored.verified, ignored.to_dict()
    # Not required but present: a doctored entry still fails; a missing one is fine.
    present = verify_image(
        reference, _policy(signer, trust_v1, TLOG_IF_PRESENT), attestations=False
    )
    assert present.verified is (attack == "removed")


@pytest.mark.parametrize(("log", "storage"), [("v1", "bundle"), ("v1", "legacy"), ("v2", "bundle")])
def test_an_entry_for_another_signature_is_refused(
    layout, trust_v1: Trust, sigstore_mock, rekor_v2, log: str, storage: str
) -> None:
    """A genuine entry, logged for another artifact by the same key, does not vouch for this one."""
    reference, store, image = layout
    signer = _signer(trust_v1, log, sigstore_mock, rekor_v2)
    legacy = storage == "legacy"
    other = (
        signer.sign(b"another artifact")
        if legacy
        else signer.sign_dsse("application/vnd.in-toto+json", b'{"other": true}')
    )
    swap = Tampering(signer, lambda m: dataclasses.replace(m, tlog_entries=other.tlog_entries))
    attach_signature(store, image, swap, legacy=legacy)  # type: ignore[arg-type]
    store.close()
    refused = verify_image(reference, _policy(signer, trust_v1), attestations=False)
    (check,) = refused.signatures
    assert not refused.verified and "records a different" in " ".join(check.reasons), check.reasons
    assert verify_image(
        reference, _policy(signer, trust_v1, TLOG_IGNORED), attestations=False
    ).verified


def test_an_entry_from_an_untrusted_log_is_refused(
    layout, trust_v1: Trust, only_v2_root: Trust, sigstore_mock, rekor_v2
) -> None:
    reference, store, image = layout
    signer = _signer(trust_v1, "v1", sigstore_mock, rekor_v2)  # logged in the mock's Rekor v1
    attach_signature(store, image, signer)
    store.close()
    refused = verify_image(reference, _policy(signer, only_v2_root), attestations=False)
    (check,) = refused.signatures
    assert not refused.verified and "not in trusted root" in " ".join(check.reasons)
    assert verify_image(reference, _policy(signer, trust_v1), attestations=False).verified


def test_the_default_key_authority_requires_the_log(layout, trust_v1: Trust) -> None:
    """KeyAuthority's default is cosign's: no entry, no verification."""
    reference, store, image = layout
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()))  # logs nowhere
    attach_signature(store, image, signer)
    store.close()
    authority = KeyAuthority("k", keys.public_key_pem(signer.public_key))
    assert authority.tlog == TLOG_REQUIRED
    result = verify_image(reference, VerificationPolicy((authority,)), attestations=False)
    assert not result.verified and "no transparency-log entry" in result.signatures[0].reasons[0]


# -- the CLI: cosign's flags -----------------------------------------------------------------


def test_cli_logs_by_default_and_verifies_like_cosign(
    cli, registry, repo, push_image, attest_keys, trust_v2: Trust, only_v2_root: Trust
) -> None:
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    mine: KeyPair = attest_keys()
    signed = cli(
        "sign", ref, "--key", mine.private, "--trust-config", str(trust_v2.config), env=ENV
    )
    assert signed.exit_code == 0 and "logged in Rekor v2" in signed.stderr, signed.stderr
    assert (
        cli("verify", ref, "--key", mine.public, "--trusted-root", str(only_v2_root.root)).exit_code
        == 0
    )
    # The public-good root does not know this log: refused unless the log is ignored.
    untrusted = cli("verify", ref, "--key", mine.public)
    assert (
        untrusted.exit_code == 1 and "not in trusted root sigstore-public-good" in untrusted.stdout
    )
    assert cli("verify", ref, "--key", mine.public, "--insecure-ignore-tlog").exit_code == 0
    assert cli("verify", ref, "--key", mine.public, "--insecure-ignore-tlog=true").exit_code == 0
    assert cli("verify", ref, "--key", mine.public, "--insecure-ignore-tlog=false").exit_code == 1


def test_cli_opt_out_signs_without_a_log(cli, registry, repo, push_image, attest_keys) -> None:
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    mine: KeyPair = attest_keys()
    signed = cli("sign", ref, "--key", mine.private, "--tlog-upload=false", "-o", "json", env=ENV)
    assert signed.exit_code == 0, signed.stderr
    assert signed.json()["signer"] == f"key {mine.private}"
    refused = cli("verify", ref, "--key", mine.public, "-o", "json")
    assert refused.exit_code == 1
    assert "no transparency-log entry" in refused.json()["signatures"][0]["reasons"][0]
    assert cli("verify", ref, "--key", mine.public, "--insecure-ignore-tlog").exit_code == 0


def test_the_default_log_is_sigstores_public_rekor() -> None:
    """No --rekor-url, no --trust-config: cosign's default, the public-good Rekor (offline lookup)."""
    target = rekor_target(rekor_url=None, trust=None)
    assert (target.url, target.api_version, target.source) == (
        "https://rekor.sigstore.dev",
        1,
        "Sigstore public good",
    )
    assert target.root is not None and target.root.name == PUBLIC_GOOD
    explicit = rekor_target(rekor_url="http://127.0.0.1:1", trust=None)
    assert (explicit.url, explicit.api_version, explicit.root) == ("http://127.0.0.1:1", 1, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--tlog-upload=false", "--rekor-url", "http://127.0.0.1:9"),
            "--tlog-upload=false signs without a log",
        ),
        (("--rekor-url", "ftp://x"), "is not an http(s) URL"),
        (("--tlog-upload=maybe",), "is not a valid boolean"),
    ],
)
def test_cli_tlog_flag_mistakes_are_one_line(
    cli, attest_keys, args: tuple[str, ...], message: str
) -> None:
    mine: KeyPair = attest_keys()
    result = cli("sign", "oci:/nonexistent:v1", "--key", mine.private, *args, env=ENV)
    assert result.exit_code == 2 and message in result.stderr, result.stderr


def test_keyless_rejects_the_key_only_tlog_flags(cli, sigstore_mock) -> None:
    keyless = cli(
        "sign",
        "oci:/nonexistent:v1",
        "--identity-token",
        sigstore_mock.token(),
        "--tlog-upload=false",
    )
    assert keyless.exit_code == 2 and "are for --key" in keyless.stderr
    verify = cli(
        "verify",
        "oci:/nonexistent:v1",
        "--certificate-identity",
        "a",
        "--certificate-oidc-issuer",
        "b",
        "--insecure-ignore-tlog",
    )
    assert verify.exit_code == 2 and "--insecure-ignore-tlog is for --key" in verify.stderr


# -- a Rekor that is down, slow, lying or answering garbage ------------------------------------


class FakeRekor:
    """A loopback HTTP server answering POSTs with a scripted behaviour."""

    def __init__(self, behaviour: str, canned: bytes = b"") -> None:
        self.behaviour = behaviour
        self.canned = canned
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeRekor:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fake.behaviour == "slow":
                    time.sleep(30)
                    return
                if fake.behaviour == "trickle":
                    self.send_response(201)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    for _ in range(60):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.5)
                    return
                status, body = {
                    "garbage": (201, b"\x00\xffnot json at all"),
                    "wrong-shape": (201, b'{"a": 1, "b": 2}'),
                    "refuses": (500, b'{"code": 500, "message": "trillian down"}'),
                    "lies": (201, fake.canned),
                }[fake.behaviour]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
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


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("behaviour", "message", "code"),
    # exit 4 (as for a registry): the log could not be reached or failed, a retry may help;
    # exit 1: it answered, with something that is not a log entry
    [
        ("down", "is unreachable", 4),
        ("slow", "did not answer within 3 s", 4),
        ("trickle", "did not answer within 3 s", 4),
        ("garbage", "something other than JSON", 1),
        ("wrong-shape", "something other than one log entry", 1),
        ("refuses", "refused the entry: HTTP 500", 4),
    ],
)
def test_rekor_faults_are_one_line_errors_within_the_deadline(
    cli, registry, repo, push_image, attest_keys, behaviour: str, message: str, code: int
) -> None:
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    fake = FakeRekor(behaviour).start() if behaviour != "down" else None
    url = fake.url if fake else f"http://127.0.0.1:{_closed_port()}"
    mine: KeyPair = attest_keys()
    began = time.monotonic()
    try:
        result = cli(
            "sign", ref, "--key", mine.private, "--rekor-url", url, "--timeout", "3", env=ENV
        )
    finally:
        if fake:
            fake.stop()
    assert time.monotonic() - began < 20  # a generous bound: the 3 s deadline holds, no hang
    assert result.exit_code == code
    assert result.stderr.startswith("attest: error:") and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    # Nothing was stored: a signature that claims no log never reaches the registry.
    assert cli("verify", ref, "--key", mine.public, "--insecure-ignore-tlog").exit_code == 1


def test_a_rekor_answering_with_another_entry_is_refused_at_signing(
    cli, registry, repo, push_image, attest_keys, sigstore_mock, trust_v1: Trust
) -> None:
    """A log that answers with a genuine entry for someone else's signature is caught."""
    other = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    entry = RekorTarget(sigstore_mock.url, 1, None, "test")
    from attest.signing.rekor import log_material

    logged = log_material(other.sign(b"someone else"), entry, other.public_key)
    (genuine,) = logged.tlog_entries
    canned = json.dumps({"uuid": _rekor_v1_json(genuine)}).encode()
    fake = FakeRekor("lies", canned).start()
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    mine: KeyPair = attest_keys()
    try:
        result = cli(
            "sign", ref, "--key", mine.private, "--legacy", "--rekor-url", fake.url, env=ENV
        )
    finally:
        fake.stop()
    assert result.exit_code == 1 and "does not check out" in result.stderr, result.stderr


def _rekor_v1_json(entry: TlogEntry) -> dict[str, Any]:
    proof = entry.inclusion_proof
    assert proof is not None and entry.signed_entry_timestamp is not None
    return {
        "body": base64.b64encode(entry.body).decode(),
        "integratedTime": entry.integrated_time,
        "logID": entry.log_id.hex(),
        "logIndex": entry.log_index,
        "verification": {
            "inclusionProof": {
                "logIndex": proof.log_index,
                "rootHash": proof.root_hash.hex(),
                "treeSize": proof.tree_size,
                "hashes": [h.hex() for h in proof.hashes],
                "checkpoint": proof.checkpoint,
            },
            "signedEntryTimestamp": base64.b64encode(entry.signed_entry_timestamp).decode(),
        },
    }


# -- admission: policy-controller's ctlog ---------------------------------------------------


def _config(tmp_path: Path, authority: str) -> str:
    """An admission config whose one authority is ``authority`` (``KEY``: a public key file)."""
    key = tmp_path / "k.pub"
    key.write_bytes(keys.public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
    lines = "\n".join(f"        {line}" for line in authority.replace("KEY", str(key)).splitlines())
    return f"""
imagePolicies:
  - name: p
    images: ["registry.test/**"]
    authorities:
      - name: a
{lines}
"""


def test_admission_ctlog_requires_the_log_and_its_absence_keeps_the_old_meaning(
    tmp_path: Path, trust_v1: Trust
) -> None:
    where = str(tmp_path / "c.yaml")
    plain = parse_config(_config(tmp_path, "key: {path: KEY}"), where)
    (authority,) = plain.policies[0].verification.authorities
    assert isinstance(authority, KeyAuthority) and authority.tlog == TLOG_IF_PRESENT

    public_good = parse_config(_config(tmp_path, "key: {path: KEY}\nctlog: {}"), where)
    (authority,) = public_good.policies[0].verification.authorities
    assert authority.tlog == TLOG_REQUIRED and authority.trusted_root is None

    rooted = parse_config(
        _config(tmp_path, f"key: {{path: KEY}}\nctlog: {{trustedRoot: {trust_v1.root}}}"), where
    )
    (authority,) = rooted.policies[0].verification.authorities
    assert authority.tlog == TLOG_REQUIRED and authority.trusted_root == str(trust_v1.root)
    assert str(trust_v1.root) in rooted.files  # a rotated log key reloads the config
    assert rooted.trust_fingerprint != plain.trust_fingerprint


@pytest.mark.parametrize(
    ("authority", "message"),
    [
        ("keyless: {issuer: i, subject: s}\nctlog: {}", "ctlog is for key authorities"),
        ("key: {path: KEY}\nctlog: {url: https://rekor.sigstore.dev}", "unknown field 'url'"),
        ("key: {path: KEY}\nctlog: {trustedRoot: missing.json}", "no such file"),
    ],
)
def test_admission_ctlog_mistakes_are_config_errors(
    tmp_path: Path, authority: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(tmp_path, authority), str(tmp_path / "c.yaml"))


def test_pipeline_with_a_bare_rekor_url_needs_the_root_to_read_back(
    cli, registry, repo, push_image, attest_keys
) -> None:
    """What the pipeline logged is read back requiring the entries, so it needs that log's key."""
    ref = f"{registry.address}/{repo.repository}:v1"
    push_image(repo, "v1")
    mine: KeyPair = attest_keys()
    result = cli(
        "pipeline", ref, "--key", mine.private, "--rekor-url", "http://127.0.0.1:9",
        "--builder-id", "https://ci.example.com/b", env=ENV,
    )  # fmt: skip
    assert result.exit_code == 2 and "needs --trusted-root" in result.stderr, result.stderr


def test_pipeline_logs_and_reads_back_with_the_log(
    cli, registry, repo, push_image, attest_keys, trust_v2: Trust, only_v2_root: Trust
) -> None:
    """attest pipeline --key through a trust config: every write logged in Rekor v2 and verified."""
    ref = f"{registry.address}/{repo.repository}:v1"
    push_image(repo, "v1")
    mine: KeyPair = attest_keys()
    result = cli(
        "pipeline", ref, "--key", mine.private, "--trust-config", str(trust_v2.config),
        "--builder-id", "https://ci.example.com/b", env=ENV,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["verification"]["verified"] and "logged in Rekor v2" in summary["signer"]
    report = cli(
        "verify-attestation", ref, "--key", mine.public, "--type", "cyclonedx",
        "--trusted-root", str(only_v2_root.root), "-o", "json",
    )  # fmt: skip
    assert report.exit_code == 0, report.stdout
    (attestation,) = report.json()["attestations"]
    assert attestation["signatureVerified"]
