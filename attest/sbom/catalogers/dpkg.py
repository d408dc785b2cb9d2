"""Debian and Ubuntu packages from the dpkg database.

Reads ``var/lib/dpkg/status`` and distroless-style ``var/lib/dpkg/status.d/*``
(one stanza file per package plus ``NAME.md5sums``).  Each installed package
records its version with epoch, architecture, source package, ``Depends`` /
``Pre-Depends`` resolved to installed packages (alternatives and virtual
packages via ``Provides``), licenses from ``usr/share/doc/NAME/copyright``
(DEP-5 machine-readable files field by field, other files by their
``/usr/share/common-licenses`` references) and the files it owns from
``info/NAME[:ARCH].list`` (or ``.md5sums``).
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
from attest.sbom.licenses import debian_expression, debian_short_name
from attest.sbom.model import Package

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d"
INFO = "var/lib/dpkg/info"
DOC = "usr/share/doc"
_ABSENT_STATES = frozenset({"not-installed", "config-files"})
_COMMON_LICENSE = re.compile(r"/usr/share/common-licenses/([A-Za-z][A-Za-z0-9.+_-]*[A-Za-z0-9+])")
# Free-text copyright files: the GNU licenses' own wording, and the PSF license title.
_GNU_GRANT = re.compile(
    r"GNU\s+(Lesser\s+|Library\s+|Affero\s+)?General\s+Public\s+License.{0,120}?"
    r"version\s+(\d(?:\.\d)?)(?=\W)(.{0,60}?later)?",
    re.IGNORECASE | re.DOTALL,
)
_GNU_FAMILY = {"": "GPL", "lesser": "LGPL", "library": "LGPL", "affero": "AGPL"}
_DEP5 = re.compile(r"(?is)\s*format(-specification)?\s*:")  # a machine-readable copyright file
_PSF = re.compile(r"PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2")


def parse_stanzas(data: bytes, warn: Warn) -> list[dict[str, str]]:
    """deb822 paragraphs (``Key: value`` with continuation lines) as dicts."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None
    for number, line in enumerate(data.decode("utf-8", "replace").split("\n"), 1):
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t":
            if key is None:
                warn(f"line {number} continues no field; ignored")
                continue
            current[key] += "\n" + line[1:]
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            current[key] = value.strip()
        else:
            warn(f"line {number} is not 'Field: value'; ignored")
    if current:
        stanzas.append(current)
    return stanzas


def parse_file_list(data: bytes, warn: Warn) -> frozenset[str]:
    """Paths from an ``info/*.list`` file."""
    lines = map(str.strip, data.decode("utf-8", "surrogateescape").splitlines())
    return frozenset(line.lstrip("/") for line in lines if line and line != "/.")


def parse_md5sums(data: bytes, warn: Warn) -> frozenset[str]:
    """Paths from a ``*.md5sums`` file (``HASH  path`` lines)."""
    paths = set()
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            paths.add(parts[1].strip().lstrip("/"))
    return frozenset(paths)


def parse_copyright(data: bytes, warn: Warn) -> tuple[str, ...]:
    """Licenses of a ``copyright`` file: DEP-5 ``License:`` fields, else common-licenses references."""
    text = data.decode("utf-8", "replace")
    found: list[str] = []
    if _DEP5.match(text):
        for paragraph in parse_stanzas(data, lambda _cause: None):
            value = paragraph.get("License")
            if value is None or not ("Files" in paragraph or "Format" in paragraph):
                continue
            first = value.split("\n", 1)[0].strip()
            if first:
                expression = debian_expression(first)
                if expression not in found:
                    found.append(expression)
    else:
        names = _COMMON_LICENSE.findall(text)
        for match in _GNU_GRANT.finditer(text):
            family = _GNU_FAMILY[(match.group(1) or "").strip().lower()]
            names.append(f"{family}-{match.group(2)}{'+' if match.group(3) else ''}")
        if _PSF.search(text):
            names.append("PSF-2")
        for name in names:
            mapped = debian_short_name(name)
            if mapped and mapped not in found:
                found.append(mapped)
    return tuple(sorted(found))


def _accept(path: str) -> bool:
    parent, _, base = path.rpartition("/")
    if path == STATUS or parent == STATUS_D:
        return True
    if parent == INFO:
        return base.endswith((".list", ".md5sums"))
    return base == "copyright" and parent.startswith(DOC + "/") and parent.count("/") == 3


def _split_alternatives(value: str) -> list[list[str]]:
    groups = []
    for group in value.split(","):
        names = []
        for alternative in group.split("|"):
            name = alternative.strip().split(" ", 1)[0].split("(", 1)[0].strip()
            if name:
                names.append(name.split(":", 1)[0])
        if names:
            groups.append(names)
    return groups


