from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from attest.errors import DigestMismatch, LayoutError, NotFound, PlatformNotFound
from attest.oci import mediatypes as mt
from attest.oci.access import load_config, resolve_image
from attest.oci.layout import LayoutStore, pack_layout
from attest.oci.manifest import Index, Manifest, Platform
from attest.oci.reference import parse_target
from attest.oci.store import read_blob
from attest.testing.images import simple_image


def _layout_with_image(tmp_path: Path, tag: str = "v1") -> tuple[Path, str]:
    path = tmp_path / "layout"
    with LayoutStore(str(path), create=True) as store:
        descriptor = simple_image(tmp_path).build(tmp_path / "build").push(store, tag)
    return path, descriptor.digest


def test_round_trip_and_spec_files(tmp_path: Path) -> None:
    path, digest = _layout_with_image(tmp_path)
    assert json.loads((path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((path / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    assert index["manifests"][0]["annotations"][mt.ANNOTATION_REF_NAME] == "v1"
    store = LayoutStore(str(path))
    image = resolve_image(store, parse_target(f"oci:{path}:v1"))
    assert image.digest == digest
    manifest = image.manifest.parsed
    assert isinstance(manifest, Manifest) and len(manifest.layers) == 2
    config = load_config(store, manifest, what="test")
    assert config["config"]["Labels"] == {"marker": "one"}
    assert len(config["rootfs"]["diff_ids"]) == 2
    for layer in manifest.layers:
        assert len(read_blob(store, layer)) == layer.size


def test_layout_is_readable_by_skopeo_and_umoci(tmp_path: Path) -> None:
    path, digest = _layout_with_image(tmp_path)
    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"oci:{path}:v1"], check=True, capture_output=True, text=True
        ).stdout
    )
    assert inspected["Digest"] == digest
    assert inspected["Labels"] == {"marker": "one"}
    # umoci really unpacks it, applying the whiteout and opaque directory.
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{path}:v1", str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin/app").read_text().startswith("#!/bin/sh")
    assert not (rootfs / "tmp/remove-me").exists()
    assert not (rootfs / "var/cache/old").exists()
    assert (rootfs / "var/cache/new.txt").read_text() == "new\n"


def test_reads_layouts_written_by_skopeo(tmp_path: Path) -> None:
    path, digest = _layout_with_image(tmp_path)
    copy = tmp_path / "copy"
    subprocess.run(["skopeo", "copy", "-q", f"oci:{path}:v1", f"oci:{copy}:copied"], check=True)
    image = resolve_image(LayoutStore(str(copy)), parse_target(f"oci:{copy}:copied"))
    assert image.digest == digest
    # no tag: the only image in the layout is used
    assert resolve_image(LayoutStore(str(copy)), parse_target(f"oci:{copy}")).digest == digest


def test_archive_round_trip_and_write_back(tmp_path: Path) -> None:
    path, digest = _layout_with_image(tmp_path)
    archive = tmp_path / "image.tar"
    pack_layout(path, archive)
    store = LayoutStore(str(archive), archive=True)
    assert resolve_image(store, parse_target(f"oci-archive:{archive}")).digest == digest
    # a write repacks the archive atomically, and skopeo can still read it
    with LayoutStore(str(archive), archive=True) as writable:
        writable.tag(writable.resolve(digest), "second")
    store2 = LayoutStore(str(archive), archive=True)
    assert sorted(store2.list_tags()) == ["second", "v1"]
    store2.close()
    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"oci-archive:{archive}:second"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert inspected["Digest"] == digest


def test_multi_platform_index_selection(tmp_path: Path, push_image) -> None:
    path = tmp_path / "multi"
    with LayoutStore(str(path), create=True) as store:
        index_desc = push_image(store, "multi", platforms=("amd64", "arm64"))
    store = LayoutStore(str(path))
    target = parse_target(f"oci:{path}:multi")
    default = resolve_image(store, target)
    assert default.digest == index_desc.digest
    assert isinstance(default.top.parsed, Index)
    assert default.platform == Platform("linux", "amd64")
    arm = resolve_image(store, target, Platform.parse("linux/arm64"))
    assert arm.platform == Platform("linux", "arm64")
    assert arm.manifest.digest != default.manifest.digest
    assert load_config(store, arm.image_manifest, what="t")["architecture"] == "arm64"
    with pytest.raises(PlatformNotFound, match="available: linux/amd64, linux/arm64"):
        resolve_image(store, target, Platform.parse("linux/s390x"))


def test_missing_tag_and_ambiguous_layout(tmp_path: Path, push_image) -> None:
    path, _ = _layout_with_image(tmp_path)
    with LayoutStore(str(path)) as store:
        push_image(store, "v2", marker="two")
    store = LayoutStore(str(path))
    with pytest.raises(NotFound, match="no such tag"):
        resolve_image(store, parse_target(f"oci:{path}:nope"))
    with pytest.raises(LayoutError, match="holds 2 images; name one as :TAG"):
        resolve_image(store, parse_target(f"oci:{path}"))


def test_corrupt_and_truncated_layouts(tmp_path: Path) -> None:
    path, digest = _layout_with_image(tmp_path)
    store = LayoutStore(str(path))
    manifest = resolve_image(store, parse_target(f"oci:{path}:v1")).image_manifest
    layer = manifest.layers[0]
    blob = path / "blobs" / "sha256" / layer.digest.split(":")[1]
    data = blob.read_bytes()
    blob.write_bytes(data[:-10])  # truncated
    with pytest.raises(DigestMismatch, match="declared size|truncated"):
        read_blob(store, layer)
    blob.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, corrupt
    with pytest.raises(DigestMismatch, match="hashes to"):
        read_blob(store, layer)
    blob.unlink()
    with pytest.raises(NotFound, match="missing"):
        read_blob(store, layer)
    # corrupt manifest blob
    (path / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(b"{not json")
    with pytest.raises(DigestMismatch):
        resolve_image(store, parse_target(f"oci:{path}:v1"))
    (path / "index.json").write_text("{")
    with pytest.raises(LayoutError, match="index.json is not valid JSON"):
        resolve_image(store, parse_target(f"oci:{path}:v1"))
    (path / "oci-layout").unlink()
    with pytest.raises(LayoutError, match="no oci-layout file"):
        LayoutStore(str(path))


def test_truncated_archive(tmp_path: Path) -> None:
    path, _ = _layout_with_image(tmp_path)
    archive = tmp_path / "image.tar"
    pack_layout(path, archive)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(LayoutError):
        store = LayoutStore(str(archive), archive=True)
        image = resolve_image(store, parse_target(f"oci-archive:{archive}"))
        for layer in image.image_manifest.layers:
            read_blob(store, layer)
    (tmp_path / "not.tar").write_bytes(b"plain text, not a tar")
    with pytest.raises(LayoutError, match="not a readable tar archive|no oci-layout"):
        LayoutStore(str(tmp_path / "not.tar"), archive=True)


def test_failed_archive_write_leaves_original_intact(tmp_path: Path) -> None:
    path, digest = _layout_with_image(tmp_path)
    archive = tmp_path / "image.tar"
    pack_layout(path, archive)
    before = archive.read_bytes()
    with pytest.raises(RuntimeError), LayoutStore(str(archive), archive=True) as store:
        store.tag(store.resolve(digest), "half-written")
        raise RuntimeError("simulated failure mid-write")
    assert archive.read_bytes() == before
    assert not list(tmp_path.glob(".attest-archive-*"))
    with tarfile.open(archive) as tar:
        assert "index.json" in tar.getnames()
