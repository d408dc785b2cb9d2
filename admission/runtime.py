"""What the webhook builds from one configuration: the policy engine, registry clients, tag cache.

A :class:`Runtime` lives as long as its configuration: a reload builds a new one
(:mod:`admission.watcher`), so credentials, the compiled bundle and the tag
resolutions made with them are never mixed with those of another configuration.
The verification cache is not here: its keys carry the trust material's
fingerprint, so it outlives reloads safely (:mod:`admission.cache`).  The policy
result cache is, so a reload starts it empty.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from admission.cache import TagCache
from admission.config import AdmissionConfig
from admission.policy_cache import PolicyCache
from attest.deadline import Deadline
from attest.oci.reference import ImageReference
from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.policy import PolicyEngine, load_bundle, make_engine

log = logging.getLogger(__name__)


class RegistryPool:
    """One thread-safe registry client per host, shared by all requests of a configuration."""

    def __init__(self, options: RegistryOptions) -> None:
        self.options = options
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def store(self, reference: ImageReference, deadline: Deadline) -> RegistryRepository:
        with self._lock:
            client = self._clients.get(reference.registry)
            if client is None:
                client = RegistryClient(reference.registry, options=self.options)
                self._clients[reference.registry] = client
        return RegistryRepository(client, reference.repository, deadline=deadline)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


@dataclass
class Runtime:
    """The compiled policy engine, the registry clients, the tag resolutions and the policy
    results (:mod:`admission.policy_cache`) of one configuration."""

    engine: PolicyEngine
    registries: RegistryPool
    tags: TagCache
    policy_cache: PolicyCache = field(default_factory=lambda: PolicyCache(0))

    def close(self) -> None:
        self.engine.close()
        self.registries.close()


def build_runtime(config: AdmissionConfig) -> Runtime:
    """Compile the configuration's policy bundle (or connect to its OPA) and set up registries."""
    bundle = None if config.opa_url else load_bundle(config.bundle)
    engine = make_engine(bundle, opa_url=config.opa_url)
    if config.policy_cache_max_entries and not engine.cacheable:
        why = ", ".join(getattr(engine, "impure", ())[:3]) or "a remote OPA is never cached"
        log.info("policy result cache off for %s: %s", config.bundle, why)
    options = RegistryOptions(
        auth_files=config.registry_auth,
        timeout=config.deadline_seconds,
        host_concurrency=config.max_concurrent_per_registry,
    )
    return Runtime(
        engine=engine,
        registries=RegistryPool(options),
        tags=TagCache(config.tag_ttl_seconds),
        policy_cache=PolicyCache(config.policy_cache_max_entries),
    )
