"""How signatures are fetched: concurrent reads keep their order, one unreadable layer is a
problem (not a failure), and a digest the caller already resolved is not looked up again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from admission.testing.helpers import provenance_json, sbom_statement
from attest.oci.access import resolve_image
from attest.oci.manifest import Manifest
from attest.oci.reference import parse_image_reference
from attest.oci.referrers import list_referrers
from attest.oci.registry import RegistryRepository
from attest.oci.store import ImageStore
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.signing.legacy import signature_tag
from attest.signing.storage import attach_attestation, attach_signature, find_signatures
from attest.verify import verify_image
from tests.signing.conftest import SigningKey, make_key
from tests.support.faultproxy import FaultProxy


@pytest.fixture
def proxy(registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.port).start()
    yield proxy
    proxy.stop()


def _through(proxy: FaultProxy, repo: RegistryRepository) -> RegistryRepository:
    return RegistryRepository(
        RegistryClient(proxy.address, options=RegistryOptions(timeout=30)), repo.repository
    )


def _sign_every_way(store: ImageStore, reference: str, keys: list[SigningKey]) -> None:
    image = resolve_image(store, parse_image_reference(reference))
    for number, key in enumerate(keys):
        attach_signature(store, image, key.signer)
        # distinct annotations: distinct payloads, so each .sig layer has its own blob
        attach_signature(store, image, key.signer, annotations={"n": str(number)}, legacy=True)
    statement = provenance_json(image.name, image.digest)
    attach_attestation(store, image, statement, keys[0].signer)
    attach_attestation(store, image, sbom_statement(image.digest), keys[0].signer, legacy=True)
    attach_attestation(store, image, statement, keys[1].signer, legacy=True)


def test_concurrent_reads_keep_listing_and_layer_order(registry, repo, push_image, proxy) -> None:
    image = push_image(repo, "v1")
    keys = [make_key(), make_key()]
    _sign_every_way(repo, f"{registry.address}/{repo.repository}:v1", keys)

    found = find_signatures(_through(proxy, repo), image.digest)

    listed = list_referrers(repo, image.digest)
    assert [b.location.rsplit("@", 1)[1] for b in found.bundles] == [d.digest for d in listed]
    assert len(found.bundles) == 3 and found.problems == ()
    for kind, entries in (("sig", found.legacy_signatures), ("att", found.legacy_attestations)):
        manifest = repo.fetch_manifest(signature_tag(image.digest, kind)).parsed
        assert isinstance(manifest, Manifest)
        assert [e.location.rsplit(" ", 1)[1] for e in entries] == ["0", "1"]
        assert [e.payload for e in entries] == [
            repo.open_blob(layer).read() for layer in manifest.layers
        ]
    # Every manifest, listing and blob was asked for once.
    paths = [(method, path) for method, path, _status in proxy.seen]
    assert len(paths) == len(set(paths))
    # The same as reading one request after another.
    sequential = _through(proxy, repo)
    sequential.parallel_reads = False  # type: ignore[misc]
    assert find_signatures(sequential, image.digest) == found

    policy = keys[0].policy()
    result = verify_image(
        f"{proxy.address}/{repo.repository}@{image.digest}",
        policy,
        options=RegistryOptions(timeout=30),
    )
    assert result.verified
    assert [a.verified for a in result.attestations].count(True) == 2  # keys[0]'s two


def test_an_unreadable_legacy_layer_is_a_problem_and_the_rest_is_read(
    registry, repo, push_image, proxy
) -> None:
    image = push_image(repo, "v1")
    keys = [make_key(), make_key()]
    _sign_every_way(repo, f"{registry.address}/{repo.repository}:v1", keys)
    manifest = repo.fetch_manifest(signature_tag(image.digest, "sig")).parsed
    assert isinstance(manifest, Manifest)
    lost = manifest.layers[0]
    client = repo.client
    client.request(
        "DELETE",
        f"/v2/{repo.repository}/blobs/{lost.digest}",
        repository=repo.repository,
        what="delete blob",
        deadline=repo.deadline,
        ok=(202,),
    ).close()

    found = find_signatures(_through(proxy, repo), image.digest)

    assert len(found.legacy_signatures) == 1
    assert found.legacy_signatures[0].location.endswith("layer 1")
    (problem,) = found.problems
    assert f"layer 0 ({lost.digest}): unreadable" in problem
    assert len(found.bundles) == 3 and len(found.legacy_attestations) == 2
    result = verify_image(
        f"{proxy.address}/{repo.repository}@{image.digest}",
        keys[1].policy(),
        options=RegistryOptions(timeout=30),
    )
    assert result.verified and result.errors == (problem,)


def test_a_resolved_digest_is_not_looked_up_again(registry, repo, push_image, proxy) -> None:
    image = push_image(repo, "v1")
    key = make_key()
    direct = parse_image_reference(f"{registry.address}/{repo.repository}@{image.digest}")
    attach_signature(repo, resolve_image(repo, direct), key.signer)
    store = _through(proxy, repo)
    reference = parse_image_reference(f"{proxy.address}/{repo.repository}@{image.digest}")
    image_manifest = f"/v2/{repo.repository}/manifests/{image.digest}"

    assert verify_image(reference, key.policy(), store=store).verified
    assert [m for m, p, _s in proxy.seen if p == image_manifest] == ["HEAD"]

    proxy.seen.clear()
    result = verify_image(reference, key.policy(), store=store, resolve=False)
    assert result.verified and result.digest == image.digest
    assert [p for _m, p, _s in proxy.seen if p == image_manifest] == []
    assert proxy.seen  # the signatures were still fetched

    # A tag is always resolved, whatever ``resolve`` says.
    proxy.seen.clear()
    tagged = parse_image_reference(f"{proxy.address}/{repo.repository}:v1")
    assert verify_image(tagged, key.policy(), store=store, resolve=False).digest == image.digest
    assert ("HEAD", f"/v2/{repo.repository}/manifests/v1") in [(m, p) for m, p, _s in proxy.seen]
