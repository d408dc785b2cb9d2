"""One cataloger per ecosystem, all behind the interface in :mod:`.base`.

:func:`default_catalogers` lists them in the order their packages are
reported: the OS release first (the distribution qualifies OS purls), then OS
package databases, then language ecosystems.
"""

from __future__ import annotations

from attest.sbom.catalogers.apk import ApkCataloger
from attest.sbom.catalogers.base import Cataloger
from attest.sbom.catalogers.dpkg import DpkgCataloger
from attest.sbom.catalogers.golang import GoBinaryCataloger
from attest.sbom.catalogers.java import JavaCataloger
from attest.sbom.catalogers.npm import NpmCataloger
from attest.sbom.catalogers.os_release import OsReleaseCataloger
from attest.sbom.catalogers.python import PythonCataloger
from attest.sbom.catalogers.rpm import RpmCataloger


def default_catalogers() -> list[Cataloger]:
    """Fresh instances of every cataloger."""
    return [
        OsReleaseCataloger(),
        DpkgCataloger(),
        ApkCataloger(),
        RpmCataloger(),
        PythonCataloger(),
        NpmCataloger(),
        GoBinaryCataloger(),
        JavaCataloger(),
    ]
