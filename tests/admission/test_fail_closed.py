"""Enforcement that no Rego bundle can undo, and provenance that is present but invalid
(issue 10, findings 2 and 3), through the real webhook (gunicorn, TLS) and registry.

The attacks: a bundle with only ``warn`` rules (or an empty ``deny``) admitted an
unsigned image and one without a required attestation; a trusted-signed SLSA v1
attestation whose predicate is ``{"foo": "bar"}`` reached Rego as a provenance
without a builder, no deny rule fired and the image was admitted; a v0.2 predicate
whose ``builder`` is a string crashed the decision (HTTP 500, nothing recorded).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.decide import Admission
from admission.decisions.recorder import DecisionRecorder
from admission.review import parse_review
from admission.testing.helpers import (
    BUILDER,
    TlsFiles,
    attach_statement,
    deployment,
    key_policy,
    recorded_documents,
    review,
    sign_image,
    write_config,
)
from admission.testing.webhook import Webhook, start_webhook
from admission.testing.world import REPO, World
from attest.attestations.predicates import COSIGN_VULN, SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1
from attest.verify import ImageVerification

WARN_ONLY = """package attest.admission

import rego.v1

warn contains msg if {
	some img in input.images
	msg := sprintf("%s: looked at by the relaxed policy", [img.reference])
}
"""
EMPTY_DENY = """package attest.admission

import rego.v1

