"""The Kubernetes validating admission webhook (Flask), built on the attest library."""

from __future__ import annotations
