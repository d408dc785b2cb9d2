"""A remote OPA server as the policy engine, through ``opa-python-client`` (OPA's Data API).

One ``POST /v1/data/<package>`` with ``{"input": …}`` per evaluation reads
``deny``, ``warn`` and ``allow`` at once (the package document); built-in errors are strict (``strict-builtin-errors``)
so a failing policy is an error, never an empty ``deny``.  The timeout bounds
the wall time of the whole request, not each read (a server that drips one
byte at a time would otherwise hold the webhook past the API server's
deadline).  The bundle hash is that of the modules the server reports
(``GET /v1/policies``), so decision records name what OPA actually evaluated.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from attest.errors import PolicyError
from attest.policy.bundle import PolicyBundle, bundle_hash
from attest.policy.engine import DEFAULT_PACKAGE, PolicyResult, check_package, read_rule

log = logging.getLogger(__name__)
ENGINE_NAME = "opa"
# Requests in flight at once; a stuck server holds at most this many threads, and
# evaluations queued behind them fail at their own timeout.
MAX_IN_FLIGHT = 8


def _client_for(url: str, timeout: float) -> OpaClient:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyError(f"OPA URL {url!r} must be http(s)://HOST[:PORT]")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return OpaClient(
        host=parts.hostname, port=port, ssl=parts.scheme == "https", timeout=timeout, retries=0
    )


def _server_error(response: requests.Response | None) -> str:
    if response is None:
        return "no response"
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    details = [e.get("message", "") for e in body.get("errors", []) if isinstance(e, dict)]
    message = body.get("message") or ""
    return f"HTTP {response.status_code}: " + "; ".join(filter(None, [message, *details]))


class RemoteOpaEngine:
    """Evaluates against an OPA server; thread-safe (one pooled HTTP session)."""

    def __init__(
        self, url: str, *, timeout: float = 2.0, bundle: PolicyBundle | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.name = f"{ENGINE_NAME} {self.url}"
        # the server's policies and data can change at any time, unseen: never cached
        self.cacheable = False
        self.timeout = timeout
        self._client = _client_for(self.url, timeout)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            MAX_IN_FLIGHT, thread_name_prefix="attest-opa"
        )
        self.local_hash = bundle.hash if bundle else None
        self.bundle_hash = self.refresh_hash()

    def refresh_hash(self) -> str:
        """Hash of the modules the server has loaded (``remote:unknown`` if it will not say)."""

        def texts_of_policies() -> list[str]:
            return [
                self._client.get_policy(policy_id).get("result", {}).get("raw", "")
                for policy_id in self._client.get_policies_list()
            ]

        listing = self._pool.submit(texts_of_policies)
        try:
            texts = listing.result(timeout=2 * self.timeout)  # wall time, as for evaluations
        except Exception as err:  # opa-client's own classes, requests' errors, our timeout
            listing.cancel()
            log.warning("OPA %s: cannot list policies (%s); bundle hash unknown", self.url, err)
            return "remote:unknown"
        remote = bundle_hash(texts)
        if self.local_hash and remote != self.local_hash:
            log.warning(
                "OPA %s evaluates policies %s, not the local bundle %s",
                self.url,
                remote,
                self.local_hash,
            )
        return remote

    def evaluate(self, input_doc: dict[str, Any], package: str = DEFAULT_PACKAGE) -> PolicyResult:
        """``deny`` and ``warn`` of ``package``, read in one Data API request."""
        check_package(package)
        what = f"OPA {self.url} data.{package}"
        request = self._pool.submit(
            self._client.query_rule,
            input_doc,
            package,
            query_params={"strict-builtin-errors": "true"},
        )
        try:
            answer = request.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            request.cancel()
            raise PolicyError(f"{what}: OPA did not answer within {self.timeout:g}s") from None
        except requests.HTTPError as err:
            raise PolicyError(f"{what}: {_server_error(err.response)}") from None
        except ValueError:  # requests' JSONDecodeError is a RequestException too
            raise PolicyError(f"{what}: OPA answered with something that is not JSON") from None
        except requests.RequestException as err:
            raise PolicyError(f"{what}: OPA unreachable: {type(err).__name__}") from None
        if not isinstance(answer, dict) or "result" not in answer:
            raise PolicyError(f"{what}: package is undefined on the OPA server")
        document = answer["result"]
        if not isinstance(document, dict):
            raise PolicyError(f"{what}: the package evaluated to a {type(document).__name__}")
        return PolicyResult(
            denials=read_rule(package, "deny", document.get("deny")),
            warnings=read_rule(package, "warn", document.get("warn")),
            engine=self.name,
            bundle_hash=self.bundle_hash,
            allow=document.get("allow"),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close_connection()
