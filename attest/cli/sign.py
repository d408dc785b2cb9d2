"""``attest keygen``, ``attest sign`` and ``attest verify``: thin doors onto attest.signing/verify."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from attest.cli.common import (
    OutputFormat,
    authority_options,
    info,
    keyless_signing_options,
    output_option,
    print_json,
    registry_options,
    registry_options_from,
    tlog_signing_options,
)
from attest.errors import UsageError, VerificationFailed
from attest.files import atomic_write
from attest.oci.access import open_store, parse_image_target, resolve_image

if TYPE_CHECKING:  # the signing stack (sigstore-python) is imported only when a command runs
    from attest.signing.authority import VerificationPolicy
    from attest.signing.signer import Signer
    from attest.verify import ImageVerification


def parse_annotations(values: tuple[str, ...]) -> dict[str, str]:
    """``-a key=value`` options as a dict."""
    annotations: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise UsageError(f"annotation {value!r} is not KEY=VALUE")
        annotations[key] = item
    return annotations


annotation_option = click.option(
    "-a",
    "--annotation",
    "--annotations",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    help="Annotation to sign (sign) or to require in the signed payload (verify); repeatable.",
)


# -- keygen -----------------------------------------------------------------------------------


def _write_private(path: str, data: bytes) -> None:
    with atomic_write(path, prefix=".attest-key-", mode=0o600) as handle:
        handle.write(data)


@click.command("keygen")
@click.option(
    "--output-key-prefix",
    default="cosign",
    show_default=True,
    help="Write PREFIX.key (encrypted private key) and PREFIX.pub (public key).",
)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
def keygen_command(output_key_prefix: str, force: bool) -> None:
    """Generate an ECDSA P-256 key pair in cosign's formats.

    The password comes from ATTEST_PASSWORD (or COSIGN_PASSWORD), else a prompt.
    """
    from attest.signing import keys

    private_path, public_path = f"{output_key_prefix}.key", f"{output_key_prefix}.pub"
    for path in (private_path, public_path):
        if os.path.exists(path) and not force:
            raise UsageError(f"{path} already exists (use --force to overwrite)")
    password = keys.obtain_password(private_path, confirm=True)
    pair = keys.generate_key_pair(password)
    try:
        _write_private(private_path, pair.private_pem)
        with open(public_path, "wb") as handle:
            handle.write(pair.public_pem)
    except OSError as err:
        raise UsageError(f"cannot write key files ({err.strerror or err})") from None
    info(f"Private key written to {private_path}")
    info(f"Public key written to {public_path}")


# -- sign ------------------------------------------------------------------------------------


def make_signer(
    key: str | None,
    identity_token: str | None,
    trust_config: str | None,
    *,
    tlog_upload: bool = True,
    rekor_url: str | None = None,
    timeout: float | None = None,
) -> Signer:
    """A key signer for ``--key``, else a keyless Sigstore signer (token from flag/env/CI).

    A key signer logs in Rekor unless ``tlog_upload`` is false, as cosign does: at
    ``rekor_url``, else the trust config's log, else Sigstore's public-good Rekor.
    """
    from attest.signing.rekor import DEFAULT_TIMEOUT_SECONDS as REKOR_TIMEOUT
    from attest.signing.signer import KeySigner

    if key:
        if identity_token:
            raise UsageError("--identity-token is for keyless signing, not --key")
        if not tlog_upload and (rekor_url or trust_config):
            raise UsageError(
                "--tlog-upload=false signs without a log: drop --rekor-url/--trust-config"
            )
        rekor = None
        if tlog_upload:
            from attest.signing.rekor import rekor_target
            from attest.signing.trust import load_trust_config

            trust = load_trust_config(trust_config) if trust_config else None
            rekor = rekor_target(rekor_url=rekor_url, trust=trust)
        # The command's --timeout bounds the Rekor exchange as well as the registry's.
        limit = REKOR_TIMEOUT if timeout is None else min(REKOR_TIMEOUT, timeout)
        return KeySigner.from_file(key, rekor=rekor, timeout=limit)
    if not tlog_upload or rekor_url:
        raise UsageError(
            "--tlog-upload and --rekor-url are for --key; keyless signing is always logged "
            "in the Rekor of --trust-config"
        )
    from attest.signing.keyless import KeylessSigner

    return KeylessSigner(identity_token=identity_token, trust_config=trust_config)


def signer_from(options: Mapping[str, Any]) -> Signer:
    """The signer of a command's ``--key``/``--identity-token``/``--trust-config`` and
    ``--tlog-upload``/``--rekor-url`` options."""
    return make_signer(
        options["key"],
        options["identity_token"],
        options["trust_config"],
        tlog_upload=options["tlog_upload"],
        rekor_url=options["rekor_url"],
        timeout=options.get("timeout"),
    )


@click.command("sign")
@click.argument("image")
@click.option(
    "--key", type=click.Path(dir_okay=False), help="cosign private key file (else keyless)."
)
@click.option(
    "--legacy", is_flag=True, help="Store as cosign's sha256-<hex>.sig tag, not a bundle."
)
@annotation_option
@keyless_signing_options(
    token_help="OIDC token for keyless signing (else $SIGSTORE_ID_TOKEN or CI).",
    trust_config_help="Sigstore client trust config of a private instance (keyless; with "
    "--key, its Rekor logs the signature).",
)
@tlog_signing_options
@output_option
@registry_options
def sign_command(
    image: str,
    legacy: bool,
    annotations: tuple[str, ...],
    output_format: OutputFormat,
    **options: Any,
) -> None:
    """Sign IMAGE by digest and store the signature next to it.

    The default storage is a Sigstore bundle v0.3 as an OCI referrer (cosign v3);
    --legacy appends to cosign's .sig tag.  A tag is resolved to its digest first.
    """
    from attest.signing.storage import attach_signature

    target = parse_image_target(image)
    signed_annotations = parse_annotations(annotations)
    registry = registry_options_from(options)
    with contextlib.ExitStack() as stack:
        signer = signer_from(options)
        if hasattr(signer, "close"):
            stack.callback(signer.close)
        store = stack.enter_context(open_store(target, registry))
        resolved = resolve_image(store, target)
        if target.digest is None:
            info(
                f"Signing {resolved.pinned} (resolved from {target}); signatures always name a digest"
            )
        location = attach_signature(
            store, resolved, signer, annotations=signed_annotations, legacy=legacy
        )
    storage = "legacy" if legacy else "bundle"
    info(f"Signed {resolved.pinned} with {signer.description}; stored as {storage} at {location}")
    if output_format == "json":
        print_json(
            {
                "reference": str(target),
                "digest": resolved.digest,
                "storage": storage,
                "location": location,
                "signer": signer.description,
            }
        )
    else:
        click.echo(location)


# -- verify ----------------------------------------------------------------------------------


def build_policy(options: Mapping[str, Any], annotations: dict[str, str]) -> VerificationPolicy:
    """The verification policy that a command's :func:`authority_options` describe."""
    from attest.signing import keys
    from attest.signing.authority import (
        TLOG_IGNORED,
        TLOG_REQUIRED,
        Authority,
        KeyAuthority,
        KeylessAuthority,
        VerificationPolicy,
    )
    from attest.signing.fulcio import IdentityPolicy

    key, trusted_root = options["key"], options["trusted_root"]
    identity, identity_regexp = options["identity"], options["identity_regexp"]
    issuer, issuer_regexp = options["issuer"], options["issuer_regexp"]
    ignore_tlog = options["insecure_ignore_tlog"]

    keyless = any((identity, identity_regexp, issuer, issuer_regexp))
    if key and keyless:
        raise UsageError("give either --key or --certificate-identity/--certificate-oidc-issuer")
    if keyless and ignore_tlog:
        raise UsageError(
            "--insecure-ignore-tlog is for --key; keyless signatures need the log entry "
            "or timestamp their trusted root requires"
        )
    authority: Authority
    if key:
        keys.load_public_key_file(key)  # a one-line error for a bad key file, before any network
        authority = KeyAuthority(
            name=key,
            public_key_pem=keys.read_key_file(key),
            trusted_root=trusted_root,
            tlog=TLOG_IGNORED if ignore_tlog else TLOG_REQUIRED,
        )
    elif keyless:
        if identity and identity_regexp:
            raise UsageError(
                "give --certificate-identity or --certificate-identity-regexp, not both"
            )
        if issuer and issuer_regexp:
            raise UsageError(
                "give --certificate-oidc-issuer or --certificate-oidc-issuer-regexp, not both"
            )
        authority = KeylessAuthority(
            name="keyless",
            identity=IdentityPolicy(
                subject=identity,
                subject_regexp=identity_regexp,
                issuer=issuer,
                issuer_regexp=issuer_regexp,
            ),
            trusted_root=trusted_root,
        )
    else:
        raise UsageError(
            "give --key or --certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp]"
        )
    return VerificationPolicy((authority,), required_annotations=annotations)


