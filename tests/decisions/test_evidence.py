"""``attest evidence`` and ``attest decisions stats`` on SQLite and PostgreSQL: what the evidence
says, that it verifies as a signed attestation, and that tampering shows up in it, never hidden."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from admission.decisions import parallel
from admission.decisions.chain import load_head_signer
from admission.decisions.parallel import collect_stats
from admission.decisions.query import filter_from_text
from admission.decisions.store import DecisionDatabase, open_database, record_now
from admission.testing.samples import decision, digest_of, image, write_key_pair
from tests.support.peers import peer_binary

ROOT = Path(__file__).resolve().parents[2]
COSIGN_KEY = ROOT / "keys-dev" / "cosign.key"
COSIGN_PUB = ROOT / "keys-dev" / "cosign.pub"
SIGN = ["--key", str(COSIGN_KEY), "--tlog-upload=false"]
PASSWORD = {"ATTEST_PASSWORD": "attest-dev"}
START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
BUILDER = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
EXCEPTION = {
    "id": "exc-2026-0042",
    "signer": "appsec@acme.example",
    "reason": "CVE hotfix",
    "ticket": "INC-7",
    "expires": "2026-07-10T00:00:00Z",
    "image": "reg/acme/hotfix:1",
    "applied": True,
}
EXPIRED = {**EXCEPTION, "id": "exc-2026-0001", "applied": False, "category": "expired"}


def facts(reference: str, *, mode: str = "enforce", provenance: bool = True) -> dict[str, Any]:
    """The policy input recorded for one image (what Rego saw)."""
    attestations = []
    if provenance:
        attestations.append(
            {
                "verified": True,
                "predicateType": "https://slsa.dev/provenance/v1",
                "signer": {"type": "key", "keyId": "ci"},
                "provenance": {
                    "builderId": BUILDER,
                    "sourceRepository": "github.com/acme/app",
                    "sourceRef": "refs/heads/main",
                    "sourceDigest": {"gitCommit": "a" * 40},
                    "buildStartedOn": "2026-06-30T10:00:00Z",
                    "buildFinishedOn": "2026-06-30T10:05:00Z",
                },
            }
        )
    return {
        "reference": reference,
        "digest": digest_of(reference),
        "policy": {"name": "prod", "mode": mode},
        "attestations": attestations,
    }


def admitted(
    reference: str, day: int, *, mode: str = "enforce", provenance: bool = True, **extra: Any
) -> dict[str, Any]:
    entry = image(reference)
    entry["verification"]["attestations"].append(
        {
            "kind": "attestation",
            "predicateType": "https://cyclonedx.org/bom",
            "location": "reg/acme/app@" + digest_of("sbom-" + reference),
            "verified": True,
            "authority": "ci-key",
            "signer": {"type": "key", "keyId": "abc123"},
        }
    )
    if extra.pop("unmatched", False):
        entry["outcome"] = "unmatched"
        entry["policy"] = None
    document = decision(
        namespace=extra.pop("namespace", "shop"),
        images=[entry],
        time=START + dt.timedelta(days=day),
        result="warned" if mode == "warn" else "allowed",
    )
    document["input"]["images"] = [facts(reference, mode=mode, provenance=provenance)]
    document.update(extra)
    return document


def denied(reference: str, day: int) -> dict[str, Any]:
    return decision(
        result="denied",
        images=[image(reference, verified=False)],
        time=START + dt.timedelta(days=day),
        namespace="payments",
    )


def period_documents() -> list[dict[str, Any]]:
    return [
        admitted("reg/acme/app:1.0", 1),
        admitted("reg/acme/app:1.0", 2),
        admitted("reg/acme/web:2.0", 3, mode="warn", provenance=False),
        admitted("reg/other/tool:3", 4, unmatched=True),
        denied("reg/acme/bad:1", 4),
        {**denied("reg/acme/worse:9", 5), "exception": EXPIRED, "exceptions": [EXPIRED]},
        admitted(
            "reg/acme/hotfix:1",
            6,
            exception=EXCEPTION,
            exceptions=[EXCEPTION, {**EXPIRED, "image": "reg/acme/hotfix:1"}],
            namespace="payments",
        ),
        admitted("reg/acme/app:1.0", 40),  # after the period
    ]


@pytest.fixture
def checkpoint_keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_key_pair(tmp_path, "decisions")


def seed(db: str, key: Path, *, signed: bool = True) -> None:
    signer = load_head_signer(str(key)) if signed else None
    record_now(db, period_documents(), replica="pod-a", signer=signer)


def run_evidence(cli: Any, db: str, out: Path, pub: Path | None, *extra: str) -> Any:
    key = ["--checkpoint-key", str(pub)] if pub else []
    return cli(
        "evidence",
        "--db",
        db,
        "--since",
        "2026-07-01",
        "--until",
        "2026-08-01",
        *key,
        *SIGN,
        "-f",
        str(out),
        *extra,
        env=PASSWORD,
    )


def predicate_of(base: Path) -> dict[str, Any]:
    statement = json.loads(base.with_suffix(".json").read_text())
    assert statement["predicateType"] == "https://attest.dev/evidence/v1"
    return statement["predicate"]


def test_evidence_reports_the_period_and_verifies_as_an_attestation(
    cli: Any, db_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    seed(db_url, private)
    base = tmp_path / "q3"
    result = run_evidence(cli, db_url, base, public)
    assert result.exit_code == 0, result.stderr
    assert "chain VERIFIED (7 of 7 decisions verified)" in result.stderr
    predicate = predicate_of(base)
    chain, summary = predicate["chain"], predicate["summary"]
    assert chain["status"] == "verified" and chain["unverified"] == []
    (replica,) = chain["replicas"]
    assert replica["period"]["seqRanges"] == [[1, 7]]
    assert replica["period"]["coveringCheckpoint"]["seq"] == 8
    assert summary["records"] == 7
    assert summary["results"] == {"allowed": 4, "denied": 2, "warned": 1}
    # compliant: app twice; not: warn mode, unmatched, exception
    assert summary["compliance"] == {"admitted": 5, "compliant": 2, "rate": 0.4}
    assert summary["gaps"]["warnMode"] == {
        "admissions": 1,
        "images": [digest_of("reg/acme/web:2.0")],
    }
    assert summary["gaps"]["unmatchedAllowed"]["images"] == [digest_of("reg/other/tool:3")]
    assert summary["gaps"]["withoutProvenance"]["images"] == [digest_of("reg/acme/web:2.0")]
    (exception,) = summary["exceptions"]
    assert exception["id"] == "exc-2026-0042" and exception["uses"] == 1
    assert exception["signer"] == "appsec@acme.example" and exception["namespaces"] == ["payments"]
    assert exception["ticket"] == "INC-7"
    assert summary["exceptionsNotApplied"] == {"expired": 2}  # considered, not used
    (reason,) = summary["denyReasons"]
    assert reason["reason"] == "image <image> is not signed by a trusted authority"
    assert reason["count"] == 2
    images = {i["digest"]: i for i in predicate["admittedImages"]}
    app = images[digest_of("reg/acme/app:1.0")]
    assert app["decisions"] == 2 and app["signers"] == ["ci-key: key abc123"]
    assert app["provenance"][0]["builder"] == BUILDER
    assert app["provenance"][0]["commit"] == "a" * 40
    assert app["provenance"][0]["buildFinishedOn"] == "2026-06-30T10:05:00Z"
    assert app["sbom"][0]["attestation"] == digest_of("sbom-reg/acme/app:1.0")
    assert summary["policies"][0]["records"] == 7

    rows = list(csv.DictReader(io.StringIO(base.with_suffix(".csv").read_text())))
    assert {row["digest"] for row in rows} == set(images)
    html = base.with_suffix(".html").read_text()
    assert "<script" not in html.lower() and "VERIFIED: every decision" in html
    assert "exc-2026-0042" in html

    for artifact in ("q3.html", "q3.csv"):
        verified = cli(
            "verify-blob-attestation",
            str(tmp_path / artifact),
            "--bundle",
            str(tmp_path / "q3.sigstore.json"),
            "--type",
            "https://attest.dev/evidence/v1",
            "--key",
            str(COSIGN_PUB),
            "--insecure-ignore-tlog",
        )
        assert verified.exit_code == 0, verified.stderr + verified.stdout


def test_an_edited_report_does_not_verify(
    cli: Any, sqlite_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    seed(sqlite_url, private)
    assert run_evidence(cli, sqlite_url, tmp_path / "r", public).exit_code == 0
    html = tmp_path / "r.html"
    html.write_text(html.read_text().replace("exc-2026-0042", "no exception"))
    result = cli(
        "verify-blob-attestation",
        str(html),
        "--bundle",
        str(tmp_path / "r.sigstore.json"),
        "--type",
        "https://attest.dev/evidence/v1",
        "--key",
        str(COSIGN_PUB),
        "--insecure-ignore-tlog",
    )
    assert result.exit_code != 0


def _tamper(db: str, statement: str, **params: Any) -> None:
    database = DecisionDatabase(db)
    with database.engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    database.close()


def test_an_edited_record_shows_up_as_broken(
    cli: Any, db_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    seed(db_url, private)
    # hide a denial: rewrite its document (columns stay, so the hash no longer matches)
    _tamper(
        db_url,
        "UPDATE attest_decisions SET document = replace(document, 'denied', 'allowed') WHERE seq = 5",
    )
    result = run_evidence(cli, db_url, tmp_path / "r", public)
    assert result.exit_code == 1
    chain = predicate_of(tmp_path / "r")["chain"]
    assert chain["status"] == "broken"
    assert any(p["seq"] == 5 and "modified" in p["problem"] for p in chain["problems"])
    (span,) = chain["unverified"]
    assert (span["fromSeq"], span["toSeq"], span["records"]) == (5, 7, 3)
    assert "broken at #5" in span["reason"]
    assert chain["verifiedRecords"] == 4
    assert chain["replicas"][0]["period"]["coveringCheckpoint"] is None
    assert "BROKEN" in (tmp_path / "r.html").read_text()


def test_a_deleted_record_shows_up_as_broken(
    cli: Any, db_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    seed(db_url, private)
    _tamper(db_url, "DELETE FROM attest_decision_images WHERE seq = 3")
    _tamper(db_url, "DELETE FROM attest_decisions WHERE seq = 3")
    result = run_evidence(cli, db_url, tmp_path / "r", public)
    assert result.exit_code == 1
    chain = predicate_of(tmp_path / "r")["chain"]
    assert chain["status"] == "broken"
    assert any("missing (gap)" in p["problem"] for p in chain["problems"])
    assert chain["unverified"][0]["fromSeq"] == 4


def test_records_after_the_last_checkpoint_are_not_presented_as_verified(
    cli: Any, db_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    seed(db_url, private)
    record_now(db_url, [admitted("reg/acme/late:1", 7)], replica="pod-a")  # no checkpoint
    result = run_evidence(cli, db_url, tmp_path / "r", public)
    assert result.exit_code == 3, result.stderr
    assert "NOT VERIFIED: replica pod-a #9..#9" in result.stderr
    chain = predicate_of(tmp_path / "r")["chain"]
    assert chain["status"] == "partial" and chain["verifiedRecords"] == 7
    (span,) = chain["unverified"]
    assert span["records"] == 1 and span["from"].startswith("2026-07-08")
    assert "not covered" in span["reason"]


def test_a_forged_checkpoint_does_not_cover_anything(
    cli: Any, db_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    _private, public = checkpoint_keys
    forger, _ = write_key_pair(tmp_path, "forger")
    seed(db_url, forger)  # "signed", but not with the trusted key
    result = run_evidence(cli, db_url, tmp_path / "r", public)
    assert result.exit_code == 1
    chain = predicate_of(tmp_path / "r")["chain"]
    assert chain["status"] == "broken" and chain["verifiedRecords"] == 0
    assert any("does not verify with the trusted key" in p["problem"] for p in chain["problems"])
    assert chain["replicas"][0]["period"]["coveringCheckpoint"] is None


def test_without_a_trusted_key_nothing_is_verified(
    cli: Any, sqlite_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, _public = checkpoint_keys
    seed(sqlite_url, private)
    result = run_evidence(cli, sqlite_url, tmp_path / "r", None)
    assert result.exit_code == 3
    chain = predicate_of(tmp_path / "r")["chain"]
    assert chain["status"] == "unverified" and chain["verifiedRecords"] == 0
    assert "NOT VERIFIED" in (tmp_path / "r.html").read_text()


def test_pipeline_summaries_link_digests_to_ci_runs(
    cli: Any, sqlite_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    seed(sqlite_url, private)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "app.json").write_text(
        json.dumps(
            {
                "image": "reg/acme/app:1.0",
                "digest": digest_of("reg/acme/app:1.0"),
                "signer": "key cosign.key",
                "verification": {"verified": True},
                "build": {
                    "builderId": BUILDER,
                    "invocationId": "https://github.com/acme/app/actions/runs/42",
                    "sourceUri": "git+https://github.com/acme/app",
                    "sourceDigest": {"gitCommit": "a" * 40},
                },
            }
        )
    )
    result = run_evidence(
        cli, sqlite_url, tmp_path / "r", public, "--pipeline-summaries", str(runs)
    )
    assert result.exit_code == 0, result.stderr
    images = {i["digest"]: i for i in predicate_of(tmp_path / "r")["admittedImages"]}
    (run,) = images[digest_of("reg/acme/app:1.0")]["ciRuns"]
    assert run["ciRun"] == "https://github.com/acme/app/actions/runs/42"
    assert images[digest_of("reg/acme/web:2.0")]["ciRuns"] == []
    assert "actions/runs/42" in (tmp_path / "r.csv").read_text()

    (runs / "junk.json").write_text("{}")
    bad = run_evidence(cli, sqlite_url, tmp_path / "s", public, "--pipeline-summaries", str(runs))
    assert bad.exit_code == 2 and "junk.json: no image digest" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "s.json").exists()


def test_stats_agree_with_evidence(
    cli: Any, db_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    seed(db_url, private)
    assert run_evidence(cli, db_url, tmp_path / "r", public).exit_code == 0
    summary = predicate_of(tmp_path / "r")["summary"]
    args = ["decisions", "stats", "--db", db_url, "--since", "2026-07-01", "--until", "2026-08-01"]
    stats = cli(*args, "-o", "json")
    assert stats.exit_code == 0, stats.stderr
    data = stats.json()
    data.pop("images")
    assert data == {**summary, "denyReasons": summary["denyReasons"][:10]}
    table = cli(*args, "-n", "payments")
    assert table.exit_code == 0
    assert "compliance: 0.0% (0 of 1 admissions" in table.stdout
    assert "exc-2026-0042: 1 uses" in table.stdout


def test_cosign_verifies_the_evidence_and_rejects_an_edited_report(
    cli: Any, sqlite_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    seed(sqlite_url, private)
    assert run_evidence(cli, sqlite_url, tmp_path / "r", public).exit_code == 0
    cosign = str(peer_binary("cosign"))

    def cosign_verify(artifact: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                cosign,
                "verify-blob-attestation",
                "--bundle",
                str(tmp_path / "r.sigstore.json"),
                "--type",
                "https://attest.dev/evidence/v1",
                "--key",
                str(COSIGN_PUB),
                "--insecure-ignore-tlog",
                str(artifact),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    for artifact in ("r.html", "r.csv"):
        ok = cosign_verify(tmp_path / artifact)
        assert ok.returncode == 0, ok.stderr
    edited = tmp_path / "r.csv"
    edited.write_text(edited.read_text().replace("reg/acme/hotfix:1", "reg/acme/harmless:1"))
    assert cosign_verify(edited).returncode != 0


def test_several_processes_give_the_same_evidence_and_stats(
    cli: Any, db_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    signer = load_head_signer(str(private))
    documents = period_documents()
    record_now(db_url, documents[:4], replica="pod-a", signer=signer)
    record_now(db_url, documents[4:], replica="pod-b", signer=signer)
    record_now(db_url, documents[:2], replica="pod-c", signer=signer)
    record_now(db_url, documents[2:3], replica="pod-c")  # unsigned tail in one replica
    predicates = []
    for jobs in ("1", "2"):
        result = run_evidence(cli, db_url, tmp_path / f"j{jobs}", public, "--jobs", jobs)
        assert result.exit_code == 3, result.stderr
        predicate = predicate_of(tmp_path / f"j{jobs}")
        predicate.pop("generatedAt")
        predicates.append(predicate)
    assert predicates[0] == predicates[1]
    assert predicates[0]["summary"]["records"] == 10
    assert [u["replica"] for u in predicates[0]["chain"]["unverified"]] == ["pod-c"]

    database = open_database(db_url)
    try:
        flt = filter_from_text(None, since="2026-07-01", until="2026-08-01")
        one = collect_stats(database, flt).to_dict()
        parallel._SPLIT_FROM = 0  # split even this small database
        try:
            three = collect_stats(database, flt, jobs=3).to_dict()
        finally:
            parallel._SPLIT_FROM = 20_000
    finally:
        database.close()
    assert one == three and one["records"] == 10


def test_a_rolled_back_chain_is_caught_with_the_logged_checkpoints(
    cli: Any, sqlite_url: str, tmp_path: Path, checkpoint_keys: tuple[Path, Path]
) -> None:
    private, public = checkpoint_keys
    signer = load_head_signer(str(private))
    documents = period_documents()
    record_now(sqlite_url, documents[:4], replica="pod-a", signer=signer)
    record_now(sqlite_url, documents[4:7], replica="pod-a", signer=signer)
    database = DecisionDatabase(sqlite_url)
    with database.engine.connect() as conn:
        logged = [
            {
                "event": "decision_chain_checkpoint",
                "replica": row.replica,
                "seq": row.seq,
                "hash": row.hash,
                "signedAt": row.signed_at,
                "keyId": row.key_id,
                "signature": row.signature,
            }
            for row in conn.execute(sa.text("SELECT * FROM attest_decision_checkpoints"))
        ]
    database.close()
    anchors = tmp_path / "webhook.log"
    anchors.write_text("".join(json.dumps(line) + "\n" for line in logged))
    # roll the chain back to its first signed head: consistent, so the database alone hides it
    _tamper(sqlite_url, "DELETE FROM attest_decision_images WHERE seq > 4")
    _tamper(sqlite_url, "DELETE FROM attest_decisions WHERE seq > 4")
    _tamper(sqlite_url, "DELETE FROM attest_decision_checkpoints WHERE seq > 4")
    assert run_evidence(cli, sqlite_url, tmp_path / "db-only", public).exit_code == 0
    result = run_evidence(cli, sqlite_url, tmp_path / "r", public, "--anchors", str(anchors))
    assert result.exit_code == 1
    chain = predicate_of(tmp_path / "r")["chain"]
    assert chain["status"] == "broken" and chain["anchors"] == 2
    assert any("anchored signed head is missing" in p["problem"] for p in chain["problems"])
