from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from attest.errors import (
    AuthenticationError,
    DeadlineExceeded,
    DigestMismatch,
    NotFound,
    RegistryError,
)
from attest.oci import mediatypes as mt
from attest.oci.access import load_config, resolve_image
from attest.oci.auth import CredentialStore, parse_challenge
from attest.oci.manifest import EMPTY_DESCRIPTOR, Descriptor, Index, Manifest, Platform
from attest.oci.reference import parse_image_reference
from attest.oci.referrers import fallback_tag, list_referrers, push_referrer, remove_referrer
from attest.oci.registry import RegistryRepository
from attest.oci.store import copy_blob_to_file, read_blob
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.testing import QuietHTTPServer
from tests.conftest import docker_config
from tests.support.faultproxy import FaultProxy


def _ref(repo: RegistryRepository, tag: str = "v1"):
    return parse_image_reference(f"{repo.client.registry}/{repo.repository}:{tag}")


def test_push_resolve_pull_round_trip(repo: RegistryRepository, push_image, tmp_path: Path) -> None:
    pushed = push_image(repo, "v1")
    resolved = repo.resolve("v1")
    assert resolved.digest == pushed.digest
    assert resolved.media_type == mt.OCI_MANIFEST
    assert repo.resolve(pushed.digest) == resolved
    image = resolve_image(repo, _ref(repo))
    assert image.digest == pushed.digest
    assert str(image.target).endswith(f":v1@{pushed.digest}")
    config = load_config(repo, image.image_manifest, what="t")
    assert config["config"]["Labels"] == {"marker": "one"}
    layer = image.image_manifest.layers[0]
    out = tmp_path / "layer.tar.gz"
    copy_blob_to_file(repo, layer, str(out))
    assert out.stat().st_size == layer.size


def test_list_tags_and_delete(repo: RegistryRepository, push_image) -> None:
    first = push_image(repo, "a", marker="a")
    push_image(repo, "b", marker="b")
    assert sorted(repo.list_tags()) == ["a", "b"]
    repo.delete_manifest("a")
    with pytest.raises(NotFound, match="MANIFEST_UNKNOWN|manifest unknown"):
        repo.fetch_manifest(first.digest)
    assert repo.list_tags() == ["b"]


def test_list_tags_pagination(repo: RegistryRepository, push_image) -> None:
    digest = push_image(repo, "t0").digest
    manifest = repo.fetch_manifest(digest)
    for i in range(1, 5):
        repo.push_manifest(manifest.raw, manifest.media_type, f"t{i}")
    client = repo.client
    # force small pages through the real registry's Link header
    tags: list[str] = []
    url = client.url(f"/v2/{repo.repository}/tags/list?n=2")
    while url:
        response = client.request(
            "GET",
            "",
            absolute_url=url,
            repository=repo.repository,
            what="t",
            deadline=repo.deadline,
        )
        tags.extend(response.json()["tags"])
        link = response.headers.get("Link")
        url = client.url(link.split(";")[0].strip("<>")) if link else None
    assert sorted(tags) == sorted(repo.list_tags()) == [f"t{i}" for i in range(5)]


def test_multi_platform_index(repo: RegistryRepository, push_image) -> None:
    index = push_image(repo, "multi", platforms=("amd64", "arm64"))
    ref = _ref(repo, "multi")
    amd = resolve_image(repo, ref)
    arm = resolve_image(repo, ref, Platform.parse("linux/arm64"))
    assert amd.digest == arm.digest == index.digest
    assert isinstance(amd.top.parsed, Index)
    assert amd.platform == Platform("linux", "amd64") and arm.platform == Platform("linux", "arm64")
    assert (
        load_config(repo, arm.image_manifest, what="t")["config"]["Labels"]["marker"] == "one-arm64"
    )


def test_docker_schema2_manifests_are_read(repo: RegistryRepository, push_image) -> None:
    oci = repo.fetch_manifest(push_image(repo, "oci").digest)
    data = json.loads(oci.raw)
    data["mediaType"] = mt.DOCKER_MANIFEST
    data["config"]["mediaType"] = mt.DOCKER_CONFIG
    for layer in data["layers"]:
        layer["mediaType"] = mt.DOCKER_LAYER_GZIP
    raw = json.dumps(data).encode()
    repo.push_manifest(raw, mt.DOCKER_MANIFEST, "docker")
    image = resolve_image(repo, _ref(repo, "docker"))
    assert image.manifest.media_type == mt.DOCKER_MANIFEST
    assert image.manifest.raw == raw
    assert load_config(repo, image.image_manifest, what="t")["architecture"] == "amd64"


