"""A local Python base image (mmdebstrap) and a throw-away buildah for building our Dockerfile.

No Docker engine and no registry base image: ``mmdebstrap`` builds a Debian
bookworm root filesystem with python3 and python3-venv as a tarball, and
``skopeo`` imports it (``tarball:`` transport) as an OCI image layout.  The
layout is cached under ``.cache/base-images/`` (gitignored) so only the first
run pays for it.  ``Buildah`` runs with its own temporary vfs storage and
chroot isolation; its ``TMPDIR`` (where ``RUN --mount=type=cache`` keeps pip's
cache) lives under ``.cache/buildah-tmp/`` so repeated builds download less.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT

CACHE = ROOT / ".cache"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv")
_MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",
    "--skip=output/dev",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def base_image_layout() -> str:
    """``oci:DIR:TAG`` of the cached bookworm + python3 base image, building it if missing."""
    key = hashlib.sha256(
        json.dumps([BASE_SUITE, BASE_PACKAGES, _MMDEBSTRAP_OPTIONS]).encode()
    ).hexdigest()[:16]
    layout = CACHE / "base-images" / f"{BASE_SUITE}-python3-{key}"
    if not (layout / "index.json").is_file():
        layout.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="base-", dir=layout.parent))
        try:
            tarball = work / "rootfs.tar"
            subprocess.run(
                [
                    "mmdebstrap",
                    "--quiet",
                    *_MMDEBSTRAP_OPTIONS,
                    f"--include={','.join(BASE_PACKAGES)}",
                    "--format=tar",
                    BASE_SUITE,
                    str(tarball),
                ],
                check=True,
                capture_output=True,
                timeout=900,
            )
            staged = work / "layout"
            subprocess.run(
                ["skopeo", "copy", "--quiet", f"tarball:{tarball}", f"oci:{staged}:base"],
                check=True,
                capture_output=True,
                timeout=300,
            )
            staged.rename(layout)  # atomic: a half-built layout is never used
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return f"oci:{layout}:base"


@dataclass
class Buildah:
    """``buildah`` with private vfs storage, chroot isolation and a persistent build cache."""

    _links: list[Path] = field(default_factory=list)
    _containers: dict[str, str] = field(default_factory=dict)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="attest-buildah-")))

    def local_base(self, reference: str) -> str:
        """``reference`` (``oci:DIR:TAG``) through a link whose path is a valid image name.

        Buildah names an ``oci:`` image after its directory, and ``.cache`` (a
        leading dot) is not allowed in image names.
        """
        directory, tag = reference.removeprefix("oci:").rsplit(":", 1)
        link = Path(tempfile.gettempdir()) / f"attest-base-{os.getpid()}-{id(self)}"
        link.unlink(missing_ok=True)
        link.symlink_to(directory)
        self._links.append(link)
        return f"oci:{link}:{tag}"

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        tmpdir = CACHE / "buildah-tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        command = [
            "buildah",
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "TMPDIR": str(tmpdir)},
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def bud(self, context: Path, tag: str, *build_args: str) -> None:
        secret = ["--secret", f"id=pip-ca,src={HOST_CA_BUNDLE}"] if HOST_CA_BUNDLE.is_file() else []
        self.run(
            "bud",
            "--isolation",
            "chroot",
            "--layers=false",
            *secret,
            *[f"--build-arg={arg}" for arg in build_args],
            "-t",
            tag,
            str(context),
        )

    def image_config(self, tag: str) -> dict:
        return json.loads(self.run("inspect", "--type", "image", tag).stdout)["OCIv1"]

    def run_in(self, tag: str, *command: str) -> str:
        """Run ``command`` in a working container of ``tag`` (made once: vfs copies are slow)."""
        if tag not in self._containers:
            output = self.run("from", "--pull-never", tag).stdout
            self._containers[tag] = output.strip().splitlines()[-1]
        return self.run(
            "run", "--isolation", "chroot", self._containers[tag], "--", *command
        ).stdout

    def remove(self) -> None:
        for link in self._links:
            link.unlink(missing_ok=True)
        subprocess.run(
            [
                "buildah",
                "--root",
                str(self.root / "storage"),
                "--runroot",
                str(self.root / "run"),
                "--storage-driver",
                "vfs",
                "rm",
                "--all",
            ],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(self.root, ignore_errors=True)
