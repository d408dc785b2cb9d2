"""The policy result cache (admission.policy_cache) with the real Admission runtime and regopy.

Attack first: a cached answer reused for anything but the exact same input, bundle and
trust material would let one request be judged by another's answer (an unsigned image
admitted because a signed one with the same name was).  Each test first shows the
cache does hit for the exact same input (else "never reused" would prove nothing),
then that every change misses and gets its own answer.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.decide import Admission
from admission.metrics import metrics, observe_decision
from admission.policy_cache import PolicyCache
from admission.review import parse_review
from admission.testing.helpers import deployment, fake_verification, key_policy, new_key, review
from admission.testing.helpers import write_config as write_admission_config
from admission.verdict import Decision
from attest.policy import load_bundle, make_engine
from attest.policy.purity import nondeterministic_calls
from attest.verify import ImageVerification

REGISTRY = "registry.example.com"
IMAGE = f"{REGISTRY}/apps/web@sha256:{'1' * 64}"
OTHER = f"{REGISTRY}/apps/api@sha256:{'2' * 64}"
# Denies unless the image's first signature was made by signer "k"; names the signer and
# digest, so a reused answer for another signer or digest shows in the messages.
POLICY = """package attest.admission
import rego.v1

deny contains msg if {
  some img in input.images
  sig := img.signatures[0]
  sig.signer.keyRef != "k"
  msg := sprintf("%s signed by %s", [img.digest, sig.signer.keyRef])
}

warn contains msg if {
  some img in input.images
  msg := sprintf("seen %s", [img.digest])
}
"""
STRICTER = (
    POLICY
    + """
deny contains "frozen" if { count(input.images) > 0 }
"""
)


def verifier(target: Any, policy: Any, **kwargs: Any) -> ImageVerification:
    return fake_verification(str(target), target.digest)


def write_config(tmp_path: Path, key_file: Path, **top: Any) -> Path:
    return write_admission_config(
        tmp_path / "c.yaml",
        [key_policy("apps", [f"{REGISTRY}/apps/*"], key_file)],
        policy={"bundle": str(tmp_path / "bundle")},
        **top,
    )


def write_bundle(tmp_path: Path, text: str) -> None:
    (tmp_path / "bundle").mkdir(exist_ok=True)
    target = tmp_path / "bundle" / "policy.rego"
    target.write_text(text)
    later = os.stat(target).st_mtime_ns + 10_000_000  # a reload even within one tick
    os.utime(target, ns=(later, later))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Admission]:
    write_bundle(tmp_path, POLICY)
    write_config(tmp_path, new_key().write(tmp_path / "k.pub"))
    admission = Admission(str(tmp_path / "c.yaml"), verifier=verifier, reload_interval=0)
    yield admission
    admission.close()


def decide(service: Admission, *images: str) -> Decision:
    return service.decide(parse_review(review(deployment(*images))))


def again(service: Admission, document: dict[str, Any]) -> tuple[Any, str]:
    """Evaluate ``document`` as decide() would, through the current runtime's cache."""
    loaded = service.watcher.current()
    return loaded.runtime.policy_cache.evaluate(
        loaded.runtime.engine, document, loaded.config.package, loaded.config.trust_fingerprint
    )


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every scalar in a JSON document (and of every empty container)."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path


