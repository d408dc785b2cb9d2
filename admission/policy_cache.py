"""The policy result cache: one answer per exact policy input, bundle and trust material.

Evaluation is a pure function of the input document and the bundle when the bundle
calls nothing that reads the clock, randomness, the network or the environment
(:mod:`attest.policy.purity`; engines say so with ``cacheable``).  The key is a
SHA-256 over the package, the bundle hash, the trust fingerprint and the canonical
JSON bytes of the whole input: nothing is left out, so any changed field (a signer,
a digest, the request uid, the time) is a different key.  The trust fingerprint is
in the key even though the runtime holding the cache is rebuilt whenever the trust
configuration changes: a result is never reused across trust material, whatever
the lifetime.  Errors are never cached.  A remote OPA is never cached either: its
policies and data can change behind our back.

It lives in the :class:`~admission.runtime.Runtime` (one per configuration), so a
reload of the bundle or of the trust configuration starts an empty cache.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from typing import Any, Literal

from attest.policy import PolicyEngine, PolicyResult

DEFAULT_POLICY_CACHE_ENTRIES = 1000
CacheOutcome = Literal["hit", "miss", "off"]
_DOMAIN = b"attest-policy-cache/v1\0"


def canonical_input(document: dict[str, Any]) -> bytes | None:
    """The input's canonical JSON bytes (sorted keys, no spaces, ASCII with ``\\u`` escapes:
    the encoder's fast path), or None if it is not JSON."""
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text.encode()


def cache_key(document: bytes, package: str, bundle_hash: str, trust_fingerprint: str) -> bytes:
    """The cache key: every part length-prefixed, so no two tuples give the same bytes."""
    digest = hashlib.sha256(_DOMAIN)
    for part in (package.encode(), bundle_hash.encode(), trust_fingerprint.encode(), document):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


class PolicyCache:
    """A bounded LRU of policy results; thread-safe; ``max_entries`` 0 disables it."""

    def __init__(self, max_entries: int = DEFAULT_POLICY_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[bytes, PolicyResult] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def evaluate(
        self,
        engine: PolicyEngine,
        document: dict[str, Any],
        package: str,
        trust_fingerprint: str,
    ) -> tuple[PolicyResult, CacheOutcome]:
        """``engine``'s answer for ``document`` and whether it came from the cache.

        :class:`~attest.errors.PolicyError` from the engine propagates (and is not cached).
        """
        if self.max_entries <= 0 or not engine.cacheable:
            return engine.evaluate(document, package), "off"
        encoded = canonical_input(document)
        if encoded is None:  # not JSON: the engine says why
            return engine.evaluate(document, package), "off"
        key = cache_key(encoded, package, engine.bundle_hash, trust_fingerprint)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit, "hit"
        result = engine.evaluate(document, package)
        with self._lock:
            self._entries[key] = result
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return result, "miss"

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
