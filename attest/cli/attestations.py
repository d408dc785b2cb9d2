"""``attest provenance``, ``attest attest``, ``attest verify-attestation`` and
``attest verify-blob-attestation``: thin doors onto :mod:`attest.attestations`.

Everything that can be checked locally (predicate file, type, CI facts, key
password, Statement validity) is checked before the first registry write, so a
bad input pushes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from attest.attestations.predicates import load_predicate, resolve_predicate_type
from attest.attestations.provenance import (
    ProvenanceOptions,
    detect_build_context,
    provenance_statement,
)
from attest.attestations.slsa import SLSA_PROVENANCE_TYPES, SlsaExpectations, predicate_facts
from attest.attestations.statement import Statement, build_statement, subject_for_image
from attest.attestations.verification import (
    DEFAULT_POLICY_PACKAGE,
    AttestationReport,
    Judge,
    build_report,
    read_bundles,
    verify_blob_attestation,
)
from attest.cli.common import (
    OutputFormat,
    authority_options,
    info,
    keyless_signing_options,
    option_group,
    output_option,
    platform_option,
    print_json,
    registry_options,
    registry_options_from,
    tlog_signing_options,
)
from attest.cli.sign import build_policy, signer_from
from attest.errors import AttestationError, UsageError, VerificationFailed
from attest.oci.access import open_store, parse_image_target, resolve_image

signer_options = option_group(
    click.option(
        "--key",
        type=click.Path(dir_okay=False),
        help="cosign private key file (password from ATTEST_PASSWORD); else keyless Sigstore.",
    ),
    keyless_signing_options(
        token_help="OIDC token for keyless signing (else $SIGSTORE_ID_TOKEN or the CI's ambient token).",
        trust_config_help="Sigstore client trust config of a private instance (keyless; with "
        "--key, its Rekor logs the signature).",
    ),
    tlog_signing_options,
    click.option(
        "--legacy",
        is_flag=True,
        help="Store in cosign's sha256-<hex>.att tag instead of a bundle referrer.",
    ),
)
"""``--key`` (cosign private key, logged in Rekor unless ``--tlog-upload=false``) or keyless
``--identity-token``/``--trust-config``; ``--legacy``."""


def _parse_time(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


provenance_options = option_group(
    click.option("--builder-id", help="Builder id URI (required outside GitHub/GitLab CI)."),
    click.option(
        "--source-uri",
        help="Source repository, e.g. git+https://host/org/repo@refs/heads/main.",
    ),
    click.option("--source-digest", help="Source commit: SHA or ALGORITHM:HEX."),
    click.option("--build-type", help="SLSA buildType URI."),
    click.option("--invocation-id", help="Invocation id (URI of the CI run)."),
    click.option(
        "--started-on",
        callback=_parse_time,
        help="When the build started (RFC 3339; default: when this command started).",
    ),
)
"""The generic provenance facts; each overrides what the CI environment says."""


_PROVENANCE_FLAGS = (
    "builder_id",
    "source_uri",
    "source_digest",
    "build_type",
    "invocation_id",
    "started_on",
)


def make_provenance_options(options: Mapping[str, Any]) -> ProvenanceOptions:
    """The :class:`ProvenanceOptions` that the :func:`provenance_options` flags give."""
    return ProvenanceOptions(**{name: options[name] for name in _PROVENANCE_FLAGS})


storing_options = option_group(
    click.option(
        "--dry-run",
        is_flag=True,
        help="Print the unsigned Statement; sign and store nothing.",
    ),
    platform_option,
    output_option,
    registry_options,
)
"""``--dry-run``, ``--platform``, ``--output`` and the registry flags of the storing commands."""


_attestation_authority_options = authority_options(
    key_help="Public key (PEM) the attestation must verify with.",
    identity_help="Exact certificate identity.",
    issuer_help="Exact OIDC issuer.",
    trusted_root_help="trusted_root.json (default: Sigstore public good, offline).",
)


judging_options = option_group(
    click.option(
        "--type",
        "predicate_type",
        default="custom",
        show_default=True,
        help="Predicate type: slsaprovenance1, cyclonedx, spdxjson, vuln, custom, … or a URI.",
    ),
    click.option("--builder-id", help="Provenance builder id must match (name[@ref])."),
    click.option("--source-uri", help="Provenance source repository must be this one."),
    click.option("--source-tag", help="Provenance source ref must be this tag."),
    click.option("--source-branch", help="Provenance source ref must be this branch."),
    click.option(
        "--policy",
        "policy_path",
        type=click.Path(),
        help="Rego file or directory; its deny/warn rules judge each Statement (input).",
    ),
    click.option(
        "--policy-package",
        help=f"Rego package to read (default: the one the policy declares, else {DEFAULT_POLICY_PACKAGE}).",
    ),
)
"""``--type``, the slsa-verifier checks and ``--policy``."""


def _store_attestation(
    image: str, make: Callable[[Any], Statement], options: Mapping[str, Any]
) -> None:
    """Resolve, build the Statement, sign it and store it (or just print it with --dry-run).

    ``options`` are the :func:`signer_options` and :func:`storing_options` flags.
    """
    target = parse_image_target(image)
    registry = registry_options_from(options)
    signer = None if options["dry_run"] else signer_from(options)  # key password before network
    legacy = options["legacy"]
    with contextlib.ExitStack() as cleanup, open_store(target, registry) as store:
        if signer is not None and hasattr(signer, "close"):
            cleanup.callback(signer.close)
        resolved = resolve_image(store, target, options["platform"])
        if target.digest is None:
            info(
                f"Attesting {resolved.pinned} (resolved from {target}); attestations name a digest"
            )
        statement = make(resolved)
        if signer is None:
            click.echo(statement.raw.decode())
            return
        from attest.signing.storage import attach_attestation

        location = attach_attestation(store, resolved, statement.raw, signer, legacy=legacy)
    storage = "legacy" if legacy else "bundle"
    info(
        f"Attested {resolved.pinned} ({statement.predicate_type}) with {signer.description}; "
        f"stored as {storage} at {location}"
    )
    if options["output_format"] == "json":
        print_json(
            {
                "reference": str(target),
                "digest": resolved.digest,
                "predicateType": statement.predicate_type,
                "storage": storage,
                "location": location,
                "signer": signer.description,
            }
        )
    else:
        click.echo(location)


@click.command("provenance")
@click.argument("image")
@signer_options
@provenance_options
@storing_options
def provenance_command(image: str, **options: Any) -> None:
    """Attach signed SLSA v1 provenance to IMAGE, filled from the CI environment.

    GitHub Actions and GitLab CI are detected from their variables; elsewhere give
    --builder-id (and --source-uri/--source-digest). Flags override detected values.
    """
    provenance = make_provenance_options(options)
    context = detect_build_context(os.environ, provenance)  # before any network: fail early
    started_on = provenance.started_on or dt.datetime.now(dt.UTC)

    def make(resolved: Any) -> Statement:
        return provenance_statement(resolved.name, resolved.digest, context, started_on=started_on)

    _store_attestation(image, make, options)


@click.command("attest")
@click.argument("image")
@click.option(
    "--predicate",
    "predicate_path",
    required=True,
    type=click.Path(dir_okay=True),
    help="Predicate file (a JSON object).",
)
@click.option(
    "--type",
    "predicate_type",
    default="custom",
    show_default=True,
    help="slsaprovenance1, slsaprovenance, cyclonedx, spdxjson, vuln, openvex, link, custom, or a URI.",
)
@signer_options
@storing_options
def attest_command(image: str, predicate_path: str, predicate_type: str, **options: Any) -> None:
    """Sign any predicate about IMAGE as an in-toto attestation (DSSE) and store it.

    Stored as a Sigstore bundle OCI referrer (cosign v3's default) or, with --legacy,
    as a layer of cosign's sha256-<hex>.att manifest with the predicateType annotation.
    A SLSA provenance predicate (--type slsaprovenance1, slsaprovenance) is checked
    against its version's schema first; an invalid one is an error and nothing is stored.
    """
    type_uri = resolve_predicate_type(predicate_type)
    predicate = load_predicate(predicate_path)
    if type_uri in SLSA_PROVENANCE_TYPES:  # what admission would deny is never signed
        try:
            predicate_facts(type_uri, predicate)
        except AttestationError as err:
            raise UsageError(f"predicate {predicate_path} is not valid {type_uri}: {err}") from None

    def make(resolved: Any) -> Statement:
        subject = subject_for_image(resolved.name, resolved.digest)
        return build_statement([subject], type_uri, predicate)

    _store_attestation(image, make, options)


def _engine(policy_path: str | None, package: str | None) -> tuple[Any, str, dict[str, Any]]:
    if policy_path is None:
        if package:
            raise UsageError("--policy-package needs --policy")
        return None, DEFAULT_POLICY_PACKAGE, {}
    from attest.policy import load_bundle, make_engine
    from attest.policy.forms import choose_package, verdict_rules

    bundle = load_bundle(policy_path)
    package = package or choose_package(bundle, DEFAULT_POLICY_PACKAGE)
    rules = verdict_rules(bundle, package)  # none of allow/deny/warn: refused, not passed
    engine = make_engine(bundle)
    info = {"path": policy_path, "package": package, "bundleHash": bundle.hash}
    return engine, package, {**info, "rules": sorted(rules)}


def _print_report(report: AttestationReport) -> None:
    click.echo(f"Subject: {report.reference}")
    click.echo(f"Digest:  {report.digest}")
    click.echo(f"Type:    {report.predicate_type}")
    if not report.outcomes:
        click.echo("No attestations of this type found.")
    for outcome in report.outcomes:
        mark = "OK  " if outcome.passed else "FAIL"
        click.echo(f"{mark} {outcome.storage:<6} {outcome.location}")
        click.echo(f"     signer: {outcome.signer.describe()}")
        for violation in outcome.violations:
            click.echo(f"     - {violation}")
        for warning in outcome.warnings:
            click.echo(f"     ! {warning}")
    for error in report.errors:
        click.echo(f"WARN {error}")


def _finish(report: AttestationReport, output_format: OutputFormat) -> None:
    if output_format == "json":
        print_json(report.to_dict())
    else:
        _print_report(report)
    if not report.passed:
        raise VerificationFailed(report.failure_summary())
    info(
        f"Verified {len(report.verified)} attestation(s) of type {report.predicate_type} "
        f"for {report.reference}"
    )


@contextlib.contextmanager
def _judging(options: dict[str, Any]) -> Iterator[tuple[Any, Judge]]:
    """The trust policy and the Judge that the shared verify flags describe."""
    policy = build_policy(options, {})
    type_uri = resolve_predicate_type(options["predicate_type"])
    slsa = SlsaExpectations(
        options["builder_id"],
        options["source_uri"],
        options["source_tag"],
        options["source_branch"],
    )
    engine, package, policy_info = _engine(options["policy_path"], options["policy_package"])
    try:
        requires_allow = "allow" in policy_info.get("rules", ())
        yield policy, Judge(type_uri, slsa, engine, package, policy_info, requires_allow)
    finally:
        if engine is not None:
            engine.close()


@click.command("verify-attestation")
@click.argument("image")
@_attestation_authority_options
@judging_options
@output_option
@registry_options
def verify_attestation_command(image: str, **options: Any) -> None:
    """Verify IMAGE's attestations of --type and judge what they say.

    Checks each envelope signature against --key or the keyless identity, that a
    subject digest equals the image digest and the predicate type; then the
    slsa-verifier flags and the Rego --policy (input = the Statement). Exits 0 when at
    least one attestation of the type verifies and every verified one passes.
    """
    from attest.verify import verify_image

    target = parse_image_target(image)
    registry = registry_options_from(options)
    with _judging(options) as (policy, judge):
        verification = verify_image(target, policy, options=registry, attestations=True)
        report = build_report(verification, judge)
    _finish(report, options["output_format"])


@click.command("verify-blob-attestation")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option(
    "--bundle",
    "bundle_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Sigstore bundle (.sigstore.json) or in-toto JSON Lines (.intoto.jsonl) about ARTIFACT.",
)
@_attestation_authority_options
@judging_options
@output_option
def verify_blob_attestation_command(artifact: str, bundle_path: str, **options: Any) -> None:
    """Verify attestation bundles about a file, like slsa-verifier's verify-artifact.

    The statement's subject must carry the file's SHA-256; the same checks as
    verify-attestation follow.
    """
    with _judging(options) as (policy, judge):
        digest = "sha256:" + _sha256_file(artifact)
        bundles = read_bundles(_read_file(bundle_path, "bundle"), what=f"bundle {bundle_path}")
        report = verify_blob_attestation(
            bundles, digest, policy.authorities[0], judge, reference=artifact
        )
    _finish(report, options["output_format"])


@contextlib.contextmanager
def _reading(path: str, what: str) -> Iterator[None]:
    """Turn a failure to read ``path`` into a one-line :class:`UsageError` naming ``what``."""
    try:
        yield
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except OSError as err:
        raise UsageError(f"{what} {path}: {err.strerror or err}") from None


def _read_file(path: str, what: str) -> bytes:
    with _reading(path, what):
        return Path(path).read_bytes()


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with _reading(path, "artifact"), open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
