"""Java archives (``.jar``, ``.war``, ``.ear``, Jenkins ``.jpi``/``.hpi``), nested ones included.

Each archive is identified by its ``META-INF/maven/GROUP/ARTIFACT/pom.properties``
(the authoritative Maven coordinates; a shaded jar has several, one of which
matches the file name), else by ``META-INF/MANIFEST.MF``
(``Implementation-*``, ``Bundle-*``, ``Specification-*``) and the file name.
Licenses come from ``Bundle-License`` and the ``<licenses>`` of an embedded
``pom.xml``.  Archives inside archives (``WEB-INF/lib``, ``BOOT-INF/lib``, an
ear's modules) are read from memory up to a size and depth limit and become
packages of their own, with an edge from the archive that contains them.
Streamed layer entries are spooled to a temporary file first, since zip
needs random access.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO
from xml.etree import ElementTree

from packageurl import PackageURL

from attest.sbom.catalogers.base import FileView, Interest, Limits, ScanEnv, location
from attest.sbom.licenses import normalize
from attest.sbom.model import Package

SUFFIXES = (".jar", ".war", ".ear", ".jpi", ".hpi")
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_FILE_VERSION = re.compile(r"^(?P<name>.+?)-(?P<version>\d[^-]*(?:-[A-Za-z0-9.]+)*)$")
_POM_NS = re.compile(r"^\{[^}]*\}")
_PROPERTY = re.compile(r"([^=:\s]+)\s*[=:\s]\s*(.*)")


@dataclass
class Archive:
    """One identified Java archive (nested archives name their parent by index)."""

    location: str  # "/app.war" or "/app.war!WEB-INF/lib/x.jar"
    artifact: str
    version: str
    group: str | None = None
    licenses: tuple[str, ...] = ()
    description: str | None = None
    supplier: str | None = None
    homepage: str | None = None
    sha256: str | None = None
    parent: int | None = None
    properties: dict[str, str] = field(default_factory=dict)


def parse_manifest(text: str) -> dict[str, str]:
    """The main section of a MANIFEST.MF (72-byte continuation lines joined)."""
    values: dict[str, str] = {}
    key: str | None = None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            break
        if line.startswith(" ") and key is not None:
            values[key] += line[1:]
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        values[key] = value.strip()
    return values


def parse_properties(text: str) -> dict[str, str]:
    """A Java ``.properties`` file (``key=value``, ``key: value`` or ``key value``)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        match = _PROPERTY.match(line)
        if match:
            values[match.group(1)] = match.group(2).strip()
    return values


Coordinates = tuple[str | None, str, str, tuple[str, ...]]
"""A pom.properties: group, artifact, version, and the licenses of its pom.xml."""


def _pom_licenses(data: bytes) -> tuple[str, ...]:
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return ()
    found = []
    for element in root.iter():
        if _POM_NS.sub("", element.tag) == "license":
            for child in element:
                if _POM_NS.sub("", child.tag) == "name" and child.text and child.text.strip():
                    value = normalize(child.text)
                    if value and value not in found:
                        found.append(value)
    return tuple(found)


def _name_version_from_file(filename: str) -> tuple[str, str]:
    stem = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    match = _FILE_VERSION.match(stem)
    return (match.group("name"), match.group("version")) if match else (stem, "")


