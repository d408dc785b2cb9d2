"""Installed npm packages: every ``node_modules/[@scope/]NAME/package.json``.

Only installed packages count (lock files describe intent, not what is on
disk).  Dependency edges follow Node's module resolution: a dependency of the
package in ``D`` is looked up in ``D/node_modules``, then in each enclosing
``node_modules`` up to the root, so nested version conflicts resolve the way
``require()`` would.
"""

from __future__ import annotations

import json
import re
from typing import Any

from packageurl import PackageURL

from attest.sbom.catalogers.base import FileView, Interest, ScanEnv, Warn, dependency_refs, location
from attest.sbom.licenses import normalize
from attest.sbom.model import Package

_PACKAGE_JSON = re.compile(r"(?:.*/)?node_modules/(?:@[^/]+/)?[^/.@][^/]*/package\.json\Z")
_DEPENDENCY_FIELDS = ("dependencies", "optionalDependencies", "peerDependencies")


def parse_package_json(data: bytes, warn: Warn) -> dict[str, Any] | None:
    """The manifest, if it is a JSON object with string ``name`` and ``version``."""
    try:
        manifest = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        warn(f"package.json is not valid JSON ({err}); skipped")
        return None
    if not isinstance(manifest, dict):
        warn("package.json is not a JSON object; skipped")
        return None
    name, version = manifest.get("name"), manifest.get("version")
    if not isinstance(name, str) or not name or not isinstance(version, str) or not version:
        warn("package.json lacks a string name or version; skipped")
        return None
    return manifest


def _licenses(manifest: dict[str, Any]) -> tuple[str, ...]:
    values: list[Any] = []
    declared = manifest.get("license")
    values.append(declared.get("type") if isinstance(declared, dict) else declared)
    legacy = manifest.get("licenses")
    if isinstance(legacy, list):
        values.extend(item.get("type") if isinstance(item, dict) else item for item in legacy)
    found: list[str] = []
    for value in values:
        if isinstance(value, str):
            normalized = normalize(value)
            if normalized and normalized not in found:
                found.append(normalized)
    return tuple(found)


def _text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name") or value.get("url")
    if isinstance(value, str):
        return value.strip() or None
    return None


class NpmCataloger:
    """npm packages installed in ``node_modules`` trees."""

    name = "npm"
    interest = Interest(
        names=frozenset({"package.json"}), accept=lambda path: bool(_PACKAGE_JSON.match(path))
    )

    def catalog(self, view: FileView, env: ScanEnv) -> list[Package]:
        by_dir: dict[str, tuple[Package, dict[str, Any]]] = {}
        for path in view.candidates(self.name):
            manifest = view.parse(path, "npm", parse_package_json)
            if manifest is None:
                continue
            directory = path.rpartition("/")[0]
            name, version = manifest["name"], manifest["version"]
            scope, _, short = name.rpartition("/")
            package = Package(
                type="npm",
                name=name,
                version=version,
                purl=PackageURL("npm", scope or None, short, version),
                cataloger=self.name,
                location=location(path),
                ref=f"npm:{directory}",
                licenses=_licenses(manifest),
                description=_text(manifest.get("description")),
                supplier=_text(manifest.get("author")),
                homepage=_text(manifest.get("homepage")),
            )
            by_dir[directory] = (package, manifest)
        for directory, (package, manifest) in by_dir.items():
            package.depends = dependency_refs(
                package,
                (_resolve(directory, name, by_dir) for name in _dependency_names(manifest)),
            )
        return [package for package, _ in by_dir.values()]


def _dependency_names(manifest: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for field in _DEPENDENCY_FIELDS:
        dependencies = manifest.get(field)
        if isinstance(dependencies, dict):
            names.extend(str(name) for name in dependencies)
    return names


def _resolve(
    directory: str, dependency: str, by_dir: dict[str, tuple[Package, dict[str, Any]]]
) -> Package | None:
    current = directory
    while True:
        candidate = (
            f"{current}/node_modules/{dependency}" if current else f"node_modules/{dependency}"
        )
        if candidate in by_dir:
            return by_dir[candidate][0]
        if not current:
            return None
        current = current.rpartition("/")[0]
        if current == "node_modules" or current.endswith("/node_modules"):
            current = current.rpartition("/")[0]
