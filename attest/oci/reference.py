"""Image references: parse and normalise them the way Docker and cosign do.

Three kinds of target are understood:

* registry references (``nginx``, ``localhost:5000/a/b:tag``,
  ``ghcr.io/o/r@sha256:…``, tag and digest together), normalised like
  go-containerregistry: Docker Hub is ``index.docker.io`` and single-component
  Hub names live under ``library/``.  Beyond that the registry host is made
  canonical (:func:`canonical_registry`), so that every spelling of one
  repository has one ``name``: the identity that policies, caches and decision
  records use;
* local OCI images with skopeo's transports: ``oci:PATH[:TAG]`` (an image
  layout directory) and ``oci-archive:PATH.tar[:TAG]`` (a tar of one);
  either may name a manifest by digest as ``oci:PATH@sha256:…``;
* ``dir:PATH``, a plain directory (an unpacked root filesystem or a project),
  which only the SBOM generator accepts.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from attest.errors import InvalidReference

DOCKER_HUB = "index.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*\Z")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"(?P<algorithm>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)\Z")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_MAX_NAME_LENGTH = 255
# The port the registry client uses when none is given: it speaks plain HTTP to
# loopback registries and HTTPS to every other (attest.oci.transport.RegistryClient).
_HTTP_DEFAULT_PORT = 80
_HTTPS_DEFAULT_PORT = 443


def validate_digest(digest: str, *, what: str = "digest") -> str:
    """Return ``digest`` if it is a well-formed ``algorithm:hex`` digest, else raise."""
    match = _DIGEST.match(digest)
    if not match:
        raise InvalidReference(f"{what} {digest!r} is not of the form algorithm:hex")
    algorithm, hex_part = match.group("algorithm"), match.group("hex")
    expected = _DIGEST_LENGTHS.get(algorithm)
    if expected is None:
        raise InvalidReference(f"{what} {digest!r} uses unsupported algorithm {algorithm!r}")
    if len(hex_part) != expected or not re.fullmatch(r"[0-9a-f]+", hex_part):
        raise InvalidReference(
            f"{what} {digest!r} must have {expected} lowercase hex characters after '{algorithm}:'"
        )
    return digest


@dataclass(frozen=True)
class ImageReference:
    """A normalised registry reference; ``digest`` wins over ``tag`` when both are set."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest: the image's canonical identity
        (every spelling of the same repository gives the same name)."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest if known, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> ImageReference:
        """The same image pinned to ``digest`` (the tag is kept for display)."""
        return ImageReference(self.registry, self.repository, self.tag, validate_digest(digest))

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class LayoutReference:
    """An image in an OCI image layout directory (``oci:``) or a tar of one (``oci-archive:``)."""

    transport: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def is_archive(self) -> bool:
        return self.transport == "oci-archive"

    def with_digest(self, digest: str) -> LayoutReference:
        return LayoutReference(self.transport, self.path, self.tag, validate_digest(digest))

    @property
    def name(self) -> str:
        return f"{self.transport}:{self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.digest:
            text += f"@{self.digest}"
        if self.tag:
            text += f":{self.tag}"
        return text


@dataclass(frozen=True)
class DirectoryReference:
    """A plain directory on disk (``dir:PATH``): a root filesystem or a project."""

    path: str

    def __str__(self) -> str:
        return f"dir:{self.path}"


Target = ImageReference | LayoutReference | DirectoryReference