def _artifact(
    subject: Descriptor, artifact_type: str, payload: bytes, repo: RegistryRepository
) -> Manifest:
    layer = Descriptor.for_bytes("application/json", payload)
    repo.push_blob(layer, data=payload)
    repo.push_blob(EMPTY_DESCRIPTOR, data=mt.EMPTY_JSON)
    return Manifest(
        media_type=mt.OCI_MANIFEST,
        config=EMPTY_DESCRIPTOR,
        layers=(layer,),
        subject=subject,
        artifact_type=artifact_type,
        annotations={"org.example/kind": artifact_type},
    )


def test_referrers_fallback_tag_schema(repo: RegistryRepository, push_image) -> None:
    subject = repo.resolve(push_image(repo, "v1").digest)
    assert repo.referrers_api(subject.digest) is None  # distribution 2.8 has no referrers API
    assert list_referrers(repo, subject.digest) == []
    first = push_referrer(repo, _artifact(subject, "application/vnd.example.sig", b'{"n":1}', repo))
    second = push_referrer(
        repo, _artifact(subject, "application/vnd.example.sbom", b'{"n":2}', repo)
    )
    push_referrer(
        repo, _artifact(subject, "application/vnd.example.sig", b'{"n":1}', repo)
    )  # idempotent
    listed = list_referrers(repo, subject.digest)
    assert [d.digest for d in listed] == [first.digest, second.digest]
    assert listed[0].artifact_type == "application/vnd.example.sig"
    assert listed[0].annotations == {"org.example/kind": "application/vnd.example.sig"}
    only_sbom = list_referrers(repo, subject.digest, "application/vnd.example.sbom")
    assert [d.digest for d in only_sbom] == [second.digest]
    # the fallback index is a real, tagged OCI index in the registry
    fallback = repo.fetch_manifest(fallback_tag(subject.digest))
    assert fallback.media_type == mt.OCI_INDEX
    assert fallback_tag(subject.digest) in repo.list_tags()
    pulled = repo.fetch_manifest(first.digest).parsed
    assert isinstance(pulled, Manifest) and pulled.subject == Descriptor(
        subject.media_type, subject.digest, subject.size
    )
    remove_referrer(repo, subject.digest, first.digest)
    assert [d.digest for d in list_referrers(repo, subject.digest)] == [second.digest]


def test_referrers_in_layout(tmp_path: Path, push_image) -> None:
    from attest.oci.layout import LayoutStore

    with LayoutStore(str(tmp_path / "l"), create=True) as store:
        subject = store.resolve(push_image(store, "v1").digest)
        layer = Descriptor.for_bytes("application/json", b"{}")
        store.push_blob(layer, data=b"{}")
        artifact = Manifest(
            mt.OCI_MANIFEST,
            EMPTY_DESCRIPTOR,
            (layer,),
            subject=subject,
            artifact_type="application/x",
        )
        store.push_blob(EMPTY_DESCRIPTOR, data=mt.EMPTY_JSON)
        pushed = push_referrer(store, artifact)
        assert [d.digest for d in list_referrers(store, subject.digest)] == [pushed.digest]
        # the signature tag does not make the layout ambiguous
        assert store.default_identifier() == subject.digest


def test_blob_digest_mismatch_detected(repo: RegistryRepository, push_image, registry) -> None:
    image = resolve_image(repo, _ref(repo, push_image(repo, "v1") and "v1"))
    layer = image.image_manifest.layers[0]
    liar = Descriptor(
        layer.media_type, image.image_manifest.layers[1].digest, image.image_manifest.layers[1].size
    )
    # ask for one blob but claim another's digest: the registry serves the real bytes; the descriptor lies
    bad = Descriptor(layer.media_type, liar.digest, layer.size)
    with pytest.raises(DigestMismatch):
        read_blob(repo, bad)


def test_manifest_digest_mismatch_detected(repo: RegistryRepository, push_image, registry) -> None:
    digest = push_image(repo, "v1").digest
    proxy = _TamperingProxy(registry.port).start()
    try:
        client = RegistryClient(proxy.address, options=RegistryOptions(timeout=10))
        tampered = RegistryRepository(client, repo.repository)
        with pytest.raises(DigestMismatch, match="hashes to"):
            tampered.fetch_manifest(digest)
    finally:
        proxy.stop()


