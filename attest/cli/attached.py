"""``attest tree``, ``download``, ``copy`` and ``clean``: cosign's commands for what is
attached to an image, as thin doors onto :mod:`attest.signing.attached`."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import click

from attest.cli.common import (
    authority_options,
    info,
    output_option,
    print_json,
    registry_options,
    registry_options_from,
)
from attest.deadline import Deadline
from attest.errors import AttestError, UsageError, VerificationFailed
from attest.files import atomic_write
from attest.oci.access import identifier_for, parse_image_target
from attest.oci.store import ImageStore, read_blob
from attest.signing.attached import (
    KINDS,
    Attached,
    AttachedLayer,
    AttachedManifest,
    Kind,
    clean_attached,
    copy_image,
    find_attached,
    opened,
)
from attest.signing.storage import MAX_BUNDLE_BYTES

# cosign's --only / --type spellings for the kinds.
KIND_NAMES: dict[str, tuple[Kind, ...]] = {
    "signature": ("signature",),
    "sig": ("signature",),
    "attestation": ("attestation",),
    "att": ("attestation",),
    "sbom": ("sbom",),
    "all": KINDS,
}


def parse_kinds(text: str, what: str) -> tuple[Kind, ...]:
    """``signature,attestation`` (or cosign's ``sig,att,sbom``, or ``all``) as kinds."""
    kinds: list[Kind] = []
    for word in (w.strip() for w in text.split(",")):
        if word not in KIND_NAMES:
            raise UsageError(f"{what} {word!r}: choose from {', '.join(KIND_NAMES)}")
        kinds.extend(k for k in KIND_NAMES[word] if k not in kinds)
    return tuple(kinds)


def _inventory(image: str, options: dict[str, Any]) -> tuple[str, Attached]:
    target = parse_image_target(image)
    registry = registry_options_from(options)
    with opened(target, registry, Deadline.after(registry.timeout)) as store:
        digest = store.resolve(identifier_for(target, store)).digest
        return f"{target.name}@{digest}", find_attached(store, digest)


# -- tree ---------------------------------------------------------------------------------------


def _entry(manifest: AttachedManifest, layer: AttachedLayer) -> str:
    return f"{manifest.storage:<8} {manifest.location}  {layer.descriptor.digest}"


def _print_tree(pinned: str, attached: Attached) -> None:
    click.echo(f"Supply chain artifacts of {pinned}")
    signatures = attached.layers("signature")
    attestations = attached.layers("attestation")
    sboms = attached.layers("sbom")
    others = attached.layers("other")
    if not (signatures or attestations or sboms or others):
        click.echo("└── nothing attached")
    if signatures:
        click.echo(f"├── Signatures ({len(signatures)})")
        for manifest, layer in signatures:
            click.echo(f"│   └── {_entry(manifest, layer)}")
    if attestations:
        click.echo(f"├── Attestations ({len(attestations)})")
        by_type: dict[str, list[tuple[AttachedManifest, AttachedLayer]]] = {}
        for manifest, layer in attestations:
            by_type.setdefault(layer.predicate_type or "(no predicate type)", []).append(
                (manifest, layer)
            )
        for predicate_type, entries in sorted(by_type.items()):
            click.echo(f"│   ├── {predicate_type} ({len(entries)})")
            for manifest, layer in entries:
                click.echo(f"│   │   └── {_entry(manifest, layer)}")
    if sboms:
        click.echo(f"├── SBOMs ({len(sboms)})")
        for manifest, layer in sboms:
            how = (
                f"attestation {layer.predicate_type}"
                if layer.kind == "attestation"
                else f"attached {layer.descriptor.media_type}, unsigned"
            )
            click.echo(f"│   └── {_entry(manifest, layer)}  ({how})")
    if others:
        click.echo(f"├── Other referrers ({len(others)})")
        for manifest, layer in others:
            click.echo(f"│   └── {_entry(manifest, layer)}  ({layer.descriptor.media_type})")
    for problem in attached.problems:
        click.echo(f"WARN {problem}")


@click.command("tree")
@click.argument("image")
@output_option
@registry_options
def tree_command(image: str, output_format: str, **options: Any) -> None:
    """List what is attached to IMAGE: signatures, attestations by predicate type and SBOMs,
    stored as OCI referrers (Sigstore bundles) or cosign's .sig/.att/.sbom tags.

    Listing only: nothing is verified (use verify / verify-attestation for trust).
    """
    pinned, attached = _inventory(image, options)
    if output_format == "json":
        print_json(attached.to_dict())
    else:
        _print_tree(pinned, attached)


# -- download -----------------------------------------------------------------------------------


def _decode_statement(envelope: dict[str, Any]) -> dict[str, Any] | None:
    try:
        statement = json.loads(base64.b64decode(envelope.get("payload", "")))
    except (ValueError, TypeError):
        return None
    return statement if isinstance(statement, dict) else None


def _document(
    store: ImageStore, manifest: AttachedManifest, layer: AttachedLayer
) -> tuple[bytes, dict[str, Any] | None]:
    """The stored bytes of an entry in cosign's download form, and its decoded Statement."""
    content = read_blob(store, layer.descriptor, limit=MAX_BUNDLE_BYTES)
    if layer.kind == "sbom" and layer.predicate_type is None:
        return content, None
    if manifest.storage == "tag" and layer.kind == "signature":
        annotations = layer.descriptor.annotations
        legacy = {
            "Base64Signature": annotations.get("dev.cosignproject.cosign/signature", ""),
            "Payload": base64.b64encode(content).decode(),
            "Cert": annotations.get("dev.sigstore.cosign/certificate"),
            "Chain": annotations.get("dev.sigstore.cosign/chain"),
            "Bundle": json.loads(annotations["dev.sigstore.cosign/bundle"])
            if "dev.sigstore.cosign/bundle" in annotations
            else None,
        }
        return json.dumps(legacy, separators=(",", ":")).encode(), None
    try:
        document = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return content, None
    envelope = document.get("dsseEnvelope", document) if isinstance(document, dict) else {}
    compact = json.dumps(document, separators=(",", ":")).encode()
    return compact, _decode_statement(envelope) if isinstance(envelope, dict) else None


def _write_out(documents: list[bytes], output_file: str | None) -> None:
    data = b"".join(d.rstrip(b"\n") + b"\n" for d in documents)
    if output_file and output_file != "-":
        try:
            with atomic_write(output_file, prefix=".attest-download-", mode=0o644) as out:
                out.write(data)
        except OSError as err:
            raise UsageError(f"{output_file}: cannot write ({err.strerror or err})") from None
        info(f"attest: download: {len(documents)} document(s) -> {output_file}")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _verified_sboms(image: str, options: dict[str, Any], wanted: str | None) -> list[bytes]:
    """The predicates of the SBOM attestations that verify against the given authority."""
    from attest.cli.sign import build_policy
    from attest.signing.attached import SBOM_PREDICATE_TYPES
    from attest.verify import verify_image

    policy = build_policy(options, {})
    result = verify_image(parse_image_target(image), policy, options=registry_options_from(options))
    documents: list[bytes] = []
    for check in result.attestations:
        matches = (
            check.predicate_type == wanted
            if wanted
            else (check.predicate_type in SBOM_PREDICATE_TYPES)
        )
        if check.verified and matches and check.statement is not None:
            predicate = check.statement.get("predicate")
            documents.append(json.dumps(predicate, separators=(",", ":")).encode())
    if not documents:
        unverified = sum(1 for c in result.attestations if not c.verified)
        raise VerificationFailed(
            f"{result.reference}@{result.digest}: no SBOM attestation "
            f"{'of type ' + wanted + ' ' if wanted else ''}verifies against the policy "
            f"({unverified} unverified attestation(s) found); nothing written"
        )
    return documents


def _has_authority(options: dict[str, Any]) -> bool:
    return any(
        options[k] for k in ("key", "identity", "identity_regexp", "issuer", "issuer_regexp")
    )


@click.command("download")
@click.argument("what", type=click.Choice(["signature", "attestation", "sbom"]))
@click.argument("image")
@click.option(
    "--predicate-type",
    help="Only attestations (or SBOMs) of this type: cosign's alias (slsaprovenance1, "
    "cyclonedx, spdxjson, …) or a URI.",
)
@click.option(
    "--output-file",
    type=click.Path(dir_okay=False),
    help="Write to FILE (atomically) instead of stdout.",
)
@authority_options(
    key_help="sbom: public key the SBOM attestation must verify with (then only verified "
    "SBOMs come out, and none is an error).",
    identity_help="sbom: exact certificate identity of a keyless SBOM attestation.",
    issuer_help="sbom: exact OIDC issuer of a keyless SBOM attestation.",
    trusted_root_help="trusted_root.json for verifying (default: Sigstore public good).",
)
@registry_options
def download_command(
    what: str, image: str, predicate_type: str | None, output_file: str | None, **options: Any
) -> None:
    """Print IMAGE's signatures, attestations or SBOMs, one JSON document a line.

    Signatures and attestations come out as stored (Sigstore bundles; legacy .sig
    entries in cosign's JSON, .att entries as DSSE envelopes), unverified.  An SBOM
    comes out as its document; with --key or a certificate identity only SBOM
    attestations that verify do, and when none does the command fails and writes
    nothing.
    """
    from attest.attestations.predicates import resolve_predicate_type

    wanted = resolve_predicate_type(predicate_type) if predicate_type else None
    if what == "signature" and wanted:
        raise UsageError("--predicate-type selects attestations or SBOMs, not signatures")
    if _has_authority(options):
        if what != "sbom":
            raise UsageError(
                f"download {what} does not verify: use attest verify / verify-attestation"
            )
        _write_out(_verified_sboms(image, options, wanted), output_file)
        return
    target = parse_image_target(image)
    registry = registry_options_from(options)
    documents: list[bytes] = []
    with opened(target, registry, Deadline.after(registry.timeout)) as store:
        digest = store.resolve(identifier_for(target, store)).digest
        attached = find_attached(store, digest)
        for problem in attached.problems:
            info(f"attest: warning: {problem}")
        for manifest, layer in attached.layers(what):  # type: ignore[arg-type]
            if wanted and layer.predicate_type not in (None, wanted):
                continue
            document, statement = _document(store, manifest, layer)
            if wanted and (statement or {}).get("predicateType", layer.predicate_type) != wanted:
                continue
            if what == "sbom" and layer.kind == "attestation":
                if statement is None:
                    continue
                document = json.dumps(statement.get("predicate"), separators=(",", ":")).encode()
            documents.append(document)
    if not documents:
        raise AttestError(f"{target}: no {what} found{' of type ' + wanted if wanted else ''}")
    if what == "sbom":
        info("attest: warning: SBOMs not verified (give --key or an identity to verify them)")
    _write_out(documents, output_file)


# -- copy -----------------------------------------------------------------------------------------


@click.command("copy")
@click.argument("source")
@click.argument("destination")
@click.option(
    "--only",
    default="all",
    show_default=True,
    help="What attached to copy: signature, attestation, sbom (comma-separated; cosign's "
    "sig,att,sbom too) or all.",
)
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Accepted for cosign compatibility: attest copy never asks before overwriting.",
)
@output_option
@registry_options
def copy_command(
    source: str, destination: str, only: str, force: bool, output_format: str, **options: Any
) -> None:
    """Copy SOURCE with everything attached to it to DESTINATION, keeping its digest.

    Every platform of an index is copied, with the signatures, attestations and SBOMs
    attached to the index and to each platform image (referrers and cosign tags).
    Either side may be a registry or an oci: layout.  DESTINATION's tag defaults to
    SOURCE's.
    """
    result = copy_image(
        parse_image_target(source),
        parse_image_target(destination),
        registry_options_from(options),
        parse_kinds(only, "--only"),
    )
    info(
        f"Copied {result['source']} to {result['destination']} "
        f"with {len(result['attached'])} attached manifest(s)"
    )
    if output_format == "json":
        print_json(result)
    else:
        click.echo(result["destination"])


