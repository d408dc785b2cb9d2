"""``attest decisions list|show|export|verify`` as AppSec uses them, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import sqlalchemy as sa

from admission.decisions.chain import GENESIS, load_head_signer, record_hash
from admission.decisions.model import decision_document
from admission.decisions.recorder import DecisionRecorder
from admission.decisions.store import DecisionDatabase
from admission.testing.samples import decision, image


def seed(db_url: str, signer_key: Path | None = None) -> list[dict]:
    now = dt.datetime.now(dt.UTC)
    documents = [
        decision(namespace="shop", time=now - dt.timedelta(days=3)),
        decision(
            result="denied",
            namespace="payments",
            name="checkout",
            images=[image("ghcr.io/org/pay:<script>alert(1)</script>", verified=False)],
            time=now - dt.timedelta(hours=1),
        ),
        decision(result="warned", namespace="shop", warnings=["no SBOM attached"]),
    ]
    signer = load_head_signer(str(signer_key)) if signer_key else None
    recorder = DecisionRecorder(db_url, replica="pod-a", signer=signer).start()
    for document in documents:
        recorder.record(document)
    assert recorder.flush(30)
    recorder.close()
    return documents


def test_list_filters_and_prints_one_line_per_decision(cli, db_url: str) -> None:
    documents = seed(db_url)
    result = cli("decisions", "list", "--db", db_url)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and "WARNED" in lines[0] and "DENIED" in lines[1]
    assert "payments/checkout" in lines[1] and "is not signed by a trusted authority" in lines[1]

    denied = cli("decisions", "list", "--db", db_url, "--result", "denied", "-o", "json")
    assert [r["decision"]["uid"] for r in denied.json()] == [documents[1]["uid"]]
    recent = cli("decisions", "list", "--since", "2d", "-n", "shop", env={"ATTEST_DB": db_url})
    assert recent.exit_code == 0 and len(recent.stdout.splitlines()) == 1
    by_image = cli("decisions", "list", "--db", db_url, "--image", "ghcr.io/org/*", "-o", "json")
    assert len(by_image.json()) == 1
    none = cli("decisions", "list", "--db", db_url, "--namespace", "nothing-here")
    assert none.exit_code == 0 and none.stdout == "" and "no decisions match" in none.stderr


def test_show_prints_every_reason(cli, db_url: str) -> None:
    documents = seed(db_url)
    listed = cli("decisions", "list", "--db", db_url, "--result", "denied", "-o", "json").json()
    record_id = str(listed[0]["id"])
    shown = cli("decisions", "show", "--db", db_url, record_id)
    assert shown.exit_code == 0, shown.stderr
    out = shown.stdout
    assert out.startswith(f"Decision {record_id}: DENIED")
    assert "CREATE Deployment payments/checkout" in out
    assert "system:serviceaccount:argocd:argocd-application-controller" in out
    assert "resolve 1.2 ms, verify 12.5 ms, evaluate 0.8 ms" in out
    assert "bundle sha256:" + "b" * 64 in out and "engine regopy" in out
    assert "is not signed by a trusted authority" in out
    assert "✗ signature [bundle]" in out
    assert "signature does not verify with key of authority ci-key" in out
    assert "✗ https://slsa.dev/provenance/v1 [legacy]" in out
    assert "builder id https://evil.example/builder is not allowed" in out
    assert "policy:    prod-images" in out
    assert documents[1]["images"][0]["digest"] in out
    by_uid = cli("decisions", "show", "--db", db_url, documents[1]["uid"], "-o", "json")
    assert by_uid.json()["decision"] == decision_document(documents[1])


def test_export_writes_json_lines_atomically(cli, db_url: str, tmp_path: Path) -> None:
    documents = seed(db_url)
    out = tmp_path / "export.jsonl"
    result = cli("decisions", "export", "--db", db_url, "-f", str(out))
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    # oldest first, exactly as recorded
    assert [line["decision"] for line in lines] == [decision_document(d) for d in documents]
    assert all(len(line["hash"]) == 64 for line in lines)
    assert "exported 3 decisions" in result.stderr
    stdout = cli("decisions", "export", "--db", db_url, "--result", "warned")
    assert [json.loads(x)["decision"]["uid"] for x in stdout.stdout.splitlines()] == [
        documents[2]["uid"]
    ]
    failed = cli("decisions", "export", "--db", db_url, "--since", "yesterday-ish", "-f", str(out))
    assert failed.exit_code == 2 and "time 'yesterday-ish'" in failed.stderr
    assert len(out.read_text().splitlines()) == 3  # the earlier export is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".attest-export")] == []


def test_verify_reports_the_first_broken_link(cli, db_url: str, key_pair) -> None:
    private, public = key_pair
    seed(db_url, private)
    ok = cli("decisions", "verify", "--db", db_url, "--key", str(public))
    assert ok.exit_code == 0, ok.stdout + ok.stderr
    assert "replica pod-a: 3 records, head #3, signed up to #3" in ok.stdout
    assert ok.stdout.rstrip().endswith("chain intact")

    database = DecisionDatabase(db_url)
    with database.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE attest_decisions SET document = replace(document, 'checkout', 'x')")
        )
        record_id = conn.execute(sa.text("SELECT id FROM attest_decisions WHERE seq = 2")).scalar()
    database.close()
    broken = cli("decisions", "verify", "--db", db_url, "--key", str(public))
    assert broken.exit_code == 1
    assert f"BROKEN: replica pod-a #2: record {record_id} record was modified" in broken.stdout
    assert broken.stdout.rstrip().endswith("chain BROKEN")
    as_json = cli("decisions", "verify", "--db", db_url, "-o", "json")
    assert as_json.exit_code == 1 and as_json.json()["firstBroken"][0]["seq"] == 2


def test_bad_input_is_one_line_and_non_zero(cli, tmp_path: Path, sqlite_url: str) -> None:
    missing = cli("decisions", "list", env={"ATTEST_DB": ""})
    assert missing.exit_code == 2
    assert missing.stderr.strip() == (
        "attest: error: no decision database: pass --db PATH|postgresql://… or set ATTEST_DB"
    )
    absent = cli("decisions", "list", "--db", str(tmp_path / "nope.db"))
    assert absent.exit_code == 1 and "nope.db: no such file" in absent.stderr
    assert len(absent.stderr.strip().splitlines()) == 1
    seed(sqlite_url)
    unknown = cli("decisions", "show", "--db", sqlite_url, "99999")
    assert unknown.exit_code == 1 and "decision 99999: not found" in unknown.stderr
    digest = cli("decisions", "list", "--db", sqlite_url, "--digest", "abc")
    assert digest.exit_code == 2 and "digest 'abc'" in digest.stderr
    result = cli("decisions", "list", "--db", sqlite_url, "--result", "maybe")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    bad_key = cli("decisions", "verify", "--db", sqlite_url, "--key", str(tmp_path / "no.pub"))
    assert bad_key.exit_code != 0 and "no.pub" in bad_key.stderr


def test_admission_review_record_stores_the_offline_decisions(
    cli, db_url: str, tmp_path, key_pair
) -> None:
    import re
    import socket

    manifest = tmp_path / "pods.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: one, namespace: ci}\n"
        "spec: {containers: [{name: c, image: registry.example.com/app:1}]}\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata: {name: two, namespace: ci}\n"
        "spec: {containers: [{name: c, image: registry.example.com/app:2}]}\n"
    )
    reviewed = cli("admission", "review", str(manifest), "--record", "--db", db_url)
    assert reviewed.exit_code == 1  # still "denied" (no policy matches), recorded as well
    assert "DENIED: Pod ci/one" in reviewed.stdout and "recorded 2 decisions" in reviewed.stderr
    listed = cli("decisions", "list", "--db", db_url, "--output", "json").json()
    assert {r["decision"]["name"] for r in listed} == {"one", "two"}
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:150].strip(".-")
    assert {r["replica"] for r in listed} == {f"review-{host}"}
    assert all(r["decision"]["result"] == "denied" for r in listed)
    private, public = key_pair
    unsigned = cli("decisions", "verify", "--db", db_url, "--key", str(public))
    assert unsigned.exit_code == 3, unsigned.stdout
    again = cli(
        "admission", "review", str(manifest), "--record", "--db", db_url,
        "--signing-key", str(private),
    )  # fmt: skip
    assert again.exit_code == 1
    verified = cli("decisions", "verify", "--db", db_url, "--key", str(public))
    assert verified.exit_code == 0, verified.stdout
    assert f"replica review-{host}: 4 records, head #4, signed up to #4" in verified.stdout
    assert verified.stdout.rstrip().endswith("chain intact")  # one chain, extended and signed
    no_record = cli("admission", "review", str(manifest), "--signing-key", str(private))
    assert no_record.exit_code == 2 and "add --record" in no_record.stderr
    without = cli("admission", "review", str(manifest), "--db", db_url)
    assert without.exit_code == 2 and "add --record" in without.stderr
    nowhere = cli(
        "admission", "review", str(manifest), "--record", "--db", str(tmp_path / "no" / "d.db")
    )
    assert nowhere.exit_code == 2
    assert nowhere.stderr.strip().splitlines()[-1].startswith("attest: error: --record: ")
    assert "DENIED: Pod ci/one" in nowhere.stdout  # the decision itself was still printed


def test_verify_fails_unless_a_signed_checkpoint_covers_each_head(
    cli, db_url: str, key_pair
) -> None:
    """Rewritten (hashes recomputed) with its checkpoints deleted, a chain is consistent: the
    verdict must say plainly that nothing vouches for it, with its own exit code (3)."""
    private, public = key_pair
    seed(db_url, private)
    database = DecisionDatabase(db_url)
    with database.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM attest_decision_checkpoints"))
        rows = conn.execute(
            sa.text("SELECT seq, document FROM attest_decisions ORDER BY seq")
        ).all()
        prev = GENESIS
        for row in rows:
            document = row.document.replace('"denied"', '"allowed"')
            digest = record_hash("pod-a", row.seq, prev, document.encode())
            conn.execute(
                sa.text(
                    "UPDATE attest_decisions SET document = :d, prev_hash = :p, hash = :h, "
                    "result = CASE WHEN result = 'denied' THEN 'allowed' ELSE result END "
                    "WHERE seq = :s"
                ),
                {"d": document, "p": prev, "h": digest, "s": row.seq},
            )
            prev = digest
    database.close()
    forged = cli("decisions", "verify", "--db", db_url, "--key", str(public))
    assert forged.exit_code == 3, forged.stdout
    assert (
        "NOT SIGNED: replica pod-a: the head #3 is not covered by a signed checkpoint "
        "(records from #1 could have been rewritten or deleted without trace)"
    ) in forged.stdout
    assert forged.stdout.rstrip().endswith("chain intact, but NOT covered by a signed checkpoint")
    as_json = cli("decisions", "verify", "--db", db_url, "--key", str(public), "-o", "json")
    assert as_json.exit_code == 3
    report = as_json.json()
    assert report["ok"] is False and report["status"] == "uncovered"
    assert report["replicas"][0]["covered"] is False
    assert report["replicas"][0]["unsignedRecords"] == 3


def test_verify_with_anchors_from_the_server_log(cli, sqlite_url: str, key_pair, tmp_path) -> None:
    import json

    private, public = key_pair
    seed(sqlite_url, private)
    database = DecisionDatabase(sqlite_url)
    with database.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM attest_decision_checkpoints")).one()
    database.close()
    log = tmp_path / "server.log"
    line = {
        "event": "decision_chain_checkpoint",
        "replica": row.replica,
        "seq": row.seq,
        "hash": row.hash,
        "signedAt": row.signed_at,
        "keyId": row.key_id,
        "signature": row.signature,
    }
    log.write_text(json.dumps(line) + "\n")
    args = ("decisions", "verify", "--db", sqlite_url, "--key", str(public), "--anchors", str(log))
    ok = cli(*args)
    assert ok.exit_code == 0, ok.stdout
    assert "1 anchored checkpoints checked against the database" in ok.stdout
    database = DecisionDatabase(sqlite_url)
    with database.engine.begin() as conn:  # roll back to nothing: the database looks fine
        for table in ("attest_decisions", "attest_decision_images", "attest_decision_checkpoints"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    database.close()
    assert cli("decisions", "verify", "--db", sqlite_url, "--key", str(public)).exit_code == 0
    rolled_back = cli(*args)
    assert rolled_back.exit_code == 1
    assert "BROKEN: replica pod-a #3: an anchored signed head is missing" in rolled_back.stdout
    no_key = cli("decisions", "verify", "--db", sqlite_url, "--anchors", str(log))
    assert no_key.exit_code == 2 and "--anchors needs --key" in no_key.stderr
