"""Whether a bundle's answers are a pure function of its input: the condition for caching them.

A policy result may be reused for an identical input only when evaluation reads
nothing but the input and the bundle.  Built-ins that read the clock, randomness,
the network or the environment break that, so a bundle that calls one is never
cached.  The scan is of code only (:func:`~attest.policy.forms.code_only`): a
mention in a comment or a string does not count, and a call anywhere in the
bundle does, reached or not (over-detecting only costs a cache).
"""

from __future__ import annotations

from attest.policy.bundle import PolicyBundle
from attest.policy.forms import CALL, code_only

# OPA v1 built-ins whose answer for the same arguments can change between calls.
NONDETERMINISTIC_BUILTINS = frozenset(
    {
        "time.now_ns",  # the clock
        "http.send",  # the network
        "net.lookup_ip_addr",  # DNS
        "opa.runtime",  # the environment and configuration
        "io.jwt.decode_verify",  # checks exp/nbf against the clock unless given a time
        "crypto.x509.parse_and_verify_certificates",  # validity against the clock
        "crypto.x509.parse_and_verify_certificates_with_options",
    }
)
# Whole families: randomness (rand.intn) and UUIDs (uuid.rfc4122 is random; uuid.parse is
# not, but the issue names the family and refusing a cache is always safe).
NONDETERMINISTIC_PREFIXES = ("rand.", "uuid.")


def is_nondeterministic(builtin: str) -> bool:
    """Whether a call of ``builtin`` may answer differently for the same arguments."""
    return builtin in NONDETERMINISTIC_BUILTINS or builtin.startswith(NONDETERMINISTIC_PREFIXES)


def nondeterministic_calls(bundle: PolicyBundle) -> tuple[str, ...]:
    """``module:line: built-in`` for every call in ``bundle`` that makes it impure (sorted)."""
    found: list[str] = []
    for name, text in sorted(bundle.modules.items()):
        code = code_only(text)
        for match in CALL.finditer(code):
            if is_nondeterministic(match.group(1)):
                line = code.count("\n", 0, match.start()) + 1
                found.append(f"{name}:{line}: {match.group(1)}")
    return tuple(found)