class _Reader:
    """Walks one archive and the archives inside it."""

    def __init__(self, limits: Limits, warn: Callable[[str, str], None]) -> None:
        self.limits = limits
        self.warn = warn
        self.found: list[Archive] = []

    def read(
        self, where: str, handle: IO[bytes], sha256: str | None, depth: int, parent: int | None
    ) -> None:
        try:
            with zipfile.ZipFile(handle) as archive:
                self._read(where, archive, sha256, depth, parent)
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            OSError,
            RuntimeError,
            NotImplementedError,
            ValueError,
        ) as err:
            self.warn(where, f"not a readable Java archive ({err}); skipped")

    def _read(
        self,
        where: str,
        archive: zipfile.ZipFile,
        sha256: str | None,
        depth: int,
        parent: int | None,
    ) -> None:
        names = archive.namelist()
        manifest = {}
        if "META-INF/MANIFEST.MF" in names:
            manifest = parse_manifest(self._text(archive, "META-INF/MANIFEST.MF"))
        poms = sorted(
            n for n in names if n.startswith("META-INF/maven/") and n.endswith("/pom.properties")
        )
        coordinates: list[Coordinates] = []
        for name in poms:
            values = parse_properties(self._text(archive, name))
            if values.get("artifactId") and values.get("version"):
                pom_xml = name[: -len("pom.properties")] + "pom.xml"
                licenses = _pom_licenses(archive.read(pom_xml)) if pom_xml in names else ()
                coordinates.append(
                    (
                        values.get("groupId") or None,
                        values["artifactId"],
                        values["version"],
                        licenses,
                    )
                )
        file_name, file_version = _name_version_from_file(where.rsplit("!", 1)[-1])
        main = self._main(coordinates, file_name)
        index = len(self.found)
        self.found.append(
            self._archive(where, manifest, main, file_name, file_version, sha256, parent)
        )
        for group, artifact, version, licenses in coordinates:
            if main is not None and (group, artifact, version) == main[:3]:
                continue
            self.found.append(
                Archive(
                    f"{where}!{group or ''}:{artifact}",
                    artifact,
                    version,
                    group,
                    licenses,
                    parent=index,
                )
            )
        if depth >= self.limits.max_nested_depth:
            return
        for info in archive.infolist():
            if info.is_dir() or not info.filename.lower().endswith(SUFFIXES):
                continue
            inner = f"{where}!{info.filename}"
            if info.file_size > self.limits.max_nested_bytes:
                self.warn(
                    inner, f"{info.file_size} bytes is above the nested-archive limit; skipped"
                )
                continue
            data = archive.read(info)
            self.read(inner, io.BytesIO(data), hashlib.sha256(data).hexdigest(), depth + 1, index)

    @staticmethod
    def _text(archive: zipfile.ZipFile, name: str) -> str:
        return archive.read(name)[: 1 << 20].decode("utf-8", "replace")

    @staticmethod
    def _main(coordinates: list[Coordinates], file_name: str) -> Coordinates | None:
        if len(coordinates) == 1:
            return coordinates[0]
        for entry in coordinates:
            if file_name == entry[1] or file_name.startswith(entry[1] + "-"):
                return entry
        return None

    @staticmethod
    def _archive(
        where: str,
        manifest: dict[str, str],
        main: Coordinates | None,
        file_name: str,
        file_version: str,
        sha256: str | None,
        parent: int | None,
    ) -> Archive:
        licenses: tuple[str, ...] = ()
        bundle_license = (
            manifest.get("Bundle-License", "").split(";", 1)[0].split(",", 1)[0].strip()
        )
        if bundle_license and not bundle_license.startswith("http"):
            value = normalize(bundle_license)
            licenses = (value,) if value else ()
        properties = {}
        for key in ("Main-Class", "Automatic-Module-Name", "Bundle-SymbolicName"):
            if manifest.get(key):
                properties[f"attest:java:{key}"] = manifest[key]
        if main is not None:
            group, artifact, version, pom_licenses = main
            licenses = pom_licenses or licenses
        else:
            artifact = file_name
            version = (
                manifest.get("Implementation-Version")
                or manifest.get("Bundle-Version")
                or manifest.get("Specification-Version")
                or file_version
            )
            vendor_id = manifest.get("Implementation-Vendor-Id", "")
            group = vendor_id if "." in vendor_id else None
        return Archive(
            where,
            artifact,
            version,
            group,
            licenses,
            description=manifest.get("Implementation-Title") or manifest.get("Bundle-Name"),
            supplier=manifest.get("Implementation-Vendor") or manifest.get("Bundle-Vendor"),
            homepage=manifest.get("Bundle-DocURL") or manifest.get("Implementation-URL"),
            sha256=sha256,
            parent=parent,
            properties=properties,
        )


class JavaCataloger:
    """Java archives and the archives nested in them."""

    name = "java"
    interest = Interest(suffixes=SUFFIXES, stream=True)

    @staticmethod
    def sniff(path: str, head: bytes) -> bool:
        return True  # the suffix chose it; what is not a readable archive is a warning

    def analyze(self, path: str, stream: IO[bytes], size: int, env: ScanEnv) -> list[Archive]:
        reader = _Reader(env.limits, env.warn)
        where = location(path)
        seekable = getattr(stream, "seekable", lambda: False)()
        if seekable:
            digest = hashlib.sha256()
            stream.seek(0)
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
            stream.seek(0)
            reader.read(where, stream, digest.hexdigest(), 0, None)
            return reader.found
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            digest = hashlib.sha256()
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                spool.write(chunk)
            spool.seek(0)
            reader.read(where, spool, digest.hexdigest(), 0, None)
        return reader.found

    def catalog(self, view: FileView, env: ScanEnv) -> list[Package]:
        packages: list[Package] = []
        for path in view.candidates(self.name):
            archives = view.analysis(path, self.name)
            if not archives:
                continue
            refs = [f"maven:{archive.location}" for archive in archives]
            made = []
            for archive, ref in zip(archives, refs, strict=True):
                if not archive.version:
                    continue
                made.append(
                    Package(
                        type="maven",
                        name=archive.artifact,
                        version=archive.version,
                        purl=PackageURL("maven", archive.group, archive.artifact, archive.version),
                        cataloger=self.name,
                        location=archive.location,
                        ref=ref,
                        group=archive.group,
                        licenses=archive.licenses,
                        description=archive.description,
                        supplier=archive.supplier,
                        homepage=archive.homepage,
                        sha256=archive.sha256,
                        properties=dict(archive.properties),
                    )
                )
            by_ref = {package.ref: package for package in made}
            for archive, ref in zip(archives, refs, strict=True):
                if archive.parent is not None and ref in by_ref:
                    parent = by_ref.get(refs[archive.parent])
                    if parent is not None:
                        parent.depends = (*parent.depends, ref)
            packages.extend(made)
        return packages
