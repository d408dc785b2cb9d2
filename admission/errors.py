"""The webhook's errors: each one line naming the thing and the cause, as the CLI prints it.

They extend :class:`attest.errors.AttestError` (the CLI's one-line reporting and exit
codes), and live here because only the webhook raises them: the CI side of attest
never meets an admission configuration, an AdmissionReview or a decision database.
"""

from __future__ import annotations

from attest.errors import AttestError, UsageError


class ConfigError(UsageError):
    """The admission configuration is unusable (the message names the field)."""


class BadAdmissionReview(UsageError):
    """An AdmissionReview (or a manifest given for review) is malformed; the message says how."""


class DecisionStoreError(AttestError):
    """The decision database is unreachable, unwritable, or not a decision database."""


class ReviewError(BadAdmissionReview):
    """A malformed review; ``uid``/``api_version`` are set when they could be read, so the
    answer can still be a denial the API server shows."""

    def __init__(self, message: str, uid: str | None = None, api_version: str | None = None):
        super().__init__(message)
        self.uid = uid
        self.api_version = api_version


class Unstable(ConfigError):
    """The configuration's files changed while they were being loaded."""
