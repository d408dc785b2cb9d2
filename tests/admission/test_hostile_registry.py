"""The webhook against hostile registries: the deadline holds and healthy registries stay served.

The real gunicorn/TLS webhook, signed images on the real docker-registry, and
real misbehaving servers on loopback (attest/testing/hostile.py): a drip-feeder,
a black hole, and relays in front of the real registry that stall mid-body on a
manifest or a blob.  A request for an image there must be denied as timed out
by the deadline plus a margin, while requests for the healthy registry are
admitted as usual and ``/healthz`` answers; the worker threads the hostile
registry held must be let go (the server sees the client close) soon after.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.testing.helpers import POD_KIND, deployment, pod_spec, review
from admission.testing.webhook import Webhook
from admission.testing.world import REPO, World
from attest.testing.hostile import HostileRegistry

DEADLINE = 3.0
MARGIN = 2.0  # generous: proves the deadline holds, measures nothing
NO_CACHE = {"ttlSeconds": 0, "tagTtlSeconds": 0}  # every healthy request verifies on the pool


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileRegistry]]:
    started: list[HostileRegistry] = []

    def start(behaviour: str, **kwargs: Any) -> HostileRegistry:
        server = HostileRegistry(behaviour, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _send(hook: Webhook, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Seconds until the answer, and the answer's ``response``."""
    began = time.monotonic()
    status, answer = hook.validate(body, timeout=DEADLINE + 10)
    assert status == 200, answer
    return time.monotonic() - began, answer["response"]


def _pod(*images: str, name: str = "p") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": pod_spec(*images),
    }


def _start(world: World, webhook, tmp_path: Path, **config: Any) -> Webhook:
    path = world.config(tmp_path / "c.yaml", deadlineSeconds=DEADLINE, cache=NO_CACHE, **config)
    hook: Webhook = webhook(path)
    return hook


def _assert_timed_out(seconds: float, answer: dict[str, Any], image: str) -> None:
    assert answer["allowed"] is False, answer
    assert answer["status"]["code"] == 403
    assert f"{image}: verification timed out" in answer["status"]["message"]
    assert seconds < DEADLINE + MARGIN


@pytest.mark.parametrize("kind", ["drip", "blackhole", "stall-manifest", "stall-blob"])
def test_hostile_registry_is_denied_at_the_deadline_and_healthy_ones_stay_served(
    world: World, webhook, hostile, tmp_path: Path, kind: str
) -> None:
    if kind.startswith("stall"):  # the signed image, relayed from the real registry until it stalls
        stalled = r"^GET \S*/manifests/" if kind == "stall-manifest" else r"^GET \S*/blobs/"
        server = hostile("stall", upstream=world.registry.port, stall=stalled)
    else:
        server = hostile(kind)
    hook = _start(world, webhook, tmp_path)
    good = world.images["good"]  # type: ignore[attr-defined]
    bad = f"{server.address}/{REPO}/good:v1"
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        hostile_answer = pool.submit(_send, hook, review(deployment(bad), uid="hostile"))
        time.sleep(0.5)  # the hostile request is in flight: its image is being verified
        healthy = [
            pool.submit(_send, hook, review(deployment(good), uid=f"healthy-{i}")) for i in range(3)
        ]
        assert hook.get("/healthz").status_code == 200
        for future in healthy:
            seconds, answer = future.result()
            assert answer["allowed"] is True, answer
            assert seconds < DEADLINE  # answered while the hostile request still waits
        assert not hostile_answer.done()
        seconds, answer = hostile_answer.result()
    _assert_timed_out(seconds, answer, bad)
    assert server.held_count(), "the hostile registry was never asked"
    held = server.wait_released(MARGIN)  # the verification thread was cut off, not left reading
    assert max(held) < DEADLINE + MARGIN


def test_one_hostile_registry_cannot_take_every_verification_thread(
    world: World, webhook, hostile, tmp_path: Path
) -> None:
    """A pod with sixteen images on a registry that drips (as many as a worker has
    verification threads) holds only ``maxConcurrentPerRegistry`` of them: a request for
    the healthy registry sent meanwhile is verified at once, not after the hostile ones."""
    server = hostile("drip")
    hook = _start(world, webhook, tmp_path, maxConcurrentPerRegistry=2)
    bad = [f"{server.address}/{REPO}/app{i}:v1" for i in range(16)]
    good = world.images["good"]  # type: ignore[attr-defined]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        hostile_answer = pool.submit(_send, hook, review(_pod(*bad), uid="hostile", kind=POD_KIND))
        time.sleep(0.5)
        seconds, answer = _send(hook, review(deployment(good), uid="healthy"))
        assert answer["allowed"] is True, answer
        assert seconds < DEADLINE / 2  # not queued behind the hostile verifications
        hostile_seconds, denied = hostile_answer.result()
    assert denied["allowed"] is False
    assert "verification timed out" in denied["status"]["message"]
    assert hostile_seconds < DEADLINE + MARGIN
    assert server.held_count() == 2  # two lanes, one image each before the deadline


def test_a_stalling_registry_is_refused_at_once_when_its_slots_are_full(
    world: World, webhook, hostile, tmp_path: Path
) -> None:
    """Once a verification against a registry timed out, requests for it that find all its
    slots taken are denied at once instead of holding a request thread until the deadline."""
    server = hostile("blackhole")
    hook = _start(world, webhook, tmp_path, maxConcurrentPerRegistry=1)
    bad = f"{server.address}/{REPO}/app:v1"
    seconds, first = _send(hook, review(deployment(bad), uid="first"))
    _assert_timed_out(seconds, first, bad)
    server.wait_released(MARGIN)  # its slot is free again; the registry is known to stall
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        second = pool.submit(_send, hook, review(deployment(bad), uid="second"))
        time.sleep(0.5)  # the second takes the only slot
        seconds, third = _send(hook, review(deployment(bad), uid="third"))
        assert third["allowed"] is False
        assert f"registry {server.address} is stalling" in third["status"]["message"]
        assert seconds < DEADLINE / 2
        second_seconds, second_answer = second.result()
    _assert_timed_out(second_seconds, second_answer, bad)
