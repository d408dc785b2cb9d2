from __future__ import annotations

import pytest

from attest.errors import InvalidReference
from attest.oci.reference import (
    DirectoryReference,
    ImageReference,
    LayoutReference,
    is_loopback_host,
    parse_image_reference,
    parse_target,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "index.docker.io", "library/nginx", "latest", None),
        ("nginx:1.25", "index.docker.io", "library/nginx", "1.25", None),
        ("docker.io/nginx", "index.docker.io", "library/nginx", "latest", None),
        ("docker.io/library/nginx:alpine", "index.docker.io", "library/nginx", "alpine", None),
        ("index.docker.io/bitnami/redis", "index.docker.io", "bitnami/redis", "latest", None),
        ("registry-1.docker.io/foo", "index.docker.io", "library/foo", "latest", None),
        ("bitnami/redis:7", "index.docker.io", "bitnami/redis", "7", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", None),
        ("127.0.0.1:5000/team/app:v1.2.3", "127.0.0.1:5000", "team/app", "v1.2.3", None),
        ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None),
        ("ghcr.io/o/r/sub/deep", "ghcr.io", "o/r/sub/deep", "latest", None),
        (f"ghcr.io/o/r@{DIGEST}", "ghcr.io", "o/r", None, DIGEST),
        (f"ghcr.io/o/r:1.0@{DIGEST}", "ghcr.io", "o/r", "1.0", DIGEST),
        (f"nginx@{DIGEST}", "index.docker.io", "library/nginx", None, DIGEST),
        (
            "my.registry:443/a__b/c-d/e.f:T_ag-1.x",
            "my.registry",  # 443 is the port the client uses anyway: dropped
            "a__b/c-d/e.f",
            "T_ag-1.x",
            None,
        ),
    ],
)
def test_normalisation_follows_docker_rules(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_image_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    ("spellings", "name"),
    [
        (
            [
                "ghcr.io/acme/app",
                "GHCR.IO/acme/app",
                "ghcr.io:443/acme/app",
                "Ghcr.Io:0443/acme/app",
            ],
            "ghcr.io/acme/app",
        ),
        (
            [
                "nginx",
                "docker.io/nginx",
                "docker.io/library/nginx",
                "DOCKER.IO/library/nginx",
                "index.docker.io:443/library/nginx",
                "registry-1.docker.io/nginx",
            ],
            "index.docker.io/library/nginx",
        ),
        (["localhost/app", "LOCALHOST:80/app", "localhost:080/app"], "localhost/app"),
        (["[::1]:5000/app", "[0:0::1]:5000/app", "[0:0:0:0:0:0:0:1]:05000/app"], "[::1]:5000/app"),
    ],
)
def test_every_spelling_has_one_canonical_name(spellings: list[str], name: str) -> None:
    assert {parse_image_reference(s).name for s in spellings} == {name}


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("ghcr.io:80/a", "ghcr.io:80/a"),  # HTTPS on port 80: another server, kept
        ("localhost:443/a", "localhost:443/a"),  # loopback is plain HTTP: 443 is not its default
        ("127.0.0.1:5000/a", "127.0.0.1:5000/a"),
    ],
)
def test_only_the_default_port_is_dropped(text: str, name: str) -> None:
    assert parse_image_reference(text).name == name


@pytest.mark.parametrize("text", ["ghcr.io:0/a", "ghcr.io:65536/a", "[::::]/a"])
def test_impossible_hosts_are_invalid(text: str) -> None:
    with pytest.raises(InvalidReference, match="registry host"):
        parse_image_reference(text)


def test_string_form_and_identifier() -> None:
    assert str(parse_image_reference("nginx")) == "index.docker.io/library/nginx:latest"
    both = parse_image_reference(f"ghcr.io/o/r:1.0@{DIGEST}")
    assert str(both) == f"ghcr.io/o/r:1.0@{DIGEST}"
    assert both.identifier == DIGEST  # the digest wins over the tag
    assert parse_image_reference("a.io/b:c").identifier == "c"
    assert both.name == "ghcr.io/o/r"


def test_with_digest_pins_and_keeps_tag() -> None:
    ref = parse_image_reference("localhost:5000/app:v1").with_digest(DIGEST)
    assert ref == ImageReference("localhost:5000", "app", "v1", DIGEST)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (" nginx", "surrounding spaces"),
        ("Nginx", "lowercase"),
        ("ghcr.io/Org/repo", "lowercase"),
        ("nginx:", "invalid tag"),
        ("nginx:-bad", "invalid tag"),
        ("nginx:" + "x" * 129, "invalid tag"),
        ("nginx@sha256:abc", "64 lowercase hex"),
        ("nginx@md5:" + "a" * 32, "unsupported algorithm"),
        ("nginx@" + "a" * 64, "algorithm:hex"),
        ("https://ghcr.io/o/r", "URL scheme"),
        ("ghcr.io/o//r", "invalid repository component"),
        ("ghcr.io/o/r-/x", "invalid repository component"),
        ("ghcr.io/", "no repository"),
        ("bad_host.io:port/x", "invalid"),
        ("a/" * 130 + "b", "longer than 255"),
    ],
)
def test_malformed_references_are_rejected_clearly(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as err:
        parse_image_reference(text)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_local_transports() -> None:
    assert parse_target("oci:/tmp/layout") == LayoutReference("oci", "/tmp/layout", None, None)
    assert parse_target("oci:/tmp/layout:v1") == LayoutReference("oci", "/tmp/layout", "v1", None)
    assert parse_target("oci:rel/dir:tag:with:colons") == LayoutReference(
        "oci", "rel/dir", "tag:with:colons", None
    )
    assert parse_target(f"oci:/tmp/l@{DIGEST}") == LayoutReference("oci", "/tmp/l", None, DIGEST)
    assert parse_target("oci-archive:/tmp/img.tar") == LayoutReference(
        "oci-archive", "/tmp/img.tar", None, None
    )
    assert parse_target("oci-archive:/tmp/img.tar:latest").tag == "latest"
    assert parse_target("dir:/rootfs", allow_dir=True) == DirectoryReference("/rootfs")
    assert parse_target("docker://nginx") == parse_image_reference("nginx")


@pytest.mark.parametrize("text", ["oci:", "oci-archive:", "oci::tag", "oci:/x:", "dir:"])
def test_malformed_local_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_target(text, allow_dir=True)


def test_dir_only_where_allowed() -> None:
    with pytest.raises(InvalidReference, match="only accepted by 'attest sbom'"):
        parse_target("dir:/x")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("127.0.0.1.nip.io", False),
        ("localhost.example.com", False),
        ("10.0.0.1:5000", False),
        ("ghcr.io", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
