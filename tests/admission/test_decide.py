"""The decision flow with an injected verifier: outcomes, fail-closed rules, cache, deadlines."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from admission.decide import Admission
from admission.review import parse_review
from admission.testing.helpers import (
    POD_KIND,
    deployment,
    fake_verification,
    key_policy,
    new_key,
    pod_spec,
    review,
    write_config,
)
from attest.errors import DeadlineExceeded, RegistryError
from attest.verify import ImageVerification

REGISTRY = "registry.example.com"
GOOD = f"{REGISTRY}/apps/good@sha256:{'1' * 64}"
BAD = f"{REGISTRY}/apps/bad@sha256:{'2' * 64}"
SLOW = f"{REGISTRY}/apps/slow@sha256:{'3' * 64}"
BROKEN = f"{REGISTRY}/apps/broken@sha256:{'4' * 64}"
AUDIT = f"{REGISTRY}/audit/tool@sha256:{'5' * 64}"


class FakeVerifier:
    """Answers like verify_image from a table; counts calls; can be slow or fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, target: Any, policy: Any, **kwargs: Any) -> ImageVerification:
        name, digest = target.name, target.digest
        with self.lock:
            self.calls.append(f"{name}@{digest}")
        assert kwargs["attestations"] is True and kwargs["deadline"] is not None
        if "slow" in name:
            time.sleep(3)
            raise DeadlineExceeded("registry did not answer before the deadline")
        if "broken" in name:
            raise RegistryError(
                "registry.example.com answered HTTP 503 Service Unavailable: maintenance"
            )
        return fake_verification(str(target), digest, verified="bad" not in name)


@pytest.fixture
def setup(tmp_path: Path):
    key_file = new_key().write(tmp_path / "k.pub")
    config = write_config(
        tmp_path / "c.yaml",
        [
            key_policy("apps", [f"{REGISTRY}/apps/*"], key_file),
            key_policy("audit", [f"{REGISTRY}/audit/*"], key_file, mode="warn"),
        ],
        deadlineSeconds=1,
        namespaces={"exclude": ["kube-system"]},
    )
    verifier = FakeVerifier()
    service = Admission(str(config), verifier=verifier, reload_interval=0)
    yield service, verifier, Seen(), config
    service.close()


class Seen(list[Any]):
    """A recorder that keeps every decision it is handed."""

    def record(self, decision: Any) -> bool:
        self.append(decision)
        return True


def decide(service: Admission, document: dict[str, Any], recorder: Seen | None = None):
    return service.decide(parse_review(document), recorder=recorder)


def test_signed_image_with_provenance_is_admitted(setup) -> None:
    service, _verifier, seen, _ = setup
    decision = decide(service, review(deployment(GOOD)), seen)
    assert decision.result == "allowed" and decision.allowed, decision.messages
    (image,) = decision.images
    assert (image.digest, image.policy, image.outcome) == (GOOD.split("@")[1], "apps", "verified")
    assert decision.input["images"][0]["attestations"][0]["provenance"]["builderId"] == (
        "https://ci.example.com/builder"
    )
    assert decision.bundle_hash.startswith("sha256:") and decision.engine.startswith("regopy")
    assert set(decision.latency) == {"resolve", "verify", "evaluate", "total"}
    assert seen == [decision]
    document = decision.to_dict()
    assert document["images"][0]["verification"]["verified"] is True
    assert document["time"].endswith("+00:00") and document["result"] == "allowed"


def test_unsigned_image_is_denied_with_the_reason(setup) -> None:
    service, *_ = setup
    decision = decide(service, review(deployment(GOOD, BAD)))
    assert decision.result == "denied" and not decision.allowed
    assert set(decision.messages) == {
        f"{BAD}: no trusted signature: 0 of 1 required authorities of policy apps verified it "
        "(signature does not verify with key k)",
        f"{BAD}: no verified SLSA provenance attestation",
    }


def test_cache_and_rego_every_request(setup) -> None:
    service, verifier, *_ = setup
    first = decide(service, review(deployment(GOOD, BAD)))
    second = decide(service, review(deployment(GOOD, BAD)))
    assert sorted(verifier.calls) == sorted(
        [f"{REGISTRY}/apps/good@{GOOD.split('@')[1]}"]
        + [f"{REGISTRY}/apps/bad@{BAD.split('@')[1]}"] * 2
    )  # failures are not cached
    assert [i.cached for i in second.images] == [True, False]
    assert second.messages == first.messages


def test_pinned_images_are_looked_up_in_the_cache_once_per_request(setup) -> None:
    service, verifier, *_ = setup
    decide(service, review(deployment(GOOD, BAD)))
    assert (service.cache.stats.hits, service.cache.stats.misses) == (0, 2)
    decide(service, review(deployment(GOOD, BAD)))
    assert (service.cache.stats.hits, service.cache.stats.misses) == (1, 3)
    assert len(verifier.calls) == 3


def test_timeout_is_its_own_outcome_and_denies(setup) -> None:
    service, *_ = setup
    began = time.monotonic()
    decision = decide(service, review(deployment(GOOD, SLOW)))
    assert time.monotonic() - began < 2.5  # the 1 s deadline, not the verifier's 3 s
    assert decision.result == "timed_out" and not decision.allowed
    assert decision.messages == (f"{SLOW}: verification timed out after 1s",)
    assert [i.outcome for i in decision.images] == ["verified", "timed_out"]
    single = decide(service, review(deployment(SLOW)))
    assert single.result == "timed_out" and "timed out" in single.message


