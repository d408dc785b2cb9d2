"""A small image to push: two layers, a whiteout and an opaque directory (tests and benches)."""

from __future__ import annotations

from pathlib import Path

from attest.oci.builder import ImageBuilder


def simple_image(
    tmp_path: Path, *, marker: str = "one", architecture: str = "amd64"
) -> ImageBuilder:
    """A small two-layer image with a whiteout and an opaque directory."""
    builder = ImageBuilder(
        architecture=architecture, config={"Entrypoint": ["/bin/app"]}, labels={"marker": marker}
    )
    base = builder.layer()
    base.dir("etc").file("etc/os-release", 'ID=debian\nVERSION_ID="12"\n')
    base.file("bin/app", f"#!/bin/sh\necho {marker}\n", mode=0o755)
    base.file("tmp/remove-me", "gone in layer 2\n").file("var/cache/old/a.txt", "old\n")
    top = builder.layer()
    top.whiteout("tmp/remove-me").opaque("var/cache").file("var/cache/new.txt", "new\n")
    return builder
