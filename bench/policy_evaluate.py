"""Micro-benchmark of one policy evaluation: the default bundle over a 3-image input.

Compares, on one thread and the same interpreter, CPU time per call of:

* ``per-rule``: the input set once, then ``deny``, ``warn`` evaluated one entry point
  each (what ``RegopyEngine.evaluate`` did before issue 15);
* ``one-query``: ``RegopyEngine.evaluate`` (one generated entry point for all rules);
* ``cache-key``: what the policy result cache adds to a miss (canonical JSON + SHA-256);
* ``cache-hit``: a cached answer.

    .venv/bin/python bench/policy_evaluate.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def signature(verified: bool = True) -> dict[str, Any]:
    return {
        "verified": verified,
        "reasons": [],
        "authority": "release-key",
        "signer": {"type": "key", "keyId": "sha256:" + "ab" * 32},
        "storage": "bundle",
        "tlog": {"logIndex": 1234, "integratedTime": 1772359100},
    }


def provenance(index: int) -> dict[str, Any]:
    return {
        **signature(),
        "predicateType": "https://slsa.dev/provenance/v1",
        "provenance": {
            "builderId": "https://github.com/actions/runner/github-hosted",
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "sourceUri": f"git+https://github.com/acme/app{index}",
            "sourceRepository": f"github.com/acme/app{index}",
            "sourceRef": "refs/heads/main",
            "sourceDigest": {"gitCommit": f"{index:040x}"},
            "buildStartedOn": "2024-05-14T10:00:00+00:00",
            "buildFinishedOn": "2024-05-14T10:03:12+00:00",
        },
    }


def image(index: int) -> dict[str, Any]:
    name = f"registry.example.com/acme/app{index}"
    return {
        "reference": f"{name}:v1",
        "name": name,
        "tag": "v1",
        "digest": f"sha256:{index:064x}",
        "containers": [{"name": f"c{index}", "type": "container"}],
        "unchanged": False,
        "policy": {
            "name": "shop",
            "mode": "enforce",
            "threshold": 1,
            "authorities": ["release-key"],
            "requiredAttestations": ["https://slsa.dev/provenance/v1"],
            "parameters": {
                "allowedBuilders": ["https://github.com/*"],
                "allowedSources": ["github.com/acme/*"],
            },
        },
        "outcome": "verified",
        "error": None,
        "cached": True,
        "thresholdMet": True,
        "satisfiedAuthorities": ["release-key"],
        "signatures": [signature()],
        "attestations": [provenance(index)],
        "lookupErrors": [],
    }


def document() -> dict[str, Any]:
    return {
        "apiVersion": "attest.dev/admission-input/v1",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "operation": "CREATE",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": "deployments",
            "subResource": "",
            "namespace": "shop",
            "name": "web",
            "user": {"username": "alice@example.com", "groups": ["dev"]},
            "labels": {"app": "web"},
            "dryRun": False,
        },
        "time": {"rfc3339": "2026-12-07T01:00:00+00:00", "unixNs": 1796605200000000000},
        "images": [image(i) for i in range(3)],
    }


def per_call_ms(action: Callable[[], Any], calls: int) -> float:
    action()
    started = time.process_time()
    for _ in range(calls):
        action()
    return (time.process_time() - started) * 1000 / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    from admission.config import DEFAULT_BUNDLE
    from admission.policy_cache import PolicyCache, cache_key, canonical_input
    from attest.policy import load_bundle
    from attest.policy.engine import RULES, read_rule
    from attest.policy.regopy import RegopyEngine, _set_input, fast_input

    engine = RegopyEngine(load_bundle(str(DEFAULT_BUNDLE)))
    doc = document()
    package = "attest.admission"
    interpreter, compiled = engine._thread_interpreter()
    one = engine.evaluate(doc, package)

    def per_rule() -> dict[str, Any]:
        _set_input(interpreter, fast_input(doc))
        return engine._query_each(interpreter, compiled, package, RULES)

    before = per_rule()  # the same answer both ways, or the comparison means nothing
    assert read_rule(package, "deny", before["deny"]) == one.denials
    assert read_rule(package, "warn", before["warn"]) == one.warnings
    cache = PolicyCache(100)
    cache.evaluate(engine, doc, package, "trust")

    def key() -> bytes:
        encoded = canonical_input(doc)
        assert encoded is not None
        return cache_key(encoded, package, engine.bundle_hash, "trust")

    rows = [
        ("per-rule (before)", per_call_ms(per_rule, args.calls)),
        ("one-query (evaluate)", per_call_ms(lambda: engine.evaluate(doc, package), args.calls)),
        ("cache-key (added to a miss)", per_call_ms(key, args.calls)),
        (
            "cache-hit",
            per_call_ms(lambda: cache.evaluate(engine, doc, package, "trust"), args.calls),
        ),
    ]
    print(f"policy evaluation, default bundle, 3-image input, {args.calls} calls, CPU ms per call")
    for name, value in rows:
        print(f"  {name:30} {value:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
