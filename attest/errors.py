"""The error hierarchy: every failure a user can cause or meet has one class here.

Each error carries a single human-readable line (``str(err)``) naming the thing
that failed and why.  The CLI prints that line as ``attest: error: …`` and exits
non-zero; tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

# The exit codes of every ``attest`` command (README "Exit codes"); defined here only.
EXIT_OK = 0
EXIT_FAILED = 1
"""Verification failed or a policy is not satisfied (also: signing or content failures)."""
EXIT_USAGE = 2
"""Bad input: the command line, a file, a key, a reference or a policy is unusable."""
EXIT_NOT_COVERED = 3
"""``decisions verify``: every chain intact, but the newest records are not yet signed."""
EXIT_REGISTRY = 4
"""A registry failed (unreachable, timed out, refused the credentials, or has no such thing), or
the transparency log could not be reached or failed (a retry may help)."""
EXIT_INTERNAL = 70
"""A bug in attest (sysexits' EX_SOFTWARE)."""
EXIT_INTERRUPTED = 130


class AttestError(Exception):
    """Base class for every expected failure; ``str()`` is the one-line message."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()) if "\n" in message else message)

    @property
    def message(self) -> str:
        return str(self)


class UsageError(AttestError):
    """The command line or an input file is unusable."""

    exit_code = EXIT_USAGE


class InvalidReference(AttestError):
    """An image reference could not be parsed."""

    exit_code = EXIT_USAGE


class LayoutError(AttestError):
    """An OCI image layout or archive is missing, truncated or corrupt."""


class ManifestError(AttestError):
    """A manifest or index is malformed or of an unsupported type."""


class DigestMismatch(AttestError):
    """Downloaded content does not hash to the digest that names it."""


class RegistryError(AttestError):
    """A registry request failed (transport, HTTP status or protocol)."""

    exit_code = EXIT_REGISTRY

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(RegistryError):
    """The registry wants credentials we do not have, or rejected them (401)."""


class AccessDenied(RegistryError):
    """The registry refused the request for these credentials (403)."""


class NotFound(RegistryError):
    """The registry or layout has no such manifest, blob or repository."""


class DeadlineExceeded(RegistryError):
    """The caller's deadline ran out before the work finished."""


class PlatformNotFound(AttestError):
    """An image index has no manifest for the requested platform."""


class KeyFileError(AttestError):
    """A key file is unreadable, corrupt, of an unsupported kind, or its password is wrong."""

    exit_code = EXIT_USAGE


class SigningError(AttestError):
    """Signing an image or storing its signature failed."""


class ServiceUnavailable(SigningError):
    """The transparency log could not be reached, did not answer in time, or failed (5xx):
    a network failure like a registry's, so the same exit code (a CI step may retry)."""

    exit_code = EXIT_REGISTRY


class VerificationFailed(AttestError):
    """No signature (or attestation) satisfied the verification policy."""


class SignatureFormatError(AttestError):
    """A signature, DSSE envelope, signed payload or bundle is malformed."""


class AttestationError(AttestError):
    """An in-toto Statement or attestation is malformed, or does not match its image."""


class PipelineError(AttestError):
    """A step of ``attest pipeline`` failed (the message names the step)."""


class PolicyError(AttestError):
    """A policy bundle failed to load, compile or evaluate; callers fail closed."""

    exit_code = EXIT_USAGE


class CorruptLayer(AttestError):
    """An image layer is not a readable (compressed) tar stream."""