# -- clean ----------------------------------------------------------------------------------------


@click.command("clean")
@click.argument("image")
@click.option(
    "--type",
    "kind",
    default="all",
    show_default=True,
    help="What to delete: signature, attestation, sbom or all.",
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@output_option
@registry_options
def clean_command(image: str, kind: str, force: bool, output_format: str, **options: Any) -> None:
    """Delete what is attached to IMAGE (referrers and cosign tags) of --type.

    Asks first on a terminal; elsewhere --force is required.  An SBOM attestation
    counts as both attestation and sbom; a cosign tag goes whole.
    """
    kinds = parse_kinds(kind, "--type")
    target = parse_image_target(image)
    registry = registry_options_from(options)
    with opened(target, registry, Deadline.after(registry.timeout)) as store:
        digest = store.resolve(identifier_for(target, store)).digest
        attached = find_attached(store, digest)
        doomed = [m for m in attached.manifests if m.kinds() & set(kinds)]
        if doomed and not force:
            if not sys.stdin.isatty():
                raise UsageError("clean deletes from the registry: confirm with --force")
            click.confirm(
                f"Delete {len(doomed)} manifest(s) ({kind}) attached to {target.name}@{digest}?",
                abort=True,
                err=True,
            )
        deleted = clean_attached(store, attached, kinds)
    info(f"Deleted {len(deleted)} manifest(s) attached to {target.name}@{digest}")
    if output_format == "json":
        print_json({"image": f"{target.name}@{digest}", "deleted": deleted})
    else:
        for location in deleted:
            click.echo(location)
