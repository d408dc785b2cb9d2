"""Fixtures for the SBOM tests: real package databases and binaries, built once and cached.

* a Debian bookworm root filesystem from ``mmdebstrap`` (essential packages plus
  ``python3-six``, whose egg-info dpkg owns), cached under ``.cache/tests/sbom``;
* a real ``rpmdb.sqlite`` written by Debian's ``rpm`` from packages ``rpmbuild`` made;
* a real Go binary built by Debian's ``golang-go`` with vendored and replaced modules;
* a real ``node_modules`` tree installed by ``npm ci`` from ``npm-fixture/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attest.oci.builder import ImageBuilder
from attest.oci.layout import LayoutStore
from attest.sbom import SbomOptions, generate_sbom
from tests.conftest import ROOT

HERE = Path(__file__).resolve().parent
CACHE = ROOT / ".cache" / "tests" / "sbom"
DEBIAN_OPTIONS = ("--variant=essential", "--include=python3-six", "--skip=output/dev")
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def _cached_build(name: str, key: object, build: Callable[[Path], None]) -> Path:
    """``CACHE/name-HASH``, built by ``build(tmpdir)`` into a temporary dir and renamed."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    target = CACHE / f"{name}-{digest}"
    if target.is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE))
    try:
        build(work / "out")
        (work / "out").rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def debian_rootfs() -> Path:
    """A real Debian bookworm root filesystem (dpkg status, info lists, copyright files)."""

    def build(out: Path) -> None:
        mirror = [str(SOURCES)] if SOURCES.is_file() else []
        mode = "--mode=root" if os.geteuid() == 0 else "--mode=unshare"
        subprocess.run(
            ["mmdebstrap", "--quiet", mode, *DEBIAN_OPTIONS, "bookworm", str(out), *mirror],
            check=True,
            capture_output=True,
            timeout=900,
        )

    return _cached_build("debian-essential", DEBIAN_OPTIONS, build)


def dpkg_truth(rootfs: Path) -> dict[str, str]:
    """``{package: version}`` of installed packages, as dpkg-query reports them."""
    output = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={rootfs}/var/lib/dpkg",
            "-W",
            "-f=${Package} ${Version} ${db:Status-Abbrev}\\n",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    truth = {}
    for line in output.splitlines():
        name, version, status = line.split(" ", 2)
        if status.startswith("ii"):
            truth[name] = version
    return truth


RPM_SPECS = {
    "libgreet": """Name: libgreet
Version: 2.4.1
Release: 3.fc39
Epoch: 1
Summary: Greeting library
License: MIT AND BSD-3-Clause
URL: https://example.org/libgreet
Vendor: Fedora Project
BuildArch: noarch
Provides: greet-api = 2
%description
Shared greeting data.
%install
mkdir -p %{buildroot}/usr/share/greet
echo hello > %{buildroot}/usr/share/greet/hello.txt
%files
/usr/share/greet/hello.txt
""",
    "greeter": """Name: greeter
Version: 0.9
Release: 1.fc39
Summary: Says hello
License: GPL-2.0-or-later
BuildArch: noarch
Requires: greet-api
Requires: /usr/bin/helper-sh
%description
A greeter.
%install
mkdir -p %{buildroot}/usr/bin
printf '#!/usr/bin/helper-sh\\necho hi\\n' > %{buildroot}/usr/bin/greeter
chmod 755 %{buildroot}/usr/bin/greeter
%files
/usr/bin/greeter
""",
    "helper": """Name: helper
Version: 5.2.15
Release: 5.fc39
Summary: Provides a shell path
License: GPL-3.0-or-later
BuildArch: noarch
%description
Helper.
%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\\n' > %{buildroot}/usr/bin/helper-sh
chmod 755 %{buildroot}/usr/bin/helper-sh
%files
/usr/bin/helper-sh
""",
}
FEDORA_OS_RELEASE = (
    'NAME="Fedora Linux"\nVERSION="39 (Container Image)"\nID=fedora\nVERSION_ID=39\n'
    'PRETTY_NAME="Fedora Linux 39 (Container Image)"\n'
)


