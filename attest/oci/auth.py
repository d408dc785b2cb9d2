"""Registry credentials from Docker's ``config.json`` and the token (bearer) flow.

Credentials are looked up like Docker and cosign do: ``$DOCKER_CONFIG/config.json``
or ``~/.docker/config.json`` (plus podman's ``$REGISTRY_AUTH_FILE`` /
``$XDG_RUNTIME_DIR/containers/auth.json``), entries keyed by host with or
without a scheme, ``auth`` (base64 ``user:password``), ``username``/``password``,
``identitytoken`` (an OAuth2 refresh token), and ``credHelpers``/``credsStore``
helper programs.  Secrets never appear in messages or logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest.errors import AuthenticationError, UsageError

_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credential:
    """A username and secret for one registry; ``identity_token`` is an OAuth2 refresh token."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def _decode_auth(value: str, where: str) -> Credential:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise UsageError(f"{where}: 'auth' is not base64 of user:password") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise UsageError(f"{where}: 'auth' does not contain user:password")
    return Credential(username, password)


def _host_of(key: str) -> str:
    key = re.sub(r"^[a-z]+://", "", key)
    return key.split("/", 1)[0]


@dataclass
class CredentialStore:
    """Credentials from one or more Docker-style config files."""

    auths: dict[str, dict[str, Any]] = field(default_factory=dict)
    cred_helpers: dict[str, str] = field(default_factory=dict)
    creds_store: str | None = None
    sources: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, paths: list[str] | None = None) -> CredentialStore:
        """Load the given config files, or the default locations when none are given."""
        store = cls()
        candidates = list(paths or [])
        if not candidates:
            for env in ("REGISTRY_AUTH_FILE",):
                if os.environ.get(env):
                    candidates.append(os.environ[env])
            runtime = os.environ.get("XDG_RUNTIME_DIR")
            if runtime and Path(runtime, "containers", "auth.json").is_file():
                candidates.append(str(Path(runtime, "containers", "auth.json")))
            docker_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
            candidates.append(os.path.join(docker_dir, "config.json"))
        for path in candidates:
            store._merge(path, required=bool(paths))
        return store

    def _merge(self, path: str, *, required: bool) -> None:
        file = Path(path)
        if file.is_dir():
            file = file / "config.json"
        if not file.is_file():
            if required:
                raise UsageError(f"registry auth file {path}: no such file")
            return
        try:
            data = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UsageError(f"registry auth file {file}: cannot be read as JSON ({err})") from None
        if not isinstance(data, dict):
            raise UsageError(f"registry auth file {file}: not a JSON object")
        for key, entry in (data.get("auths") or {}).items():
            if isinstance(entry, dict):
                self.auths.setdefault(_host_of(key), {**entry, "_source": str(file)})
        for key, helper in (data.get("credHelpers") or {}).items():
            self.cred_helpers.setdefault(_host_of(key), helper)
        self.creds_store = self.creds_store or data.get("credsStore")
        self.sources.append(str(file))

    def lookup(self, registry: str) -> Credential | None:
        """Credentials for ``registry`` (a host[:port]), or ``None`` for anonymous access."""
        keys = [registry] + (list(_HUB_KEYS) if registry in _HUB_KEYS else [])
        for key in keys:
            host = _host_of(key)
            if host in self.cred_helpers:
                return _run_helper(self.cred_helpers[host], key)
            entry = self.auths.get(host)
            if entry:
                where = f"registry auth file {entry['_source']} entry {host!r}"
                if entry.get("identitytoken"):
                    cred = _decode_auth(entry["auth"], where) if entry.get("auth") else Credential()
                    return Credential(cred.username or "<token>", "", entry["identitytoken"])
                if entry.get("auth"):
                    return _decode_auth(entry["auth"], where)
                if entry.get("username"):
                    return Credential(entry["username"], entry.get("password", ""))
        if self.creds_store:
            return _run_helper(self.creds_store, registry)
        return None


def _run_helper(helper: str, server: str) -> Credential | None:
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise AuthenticationError(
            f"credential helper {program} for {server} is not installed"
        ) from None
    except subprocess.TimeoutExpired:
        raise AuthenticationError(f"credential helper {program} for {server} timed out") from None
    if proc.returncode != 0:
        if b"credentials not found" in proc.stdout + proc.stderr:
            return None
        raise AuthenticationError(f"credential helper {program} failed for {server}")
    try:
        payload = json.loads(proc.stdout)
        username, secret = payload["Username"], payload["Secret"]
    except (ValueError, KeyError, TypeError):
        raise AuthenticationError(
            f"credential helper {program} gave unreadable output for {server}"
        ) from None
    if username == "<token>":
        return Credential(username, "", secret)
    return Credential(username, secret)


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str
    params: dict[str, str]


_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> Challenge:
    """Parse ``Bearer realm="…",service="…",scope="repository:a:pull,push"``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)
