"""Operating-system identification from ``etc/os-release`` (or ``usr/lib/os-release``).

The distribution it names supplies the purl namespace and ``distro`` qualifier
of OS packages (``pkg:deb/debian/…?distro=debian-12``) and becomes the SBOM's
``operating-system`` component.
"""

from __future__ import annotations

import shlex

from attest.sbom.catalogers.base import FileView, Interest, ScanEnv, Warn
from attest.sbom.model import OperatingSystem, Package

PATHS = ("etc/os-release", "usr/lib/os-release")


def parse_os_release(data: bytes, warn: Warn) -> dict[str, str]:
    """The KEY=value pairs of an os-release file (shell quoting undone)."""
    values: dict[str, str] = {}
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw, posix=True)
        except ValueError:
            warn(f"line {number} has unbalanced quotes; ignored")
            continue
        values[key.strip()] = " ".join(words)
    return values


class OsReleaseCataloger:
    """Keeps the os-release files; :func:`detect_os` reads them."""

    name = "os-release"
    interest = Interest(names=frozenset({"os-release"}), accept=lambda path: path in PATHS)

    def catalog(self, view: FileView, env: ScanEnv) -> list[Package]:
        return []


def detect_os(view: FileView) -> OperatingSystem | None:
    """The distribution of the scanned filesystem, or None when it has no os-release."""
    for path in PATHS:
        values = view.parse(path, "os-release", parse_os_release)
        if values and values.get("ID"):
            return OperatingSystem(
                id=values["ID"].lower(),
                version_id=values.get("VERSION_ID") or None,
                name=values.get("NAME") or None,
                pretty_name=values.get("PRETTY_NAME") or None,
                version_codename=values.get("VERSION_CODENAME") or None,
                id_like=tuple(values.get("ID_LIKE", "").split()),
                home_url=values.get("HOME_URL") or None,
            )
    return None
