"""The webhook's decision, offline: for manifests in a pipeline or for AppSec reproducing one.

:func:`review_file` judges every workload of a file (manifests, multi-document
YAML, ``List``s, or AdmissionReviews) with the same flow, configuration and
policies as the server.  It is the library call behind ``attest admission
review`` and the demo's admission step.
"""

from __future__ import annotations

from pathlib import Path

from admission.decide import Admission, Verifier
from admission.errors import BadAdmissionReview
from admission.review import load_review_input
from admission.verdict import Decision

MAX_INPUT_BYTES = 16 * 1024 * 1024


def review_file(
    path: str,
    *,
    config_path: str | None = None,
    verifier: Verifier | None = None,
) -> list[Decision]:
    """One :class:`Decision` per workload in ``path`` (built-in default policy without a config)."""
    try:
        if Path(path).stat().st_size > MAX_INPUT_BYTES:
            raise BadAdmissionReview(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadAdmissionReview(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise BadAdmissionReview(f"{path}: {err.strerror}") from None
    requests = load_review_input(text, path)
    service = Admission(config_path, verifier=verifier, reload_interval=float("inf"))
    try:
        return [service.decide(request) for request in requests]
    finally:
        service.close()
