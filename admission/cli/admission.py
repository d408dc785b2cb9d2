"""``attest admission``: serve the validating webhook, or review manifests offline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from admission.cli import ExtraGroup
from admission.decisions import DB_VARIABLE, DEFAULT_DB
from admission.errors import DecisionStoreError
from admission.jsonlog import LOG_FORMATS, LOG_LEVELS, LogFormat, LogLevel
from attest.cli.common import info, output_option, print_json
from attest.errors import EXIT_FAILED, EXIT_USAGE, UsageError

if TYPE_CHECKING:
    from admission.decisions.chain import HeadSigner
    from admission.verdict import Decision


@click.group("admission", cls=ExtraGroup)
def admission_group() -> None:
    """The Kubernetes validating admission webhook."""


@admission_group.command("serve")
@click.option(
    "--config", "config_path", required=True, type=click.Path(), help="Admission config (YAML)."
)
@click.option("--tls-cert", required=True, type=click.Path(), help="Server certificate (PEM).")
@click.option("--tls-key", required=True, type=click.Path(), help="Server private key (PEM).")
@click.option(
    "--bind", default="0.0.0.0:8443", show_default=True, help="Webhook address (HOST:PORT)."
)
@click.option(
    "--web-port",
    default=0,
    type=click.IntRange(0, 65535),
    help="Ops port on the same host as --bind, e.g. 8444: /metrics and the AppSec decisions "
    "view (default: off).",
)
@click.option(
    "--web-token-file",
    type=click.Path(dir_okay=False),
    envvar="ATTEST_WEB_TOKEN_FILE",
    help="Bearer token for the decisions view (without it the view is off).",
)
@click.option(
    "--db",
    default=DEFAULT_DB,
    show_default=True,
    envvar=DB_VARIABLE,
    metavar="PATH|URL",
    help=f"Decision database: an SQLite file or a postgresql:// URL (${DB_VARIABLE}).",
)
@click.option(
    "--record/--no-record",
    default=True,
    show_default=True,
    help="Record every decision in the decision database.",
)
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False),
    help="Key that signs decision chain heads (cosign key file or PEM; password "
    "from ATTEST_PASSWORD).",
)
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False),
    help="Require a client certificate issued by this CA (PEM) on the webhook port, as the "
    "API server presents with an AdmissionConfiguration kubeconfig; connections without "
    "one fail in the TLS handshake. The certificate subject is recorded as each "
    "decision's caller.",
)
@click.option(
    "--probe-port",
    default=0,
    type=click.IntRange(0, 65535),
    help="Port on the same host as --bind serving only GET /healthz and /readyz over TLS "
    "without a client certificate, for the kubelet (needed with --client-ca; default: off).",
)
@click.option(
    "--read-header-timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.5, 60),
    help="Seconds for a connection's TLS handshake and request head, from its first byte.",
)
@click.option(
    "--read-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5, 120),
    help="Seconds for the whole request (head and body), from its first byte.",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(LOG_LEVELS),
)
@click.option(
    "--log-format",
    default="json",
    show_default=True,
    type=click.Choice(LOG_FORMATS),
    help="json: one object per line (one per decision); text: for people.",
)
@click.option(
    "--checkpoint-interval",
    "checkpoint_seconds",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="With --signing-key: sign each chain head at least this often while new records "
    "arrive (and always at shutdown).",
)
@click.option(
    "--checkpoint-records",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="With --signing-key: also sign the head after every N new records.",
)
def serve_command(
    config_path: str,
    tls_cert: str,
    tls_key: str,
    bind: str,
    web_port: int,
    web_token_file: str | None,
    db: str,
    record: bool,
    signing_key: str | None,
    client_ca: str | None,
    probe_port: int,
    read_header_timeout: float,
    read_timeout: float,
    workers: int,
    threads: int,
    log_level: LogLevel,
    log_format: LogFormat,
    checkpoint_seconds: float,
    checkpoint_records: int,
) -> None:
    """Serve the webhook (POST /validate and /mutate, /healthz, /readyz) with gunicorn over
    TLS, on --web-port /metrics and the read-only decisions view, and on --probe-port the
    probes alone."""
    from admission.server import serve

    serve(
        config_path,
        tls_cert=tls_cert,
        tls_key=tls_key,
        bind=bind,
        web_port=web_port,
        web_token_file=web_token_file,
        db=db,
        record=record,
        signing_key=signing_key,
        client_ca=client_ca,
        probe_port=probe_port,
        read_header_timeout=read_header_timeout,
        read_timeout=read_timeout,
        workers=workers,
        threads=threads,
        log_level=log_level,
        log_format=log_format,
        checkpoint_seconds=checkpoint_seconds,
        checkpoint_records=checkpoint_records,
    )


def _describe_check(check: dict[str, Any], kind: str) -> str:
    what = check.get("predicateType") if kind == "attestation" else "signature"
    where = f"{check.get('storage')} {check.get('location')}"
    if check.get("verified"):
        return f"    {what}: verified by {check.get('authority')} ({where})"
    return f"    {what}: failed ({where}): {'; '.join(check.get('reasons') or ['no reason given'])}"


def print_decision(decision: Decision) -> None:
    """A decision and every reason (with its code), for people."""
    from admission.decisions.text import coded

    verdict = {"allowed": "ADMITTED", "warned": "ADMITTED (with warnings)"}.get(
        decision.result, decision.result.upper().replace("_", " ")
    )
    where = f"{decision.namespace}/{decision.name}" if decision.namespace else decision.name
    click.echo(f"{verdict}: {decision.kind} {where} ({decision.operation})")
    for message in decision.messages:
        label = "deny" if not decision.allowed else "note"
        click.echo(f"  {label}: {message}{coded(decision.codes.get(message))}")
    for warning in decision.warnings:
        click.echo(f"  warn: {warning}{coded(decision.codes.get(warning))}")
    for image in decision.images:
        digest = image.digest or "unresolved"
        policy = image.policy or "no policy"
        cached = ", cached" if image.cached else ""
        click.echo(f"  image {image.reference} -> {digest} [{policy}: {image.outcome}{cached}]")
        if image.error:
            click.echo(f"    error: {image.error}")
        verification = image.verification or {}
        for check in verification.get("signatures", []):
            click.echo(_describe_check(check, "signature"))
        for check in verification.get("attestations", []):
            click.echo(_describe_check(check, "attestation"))
        for error in verification.get("errors", []):
            click.echo(f"    lookup error: {error}")


def _record(db: str | None, decisions: list[Decision], signer: HeadSigner | None) -> None:
    """Write the decisions as one chain segment of replica ``review-<host>`` (signed head
    with ``signer``)."""
    import re
    import socket

    from admission.decisions.store import record_now

    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:150].strip(".-") or "host"
    try:
        head = record_now(db, decisions, replica=f"review-{host}", signer=signer)
    except DecisionStoreError as err:  # not "denied" (exit 1): the command could not finish
        raise UsageError(f"--record: {err}") from None
    noun = "decision" if len(decisions) == 1 else "decisions"
    info(f"recorded {len(decisions)} {noun} (replica {head.replica}, up to #{head.seq})")


@admission_group.command("review")
@click.argument("files", metavar="FILE...", nargs=-1, required=True, type=click.Path())
@click.option(
    "--config",
    "config_path",
    type=click.Path(),
    help="Admission config (YAML); default: built-in policy, unmatched images denied.",
)
@click.option(
    "--record",
    is_flag=True,
    help="Also store the decisions in the decision database (--db / $ATTEST_DB).",
)
@click.option(
    "--db",
    metavar="PATH|URL",
    help=f"Decision database for --record: an SQLite file or a postgresql:// URL "
    f"(default ${DB_VARIABLE}).",
)
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False),
    help="With --record: sign the new chain head (cosign key file or PEM; password from "
    "ATTEST_PASSWORD).",
)
@output_option
def review_command(
    files: tuple[str, ...],
    config_path: str | None,
    record: bool,
    db: str | None,
    signing_key: str | None,
    output_format: str,
) -> None:
    """Judge manifests (multi-document YAML/JSON) or AdmissionReviews offline.

    FILE is a file, a directory (every .yaml/.yml/.json below) or - for stdin.

    Exit 0 when every workload is admitted (warnings included), 1 when one is
    denied, 2 when the input or configuration is unusable.
    """
    from admission.suites import read_sources, review_sources

    if db and not record:
        raise UsageError("--db is where --record writes; add --record")
    if signing_key and not record:
        raise UsageError("--signing-key signs recorded decisions; add --record")
    signer = None
    if record:
        from admission.decisions.chain import load_head_signer
        from admission.decisions.store import resolve_target

        resolve_target(db)  # fail before judging when there is nowhere to record
        signer = load_head_signer(signing_key) if signing_key else None
    decisions = review_sources(read_sources(files), config_path=config_path)
    if output_format == "json":
        print_json(
            {
                "admitted": all(d.allowed for d in decisions),
                "decisions": [d.to_dict() for d in decisions],
            }
        )
    else:
        for decision in decisions:
            print_decision(decision)
    if record:
        _record(db, decisions, signer)
    if any(d.code == 400 for d in decisions):
        raise click.exceptions.Exit(EXIT_USAGE)
    if not all(d.allowed for d in decisions):
        raise click.exceptions.Exit(EXIT_FAILED)


from admission.cli.admission_suite import test_command  # noqa: E402  (the suite runner)

admission_group.add_command(test_command)
