"""The documents: CycloneDX 1.6 and SPDX 2.3 validity, purls, properties, determinism."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from attest.oci.builder import ImageBuilder
from attest.sbom import SbomOptions, cyclonedx, generate_sbom, scan
from attest.sbom.model import Catalog, OperatingSystem, Package, Source
from attest.sbom.scanner import sort_packages
from tests.sbom import reference_cyclonedx
from tests.sbom.conftest import components, edges, prop, write_layout
from tests.sbom.test_catalogers import APK_INSTALLED, _jar, _manifest, _pom_properties


@pytest.fixture(scope="module")
def composite(
    tmp_path_factory: pytest.TempPathFactory, debian_rootfs: Path, go_binary: Path
) -> str:
    """A two-layer image with real dpkg data, then Python, npm, Go, Java and apk packages."""
    work = tmp_path_factory.mktemp("composite")
    base = work / "base"
    for relative in ("var/lib/dpkg", "usr/share/doc", "usr/lib/python3", "usr/lib/os-release"):
        source = debian_rootfs / relative
        if source.is_dir():
            shutil.copytree(source, base / relative, symlinks=True,
                            ignore=shutil.ignore_patterns("changelog*", "*.gz", "__pycache__"))  # fmt: skip
        else:
            (base / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, base / relative)
    builder = ImageBuilder()
    builder.layer().tree(base).symlink("etc/os-release", "../usr/lib/os-release")
    top = builder.layer()
    top.file(
        "opt/venv/lib/python3.11/site-packages/Flask-3.0.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.0\nLicense-Expression: BSD-3-Clause\n"
        "Requires-Dist: Werkzeug>=3.0.0\nProject-URL: Homepage, https://flask.palletsprojects.com\n\n",
    ).file(
        "opt/venv/lib/python3.11/site-packages/werkzeug-3.0.1.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: werkzeug\nVersion: 3.0.1\nLicense: Custom license text\n\n",
    )
    top.file(
        "srv/node_modules/@babel/core/package.json",
        json.dumps({"name": "@babel/core", "version": "7.23.2", "license": "MIT"}),
    )
    top.file("usr/local/bin/hello", go_binary.read_bytes(), mode=0o755)
    top.file("opt/lib/guava-32.1.2-jre.jar", _jar({
        "META-INF/MANIFEST.MF": _manifest(),
        "META-INF/maven/com.google.guava/guava/pom.properties": _pom_properties("com.google.guava", "guava", "32.1.2-jre"),
    }))  # fmt: skip
    top.file("lib/apk/db/installed", APK_INSTALLED)
    return write_layout(builder, work / "layout")


def _generate(target: str, fmt: str, epoch: int | None = 1700000000) -> bytes:
    return generate_sbom(target, fmt=fmt, options=SbomOptions(source_date_epoch=epoch)).document


def test_cyclonedx_is_valid_and_complete(composite: str) -> None:
    text = _generate(composite, "cyclonedx-json").decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    assert document["specVersion"] == "1.6"
    metadata = document["metadata"]
    assert metadata["timestamp"] == "2023-11-14T22:13:20+00:00"
    assert metadata["tools"]["components"][0]["name"] == "attest"
    root = metadata["component"]
    assert root["type"] == "container"
    digest = root["version"]
    assert root["purl"] == f"pkg:oci/layout@{digest}?arch=amd64&tag=latest"
    assert root["hashes"] == [{"alg": "SHA-256", "content": digest.split(":")[1]}]
    layers = [p["value"] for p in root["properties"] if p["name"].startswith("attest:image:layer:")]
    assert len(layers) == 2
    by_purl = components(document)
    expected_purls = {
        "pkg:deb/debian/bash",
        "pkg:pypi/flask@3.0.0",
        "pkg:pypi/werkzeug@3.0.1",
        "pkg:npm/%40babel/core@7.23.2",
        "pkg:golang/example.com/greet@v1.2.3",
        "pkg:maven/com.google.guava/guava@32.1.2-jre",
        "pkg:apk/debian/musl@1.2.4_git20230717-r4",
    }
    assert all(any(purl.startswith(e) for purl in by_purl) for e in expected_purls), sorted(by_purl)
    flask = by_purl["pkg:pypi/flask@3.0.0"]
    assert prop(flask, "attest:layer") == [layers[1]]
    assert prop(flask, "attest:path") == [
        "/opt/venv/lib/python3.11/site-packages/Flask-3.0.0.dist-info/METADATA"
    ]
    assert prop(flask, "attest:cataloger") == ["python"]
    assert flask["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    assert flask["externalReferences"][0]["url"] == "https://flask.palletsprojects.com"
    werkzeug = by_purl["pkg:pypi/werkzeug@3.0.1"]
    assert edges(document)[flask["bom-ref"]] == [werkzeug["bom-ref"]]
    bash = next(c for p, c in by_purl.items() if p.startswith("pkg:deb/debian/bash@"))
    assert prop(bash, "attest:layer") == [layers[0]]
    six = next(c for p, c in by_purl.items() if p.startswith("pkg:deb/debian/python3-six@"))
    assert prop(six, "attest:provides") == ["pkg:pypi/six@1.16.0"]
    assert "pkg:pypi/six@1.16.0" not in by_purl
    operating_system = [c for c in document["components"] if c["type"] == "operating-system"]
    assert [(c["name"], c["version"]) for c in operating_system] == [("debian", "12")]
    assert set(edges(document)["image"]) >= {operating_system[0]["bom-ref"], flask["bom-ref"]}


def test_spdx_is_valid_and_complete(composite: str) -> None:
    document = json.loads(_generate(composite, "spdx-json"))
    parsed = JsonLikeDictParser().parse(document)
    assert validate_full_spdx_document(parsed) == []
    assert document["spdxVersion"] == "SPDX-2.3"
    assert document["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    packages = {p["SPDXID"]: p for p in document["packages"]}
    image = packages["SPDXRef-Image"]
    assert image["primaryPackagePurpose"] == "CONTAINER"
    assert packages["SPDXRef-OperatingSystem"]["primaryPackagePurpose"] == "OPERATING-SYSTEM"
    by_purl = {
        ref["referenceLocator"]: p
        for p in document["packages"]
        for ref in p.get("externalRefs", [])
        if ref["referenceType"] == "purl"
    }
    flask = by_purl["pkg:pypi/flask@3.0.0"]
    werkzeug = by_purl["pkg:pypi/werkzeug@3.0.1"]
    assert flask["licenseDeclared"] == "BSD-3-Clause"
    assert werkzeug["licenseDeclared"] == "LicenseRef-Custom-license-text"
    extracted = {info["licenseId"]: info for info in document["hasExtractedLicensingInfos"]}
    assert extracted["LicenseRef-Custom-license-text"]["name"] == "Custom license text"
    relationships = {
        (r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
        for r in document["relationships"]
    }
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image") in relationships
    assert ("SPDXRef-Image", "CONTAINS", flask["SPDXID"]) in relationships
    assert (flask["SPDXID"], "DEPENDS_ON", werkzeug["SPDXID"]) in relationships
    assert "in layer sha256:" in flask["sourceInfo"]
    six = next(p for p in document["packages"] if p["name"] == "python3-six")
    assert {
        "referenceCategory": "OTHER",
        "referenceType": "attest-provides",
        "referenceLocator": "pkg:pypi/six@1.16.0",
    } in six["externalRefs"]


@pytest.mark.parametrize("fmt", ["cyclonedx-json", "spdx-json"])
def test_output_is_deterministic_with_source_date_epoch(composite: str, fmt: str) -> None:
    first = _generate(composite, fmt)
    assert _generate(composite, fmt) == first
    assert _generate(composite, fmt, epoch=1700000001) != first  # timestamp and serial follow it
    unpinned = [_generate(composite, fmt, epoch=None) for _ in range(2)]
    assert unpinned[0] != unpinned[1]  # random serial number / namespace otherwise


def test_directory_root_component(tmp_path: Path) -> None:
    (tmp_path / "node_modules/left-pad").mkdir(parents=True)
    (tmp_path / "node_modules/left-pad/package.json").write_text(
        '{"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}'
    )
    document = json.loads(_generate(f"dir:{tmp_path}", "cyclonedx-json"))
    assert document["metadata"]["component"] == {
        "bom-ref": "source",
        "name": str(tmp_path),
        "type": "file",
    }
    (left_pad,) = document["components"]
    assert left_pad["purl"] == "pkg:npm/left-pad@1.3.0"
    assert "attest:layer" not in [p["name"] for p in left_pad["properties"]]
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document)) is None


def _both(catalog: Catalog) -> tuple[bytes, bytes]:
    """(attest's writer, cyclonedx-python-lib's) bytes for one catalog, same time and serial."""
    when, serial = datetime.fromtimestamp(1700000000, UTC), uuid.UUID(int=7)
    return (
        cyclonedx.render(catalog, timestamp=when, serial=serial),
        reference_cyclonedx.render(catalog, timestamp=when, serial=serial),
    )


def test_cyclonedx_bytes_are_the_librarys_on_real_scans(
    composite: str, debian_rootfs: Path, npm_tree: Path, go_binary: Path, tmp_path: Path
) -> None:
    """The direct writer emits exactly what cyclonedx-python-lib emits for the same model."""
    (tmp_path / "bin").mkdir()
    shutil.copy(go_binary, tmp_path / "bin" / "hello")
    for target in (composite, f"dir:{debian_rootfs}", f"dir:{npm_tree}", f"dir:{tmp_path}"):
        catalog = scan(target)
        assert catalog.packages, target
        fast, library = _both(catalog)
        assert fast == library, target


def _package(name: str, **fields: Any) -> Package:
    kind = fields.pop("type", "npm")
    version = fields.pop("version", "1.0.0")
    return Package(
        type=kind,
        name=name,
        version=version,
        purl=PackageURL(kind, None, name, version),
        cataloger=kind,
        location=f"/{name}",
        ref=f"{kind}:{name}:{fields.pop('where', '')}",
        **fields,
    )


def test_cyclonedx_bytes_are_the_librarys_on_edge_cases() -> None:
    """Orders and escapes the library applies: licenses, URIs, groups, duplicate purls, warnings."""
    packages = [
        _package("zeta", licenses=("MIT", "Custom terms", "Apache-2.0", "MIT", "Another")),
        _package("alpha", licenses=("MIT OR Apache-2.0",), homepage="https://a.example/x'[1]"),
        _package("beta", licenses=("GPL-2.0-only", "MIT OR Apache-2.0"), homepage="http://b/%zz"),
        _package("gamma", licenses=("GPL-2.0-only", "Not SPDX AND stuff")),
        _package("dup", where="a", homepage="https://x.example/#a#b"),
        _package("dup", where="b", depends=("npm:alpha:", "npm:gone:", "npm:dup:b")),
        _package("@scope/pkg", version="2.0", sha256="ab" * 32, kind="application"),
        _package("app", type="golang", group="example.com", kind="application",
                 depends=("npm:zeta:",), provides=("pkg:pypi/b@1", "pkg:pypi/a@1")),
        _package("os-lib", type="deb", properties={"attest:deb:source": "src", "a:b": "c"},
                 layer="sha256:" + "1" * 64, description="Ünïcode \"quoted\" \t text"),
    ]  # fmt: skip
    warnings = ["/b: second warning", "/a: first warning", "/a: first warning"]
    for os_info in (
        None,
        OperatingSystem("debian", "12", pretty_name="Debian", version_codename="bookworm",
                        home_url="https://www.debian.org/"),
        OperatingSystem("wolfi", None),
    ):  # fmt: skip
        for kind in ("directory", "image"):
            source = (
                Source(kind, "/tmp/root")
                if kind == "directory"
                else Source("image", "registry.example/app", digest="sha256:" + "2" * 64,
                            manifest_digest="sha256:" + "3" * 64, tag="v1", platform="linux/arm64/v8",
                            repository_url="registry.example/app", config_digest="sha256:" + "4" * 64,
                            layers=tuple(f"sha256:{i:064x}" for i in range(12)))
            )  # fmt: skip
            for chosen in (packages, packages[:1], []):
                catalog = Catalog(source, sort_packages(list(chosen)), os_info, list(warnings))
                fast, library = _both(catalog)
                assert fast == library, (os_info, kind, len(chosen))
                assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(fast.decode()) is None