class _TamperingProxy(FaultProxy):
    """Rewrites manifest bodies in flight (a compromised mirror)."""

    def start(self) -> _TamperingProxy:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler

        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: object) -> None:
                return

            def do_GET(self) -> None:
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
                upstream.request(
                    "GET",
                    self.path,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                )
                response = upstream.getresponse()
                body = (
                    response.read()
                    .replace(b'"marker":"one"', b'"marker":"evil"')
                    .replace(b'schemaVersion":2', b'schemaVersion": 2')
                )
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in (
                        "content-length",
                        "docker-content-digest",
                        "transfer-encoding",
                        "connection",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = QuietHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self


def test_not_found_cases(repo: RegistryRepository) -> None:
    with pytest.raises(NotFound, match=r"test/.*:nope: not found \(HTTP 404"):
        repo.resolve("nope")
    with pytest.raises(NotFound):
        repo.fetch_manifest("sha256:" + "0" * 64)
    assert repo.blob_exists("sha256:" + "0" * 64) is False


def test_unreachable_registry_is_a_clear_error() -> None:
    from attest.testing import free_port

    client = RegistryClient(f"127.0.0.1:{free_port()}", options=RegistryOptions(timeout=5))
    store = RegistryRepository(client, "x")
    start = time.monotonic()
    with pytest.raises(RegistryError, match="cannot reach registry 127.0.0.1:.*Connection refused"):
        store.resolve("latest")
    assert time.monotonic() - start < 5


def test_retries_429_honouring_retry_after(repo: RegistryRepository, push_image, registry) -> None:
    digest = push_image(repo, "v1").digest
    proxy = FaultProxy(registry.port).start()
    try:
        store = RegistryRepository(
            RegistryClient(proxy.address, options=RegistryOptions(timeout=20)), repo.repository
        )
        proxy.fail_next(2, 429, retry_after="1")
        proxy.fail_next(1, 503)
        start = time.monotonic()
        assert store.resolve("v1").digest == digest
        elapsed = time.monotonic() - start
        statuses = [s for _m, _p, s in proxy.seen]
        assert statuses[:3] == [429, 429, 503] and statuses[-1] == 200
        assert elapsed >= 2.0  # two Retry-After: 1 honoured
    finally:
        proxy.stop()


def test_retry_after_beyond_deadline_fails_fast(
    repo: RegistryRepository, push_image, registry
) -> None:
    push_image(repo, "v1")
    proxy = FaultProxy(registry.port).start()
    try:
        store = RegistryRepository(
            RegistryClient(proxy.address, options=RegistryOptions(timeout=3)), repo.repository
        )
        proxy.fail_next(1, 429, retry_after="120")
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="HTTP 429.*retry in 120s, after the deadline"):
            store.resolve("v1")
        assert time.monotonic() - start < 1.5
    finally:
        proxy.stop()


def test_persistent_5xx_gives_registry_error(repo: RegistryRepository, registry) -> None:
    proxy = FaultProxy(registry.port).start()
    try:
        store = RegistryRepository(
            RegistryClient(proxy.address, options=RegistryOptions(timeout=30)), repo.repository
        )
        proxy.fail_next(10, 500)
        with pytest.raises(RegistryError, match="HTTP 500"):
            store.resolve("v1")
    finally:
        proxy.stop()


def test_hanging_registry_is_bounded_by_deadline(registry) -> None:
    proxy = FaultProxy(registry.port).start()
    proxy.hang_seconds = 5
    try:
        store = RegistryRepository(
            RegistryClient(proxy.address, options=RegistryOptions(timeout=1)), "x"
        )
        start = time.monotonic()
        with pytest.raises(
            DeadlineExceeded, match="did not answer before the deadline|deadline exceeded"
        ):
            store.resolve("v1")
        assert time.monotonic() - start < 3
    finally:
        proxy.hang_seconds = 0
        proxy.stop()


# -- authentication -----------------------------------------------------------------


def test_htpasswd_auth_via_docker_config(htpasswd_registry, push_image, tmp_path: Path) -> None:
    server, user, password = htpasswd_registry
    anonymous = RegistryRepository(
        RegistryClient(
            server.address, options=RegistryOptions(timeout=10), credentials=CredentialStore()
        ),
        "auth/app",
    )
    with pytest.raises(
        AuthenticationError, match="requires authentication and no credentials were found"
    ):
        anonymous.resolve("v1")
    config = docker_config(tmp_path / "docker", server.address, user, password)
    store = RegistryRepository(
        RegistryClient(server.address, options=RegistryOptions(auth_files=(str(config),))),
        "auth/app",
    )
    digest = push_image(store, "v1").digest
    assert store.resolve("v1").digest == digest
    wrong = docker_config(tmp_path / "wrong", server.address, user, "not-the-password")
    bad = RegistryRepository(
        RegistryClient(server.address, options=RegistryOptions(auth_files=(str(wrong),))),
        "auth/app",
    )
    with pytest.raises(
        AuthenticationError, match="rejected the credentials for user 'alice'"
    ) as err:
        bad.resolve("v1")
    assert "not-the-password" not in str(err.value)


