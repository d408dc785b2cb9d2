"""Policy evaluation: load a Rego bundle and evaluate ``deny``/``warn`` against an input document.

Two engines sit behind one interface (:class:`~attest.policy.engine.PolicyEngine`):
the embedded ``regopy`` interpreter (default) and a remote OPA server.
:func:`make_engine` picks one; the engines import only the interface, never this
package, so nothing here imports in a circle.
"""

from __future__ import annotations

from attest.errors import PolicyError
from attest.policy.bundle import PolicyBundle, load_bundle
from attest.policy.engine import Finding, PolicyEngine, PolicyResult

__all__ = ["Finding", "PolicyBundle", "PolicyEngine", "PolicyResult", "load_bundle", "make_engine"]


def make_engine(
    bundle: PolicyBundle | None,
    *,
    opa_url: str | None = None,
    opa_timeout: float = 2.0,
) -> PolicyEngine:
    """The embedded regopy engine for ``bundle``, or a remote OPA client with ``opa_url``."""
    if opa_url:
        from attest.policy.opa import RemoteOpaEngine

        return RemoteOpaEngine(opa_url, timeout=opa_timeout, bundle=bundle)
    if bundle is None:
        raise PolicyError("no policy bundle given for the embedded engine")
    from attest.policy.regopy import RegopyEngine

    return RegopyEngine(bundle)
