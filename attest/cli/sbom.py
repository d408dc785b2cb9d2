"""``attest sbom``: write an SBOM (CycloneDX 1.6 or SPDX 2.3 JSON) of an image or directory."""

from __future__ import annotations

import sys

import click

from attest.cli.common import make_registry_options, platform_option, registry_options
from attest.errors import AttestError, UsageError
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


DEFAULT_FORMAT = "cyclonedx-json"


def _format_and_file(
    output: str | None, output_file: str | None, fmt: str | None
) -> tuple[str, str | None]:
    """The document format and file from ``-o``/``--output-file``/``--format``.

    ``-o`` is a format, as in every command; an ``-o`` that is not one is the file
    path of earlier versions, still written, with a deprecation warning.
    """
    if output is None or output == "-":
        return fmt or DEFAULT_FORMAT, output_file or output
    wanted = fmt or DEFAULT_FORMAT if output == "json" else output
    if wanted in FORMATS:
        if fmt and fmt != wanted:
            raise UsageError(f"-o {output} and --format {fmt} disagree: give one")
        return wanted, output_file
    if output_file:
        raise UsageError(f"-o {output!r} is not a format ({', '.join(FORMATS)}, json)")
    click.echo(
        f"attest: warning: 'attest sbom -o {output}' writing a file is deprecated: "
        f"-o is the output format; use --output-file {output}",
        err=True,
    )
    return fmt or DEFAULT_FORMAT, output


@click.command("sbom")
@click.argument("image")
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FORMAT",
    help=f"Output format: {', '.join(FORMATS)} or json (the --format's JSON). "
    "A file path here still works but is deprecated: use --output-file.",
)
@click.option(
    "--output-file",
    type=click.Path(dir_okay=False),
    help="Write the SBOM to FILE (default or '-': stdout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Document format (default cyclonedx-json).",
)
@platform_option
@click.option(
    "--strict", is_flag=True, help="Fail (and write nothing) if any file had to be skipped."
)
@registry_options
def sbom_command(
    image: str,
    output: str | None,
    output_file: str | None,
    fmt: str | None,
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
    fmt, output_file = _format_and_file(output, output_file, fmt)
    options = SbomOptions(registry=make_registry_options(insecure, registry_auth, timeout))
    result = generate_sbom(image, fmt=fmt, platform=platform, options=options)
    for warning in result.warnings:
        click.echo(f"attest: warning: {warning}", err=True)
    if strict and result.warnings:
        raise ScanIncomplete(
            f"{image}: {len(result.warnings)} file(s) skipped (see warnings); --strict"
        )
    if output_file and output_file != "-":
        write_atomically(output_file, result.document)
        click.echo(
            f"attest: sbom: {result.component_count} components of {result.target} -> "
            f"{output_file}",
            err=True,
        )
    else:
        sys.stdout.buffer.write(result.document)
        sys.stdout.flush()
