"""Layers other tools accept: ``umoci insert`` ends a layer's tar right after the last entry's
data, without its padding or the end-of-archive blocks.

The image is really built by umoci (Debian's package); the broken variants are
made from its own layer, with digests and diffIDs that match, so only the tar
framing decides: a stream that ends at an entry boundary is a layer, one that
ends inside an entry header or its data is not.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from attest.oci import mediatypes as mt
from tests.sbom.conftest import components, write_raw_image

UMOCI = shutil.which("umoci") or "/usr/bin/umoci"
STATUS = (
    b"Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: amd64\n"
    b"Maintainer: Debian <debian@example.com>\nDescription: example\n\n"
)


def _umoci(*args: str) -> None:
    run = subprocess.run([UMOCI, *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"umoci {' '.join(args)}: {run.stderr}"


@pytest.fixture
def umoci_image(tmp_path: Path) -> Path:
    """An OCI layout built by umoci: three ``umoci insert`` layers (os-release, the dpkg
    database, a last file no cataloger reads)."""
    if not Path(UMOCI).exists():
        pytest.fail("umoci is not installed (Debian package umoci; scripts/system-deps.sh)")
    source = tmp_path / "src"
    (source / "etc").mkdir(parents=True)
    (source / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (source / "var/lib/dpkg").mkdir(parents=True)
    (source / "var/lib/dpkg/status").write_bytes(STATUS)
    (source / "srv").mkdir()
    (source / "srv/readme.txt").write_text("not a package\n" * 3)
    layout = tmp_path / "layout"
    _umoci("init", "--layout", str(layout))
    _umoci("new", "--image", f"{layout}:v1")
    for part in ("etc", "var", "srv"):
        _umoci("insert", "--image", f"{layout}:v1", str(source / part), f"/{part}")
    return layout


def _layers(layout: Path) -> list[bytes]:
    """The uncompressed tar of each layer of the layout's image."""
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs/sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    return [gzip.decompress((blobs / d["digest"][7:]).read_bytes()) for d in manifest["layers"]]


def _image_with_last_layer(tmp_path: Path, layers: list[bytes], last: bytes, name: str) -> str:
    """An image of ``layers`` with the last one replaced, every digest and diffID matching."""
    tars = [*layers[:-1], last]
    blobs = [(mt.OCI_LAYER_GZIP, gzip.compress(tar, mtime=0)) for tar in tars]
    diff_ids = [f"sha256:{hashlib.sha256(tar).hexdigest()}" for tar in tars]
    return write_raw_image(tmp_path / name, blobs, diff_ids)


def _sbom(cli: object, target: str, tmp_path: Path) -> object:
    return cli("sbom", target, "--output-file", str(tmp_path / "sbom.json"))  # type: ignore[operator]


def test_an_image_built_by_umoci_is_scanned(umoci_image: Path, cli: object, tmp_path: Path) -> None:
    layers = _layers(umoci_image)
    assert len(layers) == 3
    assert all(len(tar) % 512 for tar in layers)  # no padding, no end-of-archive blocks
    result = _sbom(cli, f"oci:{umoci_image}:v1", tmp_path)
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    found = components(json.loads((tmp_path / "sbom.json").read_text()))
    assert "pkg:deb/debian/hello@2.10-3" in found


def test_a_stream_ending_at_an_entry_boundary_is_a_layer(
    umoci_image: Path, cli: object, tmp_path: Path
) -> None:
    layers = _layers(umoci_image)
    last = layers[-1]
    padded = last + b"\0" * (-len(last) % 512)  # padded, still no end-of-archive blocks
    for name, tar in (("padded", padded), ("one-zero-block", padded + b"\0" * 512)):
        target = _image_with_last_layer(tmp_path, layers, tar, name)
        result = _sbom(cli, target, tmp_path)
        assert result.exit_code == 0, (name, result.stderr)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("inside-the-last-data", "not a valid tar stream"),
        ("inside-a-data-layer", "not a valid tar stream"),
        ("inside-a-header", "ends inside an entry header"),
        ("garbage-header", "is not a tar header"),
    ],
)
def test_a_stream_ending_inside_an_entry_is_corrupt(
    umoci_image: Path, cli: object, tmp_path: Path, variant: str, expected: str
) -> None:
    """Digests and diffIDs match: only the tar framing tells these from a umoci layer."""
    layers = _layers(umoci_image)
    last = layers[-1]
    padded = last + b"\0" * (-len(last) % 512)
    header = bytearray(padded[:512])  # a copy of a real header, cut short: a truncated entry
    broken = {
        "inside-the-last-data": last[:-5],
        "inside-a-data-layer": None,
        "inside-a-header": padded + bytes(header[:100]),
        "garbage-header": padded + b"\x7f" * 512,
    }[variant]
    if broken is None:  # the dpkg database layer, cut inside the status file it reads
        layers, broken = layers[:2], layers[1][:-5]
    target = _image_with_last_layer(tmp_path, layers, broken, variant)
    result = _sbom(cli, target, tmp_path)
    assert result.exit_code == 1, result.stderr  # type: ignore[attr-defined]
    (line,) = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert line.startswith("attest: error: ") and expected in line, line
    assert not (tmp_path / "sbom.json").exists()


def test_a_layer_cut_at_an_entry_boundary_without_its_digest_is_rejected(
    umoci_image: Path, cli: object, tmp_path: Path
) -> None:
    """Ending at an entry boundary is accepted for the blob the manifest names, not for one
    shortened on the way (here: the last entry dropped, under the original digest)."""
    index = json.loads((umoci_image / "index.json").read_text())
    blobs = umoci_image / "blobs/sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    blob = blobs / manifest["layers"][1]["digest"][7:]  # the dpkg database layer
    tar = gzip.decompress(blob.read_bytes())
    cut = tar.rfind(b"var/lib/dpkg/status")  # the header of the last entry
    assert cut > 0
    blob.write_bytes(gzip.compress(tar[: cut - cut % 512], mtime=0))
    result = _sbom(cli, f"oci:{umoci_image}:v1", tmp_path)
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert manifest["layers"][1]["digest"] in line
    assert "its descriptor says" in line or "hashes to" in line, line