def _print_text(result: ImageVerification) -> None:
    click.echo(f"Image:  {result.reference}")
    click.echo(f"Digest: {result.digest}")
    if not result.signatures:
        click.echo("No signatures found.")
    for check in result.signatures:
        mark = "OK  " if check.verified else "FAIL"
        click.echo(f"{mark} {check.storage:<6} {check.location}")
        click.echo(f"     signer: {check.signer.describe()}")
        if check.tlog:
            click.echo(
                f"     tlog:   index {check.tlog.get('logIndex')}, "
                f"integrated {check.tlog.get('integratedTime')}"
            )
        for reason in check.reasons:
            click.echo(f"     - {reason}")
    for error in result.errors:
        click.echo(f"WARN {error}")


@click.command("verify")
@click.argument("image")
@authority_options(
    key_help="Public key (PEM) signatures must verify with.",
    identity_help="Exact certificate identity (email, URI).",
    issuer_help="Exact OIDC issuer of the certificate.",
    trusted_root_help="trusted_root.json for certificates and log entries (default: Sigstore public good, offline).",
)
@annotation_option
@output_option
@registry_options
def verify_command(
    image: str, annotations: tuple[str, ...], output_format: OutputFormat, **options: Any
) -> None:
    """Verify IMAGE's signatures (bundle referrers and legacy .sig tags).

    Exits 0 only if at least one signature satisfies the policy; otherwise lists every
    signature found and why each failed.
    """
    from attest.verify import verify_image

    target = parse_image_target(image)
    policy = build_policy(options, parse_annotations(annotations))
    result = verify_image(
        target, policy, options=registry_options_from(options), attestations=False
    )
    if output_format == "json":
        print_json(result.to_dict())
    else:
        _print_text(result)
    if not result.verified:
        found = len(result.signatures)
        raise VerificationFailed(
            f"{result.reference}@{result.digest}: no signature satisfies the policy "
            f"({found} signature{'s' if found != 1 else ''} found)"
        )
    info(
        f"Verified {result.reference}@{result.digest}: "
        f"{sum(s.verified for s in result.signatures)} of {len(result.signatures)} signatures "
        "satisfy the policy"
    )
