"""Where images live in every workload kind the webhook judges.

Pods carry containers, initContainers and ephemeralContainers in their spec;
the controllers (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job,
ReplicationController) carry a pod template, and a CronJob a job template
holding one.  Every container of every list is reported, in order, with the
path where its image was found; a shape that is not what the kind requires is
a :class:`~admission.errors.BadAdmissionReview`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from admission.errors import BadAdmissionReview

_TEMPLATE = ("spec", "template", "spec")
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": _TEMPLATE,
    "ReplicaSet": _TEMPLATE,
    "StatefulSet": _TEMPLATE,
    "DaemonSet": _TEMPLATE,
    "Job": _TEMPLATE,
    "ReplicationController": _TEMPLATE,
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = (
    ("containers", "container"),
    ("initContainers", "initContainer"),
    ("ephemeralContainers", "ephemeralContainer"),
)
MAX_CONTAINERS = 500


@dataclass(frozen=True)
class ContainerImage:
    """One container's image as written, with where it was found."""

    image: str
    container: str
    type: str  # container | initContainer | ephemeralContainer
    path: str  # e.g. spec.template.spec.containers[0].image

    def to_dict(self) -> dict[str, str]:
        return {"name": self.container, "type": self.type, "path": self.path}


def is_workload(kind: str) -> bool:
    """Whether ``kind`` runs containers the webhook judges."""
    return kind in POD_SPEC_PATHS


def pod_spec(kind: str, obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The pod spec of a workload object and its dotted path."""
    node: Any = obj
    walked: list[str] = []
    for key in POD_SPEC_PATHS[kind]:
        walked.append(key)
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise BadAdmissionReview(f"{kind} object has no {'.'.join(walked)} object")
    return node, ".".join(walked)


def workload_images(kind: str, obj: dict[str, Any]) -> list[ContainerImage]:
    """Every container image of a workload object, in spec order (duplicates kept)."""
    if not is_workload(kind):
        return []
    spec, base = pod_spec(kind, obj)
    found: list[ContainerImage] = []
    for field_name, container_type in CONTAINER_LISTS:
        containers = spec.get(field_name)
        if containers is None:
            continue
        if not isinstance(containers, list):
            raise BadAdmissionReview(f"{kind} {base}.{field_name} must be a list")
        for index, container in enumerate(containers):
            where = f"{base}.{field_name}[{index}]"
            if not isinstance(container, dict):
                raise BadAdmissionReview(f"{kind} {where} must be an object")
            image = container.get("image")
            if not isinstance(image, str) or not image:
                raise BadAdmissionReview(f"{kind} {where} has no image")
            found.append(
                ContainerImage(
                    image, str(container.get("name") or ""), container_type, f"{where}.image"
                )
            )
            if len(found) > MAX_CONTAINERS:
                raise BadAdmissionReview(f"{kind} has more than {MAX_CONTAINERS} containers")
    if not any(c.type == "container" for c in found):
        raise BadAdmissionReview(f"{kind} {base}.containers is missing or empty")
    return found