def test_bearer_token_flow(token_registry, push_image, tmp_path: Path) -> None:
    server, tokens = token_registry
    config = docker_config(tmp_path / "docker", server.address, "bob", "hunter2-token")
    store = RegistryRepository(
        RegistryClient(server.address, options=RegistryOptions(auth_files=(str(config),))),
        "tok/app",
    )
    digest = push_image(store, "v1").digest
    assert store.resolve("v1").digest == digest
    scopes = [r["query"].get("scope") for r in tokens.requests if r["method"] == "GET"]
    # distribution orders the actions in its challenge at random (a Go map)
    assert any(
        scope
        and scope[0].startswith("repository:tok/app:")
        and set(scope[0].rsplit(":", 1)[1].split(",")) == {"pull", "push"}
        for scope in scopes
    )
    wrong = docker_config(tmp_path / "wrong", server.address, "bob", "nope")
    bad = RegistryRepository(
        RegistryClient(server.address, options=RegistryOptions(auth_files=(str(wrong),))), "tok/app"
    )
    with pytest.raises(
        AuthenticationError, match="token service .* rejected the credentials for user 'bob'"
    ):
        bad.resolve("v1")


def test_identity_token_refresh_flow(token_registry, push_image, tmp_path: Path) -> None:
    server, tokens = token_registry
    tokens.refresh_tokens["refresh-abc"] = "bob"
    (tmp_path / "cfg").mkdir()
    config = tmp_path / "cfg" / "config.json"
    config.write_text(json.dumps({"auths": {server.address: {"identitytoken": "refresh-abc"}}}))
    store = RegistryRepository(
        RegistryClient(server.address, options=RegistryOptions(auth_files=(str(config),))),
        "tok/refresh",
    )
    digest = push_image(store, "v1").digest
    assert store.resolve("v1").digest == digest
    assert any(
        r["method"] == "POST" and r["form"]["grant_type"] == ["refresh_token"]
        for r in tokens.requests
    )


def test_auth_config_lookup_variants(tmp_path: Path) -> None:
    import base64

    auth = base64.b64encode(b"u:p").decode()
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth},
                    "http://reg.example:5000": {"username": "x", "password": "y"},
                    "broken.example": {"auth": "!!notbase64"},
                }
            }
        )
    )
    store = CredentialStore.load([str(config)])
    assert store.lookup("index.docker.io").username == "u"
    assert store.lookup("reg.example:5000").password == "y"
    assert store.lookup("other.example") is None
    from attest.errors import UsageError

    with pytest.raises(UsageError, match="'auth' is not base64"):
        store.lookup("broken.example")
    with pytest.raises(UsageError, match="no such file"):
        CredentialStore.load([str(tmp_path / "missing.json")])


def test_challenge_parsing_keeps_commas_in_scope() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }


def test_plain_http_only_for_loopback() -> None:
    assert RegistryClient("127.0.0.1:5000", credentials=CredentialStore()).scheme == "http"
    assert RegistryClient("localhost:5000", credentials=CredentialStore()).scheme == "http"
    remote = RegistryClient("registry.example.com", credentials=CredentialStore())
    assert remote.scheme == "https" and remote.verify is not False  # True or a CA bundle path
    insecure = RegistryClient(
        "registry.example.com",
        options=RegistryOptions(insecure=True),
        credentials=CredentialStore(),
    )
    assert insecure.scheme == "https" and insecure.verify is False


def test_no_plain_http_fallback_for_remote_hosts(registry) -> None:
    # A registry name that is not loopback is only ever spoken to over HTTPS; a plain-HTTP
    # server there is a TLS error, not a silent downgrade.
    client = RegistryClient(
        f"localhost.localdomain.invalid:{registry.port}",
        options=RegistryOptions(timeout=5),
        credentials=CredentialStore(),
    )
    assert client.scheme == "https"
    with pytest.raises(RegistryError):
        RegistryRepository(client, "x").resolve("v1")
    requests.get(f"{registry.url}/v2/", timeout=5)  # the registry itself is fine
