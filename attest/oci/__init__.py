"""OCI image access: references, manifests, image layouts and registries."""

from __future__ import annotations