deny := set()
"""
GOOD_V02 = {
    "builder": {"id": BUILDER},
    "buildType": "https://ci.example.com/build@v1",
    "invocation": {
        "configSource": {
            "uri": "git+https://github.com/acme/app@refs/heads/main",
            "digest": {"sha1": "a" * 40},
            "entryPoint": ".ci/build.yaml",
        }
    },
    "metadata": {"buildStartedOn": "2026-01-01T00:00:00Z", "completeness": {"materials": True}},
    "materials": [{"uri": "git+https://github.com/acme/app", "digest": {"sha1": "a" * 40}}],
}


@pytest.fixture(scope="module")
def images(world: World) -> dict[str, str]:
    """The world's images plus trusted-signed ones with odd provenance, and an unsigned
    image for a warn-mode policy."""
    made = dict(world.images)  # type: ignore[attr-defined]

    def signed(name: str, *statements: dict[str, Any], provenance: bool = False) -> str:
        reference = world.push(name)
        sign_image(world.store(name), reference, world.key.signer, provenance=provenance)
        for statement in statements:
            attach_statement(world.store(name), reference, world.key.signer, statement)
        return reference

    made["foo-v1"] = signed(
        "foo-v1", {"predicateType": SLSA_PROVENANCE_V1, "predicate": {"foo": "bar"}}
    )
    made["string-builder-v02"] = signed(
        "string-builder-v02",
        {
            "predicateType": SLSA_PROVENANCE_V02,
            "predicate": {"builder": BUILDER, "buildType": "https://ci.example.com/build@v1"},
        },
    )
    made["good-v02"] = signed(
        "good-v02", {"predicateType": SLSA_PROVENANCE_V02, "predicate": GOOD_V02}
    )
    made["good-and-bad"] = signed(
        "good-and-bad",
        {"predicateType": SLSA_PROVENANCE_V1, "predicate": {"buildDefinition": "x"}},
        provenance=True,
    )
    made["audit-unsigned"] = world.push("audit-unsigned")
    return made


@pytest.fixture
def serve(tls: TlsFiles, tmp_path: Path) -> Iterator[Any]:
    started: list[Webhook] = []

    def start(config: Path) -> tuple[Webhook, str]:
        db = str(tmp_path / f"decisions-{len(started)}.db")
        hook = start_webhook(config, tls, tmp_path, extra=("--db", db))
        started.append(hook)
        return hook, db

    yield start
    for hook in started:
        hook.stop()


def config(world: World, path: Path, bundle: Path | None = None) -> Path:
    base = f"127.0.0.1:*/{REPO}"
    policies = [
        key_policy("needs-vuln", [f"{base}/nosbom"], world.key_file, attestations=["vuln"]),
        key_policy("audit", [f"{base}/audit-*"], world.key_file, mode="warn"),
        key_policy("apps", [f"{base}/*"], world.key_file),
    ]
    extra = {"policy": {"bundle": str(bundle)}} if bundle else {}
    return write_config(path, policies, **extra)


def answer(hook: Webhook, image: str, uid: str) -> dict[str, Any]:
    status, body = hook.validate(review(deployment(image), uid=uid))
    assert status == 200, body
    return body["response"]


@pytest.mark.parametrize("bundle_text", [WARN_ONLY, EMPTY_DENY], ids=["warn-only", "empty-deny"])
def test_no_bundle_can_admit_what_the_image_policy_refuses(
    world: World, images: dict[str, str], serve: Any, tmp_path: Path, bundle_text: str
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "relaxed.rego").write_text(bundle_text)
    hook, db = serve(config(world, tmp_path / "c.yaml", bundle))
    other_key = "0 of 1 required authorities of policy apps verified it"

    def denied(name: str, message: str) -> None:
        response = answer(hook, images[name], name)
        assert response["allowed"] is False, (name, response)
        assert response["status"]["code"] == 403
        assert f"{images[name]}: {message}" in response["status"]["message"], name

    denied("unsigned", f"no trusted signature: {other_key} (no signature found)")
    denied("other", f"no trusted signature: {other_key}")
    denied(
        "nosbom",
        f"no verified attestation of type {COSIGN_VULN} (required by policy needs-vuln)",
    )
    denied("foo-v1", "invalid provenance: ")
    assert answer(hook, images["good"], "good")["allowed"] is True
    audit = answer(hook, images["audit-unsigned"], "audit")
    assert audit["allowed"] is True  # warn mode: the webhook's own denial is a warning
    assert f"warn mode (audit): {images['audit-unsigned']}: no trusted signature" in (
        " ".join(audit["warnings"])
    )
    results = {d["uid"]: d["result"] for d in recorded_documents(db, 6)}
    assert results == {
        "unsigned": "denied",
        "other": "denied",
        "nosbom": "denied",
        "foo-v1": "denied",
        "good": "warned" if bundle_text == WARN_ONLY else "allowed",
        "audit": "warned",
    }


def test_invalid_provenance_is_denied_and_recorded(
    world: World, images: dict[str, str], serve: Any, tmp_path: Path
) -> None:
    hook, db = serve(config(world, tmp_path / "c.yaml"))
    foo = answer(hook, images["foo-v1"], "foo-v1")
    assert foo["allowed"] is False and foo["status"]["message"] == (
        f"{images['foo-v1']}: invalid provenance: SLSA v1 provenance: buildDefinition is required"
    )
    string_builder = answer(hook, images["string-builder-v02"], "string-builder-v02")
    assert string_builder["allowed"] is False
    assert string_builder["status"]["message"] == (
        f"{images['string-builder-v02']}: invalid provenance: SLSA v0.2 provenance: "
        "builder must be a JSON object"
    )
    both = answer(hook, images["good-and-bad"], "good-and-bad")
    assert both["allowed"] is False  # a valid provenance beside it does not excuse it
    assert (
        "invalid provenance: SLSA v1 provenance: buildDefinition must be a JSON object"
        in (both["status"]["message"])
    )
    assert answer(hook, images["good-v02"], "good-v02") == {"uid": "good-v02", "allowed": True}

    records = {d["uid"]: d for d in recorded_documents(db, 4)}
    for uid in ("foo-v1", "string-builder-v02", "good-and-bad"):
        record = records[uid]
        assert record["result"] == "denied"
        (image,) = record["images"]
        assert image["outcome"] == "invalid_provenance"
        assert image["error"].startswith("invalid provenance: ")
        (entry,) = record["input"]["images"]
        assert entry["outcome"] == "invalid_provenance"
        invalid = [a for a in entry["attestations"] if "provenanceError" in a]
        assert invalid and all(a["provenance"] is None and a["verified"] for a in invalid)
    (good,) = records["good-v02"]["input"]["images"]
    (facts,) = [a["provenance"] for a in good["attestations"] if a["provenance"]]
    assert facts["builderId"] == BUILDER
    assert facts["sourceRepository"] == "github.com/acme/app"
    assert facts["sourceRef"] == "refs/heads/main"


class _Broken:
    """A verifier whose result breaks building the policy input (signatures is None)."""

    def __call__(self, target: Any, policy: Any, **kwargs: Any) -> ImageVerification:
        return ImageVerification(
            reference=str(target),
            digest=target.digest,
            signatures=None,  # type: ignore[arg-type]
            attestations=(),
            satisfied_authorities=("k",),
            verified=True,
            errors=(),
        )


def test_an_internal_error_is_a_recorded_denial(world: World, tmp_path: Path) -> None:
    """Whatever crashes while deciding, the answer is a denial and the record exists."""
    db = str(tmp_path / "decisions.db")
    recorder = DecisionRecorder(db, replica="crash").start()
    reference = f"{world.images['good']}@sha256:{'9' * 64}"  # type: ignore[attr-defined]
    admission = Admission(str(config(world, tmp_path / "c.yaml")), verifier=_Broken())
    try:
        decision = admission.decide(
            parse_review(review(deployment(reference), uid="crash")), recorder=recorder
        )
    finally:
        admission.close()
    assert not decision.allowed and decision.result == "error" and decision.code == 500
    assert decision.message.startswith("internal error while deciding: TypeError: ")
    assert recorder.flush(30)
    recorder.close()
    (record,) = recorded_documents(db, 1)
    assert (record["uid"], record["result"], record["allowed"]) == ("crash", "error", False)
    assert record["messages"] == [decision.message]
    assert record["trustFingerprint"] and record["bundleHash"]