def is_loopback_host(registry: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``[::1]``, with or without a port."""
    host = registry
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    host = host.lower()
    if host == "localhost" or host == "::1":
        return True
    parts = host.split(".")
    return (
        len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)
    )


def canonical_registry(host: str) -> str:
    """The one spelling of a registry ``host[:port]``, the first part of every image name.

    Host names are case-insensitive (RFC 4343), so they are lower-cased; a port is
    written without leading zeros, and dropped when it is the one the registry
    client would use anyway: 443 (HTTPS) for every registry, 80 for loopback ones,
    which are spoken to in plain HTTP.  Any other port names another server and is
    kept (``ghcr.io:80`` is not ``ghcr.io``).  IPv6 literals are compressed
    (``[0:0::1]`` is ``[::1]``) and Docker Hub's aliases are ``index.docker.io``.
    Raises :class:`InvalidReference` for a malformed host or port.
    """
    if not _DOMAIN.match(host):
        raise InvalidReference(f"invalid registry host {host!r} (expected host[:port])")
    if host.startswith("["):
        end = host.index("]")
        name, port_text = host[: end + 1], host[end + 2 :]
        try:
            name = f"[{ipaddress.IPv6Address(name[1:-1]).compressed}]"
        except ValueError:
            raise InvalidReference(f"invalid registry host {host!r}: not an IPv6 address") from None
    else:
        name, _, port_text = host.partition(":")
        name = name.lower()
    if port_text:
        port = int(port_text)
        if not 0 < port < 65536:
            raise InvalidReference(f"invalid registry host {host!r}: port {port} is not 1 to 65535")
        default = _HTTP_DEFAULT_PORT if is_loopback_host(name) else _HTTPS_DEFAULT_PORT
        if port != default:
            name = f"{name}:{port}"
    return DOCKER_HUB if name in _DOCKER_HUB_ALIASES else name


def is_registry_host(first: str) -> bool:
    """Whether the first ``/``-separated part of a name is a registry host: it has a ``.``
    or ``:``, is ``localhost`` or an IPv6 literal (else it is a Docker Hub namespace)."""
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and is_registry_host(first):
        return first, rest
    return DOCKER_HUB, name


def parse_image_reference(text: str) -> ImageReference:
    """Parse and normalise a registry reference, e.g. ``nginx`` or ``host:5000/a/b:t@sha256:…``."""
    original = text
    if not text or text != text.strip():
        raise InvalidReference(f"image reference {original!r} is empty or has surrounding spaces")
    if "://" in text:
        raise InvalidReference(
            f"image reference {original!r} must not include a URL scheme (drop '{text.split('://')[0]}://')"
        )
    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
        validate_digest(digest, what=f"digest in image reference {original!r}:")
    domain, remainder = _split_domain(text)
    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference(
                f"image reference {original!r} has an invalid tag {tag!r} "
                "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
            )
    try:
        domain = canonical_registry(domain)
    except InvalidReference as err:
        raise InvalidReference(f"image reference {original!r}: {err}") from None
    if domain == DOCKER_HUB and remainder and "/" not in remainder:
        remainder = f"library/{remainder}"
    if not remainder:
        raise InvalidReference(f"image reference {original!r} has no repository name")
    for component in remainder.split("/"):
        if not _PATH_COMPONENT.match(component):
            if component.lower() != component and _PATH_COMPONENT.match(component.lower()):
                raise InvalidReference(
                    f"image reference {original!r}: repository name must be lowercase ({component!r})"
                )
            raise InvalidReference(
                f"image reference {original!r} has an invalid repository component {component!r}"
            )
    if len(f"{domain}/{remainder}") > _MAX_NAME_LENGTH:
        raise InvalidReference(
            f"image reference {original!r} is longer than {_MAX_NAME_LENGTH} characters"
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry=domain, repository=remainder, tag=tag, digest=digest)


# As in containers/image, the path ends at the first ':' (which starts the tag).
_LOCAL_REF = re.compile(
    r"(?P<path>[^:@]+)(?:@(?P<digest>[a-z0-9]+:[0-9a-fA-F]+))?(?::(?P<tag>.*))?\Z"
)


def _parse_layout(transport: str, spec: str, original: str) -> LayoutReference:
    if spec.startswith("@") or not spec:
        raise InvalidReference(f"image reference {original!r} has no path after '{transport}:'")
    match = _LOCAL_REF.match(spec)
    if not match or not match.group("path"):
        raise InvalidReference(f"image reference {original!r} is not {transport}:PATH[:TAG]")
    path, digest, tag = match.group("path"), match.group("digest"), match.group("tag")
    if tag is not None and not tag:
        raise InvalidReference(f"image reference {original!r} has an empty tag after ':'")
    if tag is not None and not re.fullmatch(r"[A-Za-z0-9._:/@+-]+", tag):
        raise InvalidReference(f"image reference {original!r} has an invalid tag {tag!r}")
    if digest:
        validate_digest(digest, what=f"digest in image reference {original!r}:")
    return LayoutReference(transport=transport, path=path, tag=tag, digest=digest)


def parse_target(text: str, *, allow_dir: bool = False) -> Target:
    """Parse any image target: a registry reference, ``oci:``, ``oci-archive:`` or ``dir:``."""
    for transport in ("oci-archive", "oci"):
        if text.startswith(f"{transport}:"):
            return _parse_layout(transport, text[len(transport) + 1 :], text)
    if text.startswith("dir:"):
        if not allow_dir:
            raise InvalidReference(f"{text!r}: a dir: target is only accepted by 'attest sbom'")
        if not text[4:]:
            raise InvalidReference(f"image reference {text!r} has no path after 'dir:'")
        return DirectoryReference(path=text[4:])
    if text.startswith("docker://"):
        text = text[len("docker://") :]
    return parse_image_reference(text)
