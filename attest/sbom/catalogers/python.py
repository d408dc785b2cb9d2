"""Installed Python distributions: ``*.dist-info`` and ``*.egg-info`` anywhere in the tree.

Reads core metadata (``METADATA``, ``PKG-INFO``, or a legacy single-file
``NAME.egg-info``): name, version, license (``License-Expression``, a short
``License`` field, or ``License ::`` classifiers), summary and home page;
``Requires-Dist`` (or ``requires.txt``) become dependency edges to
distributions installed in the same directory; ``RECORD`` (or
``installed-files.txt``) lists the files each distribution owns.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re

from packageurl import PackageURL

from attest.sbom.catalogers.base import FileView, Interest, ScanEnv, Warn, dependency_refs, location
from attest.sbom.licenses import from_classifiers, normalize
from attest.sbom.model import Package

_METADATA_FILES = ("METADATA", "PKG-INFO")
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_MAX_SHORT_LICENSE = 100
_SEPARATORS = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation, for matching requirements to distributions."""
    return _SEPARATORS.sub("-", name).lower()


def parse_metadata(data: bytes, warn: Warn) -> dict[str, list[str]] | None:
    """The header fields of core metadata (RFC 822 style, folded lines joined)."""
    text = data.decode("utf-8", "replace")
    headers: dict[str, list[str]] = {}
    key: str | None = None
    for line in text.splitlines():
        if not line.strip():
            break
        if line[0] in " \t":
            if key is not None:
                headers[key][-1] += "\n" + line.strip()
            continue
        if ":" not in line:
            warn("is not in core metadata format; skipped")
            return None
        key, _, value = line.partition(":")
        headers.setdefault(key.strip().lower(), []).append(value.strip())
        key = key.strip().lower()
    if not headers.get("name") or not headers.get("version"):
        warn("core metadata lacks Name or Version; skipped")
        return None
    return headers


def parse_record(data: bytes, warn: Warn) -> tuple[str, ...]:
    """Paths listed in a RECORD (CSV) or installed-files.txt, relative to their base."""
    text = data.decode("utf-8", "replace")
    if "," not in text.split("\n", 1)[0]:
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    try:
        return tuple(row[0] for row in csv.reader(io.StringIO(text)) if row and row[0])
    except csv.Error as err:
        warn(f"RECORD is not valid CSV ({err}); file list ignored")
        return ()


def parse_requires_txt(data: bytes, warn: Warn) -> tuple[str, ...]:
    """Requirement lines of an egg-info ``requires.txt`` (all sections)."""
    return tuple(
        line.strip()
        for line in data.decode("utf-8", "replace").splitlines()
        if line.strip() and not line.startswith("[")
    )


def _is_metadata(path: str) -> bool:
    parent, _, base = path.rpartition("/")
    if base == "METADATA":
        return parent.endswith(".dist-info")
    if base == "PKG-INFO":
        return parent.endswith((".egg-info", "/EGG-INFO"))
    return base.endswith(".egg-info")  # a legacy single-file egg-info


def _accept(path: str) -> bool:
    parent, _, base = path.rpartition("/")
    if base in ("RECORD",):
        return parent.endswith(".dist-info")
    if base in ("requires.txt", "installed-files.txt"):
        return parent.endswith((".egg-info", "/EGG-INFO"))
    return _is_metadata(path)


class PythonCataloger:
    """Python distributions (see the module docstring)."""

    name = "python"
    interest = Interest(
        names=frozenset({*_METADATA_FILES, "RECORD", "requires.txt", "installed-files.txt"}),
        suffixes=(".egg-info",),
        accept=_accept,
    )

    def catalog(self, view: FileView, env: ScanEnv) -> list[Package]:
        found: list[tuple[Package, str, tuple[str, ...]]] = []
        for path in view.candidates(self.name):
            if not _is_metadata(path):
                continue
            headers = view.parse(path, "python-metadata", parse_metadata)
            if headers is None:
                continue
            found.append(self._package(path, headers, view))
        _link(found)
        return [package for package, _, _ in found]

    def _package(
        self, path: str, headers: dict[str, list[str]], view: FileView
    ) -> tuple[Package, str, tuple[str, ...]]:
        name, version = headers["name"][0], headers["version"][0]
        info_dir = path.rpartition("/")[0] if path.endswith(_METADATA_FILES) else path
        site = info_dir.rpartition("/")[0]
        if info_dir.endswith("/EGG-INFO"):
            site = site.rpartition("/")[0]
        requires = tuple(headers.get("requires-dist", ()))
        files: tuple[str, ...] = ()
        if info_dir.endswith(".dist-info"):
            files = _relative(site, view.parse(f"{info_dir}/RECORD", "python-record", parse_record))
        elif info_dir != path:
            requires = requires or (
                view.parse(f"{info_dir}/requires.txt", "python-requires", parse_requires_txt) or ()
            )
            files = _relative(
                info_dir,
                view.parse(f"{info_dir}/installed-files.txt", "python-record", parse_record),
            )
        homepage = _first(headers, "home-page")
        for url in headers.get("project-url", ()):
            label, _, link = url.partition(",")
            if homepage is None and label.strip().lower() in ("homepage", "home", "source"):
                homepage = link.strip()
        package = Package(
            type="pypi",
            name=name,
            version=version,
            purl=PackageURL("pypi", None, name, version),
            cataloger=self.name,
            location=location(path),
            ref=f"pypi:{info_dir}",
            licenses=_licenses(headers),
            description=_first(headers, "summary") or None,
            homepage=homepage or None,
            properties={"attest:python:site": location(site)} if site else {},
            files=frozenset(files),
        )
        return package, site, requires


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _relative(base: str, entries: tuple[str, ...] | None) -> tuple[str, ...]:
    if not entries:
        return ()
    return tuple(posixpath.normpath(f"/{base}/{entry}").lstrip("/") for entry in entries if entry)


def _licenses(headers: dict[str, list[str]]) -> tuple[str, ...]:
    expression = normalize(_first(headers, "license-expression"))
    if expression:
        return (expression,)
    field = _first(headers, "license")
    if field and "\n" not in field and len(field) <= _MAX_SHORT_LICENSE:
        value = normalize(field)
        if value:
            return (value,)
    return tuple(from_classifiers(headers.get("classifier", [])))


def _link(found: list[tuple[Package, str, tuple[str, ...]]]) -> None:
    by_site: dict[tuple[str, str], Package] = {}
    for package, site, _ in found:
        by_site.setdefault((site, canonical_name(package.name)), package)
    for package, site, requires in found:
        names = (match.group(1) for match in map(_REQUIREMENT.match, requires) if match)
        package.depends = dependency_refs(
            package, (by_site.get((site, canonical_name(name))) for name in names)
        )
