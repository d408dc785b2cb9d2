"""``attest sbom`` end to end: registry images, platforms, archives, files, progress."""

from __future__ import annotations

import io
import json
from pathlib import Path

from attest.oci.builder import ImageBuilder, push_index
from attest.oci.layout import LayoutStore
from attest.oci.registry import RegistryRepository
from attest.sbom.progress import Progress
from attest.sbom.scanner import scan_image
from attest.testing import RegistryServer
from tests.sbom.conftest import components, prop, write_layout

OS_RELEASE = 'ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'


def _image(arch: str) -> ImageBuilder:
    builder = ImageBuilder(architecture=arch)
    status = (
        f"Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: {arch}\n"
        f"Maintainer: Santiago Vila <sanvila@debian.org>\nDescription: example\n"
    )
    builder.layer().file("etc/os-release", OS_RELEASE).file("var/lib/dpkg/status", status)
    builder.layer().file(
        "app/node_modules/left-pad/package.json", '{"name":"left-pad","version":"1.3.0"}'
    )
    return builder


def test_registry_image_with_platform_selection(
    cli: object, registry: RegistryServer, repo: RegistryRepository, tmp_path: Path
) -> None:
    images = [_image(arch).build(tmp_path / arch) for arch in ("amd64", "arm64")]
    index = push_index(repo, images, "v1")
    reference = f"{registry.address}/{repo.repository}:v1"
    result = cli("sbom", reference, "--platform", "linux/arm64")  # type: ignore[operator]
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # quiet: stderr is not a terminal
    document = json.loads(result.stdout)
    root = document["metadata"]["component"]
    assert root["version"] == index.digest  # what the reference names: the index
    assert root["purl"] == (
        f"pkg:oci/{repo.repository.rsplit('/', 1)[-1]}@{index.digest}?arch=arm64"
        f"&repository_url={registry.address}/{repo.repository}&tag=v1"
    )
    assert prop(root, "attest:image:platform") == ["linux/arm64"]
    assert prop(root, "attest:image:manifest-digest") == [images[1].digest]
    found = components(document)
    hello = found["pkg:deb/debian/hello@2.10-3"]
    assert hello["purl"] == "pkg:deb/debian/hello@2.10-3?arch=arm64&distro=debian-12"
    layers = [images[1].layers[0].diff_id, images[1].layers[1].diff_id]
    assert prop(hello, "attest:layer") == [layers[0]]
    assert prop(found["pkg:npm/left-pad@1.3.0"], "attest:layer") == [layers[1]]
    default = cli("sbom", reference, "--format", "spdx-json")  # type: ignore[operator]
    assert default.exit_code == 0
    spdx = json.loads(default.stdout)
    hello_spdx = next(p for p in spdx["packages"] if p["name"] == "hello")
    assert "arch=amd64" in hello_spdx["externalRefs"][0]["referenceLocator"]


def test_oci_archive_and_output_file(cli: object, tmp_path: Path) -> None:
    image = _image("amd64").build(tmp_path / "build")
    archive = tmp_path / "image.tar"
    store = LayoutStore(str(archive), archive=True, create=True)
    image.push(store, "v2")
    store.close()
    output = tmp_path / "out" / "sbom.cdx.json"
    output.parent.mkdir()
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    result = cli("sbom", f"oci-archive:{archive}:v2", "--output-file", str(output), env=env)  # type: ignore[operator]
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"attest: sbom: 3 components of oci-archive:{archive}@{image.digest} -> {output}"
    )
    first = output.read_bytes()
    assert len(json.loads(first)["components"]) == 3  # hello, left-pad, the OS
    again = cli("sbom", f"oci-archive:{archive}:v2", "--output-file", str(output), env=env)  # type: ignore[operator]
    assert again.exit_code == 0
    assert output.read_bytes() == first  # byte-identical
    assert sorted(p.name for p in output.parent.iterdir()) == ["sbom.cdx.json"]


def test_unknown_format_and_bad_reference(cli: object) -> None:
    result = cli("sbom", "dir:/", "--format", "xml")  # type: ignore[operator]
    assert result.exit_code == 2 and "xml" in result.stderr
    result = cli("sbom", "Bad Reference")  # type: ignore[operator]
    assert result.exit_code == 2
    assert result.stderr.startswith("attest: error: ") and len(result.stderr.splitlines()) == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(tmp_path: Path) -> None:
    target = write_layout(_image("amd64"), tmp_path / "layout")
    from attest.oci.access import open_store, parse_image_target, resolve_image

    reference = parse_image_target(target)
    for stream, expect_output in ((_Terminal(), True), (io.StringIO(), False)):
        with open_store(reference) as store:
            image = resolve_image(store, reference)
            scan_image(store, image, progress=Progress(stream))
        text = stream.getvalue()
        if expect_output:
            assert "attest: sbom: layer 1/2 sha256:" in text and "layer 2/2" in text
            assert text.endswith("\r\x1b[K")  # the status line is cleared at the end
        else:
            assert text == ""


def test_library_entry_point_with_a_resolved_image(tmp_path: Path) -> None:
    """What ``attest pipeline`` calls: an open store and an already resolved image."""
    from attest.oci.access import open_store, parse_image_target, resolve_image
    from attest.sbom import generate_image_sbom_document, generate_sbom

    built = _image("amd64").build(tmp_path / "build")
    layout = tmp_path / "layout"
    store = LayoutStore(str(layout), archive=False, create=True)
    built.push(store, "v1")
    store.close()
    reference = parse_image_target(f"oci:{layout}:v1")
    with open_store(reference) as opened:
        image = resolve_image(opened, reference)
        result = generate_sbom(image, store=opened, fmt="spdx-json")
        pipeline = generate_image_sbom_document(opened, image)
    assert result.media_type == "application/spdx+json"
    assert result.predicate_type == "https://spdx.dev/Document"
    assert result.image_digest == result.manifest_digest == built.digest
    assert result.target == f"oci:{layout}@{built.digest}"
    assert result.component_count == 3 and result.warnings == ()
    assert json.loads(result.document)["spdxVersion"] == "SPDX-2.3"
    assert pipeline.components == 3 and pipeline.spec_version == "1.6"
    assert pipeline.document["metadata"]["component"]["version"] == built.digest
    assert pipeline.result.media_type == "application/vnd.cyclonedx+json"
