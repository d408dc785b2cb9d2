"""One canonical identity per image (issue 10, finding 1).

Every spelling of a repository (host in any letter case, an explicit default port,
a port with leading zeros, Docker Hub's aliases) falls under the same image policy,
gets the same decision and the same cache entries, in policy globs as in
references.  The attack: an enforce policy covers a repository, a catch-all ``**``
warn policy (or ``unmatchedImages: allow``) covers the rest, and an unsigned image
is named with another spelling of the enforced repository.  Through the real
webhook (gunicorn, TLS) and the real registry, with decisions recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.config import load_config
from admission.decide import Admission
from admission.errors import ConfigError
from admission.globs import canonical_image_glob
from admission.review import parse_review
from admission.testing.helpers import (
    TlsFiles,
    deployment,
    key_policy,
    new_key,
    recorded_documents,
    review,
    write_config,
)
from admission.testing.webhook import Webhook, start_webhook
from admission.testing.world import REPO, World
from attest.oci.reference import parse_image_reference


def spellings(world: World, image: str) -> dict[str, str]:
    """Ways to name ``image`` (``127.0.0.1:PORT/admission-e2e/<image>:v1``) that reach the
    same registry, keyed by the canonical ``registry/repository`` they must resolve to."""
    port = world.registry.port
    path = f"{REPO}/{image}"
    return {
        f"127.0.0.1:{port}/{path}:v1": f"127.0.0.1:{port}/{path}",
        f"127.0.0.1:0{port}/{path}:v1": f"127.0.0.1:{port}/{path}",
        f"localhost:{port}/{path}:v1": f"localhost:{port}/{path}",
        f"LOCALHOST:{port}/{path}:v1": f"localhost:{port}/{path}",
        f"LocalHost:00{port}/{path}:v1": f"localhost:{port}/{path}",
    }


@pytest.fixture
def serve(tls: TlsFiles, tmp_path: Path) -> Iterator[Any]:
    started: list[Webhook] = []

    def start(config: Path) -> tuple[Webhook, str]:
        db = str(tmp_path / f"decisions-{len(started)}.db")
        hook = start_webhook(config, tls, tmp_path, extra=("--db", db))
        started.append(hook)
        return hook, db

    yield start
    for hook in started:
        hook.stop()


def answer(hook: Webhook, image: str, uid: str) -> dict[str, Any]:
    status, body = hook.validate(review(deployment(image), uid=uid))
    assert status == 200, body
    return body["response"]


@pytest.mark.parametrize(
    ("globs", "catch_all"),
    [
        # canonical globs, odd references; the rest under a `**` warn policy
        (["localhost:*/{repo}/*", "127.0.0.1:*/{repo}/*"], True),
        # odd globs (capitals, a zero-padded port), odd references; unmatched allowed
        (["LOCALHOST:0{port}/{repo}/*", "127.0.0.1:00{port}/{repo}/*"], False),
    ],
    ids=["warn-catch-all", "unmatched-allowed"],
)
def test_every_spelling_falls_under_the_enforce_policy(
    world: World, serve: Any, tmp_path: Path, globs: list[str], catch_all: bool
) -> None:
    port = world.registry.port
    policies = [key_policy("apps", [g.format(repo=REPO, port=port) for g in globs], world.key_file)]
    if catch_all:
        policies.append(key_policy("audit", ["**"], world.key_file, mode="warn"))
    hook, db = serve(write_config(tmp_path / "c.yaml", policies, unmatchedImages="allow"))
    sent: list[tuple[str, str, str]] = []  # (uid, reference, canonical name)
    for kind in ("unsigned", "good"):
        for i, (reference, name) in enumerate(spellings(world, kind).items()):
            uid = f"{kind}-{i}"
            response = answer(hook, reference, uid)
            if kind == "unsigned":
                assert response["allowed"] is False, (reference, response)
                assert response["status"]["message"].startswith(
                    f"{reference}: no trusted signature: 0 of 1 required authorities of "
                    "policy apps verified it"
                ), reference
            else:
                assert response == {"uid": uid, "allowed": True}, reference
            sent.append((uid, reference, name))
    records = {d["uid"]: d for d in recorded_documents(db, len(sent))}
    for uid, reference, name in sent:
        (image,) = records[uid]["images"]
        assert (image["reference"], image["name"], image["policy"]) == (reference, name, "apps")
        (entry,) = records[uid]["input"]["images"]
        assert entry["name"] == name and entry["policy"]["name"] == "apps"


def test_the_default_port_is_the_same_registry(world: World, serve: Any, tmp_path: Path) -> None:
    """``localhost:80`` is ``localhost`` (loopback registries are spoken to in plain HTTP):
    a ``host:*`` glob covers it, so it is judged (and denied) by the enforce policy."""
    policies = [
        key_policy("apps", [f"localhost:*/{REPO}/*"], world.key_file),
        key_policy("audit", ["**"], world.key_file, mode="warn"),
    ]
    hook, db = serve(write_config(tmp_path / "c.yaml", policies))
    reference = f"LOCALHOST:80/{REPO}/unsigned:v1"
    response = answer(hook, reference, "port-80")
    assert response["allowed"] is False
    (image,) = recorded_documents(db, 1)[0]["images"]
    assert (image["name"], image["policy"]) == (f"localhost/{REPO}/unsigned", "apps")


def test_one_cache_entry_per_repository_whatever_the_spelling(world: World, tmp_path: Path) -> None:
    """The verification and tag caches are keyed by the canonical name: a second spelling
    of a verified image is served from the cache (and is the same repository)."""
    port = world.registry.port
    config = write_config(
        tmp_path / "c.yaml", [key_policy("apps", [f"127.0.0.1:*/{REPO}/*"], world.key_file)]
    )
    admission = Admission(str(config))
    try:
        images = []
        for i, reference in enumerate(
            [f"127.0.0.1:{port}/{REPO}/good:v1", f"127.0.0.1:000{port}/{REPO}/good:v1"]
        ):
            decision = admission.decide(parse_review(review(deployment(reference), uid=f"c{i}")))
            assert decision.result == "allowed", decision.messages
            images.append(decision.images[0])
        assert [i.cached for i in images] == [False, True]
        assert images[0].digest == images[1].digest and images[0].name == images[1].name
    finally:
        admission.close()


HUB = "index.docker.io/library/nginx"


@pytest.mark.parametrize(
    "glob", ["nginx", "docker.io/library/nginx", "DOCKER.IO/nginx", "index.docker.io:443/library/*"]
)
@pytest.mark.parametrize(
    "reference",
    [
        "nginx",
        "nginx:1.27",
        "docker.io/nginx",
        "docker.io/library/nginx:alpine",
        "Docker.IO/library/nginx",
        "index.docker.io/library/nginx",
        "registry-1.docker.io:443/library/nginx",
        f"nginx@sha256:{'a' * 64}",
    ],
)
def test_hub_globs_and_references_meet(tmp_path: Path, glob: str, reference: str) -> None:
    config = _config(tmp_path, [("hub", [glob], "enforce"), ("rest", ["**"], "warn")])
    assert parse_image_reference(reference).name == HUB
    policy = config.policy_for(parse_image_reference(reference).name, "apps")
    assert policy is not None and policy.name == "hub"


@pytest.mark.parametrize(
    "glob",
    [
        "ghcr.io/acme/*",
        "GHCR.IO/acme/*",
        "ghcr.io:443/acme/*",
        "Ghcr.Io:0443/acme/**",
        "ghcr.io:*/acme/*",
    ],
)
@pytest.mark.parametrize(
    "reference",
    ["ghcr.io/acme/app", "GHCR.IO/acme/app:v1", "ghcr.io:443/acme/app", "gHcR.iO:00443/acme/app"],
)
def test_registry_globs_and_references_meet(tmp_path: Path, glob: str, reference: str) -> None:
    config = _config(tmp_path, [("acme", [glob], "enforce"), ("rest", ["**"], "warn")])
    policy = config.policy_for(parse_image_reference(reference).name, "apps")
    assert policy is not None and policy.name == "acme"


@pytest.mark.parametrize(
    ("glob", "canonical"),
    [
        ("**", "**"),
        ("*", "index.docker.io/library/*"),
        ("acme/*", "index.docker.io/acme/*"),
        ("docker.io/**", "index.docker.io/**"),
        ("*.CORP.example/**", "*.corp.example/**"),
        ("ghcr.io:80/acme/*", "ghcr.io:80/acme/*"),  # another server: kept
        ("localhost:80/a", "localhost/a"),
        ("[0:0::1]:5000/a/*", "[::1]:5000/a/*"),
    ],
)
def test_globs_are_normalised_like_references(glob: str, canonical: str) -> None:
    assert canonical_image_glob(glob) == canonical


def test_wildcard_hosts_and_ports(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        [("corp", ["*.CORP.example/**"], "enforce"), ("any-port", ["ghcr.io:*/acme/*"], "enforce")],
    )

    def policy(reference: str) -> str | None:
        found = config.policy_for(parse_image_reference(reference).name, "apps")
        return found.name if found else None

    assert policy("REG.Corp.Example:443/team/app") == "corp"
    assert policy("reg.corp.example:5000/team/app") is None  # another port, another server
    assert policy("ghcr.io/acme/app") == "any-port"  # host:* includes the default port
    assert policy("ghcr.io:8443/acme/app") == "any-port"
    assert policy("ghcr.io.evil.example/acme/app") is None


@pytest.mark.parametrize(
    ("glob", "fragment"),
    [
        ("ghcr.io/Acme/*", "can never match"),  # repositories are lower-case
        ("ghcr.io/acme/app:v1", "no tag or digest"),
        (f"ghcr.io/acme/app@sha256:{'a' * 64}", "no tag or digest"),
        ("*.corp.example:443/**", "leave the port out"),
        ("ghcr.io:99999/acme/*", "port 99999"),
    ],
)
def test_globs_that_could_never_match_are_config_errors(
    tmp_path: Path, glob: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=r"imagePolicies\[p\]\.images: image glob") as err:
        _config(tmp_path, [("p", [glob], "enforce")])
    assert fragment in str(err.value)


def _config(tmp_path: Path, policies: list[tuple[str, list[str], str]]) -> Any:
    key_file = new_key().write(tmp_path / "k.pub")
    path = write_config(
        tmp_path / "c.yaml",
        [key_policy(name, images, key_file, mode=mode) for name, images, mode in policies],
    )
    return load_config(str(path))
