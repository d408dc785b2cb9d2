"""Every cataloger on real package databases, binaries and archives."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import re
import shutil
import sysconfig
import zipfile
from pathlib import Path
from urllib.parse import quote

from attest.oci.builder import ImageBuilder
from attest.sbom import scan
from tests.sbom.conftest import components, dpkg_truth, edges, prop, sbom, write_layout


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- dpkg -------------------------------------------------------------------------


def test_dpkg_finds_every_package_of_a_real_rootfs(debian_rootfs: Path) -> None:
    truth = dpkg_truth(debian_rootfs)
    document = sbom(f"dir:{debian_rootfs}")
    debs = [c for c in document["components"] if c.get("purl", "").startswith("pkg:deb/")]
    assert len(debs) == len(truth)  # no duplicates
    assert {c["name"]: c["version"] for c in debs} == truth
    epoch = [c for c in debs if ":" in c["version"]]
    assert epoch, "the essential set has packages with an epoch (login, passwd, …)"
    for component in debs:
        arch = "all" if component["purl"].find("arch=all") > 0 else "amd64"
        assert component["purl"] == (
            f"pkg:deb/debian/{component['name']}@{quote(component['version'], safe=':')}"
            f"?arch={arch}&distro=debian-12"
        )
        assert prop(component, "attest:path") == ["/var/lib/dpkg/status"]
    os_component = next(c for c in document["components"] if c["type"] == "operating-system")
    assert (os_component["name"], os_component["version"]) == ("debian", "12")


def test_dpkg_source_licenses_depends_and_files(debian_rootfs: Path) -> None:
    catalog = scan(f"dir:{debian_rootfs}")
    by_name = {p.name: p for p in catalog.packages if p.type == "deb"}
    bash = by_name["bash"]
    assert bash.properties["attest:deb:source"] == "bash"
    assert bash.properties["attest:deb:source-version"] == "5.2.15-2"
    assert "GPL-3.0-or-later" in bash.licenses  # DEP-5 "License: GPL-3+"
    assert by_name["libc6"].properties["attest:deb:source"] == "glibc"
    assert set(bash.depends) >= {"deb:base-files:amd64", "deb:debianutils:amd64"}
    assert "deb:libc6:amd64" in by_name["coreutils"].depends  # Pre-Depends
    assert "bin/bash" in bash.files  # from info/bash.list (bookworm lists /bin; /bin -> usr/bin)
    assert by_name["base-passwd"].licenses  # licenses read for (nearly) every package
    with_licenses = sum(1 for p in by_name.values() if p.licenses)
    assert with_licenses >= len(by_name) - 3


def test_dpkg_owned_python_package_is_folded_into_the_deb(debian_rootfs: Path) -> None:
    document = sbom(f"dir:{debian_rootfs}")
    assert not [c for c in document["components"] if c.get("purl", "").startswith("pkg:pypi/")]
    six = next(c for c in document["components"] if c["name"] == "python3-six")
    assert prop(six, "attest:provides") == ["pkg:pypi/six@1.16.0"]
    # Without dpkg's claim the egg-info is reported as a Python package.
    catalog = scan(f"dir:{debian_rootfs}/usr/lib/python3/dist-packages")
    assert [(p.type, p.name, p.version) for p in catalog.packages] == [("pypi", "six", "1.16.0")]


def test_dpkg_distroless_status_d(debian_rootfs: Path, tmp_path: Path) -> None:
    """Distroless images keep one stanza file per package (and NAME.md5sums) in status.d."""
    status = (debian_rootfs / "var/lib/dpkg/status").read_text()
    stanzas = {s.split("\n", 1)[0][len("Package: ") :]: s for s in status.strip().split("\n\n")}
    root = tmp_path / "distroless"
    status_d = root / "var/lib/dpkg/status.d"
    status_d.mkdir(parents=True)
    for name in ("base-files", "tzdata", "libc6"):
        if name not in stanzas:
            continue
        (status_d / name).write_text(
            stanzas[name].replace("Status: install ok installed\n", "") + "\n"
        )
        md5sums = debian_rootfs / f"var/lib/dpkg/info/{name}.md5sums"
        if not md5sums.exists():
            md5sums = debian_rootfs / f"var/lib/dpkg/info/{name}:amd64.md5sums"
        shutil.copy(md5sums, status_d / f"{name}.md5sums")
    shutil.copytree(debian_rootfs / "usr/lib", root / "usr/lib", symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.so*", "python3*", "locale", "gconv"))  # fmt: skip
    (root / "etc").mkdir()
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    catalog = scan(f"dir:{root}")
    found = {p.name: p for p in catalog.packages}
    truth = dpkg_truth(debian_rootfs)
    expected = {n for n in ("base-files", "tzdata", "libc6") if n in stanzas}
    assert set(found) == expected
    for name in expected:
        assert found[name].version == truth[name]
        assert found[name].location == f"/var/lib/dpkg/status.d/{name}"
        assert found[name].files  # from status.d/NAME.md5sums
    assert catalog.operating_system is not None and catalog.operating_system.distro == "debian-12"


# -- apk --------------------------------------------------------------------------

APK_INSTALLED = """C:Q1yB3CVUFMOjnLOOEAUIUQ4ajxdtk=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407278
I:663552
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1701252373
c:bf4b22fc0a3ae0d2af8bc7e1097c0b1f0a84dbd1
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1Fuh8OHxzU+Q9Hr8KwoIZg/JTT7g=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1DbhIBnqGBbG1lzjV2TX3nJ/9A4Q=
P:busybox
V:1.36.1-r15
A:x86_64
S:509698
I:950272
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1701255466
c:6a5e0e80c7fe2c1d5f66d9a6e4e0d8a9f0b62b36
D:so:libc.musl-x86_64.so.1
p:cmd:busybox=1.36.1-r15
F:bin
R:busybox
a:0:0:755
Z:Q1hYkr6cQVDTt7+sJ2JkXe7p2a1vU=

