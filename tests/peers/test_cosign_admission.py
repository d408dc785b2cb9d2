"""The webhook (gunicorn, TLS) admits what the real cosign signed and attested.

Images are signed and given SLSA provenance by cosign v3 — key-based into the mock's
Rekor v1 or the real Rekor v2, without a log, or keylessly through the local Fulcio —
and a Deployment of each is reviewed over HTTPS.  Key authorities with ``ctlog``
require a verified log entry, as policy-controller's do; without it they keep their
old meaning (an entry is checked only when present).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from admission.testing.helpers import (
    PARAMETERS,
    TlsFiles,
    deployment,
    make_tls,
    review,
    write_config,
)
from admission.testing.webhook import Webhook, start_webhook
from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT, SigstoreMock
from attest.testing.images import simple_image
from tests.peers.conftest import Cosign
from tests.peers.test_cosign_interop import PROVENANCE
from tests.support.peers import peer_binary
from tests.support.trust import Trust

REPO = "peers-admission"


@dataclass
class World:
    hook: Webhook
    images: dict[str, str]


def _answer(hook: Webhook, image: str) -> dict[str, Any]:
    status, body = hook.validate(review(deployment(image), uid="peers"))
    assert status == 200, body
    return body["response"]


@pytest.fixture(scope="module")
def world(
    registry, sigstore_mock: SigstoreMock, trust_v1: Trust, trust_v2: Trust,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:  # fmt: skip
    work = tmp_path_factory.mktemp("peers-admission")
    home = work / "cosign-home"
    home.mkdir()
    cosign = Cosign(peer_binary("cosign"), home)
    cosign.ok("generate-key-pair", "--output-key-prefix", "release")
    key, pub = str(home / "release.key"), str(home / "release.pub")
    predicate = work / "provenance.json"
    predicate.write_text(json.dumps(PROVENANCE))
    token = work / "token"
    token.write_text(sigstore_mock.token(lifetime=3600))
    client = RegistryClient(registry.address, options=RegistryOptions(timeout=60))

    def push(name: str) -> str:
        store = RegistryRepository(client, f"{REPO}/{name}")
        digest = (
            simple_image(work, marker=name)
            .build(work / f"b-{name.replace('/', '-')}")
            .push(store, "v1")
            .digest
        )
        return f"{registry.address}/{REPO}/{name}@{digest}"

    def sign_and_attest(ref: str, *how: str) -> None:
        cosign.ok("sign", *how, "-y", ref)
        cosign.ok(
            "attest", *how, "--type", "slsaprovenance1", "--predicate", str(predicate), "-y", ref
        )

    def logged(trust: Trust) -> list[str]:
        return [
            "--key",
            key,
            "--signing-config",
            str(trust.signing),
            "--trusted-root",
            str(trust.root),
        ]

    unlogged = ["--key", key, "--use-signing-config=false", "--tlog-upload=false"]
    images = {
        "logged-v1": push("logged/v1"),
        "logged-v2": push("logged/v2"),
        "logged-unlogged": push("logged/unlogged"),
        "plain-unlogged": push("plain/unlogged"),
        "keyless": push("keyless/app"),
        "unsigned": push("logged/unsigned"),
    }
    sign_and_attest(images["logged-v1"], *logged(trust_v1))
    sign_and_attest(images["logged-v2"], *logged(trust_v2))
    sign_and_attest(images["logged-unlogged"], *unlogged)
    sign_and_attest(images["plain-unlogged"], *unlogged)
    keyless = ["--identity-token", str(token), "--signing-config", str(trust_v1.signing),
               "--trusted-root", str(trust_v1.root)]  # fmt: skip
    sign_and_attest(images["keyless"], *keyless)

    def policy(name: str, authority: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "images": [f"{registry.address}/{REPO}/{name}/**"],
            "authorities": [{"name": f"{name}-authority", **authority}],
            "parameters": dict(PARAMETERS),
        }

    config = write_config(
        work / "admission.yaml",
        [
            policy("logged", {"key": {"path": pub}, "ctlog": {"trustedRoot": str(trust_v1.root)}}),
            policy("plain", {"key": {"path": pub}}),
            policy(
                "keyless",
                {
                    "keyless": {
                        "issuer": DEFAULT_ISSUER,
                        "subject": DEFAULT_SUBJECT,
                        "trustedRoot": str(trust_v1.root),
                    }
                },
            ),
        ],
    )
    tls: TlsFiles = make_tls(work / "tls")
    hook = start_webhook(config, tls, work)
    yield World(hook, images)
    hook.stop()
    client.close()


@pytest.mark.parametrize("name", ["logged-v1", "logged-v2", "plain-unlogged", "keyless"])
def test_webhook_admits_what_cosign_signed(world: World, name: str) -> None:
    answer = _answer(world.hook, world.images[name])
    assert answer["allowed"] is True, answer
    # Signed and given provenance; cosign attached no SBOM, which the policy only warns about.
    assert answer["warnings"] == [
        f"{world.images[name]}: no verified SBOM attestation (CycloneDX or SPDX)"
    ]


def test_ctlog_authority_denies_a_signature_without_a_log_entry(world: World) -> None:
    image = world.images["logged-unlogged"]
    answer = _answer(world.hook, image)
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert message.startswith(f"{image}: no trusted signature: 0 of 1 required authorities")
    assert "no transparency-log entry" in message


def test_unsigned_image_is_denied(world: World) -> None:
    answer = _answer(world.hook, world.images["unsigned"])
    assert answer["allowed"] is False and "no signature found" in answer["status"]["message"]
