"""The request's deadline in the decision flow: every image, one or many, is verified under it.

In-process, with a verifier that blocks like a thread stuck somewhere no socket
timeout reaches: the answer must come at the deadline whatever the verifier
does, with the image timed out (denied in enforce mode), and a result that
arrives later must never be counted.  The transport side (the stuck thread is
cut off) is tested against real hostile servers in tests/oci/test_wallclock.py
and through the webhook in test_hostile_registry.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from admission.decide import Admission
from admission.review import parse_review
from admission.testing.helpers import (
    deployment,
    fake_verification,
    key_policy,
    new_key,
    review,
    write_config,
)
from attest.verify import ImageVerification

REGISTRY = "registry.example.com"
STUCK = f"{REGISTRY}/apps/stuck@sha256:{'3' * 64}"
LATE = f"{REGISTRY}/apps/late@sha256:{'4' * 64}"
DEADLINE = 1.0
MARGIN = 1.0


class BlockingVerifier:
    """``stuck`` images block until released (at most 5 s); ``late`` ones verify after the
    deadline; the rest verify at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished: list[str] = []

    def __call__(self, target: Any, policy: Any, **kwargs: Any) -> ImageVerification:
        if "stuck" in target.name:
            self.release.wait(5)
        elif "late" in target.name:
            time.sleep(DEADLINE + 0.3)
        self.finished.append(target.name)
        return fake_verification(str(target), target.digest)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Admission, BlockingVerifier]]:
    key_file = new_key().write(tmp_path / "k.pub")
    config = write_config(
        tmp_path / "c.yaml",
        [key_policy("apps", [f"{REGISTRY}/apps/*"], key_file)],
        deadlineSeconds=DEADLINE,
    )
    verifier = BlockingVerifier()
    admission = Admission(str(config), verifier=verifier, reload_interval=0)
    yield admission, verifier
    verifier.release.set()
    admission.close()


def _decide(admission: Admission, *images: str) -> tuple[float, Any]:
    began = time.monotonic()
    decision = admission.decide(parse_review(review(deployment(*images))))
    return time.monotonic() - began, decision


def test_a_single_stuck_image_is_answered_at_the_deadline(service) -> None:
    """One image used to be verified inline in the request thread: stuck with it."""
    admission, _ = service
    seconds, decision = _decide(admission, STUCK)
    assert seconds < DEADLINE + MARGIN
    assert decision.result == "timed_out" and not decision.allowed
    assert decision.messages == (f"{STUCK}: verification timed out after {DEADLINE:g}s",)
    assert [i.outcome for i in decision.images] == ["timed_out"]


def test_a_result_after_the_deadline_is_never_counted(service) -> None:
    admission, verifier = service
    seconds, decision = _decide(admission, LATE)
    assert seconds < DEADLINE + MARGIN
    assert decision.result == "timed_out"
    deadline = time.monotonic() + 3
    while not verifier.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert verifier.finished == [f"{REGISTRY}/apps/late"]  # it did verify, too late
    assert decision.images[0].verification is None


def test_stuck_verifications_give_their_registry_slots_back(service) -> None:
    admission, verifier = service
    _, decision = _decide(admission, STUCK)
    assert decision.result == "timed_out"
    assert admission.slots.busy(REGISTRY) == 1  # still running, abandoned
    verifier.release.set()
    deadline = time.monotonic() + 3
    while admission.slots.busy(REGISTRY) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert admission.slots.busy(REGISTRY) == 0