C:Q1pmf5I2n7lhvuRCu5vuymh+eR/aI=
P:alpine-baselayout-data
V:3.4.3-r2
A:x86_64
S:11650
I:77824
T:Alpine base dir structure and init scripts
U:https://git.alpinelinux.org/cgit/aports/tree/main/alpine-baselayout
L:GPL-2.0-only
o:alpine-baselayout
m:Natanael Copa <ncopa@alpinelinux.org>
t:1701257103
c:7749273bc6b2e4e5fc5a15cd4d66e5f1b3a1e6c1
r:alpine-baselayout
F:etc
R:fstab
Z:Q11Q7hNe8QpDS531guqCdrXBzoA/o=
R:os-release
a:0:0:777
Z:Q1IhBI5VbCyolyNoGCFvZh7Khl6Pw=

C:Q1vLz6L8Ldi4DHuaFd1Az3ReMUbnM=
P:ssl_client
V:1.36.1-r15
A:x86_64
S:4659
I:24576
T:EXternal ssl_client for busybox wget
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1701255466
c:6a5e0e80c7fe2c1d5f66d9a6e4e0d8a9f0b62b36
D:so:libc.musl-x86_64.so.1 busybox>=1.36.1 !ssl_client-legacy
i:busybox=1.36.1-r15 libssl3
F:usr
F:usr/bin
R:ssl_client
a:0:0:755
Z:Q1ssqc6QM4ug2YNdPnxbmlHzKhyp0=

