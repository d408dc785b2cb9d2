"""Layer application: whiteouts, opaque directories, replacement, links, attribution, compression."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import zstandard

from attest.oci import mediatypes as mt
from attest.oci.builder import ImageBuilder, LayerBuilder
from attest.oci.layout import LayoutStore
from attest.oci.manifest import Descriptor, Manifest
from attest.sbom import scan
from attest.sbom.catalogers import default_catalogers
from attest.sbom.catalogers.base import ScanEnv
from attest.sbom.filesystem import DIR, FILE, SYMLINK, FileTree, Node, Selector
from tests.sbom.conftest import write_layout

OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
SITE = "usr/lib/python3/dist-packages"


def status(*packages: tuple[str, str]) -> str:
    """A dpkg status file with ``(name, version)`` stanzas."""
    return "\n".join(
        f"Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
        f"Installed-Size: 10\nMaintainer: Debian <debian@example.org>\nArchitecture: amd64\n"
        f"Version: {version}\nDescription: {name} package\n summary line\n"
        for name, version in packages
    )


def metadata(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n"


def npm(name: str, version: str) -> str:
    return json.dumps({"name": name, "version": version})


def _by_name(target: str) -> dict[str, tuple[str, str | None]]:
    catalog = scan(target)
    layers = {diff_id: index for index, diff_id in enumerate(catalog.source.layers)}
    return {p.name: (p.version, layers.get(p.layer) if p.layer else None) for p in catalog.packages}


def test_attribution_is_the_lowest_layer_with_that_version(tmp_path: Path) -> None:
    builder = ImageBuilder()
    builder.layer().file("etc/os-release", OS_RELEASE).file(
        "var/lib/dpkg/status", status(("a", "1.0"), ("b", "1.0"), ("d", "4.0"))
    ).file(f"{SITE}/x-1.0.dist-info/METADATA", metadata("x", "1.0")).file(
        "srv/node_modules/keep/package.json", npm("keep", "1.0.0")
    )
    builder.layer().file(
        "var/lib/dpkg/status", status(("a", "1.0"), ("b", "1.0"), ("c", "2.0"))
    ).file(f"{SITE}/y-1.0.dist-info/METADATA", metadata("y", "1.0")).whiteout(
        f"{SITE}/x-1.0.dist-info"
    )
    builder.layer().file(
        "var/lib/dpkg/status", status(("a", "1.0"), ("b", "1.1"), ("c", "2.0"), ("d", "4.0"))
    ).file(f"{SITE}/y-1.0.dist-info/METADATA", metadata("y", "1.0"))
    found = _by_name(write_layout(builder, tmp_path / "layout"))
    assert found == {
        "a": ("1.0", 0),  # the status file was rewritten twice; a never changed
        "b": ("1.1", 2),  # upgraded in layer 2
        "c": ("2.0", 1),
        "d": ("4.0", 2),  # removed in layer 1, back in layer 2: present since layer 2
        "y": ("1.0", 1),  # METADATA rewritten unchanged in layer 2
        "keep": ("1.0.0", 0),
    }  # x was whited out


def test_opaque_directories_whiteouts_and_replaced_directories(tmp_path: Path) -> None:
    builder = ImageBuilder()
    builder.layer().file("app/node_modules/p1/package.json", npm("p1", "1.0.0")).file(
        "app/node_modules/p3/package.json", npm("p3", "3.0.0")
    ).file("other/node_modules/q/package.json", npm("q", "1.0.0")).file(
        "gone/node_modules/r/package.json", npm("r", "1.0.0")
    ).file("lib/site/z-1.0.dist-info/METADATA", metadata("z", "1.0"))
    builder.layer().opaque("app/node_modules").file(
        "app/node_modules/p2/package.json", npm("p2", "2.0.0")
    ).whiteout("gone").file("lib/site", "now a file\n")
    found = _by_name(write_layout(builder, tmp_path / "layout"))
    assert found == {"p2": ("2.0.0", 1), "q": ("1.0.0", 0)}


def test_entries_below_a_symlinked_directory_land_where_extraction_puts_them(
    tmp_path: Path,
) -> None:
    builder = ImageBuilder()
    builder.layer().dir("usr/lib").symlink("lib", "usr/lib").file("etc/os-release", OS_RELEASE)
    builder.layer().file(
        "lib/python3.11/site-packages/z-1.0.dist-info/METADATA", metadata("z", "1.0")
    ).hardlink(
        "lib/python3.11/site-packages/h-2.0.dist-info/METADATA",
        "lib/python3.11/site-packages/z-1.0.dist-info/METADATA",
    )
    catalog = scan(write_layout(builder, tmp_path / "layout"))
    assert {(p.name, p.location) for p in catalog.packages} == {
        ("z", "/usr/lib/python3.11/site-packages/z-1.0.dist-info/METADATA"),
        ("z", "/usr/lib/python3.11/site-packages/h-2.0.dist-info/METADATA"),
    }


def test_file_tree_resolves_symlinks_inside_the_root_and_stops_loops() -> None:
    env = ScanEnv(None)
    tree = FileTree(Selector(default_catalogers()), env)
    tree.begin_layer()
    for path, node in {
        "usr": Node(DIR, 0o755, 0, 0),
        "usr/lib": Node(DIR, 0o755, 0, 0),
        "usr/lib/os-release": Node(FILE, 0o644, 5, 0, wanted=("os-release",), content=b"ID=x\n"),
        "etc": Node(DIR, 0o755, 0, 0),
        "etc/os-release": Node(SYMLINK, 0o777, 0, 0, "../usr/lib/os-release"),
        "abs": Node(SYMLINK, 0o777, 0, 0, "/usr/lib"),
        "escape": Node(SYMLINK, 0o777, 0, 0, "../../../../usr"),
        "loop1": Node(SYMLINK, 0o777, 0, 0, "loop2"),
        "loop2": Node(SYMLINK, 0o777, 0, 0, "/loop1"),
    }.items():
        tree.stage(path, node)
    tree.commit_layer()
    assert tree.realpath("etc/os-release") == "usr/lib/os-release"
    assert tree.realpath("abs/os-release") == "usr/lib/os-release"
    assert tree.realpath("escape/lib/os-release") == "usr/lib/os-release"  # '..' stops at /
    assert tree.read("etc/os-release") == b"ID=x\n"
    assert tree.realpath("loop1/x") is None
    assert env.warnings == ["/loop1/x: too many levels of symbolic links (a symlink loop); skipped"]


def _push_zstd_image(tmp_path: Path) -> str:
    """An image whose only layer is zstd-compressed (built by hand: the builder writes gzip)."""
    layer = (
        LayerBuilder()
        .file("etc/os-release", OS_RELEASE)
        .file("srv/node_modules/zed/package.json", npm("zed", "9.9.9"))
    )
    raw = io.BytesIO()
    diff_id, _, _ = layer.write(raw, compress=False)
    compressed = zstandard.ZstdCompressor().compress(raw.getvalue())
    layer_descriptor = Descriptor.for_bytes(mt.OCI_LAYER_ZSTD, compressed)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    manifest = Manifest(
        mt.OCI_MANIFEST, Descriptor.for_bytes(mt.OCI_CONFIG, config), (layer_descriptor,)
    )
    store = LayoutStore(str(tmp_path / "zstd"), archive=False, create=True)
    try:
        store.push_blob(layer_descriptor, data=compressed)
        store.push_blob(manifest.config, data=config)
        store.push_manifest(manifest.to_bytes(), mt.OCI_MANIFEST, "latest")
    finally:
        store.close()
    assert hashlib.sha256(raw.getvalue()).hexdigest() == diff_id.split(":")[1]
    return f"oci:{tmp_path / 'zstd'}:latest"


def test_zstd_and_uncompressed_layers(tmp_path: Path) -> None:
    assert _by_name(_push_zstd_image(tmp_path)) == {"zed": ("9.9.9", 0)}
    builder = ImageBuilder(compress=False)
    builder.layer().file("srv/node_modules/plain/package.json", npm("plain", "1.2.3"))
    assert _by_name(write_layout(builder, tmp_path / "plain")) == {"plain": ("1.2.3", 0)}
