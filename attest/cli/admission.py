"""``attest admission``: serve the validating webhook, or review manifests offline."""

from __future__ import annotations

from typing import Any

import click

from attest.cli.common import output_option, print_json


@click.group("admission")
def admission_group() -> None:
    """The Kubernetes validating admission webhook."""


@admission_group.command("serve")
@click.option(
    "--config", "config_path", required=True, type=click.Path(), help="Admission config (YAML)."
)
@click.option("--tls-cert", required=True, type=click.Path(), help="Server certificate (PEM).")
@click.option("--tls-key", required=True, type=click.Path(), help="Server private key (PEM).")
@click.option("--bind", default="0.0.0.0:8443", show_default=True, help="Address to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve_command(
    config_path: str,
    tls_cert: str,
    tls_key: str,
    bind: str,
    workers: int,
    threads: int,
    log_level: str,
) -> None:
    """Serve POST /validate, /healthz and /readyz with gunicorn over TLS."""
    from admission.server import serve

    serve(
        config_path,
        tls_cert=tls_cert,
        tls_key=tls_key,
        bind=bind,
        workers=workers,
        threads=threads,
        log_level=log_level,
    )


def _describe_check(check: dict[str, Any], kind: str) -> str:
    what = check.get("predicateType") if kind == "attestation" else "signature"
    where = f"{check.get('storage')} {check.get('location')}"
    if check.get("verified"):
        return f"    {what}: verified by {check.get('authority')} ({where})"
    return f"    {what}: failed ({where}): {'; '.join(check.get('reasons') or ['no reason given'])}"


def print_decision(decision: Any) -> None:
    """A decision and every reason, for people."""
    verdict = {"allowed": "ADMITTED", "warned": "ADMITTED (with warnings)"}.get(
        decision.result, decision.result.upper().replace("_", " ")
    )
    where = f"{decision.namespace}/{decision.name}" if decision.namespace else decision.name
    click.echo(f"{verdict}: {decision.kind} {where} ({decision.operation})")
    for message in decision.messages:
        click.echo(f"  {'deny' if not decision.allowed else 'note'}: {message}")
    for warning in decision.warnings:
        click.echo(f"  warn: {warning}")
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


@admission_group.command("review")
@click.argument("file", type=click.Path())
@click.option(
    "--config",
    "config_path",
    type=click.Path(),
    help="Admission config (YAML); default: built-in policy, unmatched images denied.",
)
@output_option
def review_command(file: str, config_path: str | None, output_format: str) -> None:
    """Judge manifests (multi-document YAML/JSON) or AdmissionReviews in FILE offline.

    Exit 0 when every workload is admitted (warnings included), 1 when one is
    denied, 2 when the input or configuration is unusable.
    """
    from admission.offline import review_file

    decisions = review_file(file, config_path=config_path)
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
    if any(d.code == 400 for d in decisions):
        raise click.exceptions.Exit(2)
    if not all(d.allowed for d in decisions):
        raise click.exceptions.Exit(1)