"""

ALPINE_OS_RELEASE = (
    'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.0\nPRETTY_NAME="Alpine Linux v3.19"\n'
    'HOME_URL="https://alpinelinux.org/"\n'
)


def test_apk_installed_database(tmp_path: Path) -> None:
    (tmp_path / "lib/apk/db").mkdir(parents=True)
    (tmp_path / "lib/apk/db/installed").write_text(APK_INSTALLED)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text(ALPINE_OS_RELEASE)
    catalog = scan(f"dir:{tmp_path}")
    found = {p.name: p for p in catalog.packages}
    assert {n: p.version for n, p in found.items()} == {
        "musl": "1.2.4_git20230717-r4",
        "busybox": "1.36.1-r15",
        "alpine-baselayout-data": "3.4.3-r2",
        "ssl_client": "1.36.1-r15",
    }
    assert found["musl"].purl.to_string() == (
        "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.0"
    )
    assert found["musl"].licenses == ("MIT",)
    assert found["ssl_client"].properties["attest:apk:origin"] == "busybox"
    assert found["musl"].files == {"lib/ld-musl-x86_64.so.1", "lib/libc.musl-x86_64.so.1"}
    assert found["ssl_client"].files == {"usr/bin/ssl_client"}
    # so: provides and constraints resolve; the !conflict is ignored
    assert found["busybox"].depends == ("apk:musl",)
    assert found["ssl_client"].depends == ("apk:musl", "apk:busybox")


# -- rpm --------------------------------------------------------------------------


def test_rpm_sqlite_database(rpm_root: Path) -> None:
    document = sbom(f"dir:{rpm_root}")
    by_name = {c["name"]: c for c in document["components"] if c["type"] == "library"}
    assert set(by_name) == {"greeter", "helper", "libgreet"}
    libgreet = by_name["libgreet"]
    assert libgreet["version"] == "1:2.4.1-3.fc39"
    assert libgreet["purl"] == (
        "pkg:rpm/fedora/libgreet@2.4.1-3.fc39?arch=noarch&distro=fedora-39&epoch=1"
    )
    assert libgreet["licenses"] == [{"expression": "MIT AND BSD-3-Clause"}]
    assert prop(libgreet, "attest:path") == ["/var/lib/rpm/rpmdb.sqlite"]
    assert prop(libgreet, "attest:rpm:source-rpm") == ["libgreet-2.4.1-3.fc39.src.rpm"]
    graph = edges(document)
    # Requires: greet-api (a virtual provide) and /usr/bin/helper-sh (a file of helper)
    assert sorted(graph[by_name["greeter"]["bom-ref"]]) == sorted(
        [by_name["helper"]["bom-ref"], libgreet["bom-ref"]]
    )
    catalog = scan(f"dir:{rpm_root}")
    helper = next(p for p in catalog.packages if p.name == "helper")
    assert helper.files == {"usr/bin/helper-sh"}


def test_rpm_sqlite_with_uncheckpointed_wal(rpm_root: Path, tmp_path: Path) -> None:
    """A database whose last transaction is still in the -wal file is read completely."""
    import sqlite3

    root = tmp_path / "root"
    shutil.copytree(rpm_root, root)
    database = root / "var/lib/rpm/rpmdb.sqlite"
    holder = sqlite3.connect(database)
    holder.execute("PRAGMA wal_autocheckpoint=0")
    blobs = [row[0] for row in holder.execute("SELECT blob FROM Packages")]
    blob = next(b for b in blobs if b"greeter\0" in b)
    holder.execute(
        "INSERT INTO Packages (blob) VALUES (?)", (blob.replace(b"greeter", b"greetXr"),)
    )
    holder.commit()
    try:
        assert (root / "var/lib/rpm/rpmdb.sqlite-wal").stat().st_size > 0
        names = {p.name for p in scan(f"dir:{root}").packages}
    finally:
        holder.close()
    assert "greetXr" in names and "greeter" in names


def test_rpm_berkeley_db_packages(rpm_berkeley_root: Path, rpm_root: Path) -> None:
    from_bdb = scan(f"dir:{rpm_berkeley_root}")
    from_sqlite = scan(f"dir:{rpm_root}")

    def summary(catalog: object) -> set[tuple[str, str, tuple[str, ...], frozenset[str]]]:
        return {(p.name, p.version, p.licenses, p.files) for p in catalog.packages}  # type: ignore[attr-defined]

    assert summary(from_bdb) == summary(from_sqlite)
    assert from_bdb.warnings == []
    libgreet = next(p for p in from_bdb.packages if p.name == "libgreet")
    assert libgreet.location == "/var/lib/rpm/Packages"
    assert libgreet.purl.to_string().startswith("pkg:rpm/rhel/libgreet@2.4.1-3.fc39?")
    greeter = next(p for p in from_bdb.packages if p.name == "greeter")
    assert len(greeter.depends) == 2


# -- python -----------------------------------------------------------------------


def test_python_real_site_packages() -> None:
    """Every distribution importlib.metadata sees in this venv, with RECORD files and edges."""
    site = sysconfig.get_paths()["purelib"]
    truth = {
        (_canonical(d.metadata["Name"]), d.version)
        for d in importlib.metadata.distributions(path=[site])
    }
    catalog = scan(f"dir:{site}")
    found = {(_canonical(p.name), p.version) for p in catalog.packages if p.type == "pypi"}
    assert found == truth
    by_name = {_canonical(p.name): p for p in catalog.packages}
    requests = by_name["requests"]
    assert requests.purl.to_string() == f"pkg:pypi/requests@{requests.version}"
    assert {by_name[n].ref for n in ("urllib3", "idna", "certifi")} <= set(requests.depends)
    assert "requests/api.py" in requests.files  # from RECORD, relative to the scanned root
    assert requests.licenses


def _dist_info(root: Path, name: str, version: str, headers: str, record: str = "") -> Path:
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{headers}\n\nLong description\n"
    )
    if record:
        (info / "RECORD").write_text(record)
    return info


def test_python_metadata_variants_licenses_and_egg_info(tmp_path: Path) -> None:
    site = tmp_path / "usr/lib/python3.11/site-packages"
    _dist_info(
        site,
        "Alpha_Pkg",
        "1.0",
        "License-Expression: MIT OR Apache-2.0\nRequires-Dist: beta>=2 ; extra == 'x'\nRequires-Dist: gamma",
    )
    _dist_info(
        site,
        "beta",
        "2.1",
        "License: BSD-3-Clause\nClassifier: License :: OSI Approved :: MIT License",
    )
    _dist_info(site, "gamma", "0.3", "License: Copyright (c) 2024\n  a long text\n  more\nClassifier: License :: OSI Approved :: MIT License",
               record="gamma/__init__.py,sha256=abc,10\n../../../bin/gamma,,\n")  # fmt: skip
    (site / "legacy-0.9.egg-info").write_text(
        "Metadata-Version: 1.0\nName: legacy\nVersion: 0.9\nLicense: GPL\n"
    )
    egg = site / "eggy-3.0-py3.11.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: eggy\nVersion: 3.0\n")
    (egg / "requires.txt").write_text("gamma\n\n[extra]\nbeta\n")
    (egg / "installed-files.txt").write_text("../eggy/__init__.py\nPKG-INFO\n")
    found = {p.name: p for p in scan(f"dir:{tmp_path}").packages}
    assert set(found) == {"Alpha_Pkg", "beta", "gamma", "legacy", "eggy"}
    alpha = found["Alpha_Pkg"]
    assert alpha.purl.to_string() == "pkg:pypi/alpha-pkg@1.0"
    assert alpha.licenses == ("MIT OR Apache-2.0",)
    assert set(alpha.depends) == {found["beta"].ref, found["gamma"].ref}
    assert found["beta"].licenses == ("BSD-3-Clause",)
    assert found["gamma"].licenses == ("MIT",)  # long License text ignored, classifier used
    assert found["gamma"].files == {
        "usr/lib/python3.11/site-packages/gamma/__init__.py", "usr/bin/gamma",
    }  # fmt: skip
    assert found["legacy"].licenses == ("GPL",)
    assert set(found["eggy"].depends) == {found["gamma"].ref, found["beta"].ref}
    assert "usr/lib/python3.11/site-packages/eggy/__init__.py" in found["eggy"].files


# -- npm --------------------------------------------------------------------------


def test_npm_real_node_modules(npm_tree: Path) -> None:
    lock = json.loads((npm_tree / "package-lock.json").read_text())
    truth = {
        path: entry["version"]
        for path, entry in lock["packages"].items()
        if path.startswith("node_modules/")
    }
    catalog = scan(f"dir:{npm_tree}")
    found = {p.location[1 : -len("/package.json")]: p for p in catalog.packages}
    assert {path: p.version for path, p in found.items()} == truth
    express = found["node_modules/express"]
    assert express.licenses == ("MIT",)
    nested_debug = found["node_modules/express/node_modules/debug"]
    assert nested_debug.version == "2.6.9"
    assert nested_debug.ref in express.depends  # resolved to the nested copy
    assert found["node_modules/debug"].ref not in express.depends
    assert found["node_modules/ms"].ref in found["node_modules/debug"].depends
    scoped = found["node_modules/@sindresorhus/is"]
    assert scoped.purl.to_string() == "pkg:npm/%40sindresorhus/is@4.6.0"
    document = sbom(f"dir:{npm_tree}")
    component = components(document)["pkg:npm/%40sindresorhus/is@4.6.0"]
    assert (component["group"], component["name"]) == ("@sindresorhus", "is")


# -- Go ---------------------------------------------------------------------------


def _go_packages(catalog_packages: list) -> dict[str, tuple[str, str]]:  # type: ignore[type-arg]
    return {p.name: (p.version, p.purl.to_string()) for p in catalog_packages if p.type == "golang"}


def test_go_binary_build_info_from_directory_and_image(go_binary: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/local/bin").mkdir(parents=True)
    shutil.copy(go_binary, root / "usr/local/bin/hello")
    shutil.copy("/usr/bin/true", root / "usr/local/bin/not-go")  # a C ELF binary: nothing
    expected = {
        "example.com/hello": ("(devel)", "pkg:golang/example.com/hello"),
        "example.com/greet": ("v1.2.3", "pkg:golang/example.com/greet@v1.2.3"),
        "example.com/color": ("v0.3.0", "pkg:golang/example.com/color@v0.3.0"),
        "stdlib": ("1.19.8", "pkg:golang/stdlib@1.19.8"),
    }
    from_dir = scan(f"dir:{root}").packages
    toolchain = next(p for p in from_dir if p.name == "stdlib").version
    expected["stdlib"] = (toolchain, f"pkg:golang/stdlib@{toolchain}")
    assert _go_packages(from_dir) == expected
    main = next(p for p in from_dir if p.name == "example.com/hello")
    assert main.kind == "application"
    assert main.properties["attest:go:GOOS"] == "linux"
    assert len(main.depends) == 3
    color = next(p for p in from_dir if p.name == "example.com/color")
    assert color.properties["attest:go:replaced-by"] == "./local/color"
    builder = ImageBuilder()
    builder.layer().tree(root)
    image = write_layout(builder, tmp_path / "layout")
    from_image = scan(image).packages  # streamed: found by scanning for the magic
    assert _go_packages(from_image) == expected


# -- Java -------------------------------------------------------------------------


def _jar(entries: dict[str, bytes | str], *, stored: bool = False) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _manifest(**fields: str) -> str:
    lines = ["Manifest-Version: 1.0", "Created-By: Maven JAR Plugin 3.3.0"]
    for key, value in fields.items():
        line = f"{key.replace('_', '-')}: {value}"
        # MANIFEST.MF wraps at 72 bytes with a leading space on continuation lines
        lines.append(
            line[:72] + "".join(f"\r\n {line[i : i + 71]}" for i in range(72, len(line), 71))
        )
    return "\r\n".join(lines) + "\r\n\r\n"


def _pom_properties(group: str, artifact: str, version: str) -> str:
    return f"#Created by Apache Maven 3.9.4\nartifactId={artifact}\ngroupId={group}\nversion={version}\n"


POM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.apache.commons</groupId><artifactId>commons-lang3</artifactId><version>3.12.0</version>
  <licenses><license><name>Apache-2.0</name><url>https://www.apache.org/licenses/LICENSE-2.0.txt</url></license></licenses>
</project>
"""