def changed(document: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    """A copy of ``document`` with the value at ``path`` changed (keeping JSON types sane)."""
    mutated = json.loads(json.dumps(document))  # no shared parts: one change is one change
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    old = parent[path[-1]]
    if isinstance(old, bool):
        new: Any = not old
    elif isinstance(old, int | float):
        new = old + 1
    elif isinstance(old, str):
        new = old + "x"
    elif old is None:
        new = "x"
    else:  # an empty list or object
        new = [0] if isinstance(old, list) else {"x": 0}
    parent[path[-1]] = new
    return mutated


def test_decide_records_whether_the_answer_came_from_the_cache(service: Admission) -> None:
    first = decide(service, IMAGE)
    assert first.policy_cache == "miss" and first.to_dict()["policyCache"] == "miss"
    assert first.warnings == (f"seen sha256:{'1' * 64}",)
    # the input carries the request uid and the time: a new request is a new key
    second = decide(service, IMAGE)
    assert second.policy_cache == "miss"
    assert first.input is not None and second.input is not None
    assert first.input["time"] != second.input["time"]
    counter = metrics().policy_cache.labels(result="miss")
    counted = counter._value.get()
    observe_decision(second)
    assert counter._value.get() == counted + 1
    # the exact input of a decision, evaluated again, is answered from the cache
    result, outcome = again(service, second.input)
    assert outcome == "hit" and result.warn == second.warnings


def test_any_changed_field_of_the_input_is_a_new_evaluation(service: Admission) -> None:
    decision = decide(service, IMAGE, OTHER)
    document = decision.input
    assert document is not None
    assert again(service, document)[1] == "hit"
    paths = list(leaves(document))
    assert len(paths) > 40  # the whole input: request, time, images, signatures, policy
    for path in paths:
        _result, outcome = again(service, changed(document, path))
        assert outcome == "miss", f"input{list(path)} changed, yet the cached answer came back"


def test_one_signer_or_digest_changed_gets_its_own_answer(service: Admission) -> None:
    document = decide(service, IMAGE).input
    assert document is not None
    assert again(service, document)[0].deny == ()
    forged = copy.deepcopy(document)
    forged["images"][0]["signatures"][0]["signer"]["keyRef"] = "mallory"
    result, outcome = again(service, forged)
    assert outcome == "miss" and result.deny == (f"sha256:{'1' * 64} signed by mallory",)
    moved = copy.deepcopy(document)
    moved["images"][0]["digest"] = f"sha256:{'3' * 64}"
    result, outcome = again(service, moved)
    assert outcome == "miss" and result.warn == (f"seen sha256:{'3' * 64}",)


def test_a_hot_reloaded_bundle_never_reuses_an_answer(tmp_path: Path, service: Admission) -> None:
    before = decide(service, IMAGE)
    assert before.allowed and before.input is not None
    assert again(service, before.input)[1] == "hit"
    write_bundle(tmp_path, STRICTER)
    after = decide(service, IMAGE)
    assert after.result == "denied" and "frozen" in after.messages
    result, outcome = again(service, before.input)  # the very input that was cached
    assert outcome == "miss" and result.deny == ("frozen",)


def test_a_changed_trust_configuration_never_reuses_an_answer(
    tmp_path: Path, service: Admission
) -> None:
    before = decide(service, IMAGE)
    assert before.input is not None and again(service, before.input)[1] == "hit"
    old_trust = service.watcher.current().config.trust_fingerprint
    write_config(tmp_path, new_key().write(tmp_path / "k2.pub"))
    os.utime(tmp_path / "c.yaml", ns=(1, os.stat(tmp_path / "c.yaml").st_mtime_ns + 10**7))
    assert service.watcher.current().config.trust_fingerprint != old_trust
    assert again(service, before.input)[1] == "miss"


def test_the_key_holds_the_bundle_hash_and_the_trust_fingerprint(write_policy: Any) -> None:
    """One cache shared by two bundles and two trust fingerprints (the runtime never shares
    one, but the key must not depend on that): nothing is reused across them."""
    lenient = make_engine(load_bundle(str(write_policy(POLICY))))
    strict = make_engine(load_bundle(str(write_policy(STRICTER))))
    cache = PolicyCache(100)
    document = {"images": [{"digest": "sha256:a", "signatures": [{"signer": {"keyRef": "k"}}]}]}
    assert cache.evaluate(lenient, document, "attest.admission", "trust-a")[1] == "miss"
    assert cache.evaluate(lenient, document, "attest.admission", "trust-a")[1] == "hit"
    result, outcome = cache.evaluate(strict, document, "attest.admission", "trust-a")
    assert outcome == "miss" and result.deny == ("frozen",)
    result, outcome = cache.evaluate(lenient, document, "attest.admission", "trust-b")
    assert outcome == "miss" and result.deny == ()


def test_the_cache_is_bounded_and_can_be_turned_off(write_policy: Any) -> None:
    engine = make_engine(load_bundle(str(write_policy(POLICY))))
    cache = PolicyCache(2)
    documents = [{"images": [], "n": n} for n in range(3)]
    for document in documents:
        assert cache.evaluate(engine, document, "attest.admission", "t")[1] == "miss"
    assert len(cache) == 2
    assert cache.evaluate(engine, documents[0], "attest.admission", "t")[1] == "miss"  # evicted
    off = PolicyCache(0)
    for _ in range(2):
        assert off.evaluate(engine, documents[0], "attest.admission", "t")[1] == "off"
    assert len(off) == 0


def test_policy_max_entries_is_read_from_the_config(tmp_path: Path) -> None:
    write_bundle(tmp_path, POLICY)
    write_config(tmp_path, new_key().write(tmp_path / "k.pub"), cache={"policyMaxEntries": 0})
    admission = Admission(str(tmp_path / "c.yaml"), verifier=verifier, reload_interval=0)
    try:
        assert admission.watcher.current().runtime.policy_cache.max_entries == 0
        decision = decide(admission, IMAGE)
        assert decision.policy_cache == "off" and decision.input is not None
        assert again(admission, decision.input)[1] == "off"
    finally:
        admission.close()


@pytest.mark.parametrize(
    "call",
    [
        "time.now_ns()",
        'rand.intn("x", 10)',
        'uuid.rfc4122("x")',
        "opa.runtime().env.HOME",
    ],
)
def test_a_bundle_calling_a_nondeterministic_builtin_is_never_cached(
    write_policy: Any, call: str
) -> None:
    text = POLICY + f'\nwarn contains sprintf("%v", [x]) if {{ x := {call} }}\n'
    engine = make_engine(load_bundle(str(write_policy(text))))
    assert engine.cacheable is False
    cache = PolicyCache(100)
    document: dict[str, Any] = {"images": []}
    for _ in range(3):
        assert cache.evaluate(engine, document, "attest.admission", "t")[1] == "off"
    assert len(cache) == 0


def test_http_send_makes_a_bundle_uncacheable(write_policy: Any) -> None:
    """regopy refuses http.send (OPA-only), and a remote OPA is never cached; the scan still
    names it, for any engine that would run it."""
    text = POLICY + '\nwarn contains "up" if { http.send({"method": "GET", "url": "x"}) }\n'
    line = text.count("\n", 0, text.index("http.send")) + 1
    assert nondeterministic_calls(load_bundle(str(write_policy(text)))) == (
        f"policy.rego:{line}: http.send",
    )


def test_a_mention_in_a_comment_or_string_does_not_disable_the_cache(write_policy: Any) -> None:
    text = POLICY + (
        "\n# time.now_ns() would make this uncacheable\n"
        'warn contains "never call time.now_ns() or rand.intn(x, 1)" if input.never\n'
    )
    engine = make_engine(load_bundle(str(write_policy(text))))
    assert engine.cacheable is True
    cache = PolicyCache(100)
    assert cache.evaluate(engine, {"images": []}, "attest.admission", "t")[1] == "miss"
    assert cache.evaluate(engine, {"images": []}, "attest.admission", "t")[1] == "hit"


@pytest.fixture
def write_policy(tmp_path: Path) -> Any:
    counter = iter(range(100))

    def write(text: str) -> Path:
        root = tmp_path / f"b{next(counter)}"
        root.mkdir()
        (root / "policy.rego").write_text(text)
        return root

    return write
