"""``attest-conformance``: the Sigstore client conformance CLI protocol over our library.

The sigstore-conformance suite drives clients through two subcommands with
fixed argument order (its ``docs/cli_protocol.md``)::

    sign-bundle [--staging] [--in-toto] --identity-token TOKEN --bundle FILE
                [--trusted-root FILE] [--signing-config FILE] FILE
    verify-bundle [--staging] --bundle FILE (--certificate-identity ID
                  --certificate-oidc-issuer URL | --key PEM) [--trusted-root FILE] FILE_OR_DIGEST

The last argument of ``verify-bundle`` is a path, or ``sha256:<hex>`` when that is
not a file.  For DSSE bundles it names a subject of the in-toto statement.
Exit status 0 means success; failures print one line to stderr and exit 1.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import click

from attest.errors import AttestError, UsageError

_DIGEST = re.compile(r"sha256:[0-9a-fA-F]{64}\Z")


def _artifact(value: str) -> tuple[bytes | None, str | None]:
    """File contents, or a ``sha256:`` digest when ``value`` is one and not a file."""
    path = Path(value)
    if _DIGEST.match(value) and not path.exists():
        return None, value.lower()
    try:
        return path.read_bytes(), None
    except OSError as err:
        raise UsageError(f"artifact {value} cannot be read: {err.strerror}") from None


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise UsageError(f"{what} {path} cannot be read: {err.strerror}") from None


def _staging_refused(staging: bool) -> None:
    if staging:
        raise UsageError("--staging needs network access to Sigstore staging; pass --trusted-root")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def conformance() -> None:
    """Sigstore client conformance protocol (sign-bundle / verify-bundle)."""


@conformance.command("verify-bundle")
@click.option(
    "--staging", is_flag=True, help="Use Sigstore staging (offline: needs --trusted-root)."
)
@click.option("--bundle", "bundle_path", required=True, help="The bundle to verify.")
@click.option("--certificate-identity", "identity", help="Expected certificate SAN.")
@click.option("--certificate-oidc-issuer", "issuer", help="Expected OIDC issuer.")
@click.option("--key", "key_path", help="PEM public key for key-based bundles.")
@click.option("--trusted-root", "trusted_root", help="trusted_root.json (default: public good).")
@click.argument("file_or_digest")
def verify_bundle_command(
    staging: bool,
    bundle_path: str,
    identity: str | None,
    issuer: str | None,
    key_path: str | None,
    trusted_root: str | None,
    file_or_digest: str,
) -> None:
    """Verify BUNDLE for FILE_OR_DIGEST; exit 0 only if it verifies."""
    from attest.signing.authority import (
        TLOG_IF_PRESENT,
        Authority,
        KeyAuthority,
        KeylessAuthority,
    )
    from attest.signing.bundle_verify import verify_bundle
    from attest.signing.fulcio import IdentityPolicy
    from attest.signing.trust import load_trusted_root

    if trusted_root is None:
        _staging_refused(staging)
    bundle = _read(bundle_path, "bundle")
    artifact, digest = _artifact(file_or_digest)
    root = load_trusted_root(trusted_root)
    authority: Authority
    if key_path is not None:
        authority = KeyAuthority("key", _read(key_path, "key"), tlog=TLOG_IF_PRESENT)
    elif identity is not None and issuer is not None:
        authority = KeylessAuthority(
            "identity", IdentityPolicy(subject=identity, issuer=issuer), trusted_root=trusted_root
        )
    else:
        raise UsageError("give --key, or --certificate-identity with --certificate-oidc-issuer")
    result = verify_bundle(
        bundle, authority, artifact=artifact, artifact_digest=digest, trusted_root=root
    )
    if not result.verified:
        raise AttestError("verification failed: " + "; ".join(result.reasons))
    click.echo("OK", err=True)


@conformance.command("sign-bundle")
@click.option("--staging", is_flag=True, help="Use Sigstore staging (needs network).")
@click.option("--in-toto", "in_toto", is_flag=True, help="FILE is an in-toto statement: sign DSSE.")
@click.option("--identity-token", "token", required=True, help="OIDC identity token.")
@click.option("--bundle", "bundle_path", required=True, help="Where to write the bundle.")
@click.option("--trusted-root", "trusted_root", help="trusted_root.json of the instance.")
@click.option("--signing-config", "signing_config", help="signing_config.json of the instance.")
@click.argument("file")
def sign_bundle_command(
    staging: bool,
    in_toto: bool,
    token: str,
    bundle_path: str,
    trusted_root: str | None,
    signing_config: str | None,
    file: str,
) -> None:
    """Sign FILE keylessly and write a Sigstore bundle."""
    from attest.attestations.statement import IN_TOTO_PAYLOAD_TYPE
    from attest.signing.bundle import make_bundle
    from attest.signing.keyless import KeylessSigner
    from attest.signing.trust import load_trust_config, trust_config_from_parts

    if (trusted_root is None) != (signing_config is None):
        raise UsageError("--trusted-root and --signing-config go together")
    if trusted_root is None:
        _staging_refused(staging)
        config = load_trust_config(None)
    else:
        config = trust_config_from_parts(trusted_root, str(signing_config))
    payload = _read(file, "artifact")
    with KeylessSigner(identity_token=token, trust=config) as signer:
        if in_toto:
            material = signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, payload)
        else:
            material = signer.sign(payload)
    target = Path(bundle_path)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(make_bundle(material))
    partial.replace(target)


def main(argv: list[str] | None = None) -> int:
    """Run the conformance CLI; failures are one line on stderr and exit 1 (usage 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("sigstore").setLevel(logging.ERROR)
    try:
        conformance.main(args=args, prog_name="attest-conformance", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except click.UsageError as err:
        click.echo(f"attest-conformance: error: {err.format_message()}", err=True)
        return 2
    except AttestError as err:
        click.echo(f"attest-conformance: error: {err}", err=True)
        return err.exit_code
    except Exception as err:  # a bug: one line, still a failure
        click.echo(
            f"attest-conformance: error: internal error: {type(err).__name__}: {err}", err=True
        )
        return 70
    return 0


if __name__ == "__main__":
    sys.exit(main())
