"""End to end: images signed in the real registry (key-based and keyless from the local
Sigstore), provenance and SBOM attached, AdmissionReviews sent over HTTPS to gunicorn."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from admission.testing.helpers import deployment, key_policy, review, sign_image, write_config
from admission.testing.world import REPO, World
from attest.signing.keyless import KeylessSigner
from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT
from tests.support.faultproxy import FaultProxy


def answer(hook: Any, *images: str, uid: str = "e2e") -> dict[str, Any]:
    status, body = hook.validate(review(deployment(*images), uid=uid))
    assert status == 200, body
    assert body["response"]["uid"] == uid
    return body["response"]


def test_signed_images_admitted_unsigned_denied(world: World, webhook, tmp_path: Path) -> None:
    hook = webhook(world.config(tmp_path / "c.yaml"))
    images = world.images  # type: ignore[attr-defined]
    assert answer(hook, images["good"]) == {"uid": "e2e", "allowed": True}

    denied = answer(hook, images["unsigned"])
    assert denied["allowed"] is False and denied["status"]["code"] == 403
    assert denied["status"]["message"] == (
        f"{images['unsigned']}: no trusted signature: 0 of 1 required authorities of policy apps "
        f"verified it (no signature found); {images['unsigned']}: no verified SLSA provenance attestation"
    )

    other = answer(hook, images["other"])["status"]["message"]
    assert other.startswith(f"{images['other']}: no trusted signature: 0 of 1")
    assert "apps-key" in other  # the reason names the key that did not verify it

    noprov = answer(hook, images["noprov"])["status"]["message"]
    assert noprov == f"{images['noprov']}: no verified SLSA provenance attestation"

    evil = answer(hook, images["evil"])["status"]["message"]
    assert "not from an allowed builder (builder https://evil.example/builder" in evil

    warned = answer(hook, images["nosbom"])
    assert warned["allowed"] is True
    assert warned["warnings"] == [
        f"{images['nosbom']}: no verified SBOM attestation (CycloneDX or SPDX)"
    ]

    mixed = answer(hook, images["good"], images["unsigned"], images["nosbom"])
    assert mixed["allowed"] is False
    assert mixed["status"]["message"].startswith(f"{images['unsigned']}: no trusted signature")
    assert images["good"] not in mixed["status"]["message"]


def test_vectors_over_https(world: World, webhook, tmp_path: Path) -> None:
    from tests.admission.test_workloads_review import REVIEW_FILES

    hook = webhook(world.config(tmp_path / "c.yaml"))
    for path in REVIEW_FILES:
        status, body = hook.validate(path.read_bytes())
        assert body["kind"] == "AdmissionReview", path.name
        if path.name in ("21_broken_admission_request.json", "25_null_request.json"):
            assert status == 400 and body["error"].startswith("bad AdmissionReview: "), path.name
        else:
            assert (
                status == 200
                and body["response"]["uid"] == json.loads(path.read_text())["request"]["uid"]
            )
    assert hook.process.poll() is None  # no worker crash took the server down
    status, body = hook.validate(b"x" * (4 * 1024 * 1024))
    assert status == 413 and "larger than" in body["error"]
    assert hook.get("/healthz").json() == {"status": "ok"}


def test_key_rotation_reloads_and_never_reuses_old_results(
    world: World, webhook, tmp_path: Path
) -> None:
    config = world.config(tmp_path / "c.yaml")
    hook = webhook(config)
    images = world.images  # type: ignore[attr-defined]
    assert answer(hook, images["good"])["allowed"] is True
    ready = hook.get("/readyz").json()
    world.other_key.write(world.workdir / "rotated.pub")
    write_config(
        config, [key_policy("apps", [f"127.0.0.1:*/{REPO}/*"], world.workdir / "rotated.pub")]
    )
    future = time.time() + 5
    os.utime(config, (future, future))
    deadline = time.monotonic() + 10
    while hook.get("/readyz").json()["trustFingerprint"] == ready["trustFingerprint"]:
        assert time.monotonic() < deadline, "config was not reloaded"
        time.sleep(0.2)
    assert (
        answer(hook, images["good"])["allowed"] is False
    )  # verified under the old key: not reused
    assert answer(hook, images["other"])["allowed"] is True
    config.write_text("imagePolicies: [")
    os.utime(config, (future + 5, future + 5))
    deadline = time.monotonic() + 10
    while not hook.get("/readyz").json()["configError"]:
        assert time.monotonic() < deadline, "broken config was not reported"
        time.sleep(0.2)
    assert answer(hook, images["other"])["allowed"] is True  # still the last good config


def test_registry_hang_times_out_and_registry_errors_deny(
    world: World, webhook, tmp_path: Path
) -> None:
    proxy = FaultProxy(world.registry.port).start()
    try:
        config = world.config(tmp_path / "c.yaml", deadlineSeconds=1.5)
        hook = webhook(config)
        name = f"{proxy.address}/{REPO}/good:v1"
        assert answer(hook, name)["allowed"] is True  # through the proxy, undisturbed
        proxy.hang_seconds = 5
        began = time.monotonic()
        timed_out = answer(hook, f"{proxy.address}/{REPO}/nosbom:v1", uid="slow")
        assert time.monotonic() - began < 4
        assert timed_out["allowed"] is False
        assert "timed out" in timed_out["status"]["message"]
        proxy.hang_seconds = 0
        proxy.fail_next(1, 403)
        refused = answer(hook, f"{proxy.address}/{REPO}/noprov:v1", uid="refused")
        assert refused["allowed"] is False
        assert "access denied by registry" in refused["status"]["message"]
        assert "HTTP 403" in refused["status"]["message"]
    finally:
        proxy.stop()


def test_keyless_signatures(world: World, webhook, tmp_path: Path, sigstore_mock) -> None:
    reference = world.push("keyless")
    with KeylessSigner(
        identity_token=sigstore_mock.token(), trust_config=sigstore_mock.trust_config
    ) as signer:
        sign_image(world.store("keyless"), reference, signer)

    def keyless_policy(subject: str) -> dict[str, Any]:
        return {
            "name": "ci",
            "images": [f"127.0.0.1:*/{REPO}/keyless"],
            "authorities": [
                {
                    "name": "ci-identity",
                    "keyless": {
                        "issuer": DEFAULT_ISSUER,
                        "subjectRegExp": subject,
                        "trustedRoot": sigstore_mock.trusted_root,
                    },
                }
            ],
            "parameters": {
                "allowedBuilders": ["https://ci.example.com/*"],
                "allowedSources": ["github.com/acme/*"],
            },
        }

    import re

    good = write_config(tmp_path / "good.yaml", [keyless_policy(re.escape(DEFAULT_SUBJECT))])
    hook = webhook(good)
    assert answer(hook, reference) == {"uid": "e2e", "allowed": True}
    wrong = write_config(tmp_path / "wrong.yaml", [keyless_policy("someone-else@example.com")])
    denied = answer(webhook(wrong), reference)
    assert denied["allowed"] is False
    assert denied["status"]["message"].startswith(f"{reference}: no trusted signature: 0 of 1")
