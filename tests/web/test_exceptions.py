"""Signed break-glass exceptions on the real server (gunicorn/TLS, real registry, records).

Attacks first: an expired, unsigned, untrusted-key, edited-after-signing, other-namespace,
over-matching-glob, uncovered-timeout or other-digest exception must leave the denial in
place and the record must say why.  Then the whole flow: denied, an exception is signed
with ``attest exception create`` and dropped in the watched directory, the same request
is admitted with a loud warning, and the record and the metrics show the exception.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from admission.decisions import query
from admission.decisions.store import open_database
from admission.exceptions.document import ExceptionDocument, new_document, sign_exception
from admission.testing.helpers import Key, deployment, new_key, review
from admission.testing.serve import Serve, wait_for
from admission.testing.world import REPO, World
from attest.signing import keys
from attest.signing.signer import KeySigner
from tests.support.faultproxy import FaultProxy
from tests.web.test_server import metric_total

NOW = dt.datetime.now(dt.UTC)
LATER = NOW + dt.timedelta(days=2)


@pytest.fixture(scope="module")
def images(world: World) -> dict[str, str]:
    names = {
        "denied": world.push("exc-denied"),
        "denied2": world.push("exc-denied2"),
        "evil": world.push("exc-denied-evil"),
        "nested": world.push("exc-denied/nested"),
    }
    builder_v2 = world.push("exc-denied")  # same repository, pushed again below as v2
    assert builder_v2 == names["denied"]
    from attest.testing.images import simple_image

    simple_image(world.workdir, marker="exc-denied-v2").build(world.workdir / "v2").push(
        world.store("exc-denied"), "v2"
    )
    names["denied_v2"] = names["denied"].replace(":v1", ":v2")
    return names


def write_exception(
    path: Path, key: Key, *, namespace: str, image: str, expires: dt.datetime = LATER, **extra: Any
) -> Path:
    document = new_document(
        namespace=namespace,
        image=image,
        reason=extra.pop("reason", "emergency fix"),
        ticket=extra.pop("ticket", "INC-1"),
        expires=expires,
        created=extra.pop("created", NOW - dt.timedelta(days=3)),
        **extra,
    )
    path.write_bytes(sign_exception(document, key.signer))
    return path


def config_with_exceptions(world: World, tmp_path: Path, appsec: Key, **extra: Any) -> Path:
    directory = tmp_path / "exceptions"
    directory.mkdir(exist_ok=True)
    appsec.write(tmp_path / "appsec.pub")
    return world.config(
        tmp_path / "config.yaml",
        exceptions={
            "directory": str(directory),
            "signers": [{"name": "appsec", "key": {"path": str(tmp_path / "appsec.pub")}}],
        },
        **extra,
    )


def ask(server: Serve, image: str, namespace: str, uid: str) -> dict[str, Any]:
    return server.post(
        "/validate", review(deployment(image, namespace=namespace), uid=uid, namespace=namespace)
    )


def record_of(db: str, uid: str) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        try:
            database = open_database(db)
        except Exception:
            return None
        try:
            return query.get_decision(database, uid).document
        except Exception:
            return None
        finally:
            database.close()

    return wait_for(read, what=f"the record of {uid}")


def digest_of(world: World, reference: str) -> str:
    name = reference.split("/", 1)[1].rsplit(":", 1)
    return world.store(name[0].removeprefix(f"{REPO}/")).resolve(name[1]).digest


def test_attacks_leave_the_denial_and_the_record_says_why(
    serve, world: World, images: dict[str, str], tmp_path: Path
) -> None:
    appsec, intruder = new_key(), new_key()
    config = config_with_exceptions(world, tmp_path, appsec)
    folder = tmp_path / "exceptions"
    denied = images["denied"]
    name = denied.rsplit(":", 1)[0]
    digest = digest_of(world, denied)
    write_exception(
        folder / "expired.json",
        appsec,
        namespace="expired",
        image=name,
        expires=NOW - dt.timedelta(minutes=1),
    )
    unsigned = new_document(namespace="unsigned", image=name, reason="r", ticket="T", expires=LATER)
    (folder / "unsigned.json").write_text(json.dumps({"predicate": unsigned.to_predicate()}))
    write_exception(folder / "intruder.json", intruder, namespace="intruder", image=name)
    edited = json.loads(
        write_exception(
            folder / "edited.json", appsec, namespace="edited-x", image=name
        ).read_text()
    )
    statement = json.loads(base64.b64decode(edited["dsseEnvelope"]["payload"]))
    statement["predicate"]["namespace"] = "edited"  # and the subject to match: only the
    forged = ExceptionDocument.from_predicate(statement["predicate"])  # signature can tell
    statement["subject"][0]["digest"]["sha256"] = forged.digest()
    edited["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (folder / "edited.json").write_text(json.dumps(edited))
    write_exception(folder / "team-a.json", appsec, namespace="team-a", image=name)
    write_exception(folder / "globs.json", appsec, namespace="globs", image=name)
    write_exception(folder / "replay.json", appsec, namespace="replay", image=f"{name}@{digest}")
    db = str(tmp_path / "decisions.db")
    server = serve(config, db=db)

    cases = {  # uid: (image, namespace, category, words the record's reason contains)
        "expired": (denied, "expired", "expired", "it expired at"),
        "unsigned": (denied, "unsigned", "untrusted", "unsigned"),
        "intruder": (denied, "intruder", "untrusted", "not signed by a trusted exception signer"),
        "edited": (denied, "edited", "untrusted", "DSSE signature does not verify"),
        "team-b": (denied, "team-b", "namespace", "it is for namespace team-a, not team-b"),
        "over-match": (images["evil"], "globs", "image", "it is for images"),
        "nested": (images["nested"], "globs", "image", "it is for images"),
        "host-spelling": (
            denied.replace("127.0.0.1", "localhost"),
            "globs",
            "image",
            "it is for images",
        ),
        "replay": (images["denied_v2"], "replay", "image", f"it is for digest {digest}"),
    }
    for uid, (image, namespace, category, words) in cases.items():
        answer = ask(server, image, namespace, uid)
        assert answer["allowed"] is False, (uid, answer)
        assert not any("EXCEPTION" in w for w in answer.get("warnings", [])), uid
        document = record_of(db, uid)
        assert document["result"] in ("denied", "timed_out"), uid
        considered = document["exceptions"]
        assert document["exception"] in considered
        assert not any(e["applied"] for e in considered), uid
        assert any(e["category"] == category and words in e["why"] for e in considered), (
            uid,
            considered,
        )
    answer = ask(server, denied, "team-a", "team-a")  # control: in its namespace it applies
    assert answer["allowed"] is True and answer["warnings"][0].startswith("EXCEPTION ")
    assert ask(server, denied, "replay", "replay-v1")["allowed"] is True  # its own digest
    text = server.ops("/metrics").text
    assert (
        metric_total(
            text, "attest_admission_exceptions_total", outcome="rejected", reason="untrusted"
        )
        >= 3
    )
    assert metric_total(text, "attest_admission_exceptions_total", outcome="applied") == 2


def test_exceptions_never_cover_malformed_requests_or_uncovered_timeouts(
    serve, world: World, images: dict[str, str], tmp_path: Path
) -> None:
    appsec = new_key()
    proxy = FaultProxy(world.registry.port).start()
    try:
        config = config_with_exceptions(world, tmp_path, appsec, deadlineSeconds=1.5)
        folder = tmp_path / "exceptions"
        slow = f"{proxy.address}/{REPO}/exc-denied"
        write_exception(
            folder / "plain.json", appsec, namespace="slow", image=f"{proxy.address}/**"
        )
        write_exception(
            folder / "timeout.json", appsec, namespace="slow-ok", image=slow, covers=["timeout"]
        )
        write_exception(
            folder / "all.json", appsec, namespace="broken", image="**", covers=["timeout", "error"]
        )
        db = str(tmp_path / "decisions.db")
        server = serve(config, db=db)
        proxy.hang_seconds = 5
        answer = ask(server, f"{slow}:v1", "slow", "slow")
        assert answer["allowed"] is False and "timed out" in answer["status"]["message"]
        document = record_of(db, "slow")
        assert document["result"] == "timed_out"
        assert document["exception"]["category"] == "not_covered"
        assert "covers: [timeout]" in document["exception"]["why"]
        answer = ask(server, f"{slow}:v2", "slow-ok", "slow-ok")  # explicitly covered: admitted
        assert answer["allowed"] is True, answer
        assert answer["warnings"][0].startswith("EXCEPTION ")
        assert record_of(db, "slow-ok")["exception"]["applied"] is True
        proxy.hang_seconds = 0
        malformed = review(
            deployment(images["denied"], namespace="broken"), uid="broken", namespace="broken"
        )
        malformed["request"]["object"]["spec"]["template"]["spec"]["containers"] = "not a list"
        answer = server.post("/validate", malformed)
        assert answer["allowed"] is False and answer["status"]["code"] == 400
        document = record_of(db, "broken")
        assert document["result"] == "error" and "exception" not in document
    finally:
        proxy.stop()


def test_deny_then_exception_then_admitted_and_recorded(
    serve, world: World, images: dict[str, str], tmp_path: Path, cli
) -> None:
    pair = keys.generate_key_pair(b"pw")
    key_file = tmp_path / "appsec.key"
    key_file.write_bytes(pair.private_pem)
    appsec = Key(KeySigner.from_file(str(key_file), b"pw"), pair.public_pem)
    config = config_with_exceptions(world, tmp_path, appsec)
    folder = tmp_path / "exceptions"
    db = str(tmp_path / "decisions.db")
    server = serve(config, db=db)
    image = images["denied2"]

    first = ask(server, image, "payments", "before")
    assert first["allowed"] is False
    assert "exception" not in record_of(db, "before")

    result = cli(
        "exception",
        "create",
        "--namespace",
        "payments",
        "--image",
        image.rsplit(":", 1)[0],
        "--reason",
        "CVE-2026-1 hotfix, signature pipeline down",
        "--ticket",
        "INC-42",
        "--expires",
        "2h",
        "--key",
        str(key_file),
        "--tlog-upload=false",
        "-f",
        str(folder / "inc-42.json"),
        env={"ATTEST_PASSWORD": "pw"},
    )
    assert result.exit_code == 0, result.stderr
    ident = result.stdout.strip()
    verified = cli("exception", "verify", "--config", str(config))
    assert verified.exit_code == 0 and f"{ident} verified (signer appsec)" in verified.stdout

    def admitted() -> dict[str, Any] | None:
        answer = ask(server, image, "payments", f"after-{dt.datetime.now().timestamp()}")
        return answer if answer["allowed"] else None

    answer = wait_for(admitted, timeout=30, what="the exception to be loaded")
    warning = answer["warnings"][0]
    assert warning.startswith(f"EXCEPTION {ident} admits {image}, which policy denies")
    assert "signed by appsec, ticket INC-42" in warning
    assert any(w.startswith(f"excepted: {image}: no trusted signature") for w in answer["warnings"])
    records = wait_for(lambda: _records_with_exception(db), what="the exception's record")
    exception = records[0]["exception"]
    assert exception["applied"] is True and exception["id"] == ident
    assert exception["signer"] == "appsec" and exception["ticket"] == "INC-42"
    assert records[0]["result"] == "warned"
    logged = [
        line["exceptions"][0]
        for line in server.log_lines()
        if line.get("event") == "admission_decision" and line.get("exceptions")
    ]
    assert any(e["applied"] and e["id"] == ident and e["ticket"] == "INC-42" for e in logged)
    # replaying the policy compares with the denial the exception overrode: no change
    replay = cli(
        "decisions", "replay", "--db", db, "--config", str(config), "--namespace", "payments"
    )
    assert replay.exit_code == 0, replay.stdout + replay.stderr
    # the same request in another namespace is still denied
    assert ask(server, image, "shop", "shop")["allowed"] is False
    text = server.ops("/metrics").text
    assert metric_total(text, "attest_admission_exceptions_total", outcome="applied") >= 1


def _records_with_exception(db: str) -> list[dict[str, Any]]:
    database = open_database(db)
    try:
        found = query.list_decisions(database, query.DecisionFilter(namespaces=("payments",)))
        return [r.document for r in found if "exception" in r.document]
    finally:
        database.close()