@pytest.fixture(scope="session")
def rpm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with a real rpmdb.sqlite: three rpms built by rpmbuild, installed by rpm."""
    top = tmp_path_factory.mktemp("rpmbuild")
    (top / "SPECS").mkdir()
    for name, spec in RPM_SPECS.items():
        path = top / "SPECS" / f"{name}.spec"
        path.write_text(spec)
        subprocess.run(
            ["rpmbuild", "--quiet", "--define", f"_topdir {top}", "--define",
             "_build_id_links none", "-bb", str(path)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    root = tmp_path_factory.mktemp("rpmroot")
    rpms = sorted(str(p) for p in (top / "RPMS").rglob("*.rpm"))
    subprocess.run(
        ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--noscripts",
         *rpms],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "os-release").write_text(FEDORA_OS_RELEASE)
    return root


def _db_load_text(records: list[tuple[bytes, bytes]]) -> bytes:
    """db_load -T input: a key line, then a value line; other bytes escaped as \\hh."""

    def escape(value: bytes) -> str:
        return "".join(
            "\\\\" if c == 0x5C else chr(c) if 0x20 <= c < 0x7F else f"\\{c:02x}" for c in value
        )

    return "".join(f"{escape(key)}\n{escape(value)}\n" for key, value in records).encode()


@pytest.fixture(scope="session", params=[512, 4096], ids=["page512", "page4096"])
def rpm_berkeley_root(
    request: pytest.FixtureRequest, rpm_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A root whose rpm database is a real BerkeleyDB hash ``Packages`` (as on RHEL 7/8).

    Berkeley DB's own ``db_load`` writes it from the header blobs rpm stored in the
    fixture's rpmdb.sqlite, keyed the way rpm keyed them (native-endian instance
    numbers, key 0 the instance counter); the small page size forces overflow chains.
    """
    import sqlite3
    import struct

    connection = sqlite3.connect(rpm_root / "var/lib/rpm/rpmdb.sqlite")
    rows = connection.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
    connection.close()
    records = [(struct.pack("<I", 0), struct.pack("<I", len(rows)))]
    records += [(struct.pack("<I", hnum), bytes(blob)) for hnum, blob in rows]
    root = tmp_path_factory.mktemp(f"rpmbdb{request.param}")
    (root / "var/lib/rpm").mkdir(parents=True)
    subprocess.run(
        ["db5.3_load", "-T", "-t", "hash", "-c", f"db_pagesize={request.param}",
         str(root / "var/lib/rpm/Packages")],
        input=_db_load_text(records), check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    shutil.copytree(rpm_root / "usr", root / "usr")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text(FEDORA_OS_RELEASE.replace("fedora", "rhel"))
    return root


GO_SOURCES = {
    "go.mod": "module example.com/hello\n\ngo 1.19\n\nrequire (\n\texample.com/color v0.3.0\n"
    "\texample.com/greet v1.2.3\n)\n\nreplace example.com/color v0.3.0 => ./local/color\n",
    "main.go": 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/color"\n\t"example.com/greet"\n)\n\n'
    'func main() { fmt.Println(color.Paint(greet.Hello("sbom"))) }\n',
    "local/color/go.mod": "module example.com/color\n\ngo 1.19\n",
    "local/color/color.go": 'package color\n\nfunc Paint(s string) string { return "*" + s + "*" }\n',
    "vendor/example.com/color/color.go": 'package color\n\nfunc Paint(s string) string { return "*" + s + "*" }\n',
    "vendor/example.com/greet/greet.go": 'package greet\n\nfunc Hello(name string) string { return "hello, " + name }\n',
    "vendor/modules.txt": "# example.com/color v0.3.0 => ./local/color\n## explicit; go 1.19\n"
    "example.com/color\n# example.com/greet v1.2.3\n## explicit\nexample.com/greet\n",
}


@pytest.fixture(scope="session")
def go_binary() -> Path:
    """A real Go ELF binary (Debian's golang-go) with a vendored and a replaced module."""

    def build(out: Path) -> None:
        source = out.parent / "src"
        for name, text in GO_SOURCES.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_text(text)
        out.mkdir()
        env = dict(
            os.environ,
            GOFLAGS="-mod=vendor",
            GOPROXY="off",
            CGO_ENABLED="0",
            GOCACHE=str(CACHE / "go-build-cache"),
            GOPATH=str(out.parent / "gopath"),
        )
        subprocess.run(
            ["go", "build", "-trimpath", "-o", str(out / "hello"), "."],
            cwd=source, env=env, check=True, capture_output=True, timeout=600,
        )  # fmt: skip

    return _cached_build("go-hello", GO_SOURCES, build) / "hello"


@pytest.fixture(scope="session")
def npm_tree() -> Path:
    """A project directory whose node_modules npm ci installed from npm-fixture/."""
    fixture = HERE / "npm-fixture"
    key = [(fixture / name).read_text() for name in ("package.json", "package-lock.json")]

    def build(out: Path) -> None:
        out.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copy(fixture / name, out / name)
        subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=out, check=True, capture_output=True, timeout=600,
        )  # fmt: skip

    return _cached_build("npm-tree", key, build)


