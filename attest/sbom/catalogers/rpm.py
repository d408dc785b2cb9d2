"""Red Hat, Fedora, SUSE and other RPM packages from the rpm database.

Reads ``rpmdb.sqlite`` (``var/lib/rpm`` or ``usr/lib/sysimage/rpm``), the
format of every current rpm distribution, and the BerkeleyDB ``Packages`` of
RHEL/CentOS 7 and 8 (:mod:`.rpmbdb`).  Each record is an rpm header blob,
decoded by :mod:`.rpmheader`.  SQLite needs a file, so the database (and an
uncheckpointed ``-wal`` beside it) is copied to a private temporary directory
and opened there, never in the scanned tree.  SUSE's NDB ``Packages.db`` is
not read; its presence is reported as a warning.  When a directory holds both
(a leftover after ``rpmdb --rebuilddb``), the SQLite database wins.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import tempfile

from attest.sbom.catalogers import rpmbdb, rpmheader
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

DB_DIRS = ("var/lib/rpm", "usr/lib/sysimage/rpm")
SQLITE = "rpmdb.sqlite"
BERKELEY = "Packages"
NDB = "Packages.db"
LEGACY = (BERKELEY, NDB)


def read_sqlite(data: bytes, wal: bytes | None) -> list[bytes]:
    """The header blobs of an rpmdb.sqlite (raises sqlite3.DatabaseError if unreadable)."""
    with tempfile.TemporaryDirectory(prefix="attest-rpmdb-") as workdir:
        path = os.path.join(workdir, SQLITE)
        with open(path, "wb") as out:
            out.write(data)
        if wal:
            with open(path + "-wal", "wb") as out:
                out.write(wal)
        connection = sqlite3.connect(path)
        try:
            rows = connection.execute("SELECT blob FROM Packages ORDER BY hnum").fetchall()
        finally:
            connection.close()
    return [bytes(row[0]) for row in rows if row[0] is not None]


def _accept(path: str) -> bool:
    parent, _, base = path.rpartition("/")
    return parent in DB_DIRS and base in (SQLITE, SQLITE + "-wal", *LEGACY)


class RpmCataloger:
    """Packages of the rpm database."""

    name = "rpm"
    interest = Interest(names=frozenset({SQLITE, SQLITE + "-wal", *LEGACY}), accept=_accept)

    def catalog(self, view: FileView, env: ScanEnv) -> list[Package]:
        found: list[tuple[Package, rpmheader.Header]] = []
        candidates = view.candidates(self.name)
        for path in candidates:
            directory, _, base = path.rpartition("/")
            if base in LEGACY and f"{directory}/{SQLITE}" in candidates:
                continue
            if base == NDB:
                env.warn(path, "NDB rpm databases (SUSE) are not supported; skipped")
                continue
            if base == BERKELEY:
                headers = view.parse(path, "rpm-bdb", _decode_berkeley)
            elif base == SQLITE:
                wal = view.read(path + "-wal") if path + "-wal" in candidates else None
                headers = view.parse(path, f"rpm-sqlite:{len(wal or b'')}", _decoder(wal))
            else:
                continue
            for header in headers or []:
                package = self._package(path, header, env)
                if package is not None:
                    found.append((package, header))
        _link(found)
        return [package for package, _ in found]

    def _package(self, db_path: str, header: rpmheader.Header, env: ScanEnv) -> Package | None:
        name, version, release = header.name, header.version, header.release
        if not name or not version or name == "gpg-pubkey":
            return None
        full_version = f"{version}-{release}" if release else version
        properties = {}
        if header.source_rpm:
            properties["attest:rpm:source-rpm"] = header.source_rpm
        if header.modularity_label:
            properties["attest:rpm:modularity-label"] = header.modularity_label
        license_value = normalize(header.license)
        return Package(
            type="rpm",
            name=name,
            version=f"{header.epoch}:{full_version}" if header.epoch is not None else full_version,
            purl=os_purl(
                "rpm",
                env,
                None,
                name,
                full_version,
                arch=header.arch,
                epoch=None if header.epoch is None else str(header.epoch),
            ),
            cataloger=self.name,
            location=location(db_path),
            ref=f"rpm:{name}:{header.arch or ''}",
            licenses=(license_value,) if license_value else (),
            description=header.summary,
            supplier=header.vendor or header.packager,
            homepage=header.url,
            properties=properties,
            files=frozenset(f.lstrip("/") for f in header.files),
        )


def _headers(blobs: list[bytes], warn: Warn) -> list[rpmheader.Header]:
    headers = []
    for number, blob in enumerate(blobs, 1):
        try:
            headers.append(rpmheader.parse(blob))
        except rpmheader.HeaderError as err:
            warn(f"package header {number} is corrupt ({err}); skipped")
    return headers


def _decode_berkeley(data: bytes, warn: Warn) -> list[rpmheader.Header]:
    try:
        blobs = rpmbdb.read_values(data)
    except (rpmbdb.BdbError, struct.error, IndexError) as err:
        warn(f"unreadable BerkeleyDB rpm database ({err}); skipped")
        return []
    # The record with key 0 is rpm's 4-byte instance counter, not a header.
    return _headers([blob for blob in blobs if len(blob) > 8], warn)


def _decoder(wal: bytes | None):  # type: ignore[no-untyped-def]
    def decode(data: bytes, warn: Warn) -> list[rpmheader.Header]:
        try:
            blobs = read_sqlite(data, wal)
        except sqlite3.Error as err:
            warn(f"unreadable rpm database ({err}); skipped")
            return []
        return _headers(blobs, warn)

    return decode


def _link(found: list[tuple[Package, rpmheader.Header]]) -> None:
    providers: dict[str, Package] = {}
    for package, _ in found:
        providers.setdefault(package.name, package)
    for package, header in found:
        for name in header.provides:
            providers.setdefault(name, package)
        for path in header.files:
            providers.setdefault(path, package)
    for package, header in found:
        package.depends = dependency_refs(package, map(providers.get, header.requires))