def test_registry_errors_deny_with_the_registry_message(setup) -> None:
    service, *_ = setup
    decision = decide(service, review(deployment(BROKEN)))
    assert decision.result == "denied"
    assert decision.messages == (
        f"{BROKEN}: registry.example.com answered HTTP 503 Service Unavailable: maintenance",
    )


def test_warn_mode_turns_denials_into_warnings(setup) -> None:
    service, *_ = setup
    audit_bad = AUDIT.replace("tool", "bad")
    decision = decide(service, review(deployment(GOOD, audit_bad)))
    assert decision.result == "warned" and decision.allowed
    assert any(w.startswith("warn mode (audit): ") and audit_bad in w for w in decision.warnings)


def test_unmatched_invalid_and_scope(setup, tmp_path: Path) -> None:
    service, verifier, *_ = setup
    decision = decide(service, review(deployment("docker.io/library/nginx:1.25", "Bad/Ref:x")))
    assert decision.result == "denied"
    assert (
        "docker.io/library/nginx:1.25: matches no image policy (unmatched images are denied)"
        in decision.messages
    )
    assert any(m.startswith("Bad/Ref:x: invalid image reference:") for m in decision.messages)
    assert verifier.calls == []
    for document, why in [
        (review(deployment(BAD), operation="DELETE"), "operation DELETE is not checked"),
        (review(deployment(BAD), operation="CONNECT"), "operation CONNECT is not checked"),
        (
            review(
                {"kind": "Role"},
                kind={"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "Role"},
            ),
            "kind Role is out of scope (it runs no containers)",
        ),
        (review(deployment(BAD), namespace="kube-system"), "namespace kube-system is not enforced"),
    ]:
        skipped = decide(service, document)
        assert (skipped.result, skipped.messages, skipped.checked) == ("allowed", (why,), False)


def test_update_says_when_a_denied_image_was_unchanged(setup) -> None:
    service, *_ = setup
    new = deployment(BAD, GOOD)
    new["metadata"]["labels"]["edited"] = "yes"
    decision = decide(service, review(new, operation="UPDATE", old=deployment(BAD)))
    assert decision.result == "denied"
    assert decision.messages[0].endswith("(image unchanged by this update)")
    assert [i.unchanged for i in decision.images] == [True, False]
    fresh = decide(service, review(deployment(BAD), operation="UPDATE", old=deployment(GOOD)))
    assert not fresh.messages[0].endswith("(image unchanged by this update)")
    deleting = deployment(BAD)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    gone = decide(service, review(deleting, operation="UPDATE", old=deployment(BAD)))
    assert gone.result == "allowed" and not gone.checked


def test_ephemeral_containers_subresource(setup) -> None:
    service, *_ = setup
    pod = {
        "metadata": {"name": "p"},
        "spec": {**pod_spec(GOOD), "ephemeralContainers": [{"name": "dbg", "image": BAD}]},
    }
    old = {"metadata": {"name": "p"}, "spec": pod_spec(GOOD)}
    decision = decide(
        service,
        review(pod, kind=POD_KIND, operation="UPDATE", old=old, sub_resource="ephemeralcontainers"),
    )
    assert decision.result == "denied" and decision.messages[0].startswith(
        f"{BAD}: no trusted signature"
    )
    assert decision.input["request"]["subResource"] == "ephemeralcontainers"


def test_bad_workload_shape_is_a_400_error(setup) -> None:
    service, *_ = setup
    decision = decide(service, review({"metadata": {}}, kind=POD_KIND))
    assert (decision.result, decision.code) == ("error", 400)
    assert decision.messages == ("bad request: Pod object has no spec object",)


def test_policy_runtime_error_denies(setup, tmp_path: Path) -> None:
    service, _, _, config = setup
    bundle = tmp_path / "policy"
    bundle.mkdir()
    (bundle / "p.rego").write_text(
        "package attest.admission\nimport rego.v1\ndeny contains x if { x := 1 / (count(input.images) - 1) }\n"
    )
    text = config.read_text() + f"policy:\n  bundle: {bundle}\n"
    config.write_text(text)
    decision = decide(service, review(deployment(GOOD)))
    assert decision.result == "error" and not decision.allowed
    assert decision.messages[0].startswith("policy error: ")


def test_broken_config_reload_keeps_serving(setup) -> None:
    service, _, _, config = setup
    before = decide(service, review(deployment(GOOD)))
    config.write_text("imagePolicies: {")
    after = decide(service, review(deployment(GOOD)))
    assert after.result == before.result == "allowed"
    assert "not valid YAML" in (service.watcher.last_error or "")


def test_parallel_distinct_images(setup) -> None:
    service, verifier, *_ = setup
    images = [f"{REGISTRY}/apps/good{i}@sha256:{str(i) * 64}" for i in range(1, 6)]
    decision = decide(service, review(deployment(*images, images[0])))
    assert decision.result == "allowed"
    assert len(decision.images) == 5 and len(verifier.calls) == 5


def test_every_reason_is_recorded_with_its_code(setup) -> None:
    service, *_ = setup
    decision = decide(service, review(deployment(GOOD, BAD)))
    untrusted, provenance = sorted(decision.messages, key=lambda m: "SLSA" in m)
    (no_sbom,) = decision.warnings
    assert decision.to_dict()["codes"] == {
        untrusted: "untrusted",  # the webhook's own denial
        provenance: "provenance-missing",  # the default bundle's
        no_sbom: "sbom-missing",
    }
    audit_bad = AUDIT.replace("tool", "bad")
    warned = decide(service, review(deployment(GOOD, audit_bad)))
    assert warned.result == "warned" and warned.warnings
    assert {warned.codes[warning] for warning in warned.warnings} == {
        "untrusted",
        "provenance-missing",
        "sbom-missing",
    }
