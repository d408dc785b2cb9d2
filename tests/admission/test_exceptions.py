"""Exception documents and how they apply, without a server (fast: the mutants run these).

The same attacks as tests/web/test_exceptions.py, on the pure functions: signature,
expiry, namespace, image name and digest scope, what a denial may be excused for.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from admission.exceptions.apply import ImageFacts, apply_exceptions
from admission.exceptions.document import (
    ExceptionDocument,
    ExceptionFormatError,
    ImageScope,
    new_document,
    read_exception,
    sign_exception,
)
from admission.exceptions.settings import ExceptionSet
from admission.testing.helpers import Key, new_key
from admission.verdict import CODES, Judgement, Result
from admission.watcher import ConfigWatcher
from attest.policy import Finding
from attest.signing.authority import TLOG_IF_PRESENT, KeyAuthority
from tests.support.kubelet import Volume

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
APP = "ghcr.io/acme/app"
DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64


def authority(key: Key, name: str = "appsec") -> KeyAuthority:
    return KeyAuthority(name=name, public_key_pem=key.public_pem, tlog=TLOG_IF_PRESENT)


def signed(key: Key, **fields: Any) -> bytes:
    values: dict[str, Any] = {
        "namespace": "payments",
        "image": APP,
        "reason": "hotfix",
        "ticket": "INC-1",
        "expires": NOW + dt.timedelta(hours=2),
        "created": NOW - dt.timedelta(hours=1),
    }
    values.update(fields)
    return sign_exception(new_document(**values), key.signer)


def exception_set(key: Key, *bundles: bytes, trusted: Key | None = None) -> ExceptionSet:
    signers = (authority(trusted or key),)
    loaded = tuple(read_exception(b, f"e{i}.json", signers) for i, b in enumerate(bundles))
    return ExceptionSet("dir", signers, loaded)


def denial(reference: str, result: Result = "denied", *more: Finding) -> Judgement:
    message = f"{reference}: no trusted signature: 0 of 1 required authorities"
    return Judgement(result, (Finding(message, reference, CODES["untrusted"]), *more), (), 403)


def image(
    reference: str = f"{APP}:v1",
    name: str = APP,
    digest: str | None = DIGEST,
    outcome: str = "verified",
) -> ImageFacts:
    return ImageFacts(reference, name, digest, outcome)


def run(
    exceptions: ExceptionSet,
    answer: Judgement,
    images: list[ImageFacts],
    namespace: str = "payments",
    now: dt.datetime = NOW,
) -> Any:
    return apply_exceptions(answer, images, namespace, exceptions, now)


@pytest.mark.parametrize(
    ("glob", "name", "matches"),
    [
        ("GHCR.IO:443/acme/app", APP, True),
        ("ghcr.io/acme/app", "ghcr.io/acme/app-evil", False),
        ("ghcr.io/acme/app", "ghcr.io/acme/app/nested", False),
        ("ghcr.io/acme/app", "evil.io/acme/app", False),
        ("ghcr.io/acme/*", "ghcr.io/acme/x/y", False),
        ("nginx", "index.docker.io/library/nginx", True),
        ("docker.io/library/nginx", "index.docker.io/library/nginx", True),
        ("nginx", "ghcr.io/library/nginx", False),
        ("localhost:5000/team/app", "127.0.0.1:5000/team/app", False),
    ],
)
def test_image_scope_is_canonical_and_anchored(glob: str, name: str, matches: bool) -> None:
    assert (ImageScope.parse(glob).mismatch(name, DIGEST) is None) is matches


def test_digest_scope_rejects_another_digest() -> None:
    scope = ImageScope.parse(f"{APP}@{DIGEST}")
    assert scope.mismatch(APP, DIGEST) is None
    assert "it is for digest" in (scope.mismatch(APP, OTHER_DIGEST) or "")
    assert scope.mismatch(APP, None) is not None  # unresolved: never matches a digest scope
    assert ImageScope.parse(DIGEST).mismatch("any.io/thing", DIGEST) is None
    with pytest.raises(ExceptionFormatError):
        ImageScope.parse(f"{APP}@sha256:abc")


def test_a_valid_exception_admits_loudly() -> None:
    key = new_key()
    outcome = run(exception_set(key, signed(key)), denial(f"{APP}:v1"), [image()])
    assert outcome.result == "warned" and outcome.code == 200 and outcome.messages == ()
    assert outcome.warnings[0].startswith("EXCEPTION ")
    assert outcome.records[0]["applied"] is True and outcome.records[0]["signer"] == "appsec"


def test_untrusted_edited_and_unsigned_exceptions_do_nothing() -> None:
    key, intruder = new_key(), new_key()
    by_intruder = signed(intruder)
    edited = json.loads(signed(key, namespace="elsewhere"))
    statement = json.loads(base64.b64decode(edited["dsseEnvelope"]["payload"]))
    statement["predicate"]["namespace"] = "payments"
    statement["subject"][0]["digest"]["sha256"] = ExceptionDocument.from_predicate(
        statement["predicate"]
    ).digest()
    edited["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    document = new_document(
        namespace="payments", image=APP, reason="r", ticket="T", expires=NOW + dt.timedelta(hours=1)
    )
    unsigned = json.dumps({"predicate": document.to_predicate()}).encode()
    for bundle, words in (
        (by_intruder, "DSSE signature does not verify"),
        (json.dumps(edited).encode(), "DSSE signature does not verify"),
        (unsigned, "unsigned"),
    ):
        outcome = run(exception_set(key, bundle), denial(f"{APP}:v1"), [image()])
        assert outcome.result == "denied", words
        assert outcome.records[0]["category"] == "untrusted"
        assert words in outcome.records[0]["why"]


def test_expired_other_namespace_and_other_image_do_nothing() -> None:
    key = new_key()
    cases = [
        (signed(key, expires=NOW - dt.timedelta(seconds=1)), image(), "expired"),
        (signed(key, namespace="shop"), image(), "namespace"),
        (signed(key, image=f"{APP}@{DIGEST}"), image(digest=OTHER_DIGEST), "image"),
        (signed(key), image("ghcr.io/acme/app-evil:v1", "ghcr.io/acme/app-evil"), "image"),
    ]
    for bundle, facts, category in cases:
        outcome = run(exception_set(key, bundle), denial(facts.reference), [facts])
        assert outcome.result == "denied", category
        assert [r["category"] for r in outcome.records] == [category]


def test_timeouts_and_errors_only_when_covered() -> None:
    key = new_key()
    slow = image(digest=None, outcome="timed_out")
    timeout = denial(slow.reference, "timed_out")
    plain = run(exception_set(key, signed(key)), timeout, [slow])
    assert plain.result == "timed_out" and plain.records[0]["category"] == "not_covered"
    covered = run(exception_set(key, signed(key, covers=["timeout"])), timeout, [slow])
    assert covered.result == "warned"
    broken = image(outcome="error")
    error = run(
        exception_set(key, signed(key, covers=["timeout"])), denial(broken.reference), [broken]
    )
    assert error.result == "denied" and error.records[0]["category"] == "not_covered"
    policy_error = Judgement(
        "error", (Finding("policy error: boom", None, "policy-error"),), (), 500
    )
    assert run(exception_set(key, signed(key)), policy_error, [image()]).result == "error"
    assert (
        run(exception_set(key, signed(key, covers=["error"])), policy_error, [image()]).result
        == "warned"
    )
    malformed = Judgement("error", (Finding("bad request: x"),), (), 400)
    everything = signed(key, image="**", covers=["timeout", "error"])
    assert run(exception_set(key, everything), malformed, [image()]).result == "error"


def test_denials_it_does_not_name_stay() -> None:
    key = new_key()
    answer = denial(f"{APP}:v1", "denied", Finding("container web runs privileged"))
    outcome = run(exception_set(key, signed(key)), answer, [image()])
    assert outcome.result == "denied" and outcome.records[0]["category"] == "other_denials"
    # a finding names its image: the message's text does not make it about another one
    sneaky = Finding(f"{APP}:v1: no, ghcr.io/acme/db:v1 was checked", "ghcr.io/acme/db:v1")
    outcome = run(exception_set(key, signed(key)), denial(f"{APP}:v1", "denied", sneaky), [image()])
    assert outcome.result == "denied" and outcome.messages[-1] == sneaky.message
    other = image("ghcr.io/acme/db:v1", "ghcr.io/acme/db")
    both = denial(f"{APP}:v1", "denied", Finding("ghcr.io/acme/db:v1: no"))
    assert run(exception_set(key, signed(key)), both, [image(), other]).result == "denied"


def test_a_configmap_of_exceptions_is_followed_through_swaps(tmp_path: Path) -> None:
    """Added, replaced and removed exceptions (kubelet's ``..data`` swaps) are reloaded."""
    key = new_key()
    key.write(tmp_path / "appsec.pub")
    volume = Volume(tmp_path / "exceptions")
    volume.write({"a.json": signed(key, ident="exc-a")})
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "exceptions": {
                    "directory": str(volume.root),
                    "signers": [{"name": "appsec", "key": {"path": str(tmp_path / "appsec.pub")}}],
                }
            }
        )
    )
    watcher = ConfigWatcher(str(config), lambda _config: None, interval=0, settle=0)

    def loaded() -> list[tuple[str, bool]]:
        exceptions = watcher.current().config.exceptions
        assert exceptions is not None
        return [(e.ident, e.trusted) for e in exceptions.exceptions]

    assert loaded() == [("exc-a", True)]
    volume.write({"a.json": signed(key, ident="exc-a"), "b.json": signed(new_key(), ident="b")})
    assert loaded() == [("exc-a", True), ("b", False)]
    volume.write({})
    assert loaded() == []
    assert watcher.last_error is None