class DpkgCataloger:
    """Packages of the dpkg database (see the module docstring)."""

    name = "dpkg"
    interest = Interest(
        names=frozenset({"status", "copyright"}),
        suffixes=(".list", ".md5sums"),
        parents=(STATUS_D,),
        accept=_accept,
    )

    def catalog(self, view: FileView, env: ScanEnv) -> list[Package]:
        entries: list[tuple[str, dict[str, str]]] = []
        for path in view.candidates(self.name):
            parent = path.rpartition("/")[0]
            if path == STATUS or (parent == STATUS_D and not path.endswith(".md5sums")):
                for stanza in view.parse(path, "deb822", parse_stanzas) or []:
                    entries.append((path, stanza))
        found: list[tuple[Package, dict[str, str]]] = []
        for db_path, stanza in entries:
            package = self._package(db_path, stanza, view, env)
            if package is not None:
                found.append((package, stanza))
        self._link(found)
        return [package for package, _ in found]

    @staticmethod
    def _installed(stanza: dict[str, str]) -> bool:
        status = stanza.get("Status", "install ok installed").split()
        return bool(stanza.get("Package")) and (not status or status[-1] not in _ABSENT_STATES)

    def _package(
        self, db_path: str, stanza: dict[str, str], view: FileView, env: ScanEnv
    ) -> Package | None:
        if not self._installed(stanza):
            return None
        name, version = stanza.get("Package", ""), stanza.get("Version", "")
        if not version:
            env.warn(db_path, f"package {name!r} has no Version; skipped")
            return None
        arch = stanza.get("Architecture", "")
        properties = {}
        source = stanza.get("Source")
        if source:
            source_name, _, source_version = source.partition(" ")
            properties["attest:deb:source"] = source_name
            properties["attest:deb:source-version"] = source_version.strip("() ") or version
        if stanza.get("Installed-Size"):
            properties["attest:deb:installed-size-kib"] = stanza["Installed-Size"]
        copyright_path = f"{DOC}/{name}/copyright"
        licenses = view.parse(copyright_path, "dpkg-copyright", parse_copyright) or ()
        description = stanza.get("Description", "").split("\n", 1)[0].strip() or None
        return Package(
            type="deb",
            name=name,
            version=version,
            purl=os_purl("deb", env, "debian", name, version, arch=arch),
            cataloger=self.name,
            location=location(db_path),
            ref=f"deb:{name}:{arch}",
            licenses=tuple(licenses),
            description=description,
            supplier=stanza.get("Maintainer") or None,
            homepage=stanza.get("Homepage") or None,
            properties=properties,
            files=self._files(db_path, name, arch, view),
        )

    def _files(self, db_path: str, name: str, arch: str, view: FileView) -> frozenset[str]:
        if db_path.startswith(STATUS_D + "/"):
            candidates = [f"{STATUS_D}/{name}.md5sums", f"{db_path}.md5sums"]
        else:
            candidates = [
                f"{INFO}/{name}:{arch}.list",
                f"{INFO}/{name}.list",
                f"{INFO}/{name}:{arch}.md5sums",
                f"{INFO}/{name}.md5sums",
            ]
        for path in candidates:
            parser = parse_file_list if path.endswith(".list") else parse_md5sums
            files = view.parse(path, "dpkg-files", parser)
            if files is not None:
                return files
        return frozenset()

    @staticmethod
    def _link(found: list[tuple[Package, dict[str, str]]]) -> None:
        by_name: dict[str, list[Package]] = {}
        providers: dict[str, list[Package]] = {}
        for package, stanza in found:
            by_name.setdefault(package.name, []).append(package)
            for group in _split_alternatives(stanza.get("Provides", "")):
                providers.setdefault(group[0], []).append(package)

        def pick(name: str, arch: str) -> Package | None:
            found = by_name.get(name) or providers.get(name) or []
            for candidate in found:
                if candidate.ref.endswith(f":{arch}"):
                    return candidate
            return found[0] if found else None

        def satisfier(package: Package, group: list[str]) -> Package | None:
            """The package the first resolvable alternative of ``group`` names (never ``package``)."""
            arch = package.ref.rsplit(":", 1)[-1]
            for alternative in group:
                target = pick(alternative, arch)
                if target is not None and target is not package:
                    return target
            return None

        for package, stanza in found:
            groups = [
                group
                for field in ("Pre-Depends", "Depends")
                for group in _split_alternatives(stanza.get(field, ""))
            ]
            package.depends = dependency_refs(package, (satisfier(package, g) for g in groups))
