"""Policy evaluation: load a Rego bundle and evaluate ``deny``/``warn`` against an input document.

Two engines sit behind one interface (:class:`~attest.policy.engine.PolicyEngine`):
the embedded ``regopy`` interpreter (default) and a remote OPA server.
"""

from __future__ import annotations

from attest.policy.bundle import PolicyBundle, load_bundle
from attest.policy.engine import PolicyEngine, PolicyResult, make_engine

__all__ = ["PolicyBundle", "PolicyEngine", "PolicyResult", "load_bundle", "make_engine"]
