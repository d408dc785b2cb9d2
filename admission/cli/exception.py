"""``attest exception create|list|verify``: signed break-glass exceptions for the webhook.

A thin door onto :mod:`admission.exceptions`: ``create`` signs an exception document
(the same signers as ``attest attest``: ``--key`` or keyless); ``list`` and ``verify``
check documents against trusted signer keys (``--key``) or the signers and directory
of an admission configuration (``--config``), exactly as the webhook does.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import click

from admission.cli import ExtraGroup
from attest.cli.common import (
    info,
    keyless_signing_options,
    output_option,
    print_json,
    tlog_signing_options,
)
from attest.errors import UsageError, VerificationFailed


@click.group("exception", cls=ExtraGroup)
def exception_group() -> None:
    """Signed break-glass exceptions that admit an otherwise denied image, for a while."""


def _expiry(text: str, now: dt.datetime) -> dt.datetime:
    from admission.decisions.query import _RELATIVE, _UNITS
    from admission.exceptions.document import parse_moment

    relative = _RELATIVE.match(text.strip())
    if relative:
        return now + dt.timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        return parse_moment(text, "--expires")
    except UsageError:
        raise UsageError(
            f"--expires {text!r}: use an RFC 3339 time (2026-12-24T18:00:00Z) or 30m, 72h, 7d"
        ) from None


@exception_group.command("create")
@click.option("--namespace", required=True, help="The one namespace the exception is for.")
@click.option(
    "--image",
    required=True,
    metavar="GLOB|DIGEST",
    help="Image glob (as in image policies), sha256:<hex>, or GLOB@sha256:<hex>.",
)
@click.option("--reason", required=True, help="Why (shown in warnings and records).")
@click.option("--ticket", required=True, help="The change or incident ticket.")
@click.option(
    "--expires",
    required=True,
    metavar="TIME",
    help="RFC 3339 time (2026-12-24T18:00:00Z) or a duration from now (30m, 72h, 7d).",
)
@click.option(
    "--covers",
    multiple=True,
    type=click.Choice(["timeout", "error"]),
    help="Also admit when verification times out / fails with an error (repeatable; "
    "by default an exception covers neither).",
)
@click.option("--id", "ident", help="Exception id (default: exc-<random>).")
@click.option(
    "--key", type=click.Path(dir_okay=False), help="cosign private key file (else keyless)."
)
@keyless_signing_options(
    token_help="OIDC token for keyless signing (else $SIGSTORE_ID_TOKEN or CI).",
    trust_config_help="Sigstore client trust config of a private instance.",
)
@tlog_signing_options
@click.option(
    "--output-file",
    "-f",
    "output_file",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write the signed exception (a Sigstore bundle, JSON).",
)
def create_command(
    namespace: str,
    image: str,
    reason: str,
    ticket: str,
    expires: str,
    covers: tuple[str, ...],
    ident: str | None,
    output_file: str,
    **options: Any,
) -> None:
    """Write a signed exception document for the webhook's exception directory."""
    from admission.exceptions.document import new_document, sign_exception
    from attest.cli.sign import signer_from
    from attest.files import atomic_write

    now = dt.datetime.now(dt.UTC)
    until = _expiry(expires, now)
    if until <= now:
        raise UsageError(f"--expires {expires}: that is not in the future")
    document = new_document(
        namespace=namespace,
        image=image,
        reason=reason,
        ticket=ticket,
        expires=until,
        covers=covers,
        ident=ident,
        created=now,
    )
    signer = signer_from(options)
    bundle = sign_exception(document, signer)
    try:
        with atomic_write(output_file, mode=0o644) as out:
            out.write(bundle + b"\n")
    except OSError as err:
        raise UsageError(f"{output_file}: cannot write ({err.strerror or err})") from None
    info(
        f"exception {document.id} for {document.image.text()} in namespace {namespace}, "
        f"until {document.expires}, signed with {signer.description}: {output_file}"
    )
    click.echo(document.id)


def _exceptions(config: str | None, keys: tuple[str, ...], paths: tuple[str, ...]) -> Any:
    """The exceptions to show: ``paths`` (files or directories) or the config's directory,
    checked against ``--key`` files or the config's signers."""
    from admission.config import load_config
    from admission.exceptions.document import read_exception
    from admission.exceptions.settings import ExceptionSet, exception_files
    from attest.signing.authority import TLOG_IF_PRESENT, KeyAuthority

    if bool(config) == bool(keys):
        raise UsageError(
            "give the trusted signers: --config ADMISSION.yaml or --key PUB (not both)"
        )
    if config:
        loaded = load_config(config).exceptions
        if loaded is None:
            raise UsageError(f"admission config {config}: it has no 'exceptions' section")
        if not paths:
            return loaded
        signers = loaded.signers
    else:
        signers = tuple(
            KeyAuthority(name=path, public_key_pem=_read(path), tlog=TLOG_IF_PRESENT)
            for path in keys
        )
        if not paths:
            raise UsageError("name exception files or directories (or give --config)")
    files: list[str] = []
    for path in paths:
        files.extend(exception_files(path) if os.path.isdir(path) else [path])
    return ExceptionSet("", signers, tuple(read_exception(_read(f), f, signers) for f in files))


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(2 * 1024 * 1024)
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror}") from None


signer_choice = [
    click.option(
        "--config",
        type=click.Path(dir_okay=False),
        help="Admission config: its exception signers (and directory, without PATHS).",
    ),
    click.option(
        "--key",
        "keys",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="Trusted signer public key (repeatable).",
    ),
]


def _signers(func: Any) -> Any:
    for option in reversed(signer_choice):
        func = option(func)
    return func


@exception_group.command("list")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@_signers
@output_option
def list_command(
    paths: tuple[str, ...], config: str | None, keys: tuple[str, ...], output_format: str
) -> None:
    """List exceptions with their status: in-force, expiring (within a day), expired, rejected."""
    from admission.exceptions.settings import describe

    rows = describe(_exceptions(config, keys, paths), dt.datetime.now(dt.UTC))
    if output_format == "json":
        print_json(rows)
        return
    for row in rows:
        what = f"{row['namespace']} {row['image']} until {row['expires']} ({row['ticket']})"
        if row["problem"]:
            what = f"{row['file']}: {row['problem']}"
        click.echo(f"{row['status']:<9} {row['id'] or '-':<20} {what}")


@exception_group.command("verify")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@_signers
@output_option
def verify_command(
    paths: tuple[str, ...], config: str | None, keys: tuple[str, ...], output_format: str
) -> None:
    """Verify exceptions: exit 0 only if every one is signed by a trusted signer and unexpired."""
    from admission.exceptions.settings import describe

    rows = describe(_exceptions(config, keys, paths), dt.datetime.now(dt.UTC))
    if output_format == "json":
        print_json(rows)
    bad = [r for r in rows if r["status"] in ("rejected", "expired")]
    for row in rows:
        if output_format == "text":
            if row["status"] == "rejected":
                click.echo(f"{row['file']}: rejected: {row['problem']}")
            elif row["status"] == "expired":
                click.echo(f"{row['file']}: {row['id']} expired at {row['expires']}")
            else:
                click.echo(f"{row['file']}: {row['id']} verified (signer {row['signer']})")
    if not rows:
        raise VerificationFailed("no exception documents to verify")
    if bad:
        raise VerificationFailed(f"{len(bad)} of {len(rows)} exceptions are not valid")