def test_java_archives_nested_shaded_and_manifest_only(tmp_path: Path) -> None:
    lang3 = _jar({
        "META-INF/MANIFEST.MF": _manifest(Bundle_SymbolicName="org.apache.commons.lang3",
                                          Implementation_Title="Apache Commons Lang",
                                          Implementation_Version="3.12.0",
                                          Bundle_License="https://www.apache.org/licenses/LICENSE-2.0.txt"),
        "META-INF/maven/org.apache.commons/commons-lang3/pom.properties":
            _pom_properties("org.apache.commons", "commons-lang3", "3.12.0"),
        "META-INF/maven/org.apache.commons/commons-lang3/pom.xml": POM_XML,
        "org/apache/commons/lang3/StringUtils.class": b"\xca\xfe\xba\xbe",
    })  # fmt: skip
    guava = _jar({
        "META-INF/MANIFEST.MF": _manifest(Bundle_SymbolicName="com.google.guava", Bundle_Version="32.1.2.jre"),
        "META-INF/maven/com.google.guava/guava/pom.properties": _pom_properties("com.google.guava", "guava", "32.1.2-jre"),
    })  # fmt: skip
    manifest_only = _jar({"META-INF/MANIFEST.MF": _manifest(
        Implementation_Title="tiny", Implementation_Version="1.4", Implementation_Vendor_Id="org.example",
        Bundle_License="MIT")})  # fmt: skip
    shaded = _jar({
        "META-INF/MANIFEST.MF": _manifest(Main_Class="org.example.Tool"),
        "META-INF/maven/org.example/tool/pom.properties": _pom_properties("org.example", "tool", "2.0.1"),
        "META-INF/maven/com.fasterxml.jackson.core/jackson-core/pom.properties":
            _pom_properties("com.fasterxml.jackson.core", "jackson-core", "2.15.2"),
    })  # fmt: skip
    war = _jar({
        "META-INF/MANIFEST.MF": _manifest(),
        "META-INF/maven/org.example/shop/pom.properties": _pom_properties("org.example", "shop", "1.0.0"),
        "WEB-INF/lib/guava-32.1.2-jre.jar": guava,
        "WEB-INF/lib/tiny-1.4.jar": manifest_only,
    })  # fmt: skip
    boot = _jar({
        "META-INF/MANIFEST.MF": _manifest(Main_Class="org.springframework.boot.loader.JarLauncher"),
        "META-INF/maven/org.example/boot-app/pom.properties": _pom_properties("org.example", "boot-app", "0.0.1-SNAPSHOT"),
        "BOOT-INF/lib/commons-lang3-3.12.0.jar": lang3,
    }, stored=True)  # fmt: skip
    root = tmp_path / "root"
    (root / "opt/app").mkdir(parents=True)
    (root / "opt/app/commons-lang3-3.12.0.jar").write_bytes(lang3)
    (root / "opt/app/tool-2.0.1.jar").write_bytes(shaded)
    (root / "opt/app/shop.war").write_bytes(war)
    (root / "opt/app/boot-app.jar").write_bytes(boot)
    catalog = scan(f"dir:{root}")
    found = {(p.location, p.purl.to_string()) for p in catalog.packages}
    assert found == {
        ("/opt/app/commons-lang3-3.12.0.jar", "pkg:maven/org.apache.commons/commons-lang3@3.12.0"),
        ("/opt/app/tool-2.0.1.jar", "pkg:maven/org.example/tool@2.0.1"),
        ("/opt/app/tool-2.0.1.jar!com.fasterxml.jackson.core:jackson-core",
         "pkg:maven/com.fasterxml.jackson.core/jackson-core@2.15.2"),
        ("/opt/app/shop.war", "pkg:maven/org.example/shop@1.0.0"),
        ("/opt/app/shop.war!WEB-INF/lib/guava-32.1.2-jre.jar", "pkg:maven/com.google.guava/guava@32.1.2-jre"),
        ("/opt/app/shop.war!WEB-INF/lib/tiny-1.4.jar", "pkg:maven/org.example/tiny@1.4"),
        ("/opt/app/boot-app.jar", "pkg:maven/org.example/boot-app@0.0.1-SNAPSHOT"),
        ("/opt/app/boot-app.jar!BOOT-INF/lib/commons-lang3-3.12.0.jar",
         "pkg:maven/org.apache.commons/commons-lang3@3.12.0"),
    }  # fmt: skip
    by_location = {p.location: p for p in catalog.packages}
    lang = by_location["/opt/app/commons-lang3-3.12.0.jar"]
    assert lang.licenses == ("Apache-2.0",)  # from the embedded pom.xml
    assert lang.group == "org.apache.commons"
    assert lang.sha256 == hashlib.sha256(lang3).hexdigest()
    assert by_location["/opt/app/shop.war!WEB-INF/lib/tiny-1.4.jar"].licenses == ("MIT",)
    shop = by_location["/opt/app/shop.war"]
    assert set(shop.depends) == {
        "maven:/opt/app/shop.war!WEB-INF/lib/guava-32.1.2-jre.jar",
        "maven:/opt/app/shop.war!WEB-INF/lib/tiny-1.4.jar",
    }
    # The same archives streamed from an image layer (spooled, not buffered whole)
    builder = ImageBuilder()
    builder.layer().tree(root)
    image = write_layout(builder, tmp_path / "layout")
    assert {(p.location, p.purl.to_string()) for p in scan(image).packages} == found


# -- shared helpers -----------------------------------------------------------------


def test_dependency_refs_keeps_order_and_drops_repeats_unresolved_and_self() -> None:
    from packageurl import PackageURL

    from attest.sbom.catalogers.base import dependency_refs
    from attest.sbom.model import Package

    def package(name: str) -> Package:
        purl = PackageURL("npm", None, name, "1.0.0")
        return Package("npm", name, "1.0.0", purl, "npm", f"/{name}", f"npm:{name}")

    me, a, b = package("me"), package("a"), package("b")
    assert dependency_refs(me, [b, None, a, me, b, a]) == ("npm:b", "npm:a")
    assert dependency_refs(me, iter([None, me])) == ()