def write_layout(builder: ImageBuilder, directory: Path, tag: str = "latest") -> str:
    """Build ``builder`` into an OCI layout at ``directory``; returns ``oci:DIR:TAG``."""
    image = builder.build(directory.parent / f"{directory.name}-blobs")
    store = LayoutStore(str(directory), archive=False, create=True)
    try:
        image.push(store, tag)
    finally:
        store.close()
    return f"oci:{directory}:{tag}"


def sbom(target: str, fmt: str = "cyclonedx-json", **options: Any) -> dict[str, Any]:
    """Generate an SBOM with the library and parse it."""
    result = generate_sbom(target, fmt=fmt, options=SbomOptions(**options))
    return json.loads(result.document)


def components(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """CycloneDX components by purl (without qualifiers) -> component."""
    return {c["purl"].split("?")[0].split("#")[0]: c for c in document["components"] if "purl" in c}


def prop(component: dict[str, Any], name: str) -> list[str]:
    """The values of one property of a CycloneDX component."""
    return [p["value"] for p in component.get("properties", []) if p["name"] == name]


def edges(document: dict[str, Any]) -> dict[str, list[str]]:
    """CycloneDX dependency graph: bom-ref -> dependsOn."""
    return {d["ref"]: d.get("dependsOn", []) for d in document.get("dependencies", [])}


def write_raw_image(
    directory: Path,
    layers: list[tuple[str, bytes]],
    diff_ids: list[str],
    *,
    architecture: str = "amd64",
) -> str:
    """An OCI layout with exactly these layer blobs and config diff_ids (for broken images)."""
    from attest.oci import mediatypes as mt
    from attest.oci.manifest import Descriptor, Manifest

    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    descriptors = tuple(Descriptor.for_bytes(media_type, data) for media_type, data in layers)
    manifest = Manifest(mt.OCI_MANIFEST, Descriptor.for_bytes(mt.OCI_CONFIG, config), descriptors)
    store = LayoutStore(str(directory), archive=False, create=True)
    try:
        for descriptor, (_, data) in zip(descriptors, layers, strict=True):
            store.push_blob(descriptor, data=data)
        store.push_blob(manifest.config, data=config)
        store.push_manifest(manifest.to_bytes(), mt.OCI_MANIFEST, "latest")
    finally:
        store.close()
    return f"oci:{directory}:latest"


def tar_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar of regular files, names taken verbatim (even '/abs' or '../x')."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
