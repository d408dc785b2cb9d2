"""Alpine packages from the apk database, ``lib/apk/db/installed``.

The database is a list of blank-line separated records of ``X:value`` lines
(``P`` name, ``V`` version, ``A`` arch, ``L`` license, ``o`` origin, ``D``
depends, ``p`` provides, ``F``/``R`` the directories and files it owns).
Dependencies name packages, ``so:``/``cmd:``/``pc:`` provides or constraints
(``busybox>=1.36``); they are resolved against installed names and provides.
"""

from __future__ import annotations

import re

from attest.sbom.catalogers.base import (
    FileView,
    Interest,
    ScanEnv,
    Warn,
    dependency_refs,
    location,
    os_purl,
)
from attest.sbom.licenses import normalize
from attest.sbom.model import Package

INSTALLED = "lib/apk/db/installed"
FILES = "files"  # the owned paths, built while parsing (F then R lines)
_CONSTRAINT = re.compile(r"[<>=~].*\Z")


def parse_installed(data: bytes, warn: Warn) -> list[dict[str, list[str]]]:
    """Records of the apk database; each field maps to its values in order."""
    records: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    directory = ""
    for number, line in enumerate(data.decode("utf-8", "replace").split("\n"), 1):
        if not line.strip():
            if current:
                records.append(current)
            current, directory = {}, ""
            continue
        if len(line) < 2 or line[1] != ":":
            warn(f"line {number} is not 'X:value'; ignored")
            continue
        key, value = line[0], line[2:]
        current.setdefault(key, []).append(value)
        if key == "F":
            directory = value.strip("/")
        elif key == "R":
            current.setdefault(FILES, []).append(f"{directory}/{value}" if directory else value)
    if current:
        records.append(current)
    return records


def _names(value: str) -> list[str]:
    return [_CONSTRAINT.sub("", token) for token in value.split() if not token.startswith("!")]


class ApkCataloger:
    """Packages of ``lib/apk/db/installed``."""

    name = "apk"
    interest = Interest(names=frozenset({"installed"}), accept=lambda path: path == INSTALLED)

    def catalog(self, view: FileView, env: ScanEnv) -> list[Package]:
        if INSTALLED not in view.candidates(self.name):
            return []
        records = view.parse(INSTALLED, "apk", parse_installed) or []
        found: list[tuple[Package, dict[str, list[str]]]] = []
        for record in records:
            name, version = _first(record, "P"), _first(record, "V")
            if not name or not version:
                env.warn(
                    INSTALLED, f"record for {name or 'an unnamed package'!r} lacks P or V; skipped"
                )
                continue
            properties = {}
            if _first(record, "o"):
                properties["attest:apk:origin"] = _first(record, "o")
            if _first(record, "c"):
                properties["attest:apk:commit"] = _first(record, "c")
            license_value = normalize(_first(record, "L"))
            found.append(
                (
                    Package(
                        type="apk",
                        name=name,
                        version=version,
                        purl=os_purl("apk", env, "alpine", name, version, arch=_first(record, "A")),
                        cataloger=self.name,
                        location=location(INSTALLED),
                        ref=f"apk:{name}",
                        licenses=(license_value,) if license_value else (),
                        description=_first(record, "T") or None,
                        supplier=_first(record, "m") or None,
                        homepage=_first(record, "U") or None,
                        properties=properties,
                        files=_files(record),
                    ),
                    record,
                )
            )
        _link(found)
        return [package for package, _ in found]


def _first(record: dict[str, list[str]], key: str) -> str:
    values = record.get(key)
    return values[0].strip() if values else ""


def _files(record: dict[str, list[str]]) -> frozenset[str]:
    return frozenset(record.get(FILES, ()))


def _link(found: list[tuple[Package, dict[str, list[str]]]]) -> None:
    providers: dict[str, Package] = {}
    for package, _ in found:
        providers.setdefault(package.name, package)
    for package, record in found:
        for value in record.get("p", []):
            for name in _names(value):
                providers.setdefault(name, package)
    for package, record in found:
        names = (name for value in record.get("D", []) for name in _names(value))
        package.depends = dependency_refs(package, map(providers.get, names))
