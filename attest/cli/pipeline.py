"""``attest pipeline``: the paved-road CI step (a thin door onto :mod:`attest.pipeline`)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from attest.attestations.provenance import detect_build_context
from attest.cli.attestations import make_provenance_options, provenance_options, signer_options
from attest.cli.common import (
    info,
    platform_option,
    print_json,
    registry_options,
    registry_options_from,
)
from attest.cli.sign import signer_from
from attest.deadline import Deadline
from attest.errors import UsageError
from attest.files import atomic_write
from attest.oci.access import parse_image_target
from attest.oci.manifest import Platform
from attest.pipeline import PipelineOptions, run_pipeline


@contextlib.contextmanager
def _trusted_root(trusted_root: str | None, trust_config: str | None) -> Iterator[str | None]:
    """The trusted root to verify keyless results with: given, else the trust config's own."""
    if trusted_root or not trust_config:
        yield trusted_root
        return
    try:
        document = json.loads(Path(trust_config).read_bytes())
        root = document["trustedRoot"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"trust config {trust_config}: no readable trustedRoot (pass --trusted-root)"
        ) from None
    with tempfile.TemporaryDirectory(prefix="attest-root-") as work:
        path = os.path.join(work, "trusted_root.json")
        Path(path).write_text(json.dumps(root))
        yield path


def _write_summary(path: str, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text.encode())


@click.command("pipeline")
@click.argument("image")
@signer_options
@click.option(
    "--trusted-root",
    type=click.Path(dir_okay=False),
    help="trusted_root.json to verify keyless results and --key log entries with "
    "(default: --trust-config's, else public good).",
)
@provenance_options
@platform_option
@click.option(
    "--output-file",
    type=click.Path(dir_okay=False),
    help="Also write the JSON summary to this file (CI artifact).",
)
@registry_options
def pipeline_command(
    image: str,
    trusted_root: str | None,
    platform: Platform | None,
    output_file: str | None,
    **options: Any,
) -> None:
    """Resolve IMAGE, generate its SBOM, attach it and SLSA provenance as attestations, sign
    the image, verify everything back from the registry, and print one JSON summary.

    Keyless Sigstore signing unless --key is given. The signature is stored last, and a
    failed step rolls back what this run stored, so a half-finished run never looks complete.
    """
    target = parse_image_target(image)
    provenance = make_provenance_options(options)
    registry = registry_options_from(options)
    detect_build_context(os.environ, provenance)  # a missing CI fact fails before any work
    if options["key"] and options["rekor_url"] and options["tlog_upload"] and not trusted_root:
        raise UsageError(
            "attest pipeline --rekor-url needs --trusted-root: the log entries it reads back "
            "must verify against that log's key"
        )
    signer = signer_from(options)  # key password before any network
    try:
        with _trusted_root(trusted_root, options["trust_config"]) as root:
            pipeline = PipelineOptions(
                platform=platform,
                legacy=options["legacy"],
                provenance=provenance,
                env=dict(os.environ),
                trusted_root=root,
            )
            summary = run_pipeline(
                target,
                signer,
                options=pipeline,
                registry=registry,
                deadline=Deadline.after(options["timeout"]),
                progress=lambda message: info(f"attest pipeline: {message}"),
            )
    finally:
        close = getattr(signer, "close", None)
        if close is not None:
            close()
    text = json.dumps(summary.to_dict(), indent=2)
    if output_file:
        _write_summary(output_file, text + "\n")
    print_json(summary.to_dict())
