"""The break-glass flow an auditor reads, end to end on the real server: a denial, a signed
exception, the admission it allows, and the signed evidence report that shows it.

The webhook (gunicorn, TLS) signs its decision chain on a schedule; ``attest evidence``
then reports the period as verified against that key, lists the exception with its
ticket and signer, does not count the excepted admission as compliant, and its
signed report verifies with ``attest verify-blob-attestation``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from admission.testing.helpers import Key
from admission.testing.samples import write_key_pair
from admission.testing.serve import wait_for
from admission.testing.world import World
from attest.signing import keys
from attest.signing.signer import KeySigner
from tests.web.test_checkpoints import records, report
from tests.web.test_exceptions import ask, config_with_exceptions, images, record_of  # noqa: F401

EVIDENCE_TYPE = "https://attest.dev/evidence/v1"


def test_deny_exception_admit_and_the_evidence_shows_the_exception(
    serve,
    world: World,
    images: dict[str, str],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    cli,
) -> None:
    pair = keys.generate_key_pair(b"pw")
    appsec_key = tmp_path / "appsec.key"
    appsec_key.write_bytes(pair.private_pem)
    appsec = Key(KeySigner.from_file(str(appsec_key), b"pw"), pair.public_pem)
    config = config_with_exceptions(world, tmp_path, appsec)
    chain_private, chain_public = write_key_pair(tmp_path)
    db = str(tmp_path / "decisions.db")
    server = serve(
        config,
        db=db,
        extra=("--signing-key", str(chain_private), "--checkpoint-interval", "0.5"),
    )
    image = images["denied"]

    assert ask(server, image, "payments", "denied-first")["allowed"] is False
    created = cli(
        "exception", "create", "--namespace", "payments", "--image", image.rsplit(":", 1)[0],
        "--reason", "hotfix while the signing pipeline is down", "--ticket", "INC-77",
        "--expires", "2h", "--key", str(appsec_key), "--tlog-upload=false",
        "-f", str(tmp_path / "exceptions" / "inc-77.json"),
        env={"ATTEST_PASSWORD": "pw"},
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    ident = created.stdout.strip()

    asked = [1]  # requests so far, each a record: "denied-first", then every poll below

    def admitted() -> dict | None:
        answer = ask(server, image, "payments", f"after-{dt.datetime.now().timestamp()}")
        asked[0] += 1
        return answer if answer["allowed"] else None

    answer = wait_for(admitted, timeout=30, what="the exception to be loaded")
    assert answer["warnings"][0].startswith(f"EXCEPTION {ident} admits {image}")
    assert record_of(db, "denied-first")["result"] == "denied"
    wait_for(  # the writers store records after the answers: wait for every one of them
        lambda: records(db) == asked[0], timeout=30, what="every decision to be recorded"
    )
    wait_for(  # the schedule signs a head covering every record so far
        lambda: (found := report(db, chain_public)).ok and found,
        timeout=30,
        what="a signed head over the records",
    )

    base = tmp_path / "evidence"
    made = cli(
        "evidence", "--db", db, "--since", "1d", "--checkpoint-key", str(chain_public),
        "--key", str(appsec_key), "--tlog-upload=false", "--output-file", str(base),
        env={"ATTEST_PASSWORD": "pw"},
    )  # fmt: skip
    assert made.exit_code == 0, made.stdout + made.stderr
    statement = json.loads(Path(f"{base}.json").read_text())
    predicate = statement["predicate"]
    assert predicate["chain"]["status"] == "verified"  # every record under a signed head
    assert statement["predicateType"] == EVIDENCE_TYPE
    used = {e["id"]: e for e in predicate["summary"]["exceptions"]}
    assert ident in used, predicate["summary"]["exceptions"]
    assert used[ident]["ticket"] == "INC-77" and used[ident]["signer"] == "appsec"
    assert "payments" in used[ident]["namespaces"]
    assert predicate["summary"]["results"].get("denied", 0) >= 1
    compliance = predicate["summary"]["compliance"]
    assert compliance["compliant"] < compliance["admitted"]  # the excepted admission is a gap
    html = Path(f"{base}.html").read_text()
    assert ident in html and "INC-77" in html
    verified = cli(
        "verify-blob-attestation", f"{base}.html", "--bundle", f"{base}.sigstore.json",
        "--type", EVIDENCE_TYPE, "--key", str(tmp_path / "appsec.pub"), "--insecure-ignore-tlog",
    )  # fmt: skip
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    Path(f"{base}.html").write_text(html.replace("INC-77", "INC-78"))
    forged = cli(
        "verify-blob-attestation", f"{base}.html", "--bundle", f"{base}.sigstore.json",
        "--type", EVIDENCE_TYPE, "--key", str(tmp_path / "appsec.pub"), "--insecure-ignore-tlog",
    )  # fmt: skip
    assert forged.exit_code != 0
