"""Scan an image or a directory into a :class:`Catalog`: layers, catalogers, attribution, folding.

For an image, layers are streamed one at a time into a :class:`FileTree`.
After each layer, every cataloger whose files changed runs again on the tree
as it stands, and the identities of what it found are remembered.  A
package's layer is then the lowest layer from which that package, at that
version and location, was present continuously up to the final image — so a
later layer that merely rewrites the dpkg database does not claim every
package.  Finally language packages whose evidence file belongs to an OS
package (a Debian ``python3-yaml``'s dist-info, a jar in ``/usr/share/java``)
are folded into that OS package (recorded in its ``provides``), so nothing is
reported twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from attest.deadline import Deadline
from attest.errors import DigestMismatch, ManifestError, UsageError
from attest.oci import mediatypes as mt
from attest.oci.access import ResolvedImage, load_config
from attest.oci.reference import ImageReference
from attest.oci.store import ImageStore
from attest.sbom.catalogers import default_catalogers
from attest.sbom.catalogers.base import Cataloger, Limits, ScanEnv
from attest.sbom.catalogers.os_release import detect_os
from attest.sbom.filesystem import FileTree, Selector, directory_tree
from attest.sbom.layers import LayerStream, apply_layer
from attest.sbom.model import Catalog, Package, Source
from attest.sbom.progress import Progress

_TYPE_ORDER = {"deb": 0, "apk": 0, "rpm": 0, "pypi": 1, "npm": 2, "golang": 3, "maven": 4}
_SCANNABLE_LAYERS = (
    mt.GZIP_LAYERS
    | mt.PLAIN_LAYERS
    | mt.ZSTD_LAYERS
    | {
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

Identity = tuple[str, ...]


def _run(catalogers: list[Cataloger], tree: FileTree, env: ScanEnv) -> list[Package]:
    tree.env = env
    env.operating_system = detect_os(tree)
    packages: list[Package] = []
    for cataloger in catalogers:
        packages.extend(cataloger.catalog(tree, env))
    return packages


def scan_directory(path: str, *, limits: Limits | None = None) -> Catalog:
    """Catalog an unpacked root filesystem or a project directory."""
    if not os.path.isdir(path):
        raise UsageError(f"dir:{path}: no such directory")
    env = ScanEnv(None, limits or Limits())
    catalogers = default_catalogers()
    tree = directory_tree(os.path.abspath(path), Selector(catalogers), env)
    packages = _run(catalogers, tree, env)
    packages = fold_owned(packages, tree)
    source = Source(kind="directory", name=path)
    return Catalog(source, sort_packages(packages), env.operating_system, sorted(env.warnings))


def scan_image(
    store: ImageStore,
    image: ResolvedImage,
    *,
    limits: Limits | None = None,
    progress: Progress | None = None,
    deadline: Deadline | None = None,
) -> Catalog:
    """Catalog the filesystem of ``image`` (already resolved to one platform)."""
    manifest = image.image_manifest
    what = str(image.target)
    config = load_config(store, manifest, what=what)
    diff_ids = _diff_ids(config, len(manifest.layers), what)
    env = ScanEnv(None, limits or Limits())
    catalogers = default_catalogers()
    tree = FileTree(Selector(catalogers), env)
    history: dict[str, list[tuple[int, set[Identity]]]] = {c.name: [] for c in catalogers}
    progress = progress or Progress(enabled=False)
    for index, layer in enumerate(manifest.layers):
        if deadline is not None:
            deadline.check(f"scanning {what}")
        if layer.media_type not in _SCANNABLE_LAYERS:
            raise ManifestError(
                f"{what}: layer {index + 1} ({layer.digest}) has media type {layer.media_type!r}, "
                "which cannot be scanned"
            )
        label = f"{what}: layer {index + 1} ({layer.digest})"
        progress.layer(index, len(manifest.layers), layer.digest, layer.size)
        with store.open_blob(layer) as reader:
            stream = LayerStream(reader, what=label)
            try:
                changed = apply_layer(
                    tree, index, stream, env, what=label, tick=_ticker(progress, reader)
                )
                diff_id = stream.finish()
            finally:
                stream.close()
        if diff_id != diff_ids[index]:
            raise DigestMismatch(
                f"{label}: uncompressed content hashes to {diff_id}, "
                f"the image config says {diff_ids[index]}"
            )
        if changed:
            probe = ScanEnv(None, env.limits)
            tree.env = probe
            probe.operating_system = detect_os(tree)
            for cataloger in catalogers:
                if cataloger.name in changed:
                    found = cataloger.catalog(tree, probe)
                    history[cataloger.name].append((index, {p.identity for p in found}))
    progress.done()
    packages = _run(catalogers, tree, env)
    for package in packages:
        package.layer = diff_ids[_first_layer(package, history[package.cataloger], len(diff_ids))]
    packages = fold_owned(packages, tree)
    platform = "/".join(
        str(p) for p in (config.get("os"), config.get("architecture"), config.get("variant")) if p
    )
    target = image.target
    source = Source(
        kind="image",
        name=image.name,
        digest=image.digest,
        manifest_digest=image.manifest.digest,
        tag=target.tag,
        repository_url=target.name if isinstance(target, ImageReference) else None,
        platform=platform or None,
        layers=tuple(diff_ids),
        config_digest=manifest.config.digest,
    )
    return Catalog(source, sort_packages(packages), env.operating_system, sorted(env.warnings))


def _ticker(progress: Progress, reader: object) -> Callable[[], None] | None:
    if not progress.enabled:
        return None
    return lambda: progress.advance(getattr(reader, "bytes_read", 0))


def _diff_ids(config: dict[str, object], layers: int, what: str) -> list[str]:
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ManifestError(f"{what}: image config has no rootfs.diff_ids list")
    if len(diff_ids) != layers:
        raise ManifestError(
            f"{what}: image config lists {len(diff_ids)} diff_ids for {layers} layers"
        )
    return list(diff_ids)


def _first_layer(package: Package, runs: list[tuple[int, set[Identity]]], layers: int) -> int:
    """The lowest layer from which ``package`` was present in every later checkpoint."""
    first = layers - 1
    for index, identities in reversed(runs):
        if package.identity not in identities:
            break
        first = index
    return first


def fold_owned(packages: list[Package], tree: FileTree) -> list[Package]:
    """Drop language packages whose evidence file an OS package owns; record them on it."""
    os_packages = [p for p in packages if p.is_os_package and p.files]
    if not os_packages:
        return packages
    parents: dict[str, str] = {}

    def canonical(path: str) -> str:
        parent, sep, base = path.rpartition("/")
        if not sep:
            return path
        real = parents.get(parent)
        if real is None:
            real = tree.realpath(parent) or parent
            parents[parent] = real
        return f"{real}/{base}" if real else base

    evidence = [
        "" if p.is_os_package else canonical(p.location.split("!", 1)[0].lstrip("/"))
        for p in packages
    ]
    # canonical() keeps the base name, so only owned paths with an evidence base name can
    # match; every owned path's directory is still resolved (a symlink loop there warns).
    bases = {path.rpartition("/")[2] for path in evidence if path}
    owners: dict[str, Package] = {}
    for package in os_packages:
        for path in package.files:
            parent, sep, base = path.rpartition("/")
            if sep and parent not in parents:
                parents[parent] = tree.realpath(parent) or parent
            if base in bases:
                owners.setdefault(canonical(path), package)
    kept: list[Package] = []
    replaced: dict[str, str] = {}
    for package, evidence_path in zip(packages, evidence, strict=True):
        if not package.is_os_package:
            owner = owners.get(evidence_path)
            if owner is not None:
                owner.provides = (*owner.provides, package.purl_string)
                replaced[package.ref] = owner.ref
                continue
        kept.append(package)
    if replaced:
        for package in kept:
            edges: list[str] = []
            for ref in package.depends:
                ref = replaced.get(ref, ref)
                if ref != package.ref and ref not in edges:
                    edges.append(ref)
            package.depends = tuple(edges)
    return kept


def sort_packages(packages: list[Package]) -> list[Package]:
    """A stable order: OS packages, then each language ecosystem; by name, version, location."""
    unique: dict[str, Package] = {}
    for package in packages:
        unique.setdefault(package.ref, package)
    for package in unique.values():
        package.provides = tuple(sorted(set(package.provides)))
    return sorted(
        unique.values(),
        key=lambda p: (_TYPE_ORDER.get(p.type, 9), p.type, p.name, p.version, p.location, p.ref),
    )
