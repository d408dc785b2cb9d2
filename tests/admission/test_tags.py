"""Tag resolution against the real registry: how fresh a judged digest is.

By default a tag's digest is reused for ``cache.tagTtlSeconds`` (5 s); with 0 every
request asks the registry; after the TTL, or a configuration reload, a moved tag is
judged by its new digest (here an unsigned image, so it is denied)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from admission.config import DEFAULT_TAG_TTL_SECONDS, parse_config
from admission.decide import Admission
from admission.review import parse_review
from admission.testing.helpers import deployment, review
from admission.testing.world import REPO, World
from attest.testing.images import simple_image
from tests.support.faultproxy import FaultProxy


@pytest.fixture
def proxy(registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.port).start()
    yield proxy
    proxy.stop()


def _move_tag(world: World, name: str, workdir: Path) -> str:
    """Point ``name:v1`` at a new, unsigned image; returns its digest."""
    image = simple_image(workdir, marker=f"{name}-moved").build(workdir / f"moved-{name}")
    return image.push(world.store(name), "v1").digest


@contextlib.contextmanager
def _service(world: World, proxy: FaultProxy, path: Path, name: str, ttl: float):
    """A signed ``name:v1`` behind the proxy and an Admission for it with ``tagTtlSeconds``."""
    world.signed(name)
    world.config(path, cache={"tagTtlSeconds": ttl})
    service = Admission(str(path), reload_interval=0)
    try:
        yield service, f"{proxy.address}/{REPO}/{name}:v1"
    finally:
        service.close()


def _decide(service: Admission, image: str):
    return service.decide(parse_review(review(deployment(image))))


def _tag_lookups(proxy: FaultProxy, name: str) -> int:
    path = f"/v2/{REPO}/{name}/manifests/v1"
    return sum(1 for method, seen, _status in proxy.seen if method == "HEAD" and seen == path)


def test_the_default_keeps_a_tag_resolution_a_few_seconds() -> None:
    config = parse_config("imagePolicies: []\n", "c.yaml")
    assert config.tag_ttl_seconds == DEFAULT_TAG_TTL_SECONDS == 5.0
    off = parse_config("cache: {tagTtlSeconds: 0}\nimagePolicies: []\n", "c.yaml")
    assert off.tag_ttl_seconds == 0


def test_ttl_zero_resolves_on_every_request(world: World, proxy, tmp_path: Path) -> None:
    with _service(world, proxy, tmp_path / "c.yaml", "everytime", 0) as (service, image):
        first = _decide(service, image)
        assert first.allowed and _tag_lookups(proxy, "everytime") == 1
        moved = _move_tag(world, "everytime", tmp_path)
        second = _decide(service, image)
        assert _tag_lookups(proxy, "everytime") == 2
        assert second.images[0].digest == moved and not second.allowed
        assert "no trusted signature" in second.message


def test_a_resolution_is_reused_within_the_ttl_only(world: World, proxy, tmp_path: Path) -> None:
    with _service(world, proxy, tmp_path / "c.yaml", "reused", 1) as (service, image):
        first = _decide(service, image)
        assert first.allowed
        moved = _move_tag(world, "reused", tmp_path)
        within = _decide(service, image)  # judged by the digest resolved < 1 s ago
        assert within.images[0].digest == first.images[0].digest and within.allowed
        assert _tag_lookups(proxy, "reused") == 1
        time.sleep(1.2)
        after = _decide(service, image)
        assert _tag_lookups(proxy, "reused") == 2
        assert after.images[0].digest == moved and not after.allowed


def test_a_config_reload_forgets_tag_resolutions(world: World, proxy, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    with _service(world, proxy, path, "reloaded", 600) as (service, image):
        assert _decide(service, image).allowed
        moved = _move_tag(world, "reloaded", tmp_path)
        assert _decide(service, image).allowed  # still the resolution of a moment ago
        world.config(path, cache={"tagTtlSeconds": 600}, deadlineSeconds=7)
        after = _decide(service, image)
        assert service.config.deadline_seconds == 7  # the edit was loaded
        assert after.images[0].digest == moved and not after.allowed
        assert _tag_lookups(proxy, "reloaded") == 2
