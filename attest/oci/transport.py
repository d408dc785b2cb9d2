"""Talking to a registry host: requests, retries, tokens, deadlines, bounded bodies.

Transport is plain ``requests``.  oras-py was the planned base, but its
request loop does not fit an admission path: it retries every failure with
sleeps of up to 83 s and knows no deadline, keeps one bearer token for all
scopes, ignores ``$DOCKER_CONFIG`` and ``Retry-After``.  Here every request is
bounded by the caller's :class:`~attest.deadline.Deadline` in wall-clock time —
connect, headers and the whole body, streamed blobs included
(:mod:`attest.oci.exchange`) — 429/5xx are retried with jittered backoff
honouring ``Retry-After``, and tokens are cached per scope.  ``host_concurrency``
bounds how many parallel reads (:func:`~attest.signing.storage.fetch_all`) one
registry host gets at once, so a registry that stalls cannot hold every fetch
thread of the process.  The distribution API on top is :mod:`attest.oci.registry`.

Plain HTTP is used automatically only for loopback registries; everything
else is HTTPS with certificate checks unless ``insecure`` is set.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.request import getproxies, proxy_bypass

import certifi
import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from attest import __version__
from attest.deadline import Deadline
from attest.errors import (
    AccessDenied,
    AuthenticationError,
    DeadlineExceeded,
    DigestMismatch,
    NotFound,
    RegistryError,
)
from attest.oci import exchange as wallclock
from attest.oci.auth import Challenge, Credential, CredentialStore, parse_challenge
from attest.oci.reference import is_loopback_host

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_ATTEMPTS = 5
_MAX_BACKOFF = 8.0
_REQUEST_TIMEOUT_CAP = 60.0
USER_AGENT = f"attest/{__version__}"
_response_observers: list[Callable[[str], None]] = []


def observe_responses(callback: Callable[[str], None]) -> None:
    """Call ``callback(status)`` for every registry API answer: the HTTP status code as text,
    or ``unreachable`` / ``tls_error`` when there was none (the webhook's metrics use this)."""
    if callback not in _response_observers:
        _response_observers.append(callback)


def _observed(status: str) -> None:
    for callback in _response_observers:
        try:
            callback(status)
        except Exception:  # an observer must never break a registry call
            log.exception("registry response observer failed")


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries: TLS policy, credentials, and a deadline for the whole job."""

    insecure: bool = False
    auth_files: tuple[str, ...] = ()
    timeout: float | None = None
    ca_bundle: str | None = None
    host_concurrency: int = 0  # parallel reads per registry host at once; 0: no bound


@dataclass
class Body:
    """A request body that can be replayed on retry: bytes or a file opener."""

    data: bytes | None = None
    opener: Callable[[], IO[bytes]] | None = None

    def open(self) -> Any:
        if self.opener is not None:
            return self.opener()
        return self.data


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections that honour exchange wall-clock limits."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        wallclock.watched(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS has connection classes of its own
            wallclock.watched(manager)
        return manager


def _registry_message(response: requests.Response) -> str:
    """The registry's own error text (``errors[].message``/``code``), if any."""
    try:
        payload = response.json()
        errors = payload.get("errors") or []
        parts = []
        for err in errors:
            if isinstance(err, dict):
                text = str(err.get("message") or err.get("code") or "").strip()
                code = str(err.get("code") or "")
                if code and code.lower().replace("_", " ") != text.lower():
                    text = f"{text} ({code})" if text else code
                if text:
                    parts.append(text)
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    lines = (response.text or "").strip().splitlines()
    return lines[0][:200] if lines else ""


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RegistryClient:
    """A client for one registry host, shared by all repositories on it; thread-safe."""

    def __init__(
        self,
        registry: str,
        *,
        options: RegistryOptions | None = None,
        credentials: CredentialStore | None = None,
    ) -> None:
        self.registry = registry
        self.options = options or RegistryOptions()
        self.scheme = "http" if is_loopback_host(registry) else "https"
        self.verify: bool | str = (
            self.options.ca_bundle
            or os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("SSL_CERT_FILE")
            or True
        )
        if self.options.insecure:
            self.verify = False
        self._credentials = (
            credentials
            if credentials is not None
            else CredentialStore.load(list(self.options.auth_files) or None)
        )
        self._credential: Credential | bool | None = False  # False = not looked up yet
        self._tokens: dict[str, str] = {}
        self._basic_ok = False
        self._lock = threading.Lock()
        self._referrers_api: dict[str, bool] = {}
        self._pool: urllib3.PoolManager | None = None
        self.read_slots = (
            threading.BoundedSemaphore(self.options.host_concurrency)
            if self.options.host_concurrency > 0
            else None
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, _WatchedAdapter())
        # Read the proxy environment once per registry rather than on every request
        # (requests' trust_env re-reads it each time, ~0.3 ms on the admission hot path).
        self.session.trust_env = False
        if not proxy_bypass(registry.rsplit(":", 1)[0].strip("[]")):
            proxies = getproxies()
            self.session.proxies = {k: v for k, v in proxies.items() if k in ("http", "https")}

    # -- plumbing -----------------------------------------------------------------

    def close(self) -> None:
        self.session.close()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.clear()

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.registry}{path}"

    def _credential_for_registry(self) -> Credential | None:
        if self._credential is False:
            self._credential = self._credentials.lookup(self.registry)
        return self._credential if isinstance(self._credential, Credential) else None

    def _auth_header(self, scope: str) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get(scope)
            if token:
                return {"Authorization": f"Bearer {token}"}
            if self._basic_ok:
                cred = self._credential_for_registry()
                if cred:
                    return {"Authorization": f"Basic {cred.basic}"}
        return {}

    def _authenticate(
        self, challenge: Challenge, scope: str, deadline: Deadline, what: str
    ) -> None:
        cred = self._credential_for_registry()
        if challenge.scheme == "basic":
            if not cred or not cred.password:
                raise AuthenticationError(
                    f"{what}: registry {self.registry} requires authentication and no credentials "
                    "were found (docker login, or --registry-auth FILE)",
                    401,
                )
            with self._lock:
                self._basic_ok = True
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise AuthenticationError(
                f"{what}: registry {self.registry} asks for unsupported authentication {challenge.scheme!r}",
                401,
            )
        token = self._fetch_token(challenge, scope, cred, deadline, what)
        with self._lock:
            self._tokens[scope] = token

    def _fetch_token(
        self,
        challenge: Challenge,
        scope: str,
        cred: Credential | None,
        deadline: Deadline,
        what: str,
    ) -> str:
        realm = challenge.params["realm"]
        params = {k: v for k, v in challenge.params.items() if k in ("service",)}
        wanted_scope = challenge.params.get("scope") or scope
        if wanted_scope:
            params["scope"] = wanted_scope
        exchange = wallclock.start(deadline.end)
        try:
            with wallclock.sending(exchange):
                response = self._token_request(realm, params, cred, deadline)
        except requests.RequestException as err:
            if exchange.cut_off:
                raise DeadlineExceeded(
                    f"{what}: token service {realm} did not answer before the deadline"
                ) from None
            raise RegistryError(
                f"{what}: token service {realm} unreachable: {_short(err)}"
            ) from None
        finally:
            exchange.finish()
        if exchange.cut_off:
            raise DeadlineExceeded(
                f"{what}: token service {realm} did not answer before the deadline"
            )
        if response.status_code in (401, 403):
            if cred:
                raise AuthenticationError(
                    f"{what}: token service for {self.registry} rejected the credentials for user "
                    f"{cred.username!r} (HTTP {response.status_code})",
                    401,
                )
            raise AuthenticationError(
                f"{what}: registry {self.registry} requires authentication and no credentials were found "
                "(docker login, or --registry-auth FILE)",
                401,
            )
        if response.status_code != 200:
            raise RegistryError(
                f"{what}: token service {realm} answered HTTP {response.status_code}",
                response.status_code,
            )
        try:
            payload = response.json()
            token = payload.get("token") or payload.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise AuthenticationError(f"{what}: token service {realm} returned no token", 401)
        return str(token)

    def _token_request(
        self, realm: str, params: dict[str, str], cred: Credential | None, deadline: Deadline
    ) -> requests.Response:
        if cred and cred.identity_token:
            return self.session.post(
                realm,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": cred.identity_token,
                    "client_id": "attest",
                    **params,
                },
                timeout=deadline.timeout(30),
                verify=self.verify,
            )
        headers = {"Authorization": f"Basic {cred.basic}"} if cred and cred.password else {}
        return self.session.get(
            realm, params=params, headers=headers, timeout=deadline.timeout(30), verify=self.verify
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        repository: str,
        what: str,
        deadline: Deadline,
        headers: dict[str, str] | None = None,
        body: Body | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200,),
        allow_status: tuple[int, ...] = (),
        push: bool = False,
        absolute_url: str | None = None,
    ) -> requests.Response:
        """Send one API request with auth, retries and the deadline; raise on unexpected status."""
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        if method == "DELETE":
            scope = f"repository:{repository}:delete"
        url = absolute_url or self.url(path)
        attempt = 0
        authenticated = False
        while True:
            deadline.check(what)
            request_headers = dict(headers or {})
            request_headers.update(self._auth_header(scope))
            try:
                response = self._exchange(
                    method, url, request_headers, body, stream, deadline, what
                )
            except requests.exceptions.SSLError as err:
                _observed("tls_error")
                raise RegistryError(
                    f"{what}: TLS error talking to {self.registry}: {_short(err)} "
                    "(use --insecure only for a registry you trust)"
                ) from None
            except (requests.ConnectionError, requests.Timeout) as err:
                _observed("unreachable")
                attempt += 1
                if deadline.expired:
                    raise DeadlineExceeded(
                        f"{what}: registry {self.registry} did not answer before the deadline"
                    ) from None
                if attempt >= 3:
                    raise RegistryError(
                        f"{what}: cannot reach registry {self.registry}: {_short(err)}"
                    ) from None
                self._sleep(min(0.2 * 2**attempt, deadline.remaining()), deadline, what)
                continue
            status = response.status_code
            if _response_observers:
                _observed(str(status))
            if status == 401 and not authenticated:
                challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
                response.close()
                self._authenticate(challenge, scope, deadline, what)
                authenticated = True
                continue
            if status in _RETRY_STATUSES and attempt + 1 < _MAX_ATTEMPTS:
                attempt += 1
                wait = _retry_after(response)
                if wait is None:
                    wait = min(_MAX_BACKOFF, 0.25 * 2**attempt) * (0.5 + random.random() / 2)
                if wait > deadline.remaining():
                    response.close()
                    raise DeadlineExceeded(
                        f"{what}: registry {self.registry} answered HTTP {status}"
                        + (
                            f" ({_registry_message(response)})"
                            if _registry_message(response)
                            else ""
                        )
                        + f" and asks to retry in {wait:.0f}s, after the deadline",
                        status,
                    )
                log.info(
                    "registry %s answered %s to %s; retrying in %.2fs",
                    self.registry,
                    status,
                    what,
                    wait,
                )
                response.close()
                self._sleep(wait, deadline, what)
                continue
            if status in ok or status in allow_status:
                return response
            raise self._error(response, what, cred_used=authenticated)

    def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Body | None,
        stream: bool,
        deadline: Deadline,
        what: str,
    ) -> requests.Response:
        """One HTTP exchange that must be over — body included — by the deadline: past it,
        its sockets are shut down (whatever thread is reading them) and it is a
        :class:`DeadlineExceeded`, never a result.  A streamed response's exchange ends
        when the response is closed."""
        exchange = wallclock.start(deadline.end)
        try:
            with wallclock.sending(exchange):
                response = self._send(
                    method,
                    url,
                    headers,
                    body,
                    stream,
                    (deadline.timeout(10), deadline.timeout(_REQUEST_TIMEOUT_CAP)),
                )
        except Exception:
            exchange.finish()
            if exchange.cut_off:
                _observed("unreachable")
                raise DeadlineExceeded(
                    f"{what}: registry {self.registry} did not answer before the deadline"
                ) from None
            raise
        if not stream:
            exchange.finish()
        if exchange.cut_off:
            response.close()
            _observed("unreachable")
            raise DeadlineExceeded(
                f"{what}: registry {self.registry} did not answer before the deadline"
            )
        return _TimedResponse.adopt(response, exchange)

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Body | None,
        stream: bool,
        timeout: tuple[float, float],
    ) -> requests.Response:
        """One HTTP exchange: body-less GET/HEAD straight through urllib3 (the common case on
        the admission path, where requests' own bookkeeping costs more than loopback round
        trips); redirects, uploads and proxies through the requests session."""
        if body is None and method in ("GET", "HEAD") and not self.session.proxies:
            response = self._send_direct(method, url, headers, stream, timeout)
            if response is not None:
                return response
        return self.session.request(
            method,
            url,
            headers=headers,
            data=body.open() if body else None,
            stream=stream,
            timeout=timeout,
            verify=self.verify,
            allow_redirects=method in ("GET", "HEAD"),
        )

    def _send_direct(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        stream: bool,
        timeout: tuple[float, float],
    ) -> requests.Response | None:
        """``method url`` on a pooled keep-alive connection, as a requests Response (the
        exceptions are requests' too); ``None`` for a redirect, which requests follows
        (it drops credentials when the redirect leaves the host)."""
        merged = CaseInsensitiveDict(self.session.headers)
        merged.update(headers)
        try:
            raw = self._direct_pool().urlopen(
                method,
                url,
                headers=dict(merged),
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
                timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            )
        except urllib3.exceptions.MaxRetryError as err:
            raise _requests_error(err.reason or err) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise _requests_error(err) from None
        if 300 <= raw.status < 400 and raw.get_redirect_location():
            raw.drain_conn()
            raw.release_conn()
            return None
        response = requests.Response()
        response.status_code = raw.status
        response.headers = CaseInsensitiveDict(raw.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = raw
        response.reason = raw.reason or ""
        response.url = url
        if not stream:
            try:
                _ = response.content  # read now and hand the connection back, as requests does
            except requests.RequestException:
                response.close()
                raise
        return response

    def _direct_pool(self) -> urllib3.PoolManager:
        with self._lock:
            if self._pool is None:
                options: dict[str, Any] = {"num_pools": 4, "maxsize": 32, "block": False}
                if self.verify is False:
                    options.update(cert_reqs="CERT_NONE", assert_hostname=False)
                else:
                    options["cert_reqs"] = "CERT_REQUIRED"
                    bundle = self.verify if isinstance(self.verify, str) else certifi.where()
                    options["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
                self._pool = wallclock.watched(urllib3.PoolManager(**options))
            return self._pool

    def _sleep(self, seconds: float, deadline: Deadline, what: str) -> None:
        if seconds >= deadline.remaining():
            raise DeadlineExceeded(f"{what}: deadline exceeded while waiting to retry")
        time.sleep(seconds)

    def _error(self, response: requests.Response, what: str, *, cred_used: bool) -> RegistryError:
        status = response.status_code
        detail = _registry_message(response)
        suffix = f": {detail}" if detail else ""
        response.close()
        if status == 401:
            cred = self._credential_for_registry()
            if cred:
                return AuthenticationError(
                    f"{what}: registry {self.registry} rejected the credentials for user {cred.username!r} "
                    f"(HTTP 401{suffix})",
                    401,
                )
            return AuthenticationError(
                f"{what}: registry {self.registry} requires authentication (HTTP 401{suffix})", 401
            )
        if status == 403:
            return AccessDenied(
                f"{what}: access denied by registry {self.registry} (HTTP 403{suffix})", 403
            )
        if status == 404:
            return NotFound(f"{what}: not found (HTTP 404{suffix})", 404)
        reason = response.reason or ""
        return RegistryError(
            f"{what}: registry {self.registry} answered HTTP {status} {reason}{suffix}".rstrip(),
            status,
        )

    def has_referrers_api(self, repository: str) -> bool | None:
        return self._referrers_api.get(repository)

    def note_referrers_api(self, repository: str, supported: bool) -> None:
        self._referrers_api[repository] = supported


def _requests_error(err: BaseException) -> requests.RequestException:
    """The requests exception for a urllib3 failure, as requests' adapter would raise it."""
    if isinstance(err, urllib3.exceptions.SSLError):
        return requests.exceptions.SSLError(err)
    if isinstance(err, urllib3.exceptions.ReadTimeoutError):
        return requests.exceptions.ReadTimeout(err)
    if isinstance(err, urllib3.exceptions.ConnectTimeoutError) and not isinstance(
        err, urllib3.exceptions.NewConnectionError
    ):
        return requests.exceptions.ConnectTimeout(err)
    return requests.ConnectionError(err)


def _short(err: BaseException) -> str:
    text = str(err)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if match:
        return match.group(1).strip()
    if "Read timed out" in text:
        return "read timed out"
    return text.splitlines()[0][:200] if text else type(err).__name__


class _TimedResponse(requests.Response):
    """A response whose exchange (:mod:`attest.oci.exchange`) ends when it is closed."""

    exchange: wallclock.Exchange

    @classmethod
    def adopt(cls, response: requests.Response, exchange: wallclock.Exchange) -> _TimedResponse:
        timed = cls.__new__(cls)
        timed.__dict__.update(response.__dict__)
        timed.exchange = exchange
        return timed

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.exchange.finish()


def _check_cut_off(response: requests.Response, what: str) -> None:
    """Raise :class:`DeadlineExceeded` if the deadline cut this response's body off: what
    was read of it is never a result (a cut can look like a clean end of the body)."""
    exchange = getattr(response, "exchange", None)
    if exchange is not None and exchange.cut_off:
        raise DeadlineExceeded(f"{what}: download did not finish before the deadline")


class ResponseStream:
    """A file-like view of a streamed response body that closes the response."""

    def __init__(self, response: requests.Response, what: str) -> None:
        self._response = response
        self._what = what

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._response.raw.read(n if n is not None and n >= 0 else None)
        except (requests.RequestException, OSError, Exception) as err:  # urllib3 errors vary
            if isinstance(err, DigestMismatch):
                raise
            _check_cut_off(self._response, self._what)
            raise RegistryError(f"{self._what}: download failed: {_short(err)}") from None
        _check_cut_off(self._response, self._what)
        return data

    def close(self) -> None:
        self._response.close()


def read_limited(response: requests.Response, limit: int, what: str) -> bytes:
    """A (manifest) response body of at most ``limit`` bytes, read whole within the deadline."""
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(65536):
            total += len(chunk)
            if total > limit:
                raise RegistryError(f"{what}: manifest is larger than {limit} bytes")
            chunks.append(chunk)
    except RegistryError:
        raise
    except Exception as err:  # requests' and urllib3's errors vary
        _check_cut_off(response, what)
        raise RegistryError(f"{what}: download failed: {_short(err)}") from None
    finally:
        response.close()
    _check_cut_off(response, what)
    return b"".join(chunks)