def test_cli_create_list_verify_and_bad_input(cli, tmp_path: Path) -> None:
    from attest.signing import keys

    pair = keys.generate_key_pair(b"pw")
    (tmp_path / "appsec.key").write_bytes(pair.private_pem)
    (tmp_path / "appsec.pub").write_bytes(pair.public_pem)
    env = {"ATTEST_PASSWORD": "pw"}
    common = ["--reason", "r", "--ticket", "T", "--key", str(tmp_path / "appsec.key")]
    folder = tmp_path / "exceptions"
    folder.mkdir()
    made = cli(
        "exception",
        "create",
        "--namespace",
        "payments",
        "--image",
        f"GHCR.IO:443/acme/app@{DIGEST}",
        "--expires",
        "2h",
        *common,
        "--tlog-upload=false",
        "-f",
        str(folder / "a.json"),
        env=env,
    )
    assert made.exit_code == 0, made.stderr
    listed = cli(
        "exception", "list", str(folder), "--key", str(tmp_path / "appsec.pub"), "-o", "json"
    )
    (row,) = listed.json()  # type: ignore[misc]
    assert row["status"] == "expiring" and row["image"] == f"{APP}@{DIGEST}"
    assert row["id"] == made.stdout.strip()
    bundle = json.loads((folder / "a.json").read_text())
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(b"x" * 64).decode()
    (folder / "b.json").write_text(json.dumps(bundle))
    verified = cli("exception", "verify", str(folder), "--key", str(tmp_path / "appsec.pub"))
    assert verified.exit_code == 1 and "b.json: rejected" in verified.stdout
    assert "1 of 2 exceptions are not valid" in verified.stderr
    for bad, words in (
        (
            ["--namespace", "Payments", "--image", "x", "--expires", "1h"],
            "not a Kubernetes namespace",
        ),
        (["--namespace", "p", "--image", "x", "--expires", "tomorrow"], "--expires 'tomorrow'"),
        (
            ["--namespace", "p", "--image", "x", "--expires", "2020-01-01T00:00:00Z"],
            "not in the future",
        ),
        (
            ["--namespace", "p", "--image", "x@sha256:12", "--expires", "1h"],
            "sha256:<64 hex digits>",
        ),
    ):
        result = cli(
            "exception", "create", *bad, *common, "-f", str(tmp_path / "bad.json"), env=env
        )
        assert result.exit_code == 2 and words in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and not (tmp_path / "bad.json").exists()
