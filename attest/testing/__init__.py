"""Real servers and test scaffolding for the test suite and the benchmarks (``bench/``).

Both start the same real components, so the one definition lives here rather than in
``tests/`` (which ``bench/`` must not import): :mod:`.servers` (free ports, a registry),
:mod:`.sigstore` (the local Sigstore), :mod:`.postgres`, :mod:`.hostile` (registries
that misbehave on the wire) and :mod:`.images` (a small image to push).  The webhook's
scaffolding (configs, TLS, a running ``attest admission serve``, decision samples) is in
``admission.testing``.  Nothing in the library imports these modules.
"""

from attest.testing.servers import (
    QuietHTTPServer,
    RegistryServer,
    free_port,
    stop_process,
    wait_http,
)
from attest.testing.sigstore import (
    DEFAULT_ISSUER,
    DEFAULT_SUBJECT,
    JS_DIR,
    SigstoreMock,
    node_harness_missing,
)

__all__ = [
    "DEFAULT_ISSUER",
    "DEFAULT_SUBJECT",
    "JS_DIR",
    "QuietHTTPServer",
    "RegistryServer",
    "SigstoreMock",
    "free_port",
    "node_harness_missing",
    "stop_process",
    "wait_http",
]
