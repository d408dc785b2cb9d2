"""ClusterImagePolicies judge what the real cosign signed, through the real webhook.

cosign v3 signs images in the real docker-registry with a key (no log) and keylessly
(the local Sigstore: the mock's Fulcio and Rekor v1) and attests a custom predicate;
the webhook (gunicorn, TLS) is started on a configuration *directory* holding
ClusterImagePolicy documents as policy-controller users write them (key, keyless with
``trustRootRef``, attestation with a Rego policy, warn mode).  Deployments are then
reviewed over HTTPS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from admission.testing.helpers import TlsFiles, deployment, make_tls, review
from admission.testing.webhook import Webhook, start_webhook
from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT, SigstoreMock
from attest.testing.images import simple_image
from tests.peers.conftest import Cosign
from tests.support.peers import peer_binary
from tests.support.trust import Trust

REPO = "peers-cip"
CUSTOM_REGO = """package sigstore
default isCompliant = false
isCompliant {
  input.predicateType == "https://cosign.sigstore.dev/attestation/v1"
  input.predicate.Data == "foobar e2e test"
}
"""


@dataclass
class World:
    hook: Webhook
    images: dict[str, str]


def _cip(name: str, glob: str, authority: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy.sigstore.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {"images": [{"glob": glob}], "authorities": [authority], **spec},
    }


@pytest.fixture(scope="module")
def world(
    registry,
    sigstore_mock: SigstoreMock,
    trust_v1: Trust,
    trust_v2: Trust,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    work = tmp_path_factory.mktemp("peers-cip")
    home = work / "cosign-home"
    home.mkdir()
    cosign = Cosign(peer_binary("cosign"), home)
    cosign.ok("generate-key-pair", "--output-key-prefix", "release")
    key = str(home / "release.key")
    predicate = work / "custom.txt"
    predicate.write_text("foobar e2e test")
    wrong = work / "wrong.txt"
    wrong.write_text("something else")
    token = work / "token"
    token.write_text(sigstore_mock.token(lifetime=3600))
    client = RegistryClient(registry.address, options=RegistryOptions(timeout=60))

    def push(name: str) -> str:
        store = RegistryRepository(client, f"{REPO}/{name}")
        built = simple_image(work, marker=name).build(work / f"b-{name.replace('/', '-')}")
        return f"{registry.address}/{REPO}/{name}@{built.push(store, 'v1').digest}"

    unlogged = ["--key", key, "--use-signing-config=false", "--tlog-upload=false"]
    keyless = ["--identity-token", str(token), "--signing-config", str(trust_v1.signing),
               "--trusted-root", str(trust_v1.root)]  # fmt: skip
    images = {name: push(name) for name in ("key/app", "key/unsigned", "keyless/app",
                                             "attested/good", "attested/wrong", "warn/app",
                                             "logged/v1", "logged/v2", "logged/unlogged")}  # fmt: skip
    cosign.ok("sign", *unlogged, "-y", images["key/app"])
    cosign.ok("sign", *keyless, "-y", images["keyless/app"])
    cosign.ok("sign", *keyless, "-y", images["warn/app"])
    cosign.ok("sign", *unlogged, "-y", images["logged/unlogged"])
    for name, trust in (("logged/v1", trust_v1), ("logged/v2", trust_v2)):
        cosign.ok("sign", "--key", key, "--signing-config", str(trust.signing),
                  "--trusted-root", str(trust.root), "-y", images[name])  # fmt: skip
    for name, content in (("attested/good", predicate), ("attested/wrong", wrong)):
        cosign.ok("attest", *unlogged, "--type", "custom", "--predicate", str(content), "-y",
                  images[name])  # fmt: skip

    config = work / "config"
    (config / "trustroots").mkdir(parents=True)
    (config / "trustroots" / "local-sigstore.json").write_bytes(trust_v1.root.read_bytes())
    (config / "trustroots" / "rekor-v2-tsa.json").write_bytes(trust_v2.root.read_bytes())
    (config / "secrets" / "release-key").mkdir(parents=True)
    (config / "secrets" / "release-key" / "cosign.pub").write_bytes(
        (home / "release.pub").read_bytes()
    )
    base = f"{registry.address}/{REPO}"
    identity = {"issuer": DEFAULT_ISSUER, "subject": DEFAULT_SUBJECT}
    documents = [
        _cip("key", f"{base}/key/**", {"key": {"secretRef": {"name": "release-key"}}}),
        _cip(
            "keyless",
            f"{base}/keyless/**",
            {
                "keyless": {
                    "url": "http://fulcio.local",
                    "identities": [identity],
                    "trustRootRef": "local-sigstore",
                },
                "ctlog": {"url": "http://rekor.local", "trustRootRef": "local-sigstore"},
            },
        ),
        _cip(
            "attested",
            f"{base}/attested/**",
            {
                "key": {"secretRef": {"name": "release-key"}},
                "attestations": [
                    {
                        "name": "custom",
                        "predicateType": "custom",
                        "policy": {"type": "rego", "data": CUSTOM_REGO},
                    }
                ],
            },
        ),
        _cip(
            "warned",
            f"{base}/warn/**",
            {
                "keyless": {
                    "identities": [{"issuer": DEFAULT_ISSUER, "subject": "someone-else"}],
                    "trustRootRef": "local-sigstore",
                }
            },
            mode="warn",
        ),
    ]
    documents.append(
        _cip(
            "logged",
            f"{base}/logged/**",
            {
                "key": {"secretRef": {"name": "release-key"}},
                "ctlog": {"url": "http://rekor.local", "trustRootRef": "rekor-v2-tsa"},
                "rfc3161timestamp": {"trustRootRef": "rekor-v2-tsa"},
            },
        )
    )
    (config / "policies.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    tls: TlsFiles = make_tls(work / "tls")
    hook = start_webhook(config, tls, work)
    yield World(hook, images)
    hook.stop()
    client.close()


def _answer(world: World, name: str) -> dict[str, Any]:
    status, body = world.hook.validate(review(deployment(world.images[name]), uid="cip"))
    assert status == 200, body
    return body["response"]


@pytest.mark.parametrize(
    "name", ["key/app", "keyless/app", "attested/good", "logged/v1", "logged/v2"]
)
def test_cosign_signed_images_pass_their_cip(world: World, name: str) -> None:
    answer = _answer(world, name)
    assert answer["allowed"] is True, answer
    assert not answer.get("warnings"), answer


def test_unsigned_image_fails_the_key_cip(world: World) -> None:
    answer = _answer(world, "key/unsigned")
    assert answer["allowed"] is False
    assert (
        "ClusterImagePolicy key: authority authority-0: no signature verified"
        in (answer["status"]["message"])
    )


def test_attestation_failing_its_rego_policy_is_denied(world: World) -> None:
    answer = _answer(world, "attested/wrong")
    assert answer["allowed"] is False
    assert "attestation custom: isCompliant is not true" in answer["status"]["message"]


def test_warn_mode_cip_admits_with_a_warning(world: World) -> None:
    answer = _answer(world, "warn/app")
    assert answer["allowed"] is True
    [warning] = answer["warnings"]
    assert warning.startswith("warn mode (ClusterImagePolicy warned): ")
    assert "no signature verified by this authority" in warning


def test_ctlog_requires_a_log_entry(world: World) -> None:
    answer = _answer(world, "logged/unlogged")
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "ClusterImagePolicy logged: authority authority-0: no signature verified" in message
    assert "no transparency-log entry" in message
