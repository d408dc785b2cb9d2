"""Bad input: unscannable images fail with one line; malformed files are skipped with a warning."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest

from attest.oci import mediatypes as mt
from attest.oci.builder import ImageBuilder
from attest.sbom import SbomOptions, generate_sbom, scan
from attest.sbom.catalogers.base import Limits
from tests.sbom.conftest import tar_bytes, write_layout, write_raw_image
from tests.sbom.test_catalogers import _jar, _manifest, _pom_properties


def _npm(name: str, version: str) -> bytes:
    return json.dumps({"name": name, "version": version}).encode()


def _blob_path(target: str, index: int = 0) -> Path:
    layout = Path(target[len("oci:") :].rsplit(":", 1)[0])
    index_json = json.loads((layout / "index.json").read_text())
    manifest = json.loads(
        (layout / "blobs/sha256" / index_json["manifests"][0]["digest"][7:]).read_text()
    )
    return layout / "blobs/sha256" / manifest["layers"][index]["digest"][7:]


@pytest.fixture
def good_image(tmp_path: Path) -> str:
    builder = ImageBuilder()
    builder.layer().file("srv/node_modules/a/package.json", _npm("a", "1.0.0"))
    return write_layout(builder, tmp_path / "layout")


def _fails(cli: object, target: str, tmp_path: Path, *expected: str) -> str:
    output = tmp_path / "sbom.json"
    result = cli("sbom", target, "--output-file", str(output))  # type: ignore[operator]
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attest: error: "), result.stderr
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.stderr
    assert not output.exists()  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".attest-sbom-")]
    return lines[0]


def test_corrupt_layer_blob_is_a_digest_error(cli: object, good_image: str, tmp_path: Path) -> None:
    blob = _blob_path(good_image)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    _fails(cli, good_image, tmp_path, "layer 1")


def test_truncated_layer_blob(cli: object, good_image: str, tmp_path: Path) -> None:
    blob = _blob_path(good_image)
    blob.write_bytes(blob.read_bytes()[:-20])
    _fails(cli, good_image, tmp_path, "truncated")


def test_diff_id_mismatch(cli: object, tmp_path: Path) -> None:
    layer = tar_bytes([("srv/node_modules/a/package.json", _npm("a", "1.0.0"))])
    target = write_raw_image(tmp_path / "img", [(mt.OCI_LAYER, layer)], ["sha256:" + "0" * 64])
    _fails(cli, target, tmp_path, "uncompressed content hashes to", "the image config says")


def test_layer_that_is_not_a_tar_stream(cli: object, tmp_path: Path) -> None:
    garbage = os.urandom(4096)
    target = write_raw_image(
        tmp_path / "img",
        [(mt.OCI_LAYER, garbage)],
        [f"sha256:{hashlib.sha256(garbage).hexdigest()}"],
    )
    _fails(cli, target, tmp_path, "layer 1", "not a valid tar stream")


def test_truncated_gzip_stream_with_a_matching_digest(cli: object, tmp_path: Path) -> None:
    layer = tar_bytes([("srv/node_modules/a/package.json", _npm("a", "1.0.0") + b" " * 50000)])
    compressed = gzip.compress(layer)[:-100]
    target = write_raw_image(
        tmp_path / "img",
        [(mt.OCI_LAYER_GZIP, compressed)],
        [f"sha256:{hashlib.sha256(layer).hexdigest()}"],
    )
    _fails(cli, target, tmp_path, "layer 1")


def test_unscannable_layer_media_type(cli: object, tmp_path: Path) -> None:
    layer = tar_bytes([("a", b"x")])
    target = write_raw_image(
        tmp_path / "img",
        [("application/vnd.oci.image.layer.v1.tar+encrypted", layer)],
        [f"sha256:{hashlib.sha256(layer).hexdigest()}"],
    )
    _fails(cli, target, tmp_path, "cannot be scanned")


def test_missing_directory(cli: object, tmp_path: Path) -> None:
    _fails(cli, f"dir:{tmp_path}/nope", tmp_path, "no such directory")


def test_bad_source_date_epoch(cli: object, good_image: str, tmp_path: Path) -> None:
    result = cli("sbom", good_image, env={"SOURCE_DATE_EPOCH": "yesterday"})  # type: ignore[operator]
    assert result.exit_code == 2
    assert "SOURCE_DATE_EPOCH" in result.stderr


def test_absolute_and_dotdot_entries_never_leave_the_scan(tmp_path: Path) -> None:
    outside = tmp_path / "escape"
    layer = tar_bytes(
        [
            ("/abs/node_modules/ok/package.json", _npm("ok", "1.0.0")),
            (f"../../../../..{outside}/node_modules/evil/package.json", _npm("evil", "6.6.6")),
            ("srv/../../node_modules/evil2/package.json", _npm("evil2", "6.6.6")),
        ]
    )
    target = write_raw_image(
        tmp_path / "img", [(mt.OCI_LAYER, layer)], [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    )
    catalog = scan(target)
    assert [(p.name, p.location) for p in catalog.packages] == [
        ("ok", "/abs/node_modules/ok/package.json")
    ]
    assert not outside.exists()
    assert any("absolute path" in w for w in catalog.warnings)
    assert sum("contains '..'; skipped" in w for w in catalog.warnings) == 2


def _malformed_root(root: Path) -> None:
    (root / "srv/node_modules/good").mkdir(parents=True)
    (root / "srv/node_modules/good/package.json").write_bytes(_npm("good", "1.0.0"))
    (root / "srv/node_modules/broken").mkdir()
    (root / "srv/node_modules/broken/package.json").write_text('{"name": "broken", ')
    (root / "srv/node_modules/noversion").mkdir()
    (root / "srv/node_modules/noversion/package.json").write_text('{"name": "noversion"}')
    site = root / "usr/lib/python3/dist-packages"
    (site / "bad-1.0.dist-info").mkdir(parents=True)
    (site / "bad-1.0.dist-info/METADATA").write_bytes(b"\x00\xff garbage without headers\n")
    (site / "ok-2.0.dist-info").mkdir()
    (site / "ok-2.0.dist-info/METADATA").write_text(
        "Metadata-Version: 2.1\nName: ok\nVersion: 2.0\n\n"
    )
    (root / "var/lib/rpm").mkdir(parents=True)
    (root / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    (root / "usr/lib/sysimage/rpm").mkdir(parents=True)
    (root / "usr/lib/sysimage/rpm/Packages").write_bytes(os.urandom(1000))  # BerkeleyDB
    (root / "usr/lib/sysimage/rpm/Packages.db").write_bytes(os.urandom(100))  # NDB
    (root / "opt").mkdir()
    (root / "opt/broken.jar").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "opt/fine-1.0.jar").write_bytes(_jar({
        "META-INF/MANIFEST.MF": _manifest(),
        "META-INF/maven/org.example/fine/pom.properties": _pom_properties("org.example", "fine", "1.0"),
    }))  # fmt: skip
    (root / "etc").mkdir()
    (root / "etc/os-release").symlink_to("os-release.d/x")
    (root / "etc/os-release.d").symlink_to("../etc/os-release")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: fine-deb\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n"
        "this line is not a field\n\nPackage: noversion-deb\nStatus: install ok installed\n"
    )


EXPECTED_WARNINGS = (
    "/srv/node_modules/broken/package.json: package.json is not valid JSON",
    "/srv/node_modules/noversion/package.json: package.json lacks a string name or version",
    "/usr/lib/python3/dist-packages/bad-1.0.dist-info/METADATA: is not in core metadata format",
    "/var/lib/rpm/rpmdb.sqlite: unreadable rpm database",
    "/usr/lib/sysimage/rpm/Packages: unreadable BerkeleyDB rpm database",
    "/usr/lib/sysimage/rpm/Packages.db: NDB rpm databases (SUSE) are not supported",
    "/opt/broken.jar: not a readable Java archive",
    "symbolic links (a symlink loop)",
    "/var/lib/dpkg/status: line 5 is not 'Field: value'",
    "/var/lib/dpkg/status: package 'noversion-deb' has no Version",
)


def test_malformed_files_are_skipped_with_warnings(tmp_path: Path, cli: object) -> None:
    _malformed_root(tmp_path / "root")
    catalog = scan(f"dir:{tmp_path / 'root'}")
    assert sorted(p.name for p in catalog.packages) == ["fine", "fine-deb", "good", "ok"]
    for expected in EXPECTED_WARNINGS:
        assert any(expected in warning for warning in catalog.warnings), (
            expected,
            catalog.warnings,
        )
    result = cli("sbom", f"dir:{tmp_path / 'root'}")  # type: ignore[operator]
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)["components"]) == 4
    warnings = [line for line in result.stderr.splitlines() if line.startswith("attest: warning: ")]
    assert len(warnings) == len(catalog.warnings)
    document = json.loads(result.stdout)
    recorded = [
        p["value"] for p in document["metadata"]["properties"] if p["name"] == "attest:scan-warning"
    ]
    assert recorded == catalog.warnings
    strict = cli(
        "sbom", f"dir:{tmp_path / 'root'}", "--strict", "--output-file", str(tmp_path / "out.json")
    )  # type: ignore[operator]
    assert strict.exit_code == 1
    assert strict.stderr.strip().splitlines()[-1].startswith("attest: error: ")
    assert not (tmp_path / "out.json").exists()


def test_the_same_malformed_files_inside_an_image(tmp_path: Path) -> None:
    _malformed_root(tmp_path / "root")
    builder = ImageBuilder()
    builder.layer().tree(tmp_path / "root")
    catalog = scan(write_layout(builder, tmp_path / "layout"))
    assert sorted(p.name for p in catalog.packages) == ["fine", "fine-deb", "good", "ok"]
    for expected in EXPECTED_WARNINGS:
        assert any(expected in warning for warning in catalog.warnings), (
            expected,
            catalog.warnings,
        )


def test_huge_files_are_skipped_not_loaded(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("Package: big\nVersion: 1\n" + "X-Padding: y\n" * 200)
    (root / "srv/node_modules/small").mkdir(parents=True)
    (root / "srv/node_modules/small/package.json").write_bytes(_npm("small", "1.0.0"))
    (root / "opt").mkdir()
    (root / "opt/big.jar").write_bytes(b"PK" + b"\0" * 5000)
    limits = Limits(max_metadata_bytes=1024, max_archive_bytes=2048)
    for target in (f"dir:{root}", _image_of(root, tmp_path)):
        result = generate_sbom(target, options=SbomOptions(limits=limits))
        assert [p.name for p in result.catalog.packages] == ["small"]
        assert any(
            "/var/lib/dpkg/status:" in w and "above the 1024-byte limit" in w
            for w in result.warnings
        ), result.warnings


def _image_of(root: Path, tmp_path: Path) -> str:
    builder = ImageBuilder()
    builder.layer().tree(root)
    return write_layout(builder, tmp_path / "huge-layout")
