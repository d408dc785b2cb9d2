"""Verification results, cached by image and trust material: bounded, with a time to live.

The key is the image's repository and digest (signatures are stored per
repository) plus the fingerprint of the trust material (keys, identities,
roots, threshold) that judged it, so a change of trust never reuses a result
verified under the old material.  Only complete, verified results are cached:
one with lookup errors, or one that did not meet the threshold, is looked up
again next time (so an image signed after a denial is admitted at once).
Policies (Rego) are never cached; they run on every request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from attest.verify import ImageVerification

CacheKey = tuple[str, str, str]  # (registry/repository, digest, trust fingerprint)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class VerificationCache:
    """A thread-safe LRU of :class:`ImageVerification` with a TTL; ``max_entries=0`` disables it."""

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_seconds: float = 300.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.stats = CacheStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, tuple[float, ImageVerification]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> ImageVerification | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= self._clock():
                if entry is not None:
                    del self._entries[key]
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry[1]

    def put(self, key: CacheKey, result: ImageVerification) -> None:
        """Remember ``result`` unless caching is off or it is incomplete or unverified."""
        if self.max_entries <= 0 or self.ttl_seconds <= 0 or result.errors or not result.verified:
            return
        with self._lock:
            self._entries[key] = (self._clock() + self.ttl_seconds, result)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class TagCache:
    """Tag -> digest resolutions kept for ``ttl_seconds`` (0 keeps none: every request asks).

    The webhook's default is a few seconds (``cache.tagTtlSeconds``): a judged digest
    is then at most that old, against one registry round trip per image and request
    saved.  The kubelet pulls the tag later anyway, so without digest pinning
    (``/mutate``) the digest that runs may differ from the one judged whatever this
    is; see README "Tag resolution and freshness".  Only successful resolutions are
    kept, and the webhook clears them when its configuration reloads.
    """

    def __init__(self, ttl_seconds: float = 0.0, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, reference: str) -> str | None:
        if self.ttl_seconds <= 0:
            return None
        with self._lock:
            entry = self._entries.get(reference)
            if entry is None or entry[0] <= time.monotonic():
                self._entries.pop(reference, None)
                return None
            return entry[1]

    def put(self, reference: str, digest: str) -> None:
        if self.ttl_seconds <= 0:
            return
        with self._lock:
            self._entries[reference] = (time.monotonic() + self.ttl_seconds, digest)
            self._entries.move_to_end(reference)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
