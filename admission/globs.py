"""Image globs: their canonical form and their matchers.

Image names are canonical (:func:`attest.oci.reference.canonical_registry`), so a
glob is normalised the same way before it is matched; image policies, signed
exceptions and ClusterImagePolicies all match names with these.
"""

from __future__ import annotations

import functools
import re

from admission.errors import ConfigError
from attest.errors import InvalidReference
from attest.oci.reference import DOCKER_HUB, canonical_registry, is_registry_host


@functools.lru_cache(maxsize=4096)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` matches anything, ``*`` anything but ``/``, ``?`` one character but ``/``.

    Cached: every admission request matches each image against the policies' globs."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts) + r"\Z")


_WILDCARDS = ("*", "?")
_GLOB_PATH = re.compile(r"[a-z0-9._\-/*?]+\Z")


def canonical_image_glob(glob: str) -> str:
    """An image glob in the canonical form of the names it is matched against.

    Image names are canonical (:func:`attest.oci.reference.canonical_registry`), so a
    glob is normalised the same way: ``GHCR.IO/acme/**`` is ``ghcr.io/acme/**``,
    ``ghcr.io:443/acme/*`` is ``ghcr.io/acme/*``, ``docker.io/library/nginx`` and
    ``nginx`` are ``index.docker.io/library/nginx``, ``acme/*`` is
    ``index.docker.io/acme/*``.  A first part with wildcards is a pattern over the
    registry host (lower-cased; ``host:*`` also matches the host without a port),
    except ``**`` alone, which matches every image.  A glob that no canonical name
    could ever match is an error rather than a policy that silently applies to
    nothing: a capital letter, tag or digest in the repository part, or a wildcard
    host with an explicit default port (``*.corp:443``, whose names carry no port).
    """
    if glob == "**":
        return glob
    first, slash, rest = glob.partition("/")
    if not slash:  # one component: a Docker Hub library image, as in a reference
        host, path = DOCKER_HUB, f"library/{glob}"
    elif any(w in first for w in _WILDCARDS):
        host, path = first.lower(), rest
        port = host.rpartition(":")[2] if ":" in host and not host.endswith("]") else ""
        if port.isdigit() and int(port) in (80, 443):
            raise ConfigError(
                f"image glob {glob!r}: image names carry no default port (ghcr.io:443 is "
                f"ghcr.io), so a host pattern with :{port} misses them; leave the port out"
            )
    elif is_registry_host(first):
        try:
            host = canonical_registry(first)
        except InvalidReference as err:
            raise ConfigError(f"image glob {glob!r}: {err}") from None
        path = rest
        if host == DOCKER_HUB and "/" not in path and "**" not in path:
            path = f"library/{path}"
    else:
        host, path = DOCKER_HUB, glob
    if not path or not _GLOB_PATH.match(path):
        raise ConfigError(
            f"image glob {glob!r}: the repository part {path!r} can never match an image name "
            "(lower-case letters, digits, '.', '_', '-', '/' and the wildcards '*', '?', '**'; "
            "no tag or digest)"
        )
    return f"{host}/{path}"


@functools.lru_cache(maxsize=4096)
def image_glob_regex(glob: str) -> re.Pattern[str]:
    """The matcher of a canonical image glob: :func:`glob_regex`, except that a host
    pattern ending in ``:*`` also matches the host without a port (its default port)."""
    host, slash, path = glob.partition("/")
    if slash and host.endswith(":*") and "**" not in host:
        optional_port = glob_regex(host[:-2]).pattern.removesuffix(r"\Z") + "(?::[^/]*)?/"
        return re.compile(optional_port + glob_regex(path).pattern)
    return glob_regex(glob)
