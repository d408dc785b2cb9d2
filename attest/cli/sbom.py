"""``attest sbom``: write an SBOM (CycloneDX 1.6 or SPDX 2.3 JSON) of an image or directory."""

from __future__ import annotations

import sys

import click

from attest.cli.common import make_registry_options, platform_option, registry_options
from attest.errors import AttestError
from attest.files import atomic_write
from attest.oci.manifest import Platform
from attest.sbom.generate import FORMATS, SbomOptions, generate_sbom


class ScanIncomplete(AttestError):
    """``--strict`` and the scan skipped something."""


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory."""
    try:
        with atomic_write(path, prefix=".attest-sbom-", mode=0o644) as out:
            out.write(data)
    except OSError as err:
        raise AttestError(f"{path}: cannot write ({err.strerror or err})") from None


@click.command("sbom")
@click.argument("image")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False),
    help="Write the SBOM to FILE (default or '-': stdout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="cyclonedx-json",
    show_default=True,
    help="Document format.",
)
@platform_option
@click.option(
    "--strict", is_flag=True, help="Fail (and write nothing) if any file had to be skipped."
)
@registry_options
def sbom_command(
    image: str,
    output: str | None,
    fmt: str,
    platform: Platform | None,
    strict: bool,
    insecure: bool,
    registry_auth: tuple[str, ...],
    timeout: float,
) -> None:
    """Write an SBOM of IMAGE: a registry reference, oci:PATH, oci-archive:FILE or dir:PATH.

    Finds Debian/Ubuntu (dpkg), Alpine (apk) and RPM packages, Python, npm, Go
    binaries and Java archives, and records the layer that introduced each.
    Set SOURCE_DATE_EPOCH for byte-identical output across runs.
    """
    options = SbomOptions(registry=make_registry_options(insecure, registry_auth, timeout))
    result = generate_sbom(image, fmt=fmt, platform=platform, options=options)
    for warning in result.warnings:
        click.echo(f"attest: warning: {warning}", err=True)
    if strict and result.warnings:
        raise ScanIncomplete(
            f"{image}: {len(result.warnings)} file(s) skipped (see warnings); --strict"
        )
    if output and output != "-":
        write_atomically(output, result.document)
        click.echo(
            f"attest: sbom: {result.component_count} components of {result.target} -> {output}",
            err=True,
        )
    else:
        sys.stdout.buffer.write(result.document)
        sys.stdout.flush()
