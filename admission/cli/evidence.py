"""``attest evidence``: signed audit evidence for a period (a thin door onto
:mod:`admission.decisions.evidence`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import click

from admission.cli import ExtraCommand
from admission.cli.options import db_option
from admission.decisions import BUCKETS
from admission.errors import DecisionStoreError
from attest.cli.common import info, keyless_signing_options, tlog_signing_options
from attest.errors import EXIT_FAILED, EXIT_NOT_COVERED, UsageError

_SUFFIXES = (".sigstore.json", ".intoto.json", ".json")


def output_paths(output: str) -> dict[str, Path]:
    """The four files of one report: ``BASE.sigstore.json`` (signed), ``.json``, ``.html``, ``.csv``."""
    base = output
    for suffix in _SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    return {
        "bundle": Path(base + ".sigstore.json"),
        "statement": Path(base + ".json"),
        "html": Path(base + ".html"),
        "csv": Path(base + ".csv"),
    }


def _write_all(files: dict[Path, bytes]) -> None:
    """Write every file to a temporary name first, then rename them all: no half-written report."""
    temporaries: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            if not path.parent.is_dir():
                raise UsageError(f"--output-file: directory {path.parent} does not exist")
            temporary = f"{path.parent}/.{path.name}.attest-tmp-{os.getpid()}"
            Path(temporary).write_bytes(data)
            temporaries.append((temporary, path))
        for temporary, path in temporaries:
            os.replace(temporary, path)
    except OSError as err:
        raise DecisionStoreError(f"--output-file: cannot write ({err.strerror or err})") from None
    finally:
        for temporary, _ in temporaries:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _statement(subjects: list[Any], predicate_type: str, predicate: dict[str, Any]) -> bytes:
    """The Statement's bytes, its envelope checked with ``in-toto-attestation`` like every
    Statement we sign; the check runs on an empty predicate (``build_statement`` converts the
    whole document to protobuf, seconds for a predicate of megabytes) and the predicate, plain
    JSON data built here, is then put in place."""
    from attest.attestations.statement import build_statement

    checked = json.loads(build_statement(subjects, predicate_type, {"checked": True}).raw)
    checked["predicate"] = predicate
    return json.dumps(checked, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@click.command("evidence", cls=ExtraCommand)
@db_option
@click.option(
    "--since", required=True, metavar="TIME", help="Start of the period (2024-07-01, 90d …)."
)
@click.option("--until", metavar="TIME", help="End of the period, exclusive (default: now).")
@click.option(
    "--namespace", "-n", "namespaces", multiple=True, help="Only this namespace (repeatable)."
)
@click.option("--image", metavar="GLOB", help="Only decisions about images matching this glob.")
@click.option(
    "--checkpoint-key",
    type=click.Path(dir_okay=False),
    help="Trusted public key (PEM) the decision chain's checkpoints must be signed with. "
    "Without it nothing is reported as verified.",
)
@click.option(
    "--anchors",
    type=click.Path(dir_okay=False),
    help="Checkpoints kept outside the database (log of decision_chain_checkpoint JSON lines).",
)
@click.option(
    "--pipeline-summaries",
    type=click.Path(file_okay=False),
    help="Directory of `attest pipeline --output-file` summaries (*.json): links digests to CI runs.",
)
@click.option(
    "--bucket",
    type=click.Choice(BUCKETS),
    default="day",
    show_default=True,
    help="Time bucket of the timeline.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    help="Processes reading the database (default: one per core, at most 4).",
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False),
    help="cosign private key to sign the evidence with (password from ATTEST_PASSWORD); else keyless.",
)
@keyless_signing_options(
    token_help="OIDC token for keyless signing (else $SIGSTORE_ID_TOKEN or the CI's ambient token).",
    trust_config_help="Sigstore client trust config of a private instance.",
)
@tlog_signing_options
@click.option(
    "--output-file",
    "-f",
    "output_file",
    required=True,
    help="Report base name: writes BASE.sigstore.json (signed Statement), BASE.json, BASE.html, BASE.csv.",
)
def evidence_command(
    db: str | None,
    since: str,
    until: str | None,
    namespaces: tuple[str, ...],
    image: str | None,
    checkpoint_key: str | None,
    anchors: str | None,
    pipeline_summaries: str | None,
    bucket: str,
    jobs: int | None,
    output_file: str,
    **options: Any,
) -> None:
    """Write signed audit evidence of the admission decisions of a period.

    Verifies the whole decision chain (as `attest decisions verify`) and reports
    for the period: every admitted image with its signers, provenance and SBOM
    attestation, the decisions, how far signed checkpoints cover them, the policy
    bundles and trust in force, exceptions used, gaps and denials by reason.  The
    in-toto Statement (predicate https://attest.dev/evidence/v1, subjects: the
    chain heads and the HTML and CSV files) is signed like attestations; check it
    with `attest verify-blob-attestation BASE.html --bundle BASE.sigstore.json
    --type https://attest.dev/evidence/v1 --key …`.

    The report is written in every case.  Exit 0 when every decision of the period
    is verified, 1 when the chain is broken, 3 when some decision of the period is
    not covered by a checkpoint signed with --checkpoint-key (or no key was given).
    """
    from admission.decisions import query
    from admission.decisions.chain import load_trusted_key
    from admission.decisions.evidence import PREDICATE_TYPE, build_evidence, read_pipeline_summaries
    from admission.decisions.evidence_report import csv_text, html_text
    from admission.decisions.parallel import default_jobs
    from admission.decisions.store import open_database
    from admission.decisions.verify import read_anchors
    from attest.attestations.statement import IN_TOTO_PAYLOAD_TYPE, Subject
    from attest.cli.sign import signer_from
    from attest.signing.bundle import make_bundle

    if anchors and not checkpoint_key:
        raise UsageError(
            "--anchors needs --checkpoint-key (the key the checkpoints are signed with)"
        )
    flt = query.filter_from_text(
        None, since=since, until=until or "0s", namespaces=namespaces, image=image
    )
    paths = output_paths(output_file)
    trusted = load_trusted_key(checkpoint_key) if checkpoint_key else None
    anchored = read_anchors(anchors) if anchors else []
    runs = read_pipeline_summaries(pipeline_summaries) if pipeline_summaries else None
    signer = signer_from(options)  # key password (or token) before the long read
    try:
        with contextlib.closing(open_database(db, create=False)) as database:
            evidence = build_evidence(
                database,
                flt,
                trusted_key=trusted,
                anchors=anchored,
                pipeline_runs=runs,
                bucket=bucket,
                jobs=jobs or default_jobs(),
            )
        html = html_text(evidence.predicate).encode()
        table = csv_text(evidence.images).encode()
        subjects = [
            Subject(f"attest-decision-chain/{replica}#{seq}", {"sha256": head})
            for replica, seq, head in evidence.heads
        ]
        subjects += [
            Subject(paths["html"].name, {"sha256": hashlib.sha256(html).hexdigest()}),
            Subject(paths["csv"].name, {"sha256": hashlib.sha256(table).hexdigest()}),
        ]
        statement = _statement(subjects, PREDICATE_TYPE, evidence.predicate)
        material = signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, statement)
        bundle = make_bundle(material)
    finally:
        close = getattr(signer, "close", None)
        if close is not None:
            close()
    readable = json.dumps(json.loads(statement), indent=2).encode() + b"\n"
    _write_all(
        {
            paths["html"]: html,
            paths["csv"]: table,
            paths["statement"]: readable,
            paths["bundle"]: bundle,
        }
    )
    chain = evidence.predicate["chain"]
    summary = evidence.predicate["summary"]
    info(
        f"evidence: {summary['records']} decisions, {summary['admittedImages']} admitted images; "
        f"chain {chain['status'].upper()} ({chain['verifiedRecords']} of {summary['records']} "
        f"decisions verified); signed with {signer.description}"
    )
    for span in chain["unverified"]:
        info(
            f"NOT VERIFIED: replica {span['replica']} #{span['fromSeq']}..#{span['toSeq']} "
            f"({span['records']} decisions, {span['from']} – {span['until']}): {span['reason']}"
        )
    for name in ("bundle", "statement", "html", "csv"):
        click.echo(str(paths[name]))
    if evidence.status == "broken":
        raise click.exceptions.Exit(EXIT_FAILED)
    if evidence.status != "verified":
        raise click.exceptions.Exit(EXIT_NOT_COVERED)
