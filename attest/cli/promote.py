"""``attest promote``: verify, copy, and sign a promotion attestation (attest/promote.py)."""

from __future__ import annotations

import contextlib
from typing import Any

import click

from attest.cli.attached import parse_kinds
from attest.cli.common import (
    authority_options,
    info,
    keyless_signing_options,
    output_option,
    print_json,
    registry_options,
    registry_options_from,
    tlog_signing_options,
)
from attest.oci.access import parse_image_target


@click.command("promote")
@click.argument("source")
@click.argument("destination")
@authority_options(
    key_help="Public key SOURCE's signature (and required attestations) must verify with.",
    identity_help="Exact certificate identity SOURCE must be signed by (keyless).",
    issuer_help="Exact OIDC issuer of that certificate.",
    trusted_root_help="trusted_root.json for verifying (default: Sigstore public good, offline).",
)
@click.option(
    "--require-attestation",
    "required",
    multiple=True,
    metavar="TYPE",
    help="An attestation type SOURCE must carry, verified by the same authority "
    "(slsaprovenance1, cyclonedx, … or a URI); repeatable.",
)
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False),
    help="cosign private key that signs the promotion attestation (else keyless).",
)
@keyless_signing_options(
    token_help="OIDC token for signing the promotion attestation keyless.",
    trust_config_help="Sigstore client trust config (keyless signing, or the Rekor of "
    "--signing-key).",
)
@tlog_signing_options
@click.option(
    "--only",
    default="all",
    show_default=True,
    help="What attached to copy along: signature, attestation, sbom (comma-separated) or all.",
)
@output_option
@registry_options
def promote_command(
    source: str,
    destination: str,
    required: tuple[str, ...],
    signing_key: str | None,
    only: str,
    output_format: str,
    **options: Any,
) -> None:
    """Verify SOURCE, copy it with everything attached to DESTINATION, and attach a signed
    promotion attestation (https://attest.dev/promotion/v1) there.

    SOURCE must carry a signature that verifies with --key (or the certificate
    identity) and, for each --require-attestation, a verified attestation of that
    type.  Otherwise nothing is copied and the command exits 1.
    """
    from attest.attestations.predicates import resolve_predicate_type
    from attest.cli.sign import build_policy, make_signer
    from attest.promote import promote

    src, dst = parse_image_target(source), parse_image_target(destination)
    kinds = parse_kinds(only, "--only")
    types = [resolve_predicate_type(t) for t in required]
    policy = build_policy(options, {})
    registry = registry_options_from(options)
    with contextlib.ExitStack() as stack:
        # The signer first: a bad signing key fails before anything is verified or copied.
        signer = make_signer(
            signing_key,
            options["identity_token"],
            options["trust_config"],
            tlog_upload=options["tlog_upload"],
            rekor_url=options["rekor_url"],
            timeout=options["timeout"],
        )
        if hasattr(signer, "close"):
            stack.callback(signer.close)
        result = promote(src, dst, policy, types, signer, registry, kinds=kinds)
    passed = ", ".join(f"{c['check']} {c['name']}" for c in result["predicate"]["checks"])
    info(f"Promoted {result['source']} to {result['destination']} after: {passed}")
    info(f"Promotion attestation stored at {result['promotion']}")
    if output_format == "json":
        print_json(result)
    else:
        click.echo(result["destination"])
