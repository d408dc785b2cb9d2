"""AdmissionReview in and out: parse ``admission.k8s.io`` v1/v1beta1 requests, build responses.

Parsing is strict and every failure is a :class:`~admission.errors.BadAdmissionReview`
whose message says what is wrong; when the request's ``uid`` could be read it is
kept on the error, so the caller can still answer that request (denied, code 400)
instead of failing the HTTP exchange.  The response always uses the apiVersion
of the request, as the API server requires.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from admission.errors import BadAdmissionReview, ReviewError

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
MAX_MESSAGE_CHARS = 4000
MAX_WARNINGS = 20
MAX_WARNING_CHARS = 256
# Kubernetes objects nest a few dozen levels at most; a deeper document is an attack on the
# parser (Python's json recursion limit) or on everything that walks it afterwards.
MAX_DEPTH = 100


@dataclass(frozen=True)
class GroupVersionKind:
    group: str
    version: str
    kind: str

    def to_dict(self) -> dict[str, str]:
        return {"group": self.group, "version": self.version, "kind": self.kind}


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of ``request`` the webhook uses (``object``/``old_object`` as sent)."""

    uid: str
    kind: GroupVersionKind
    operation: str
    namespace: str = ""
    name: str = ""
    resource: str = ""
    sub_resource: str = ""
    username: str = ""
    groups: tuple[str, ...] = ()
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None
    dry_run: bool = False
    api_version: str = API_VERSIONS[0]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        value = self.metadata.get("labels")
        return dict(value) if isinstance(value, dict) else {}

    @property
    def annotations(self) -> dict[str, str]:
        value = self.metadata.get("annotations")
        return dict(value) if isinstance(value, dict) else {}


def _text(value: Any, what: str, uid: str | None, api: str | None, *, required: bool) -> str:
    if value is None or value == "":
        if required:
            raise ReviewError(f"AdmissionReview request.{what} is missing", uid, api)
        return ""
    if not isinstance(value, str):
        raise ReviewError(
            f"AdmissionReview request.{what} must be a string, not {type(value).__name__}",
            uid,
            api,
        )
    return value


def parse_review(body: bytes | str | dict[str, Any]) -> AdmissionRequest:
    """Parse an AdmissionReview document (bytes, text, or already decoded JSON)."""
    if isinstance(body, dict):
        document: Any = body
    else:
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ReviewError(f"AdmissionReview body is not JSON ({err})") from None
        except RecursionError:
            raise ReviewError(
                f"AdmissionReview body nests deeper than {MAX_DEPTH} levels"
            ) from None
    if _deeper_than(document, MAX_DEPTH):
        request = document.get("request") if isinstance(document, dict) else None
        uid = request.get("uid") if isinstance(request, dict) else None
        api = document.get("apiVersion") if isinstance(document, dict) else None
        raise ReviewError(
            f"AdmissionReview body nests deeper than {MAX_DEPTH} levels",
            uid if isinstance(uid, str) and uid else None,
            api if api in API_VERSIONS else None,
        )
    if not isinstance(document, dict):
        raise ReviewError(
            f"AdmissionReview body must be a JSON object, not {json.dumps(document)[:40]}"
        )
    api = document.get("apiVersion")
    if document.get("kind") != "AdmissionReview":
        raise ReviewError(
            f"body kind is {document.get('kind')!r}, expected 'AdmissionReview'", None, None
        )
    if api not in API_VERSIONS:
        raise ReviewError(
            f"AdmissionReview apiVersion {api!r} is not supported (expected {' or '.join(API_VERSIONS)})"
        )
    request = document.get("request")
    if not isinstance(request, dict):
        what = "missing" if request is None else f"a {type(request).__name__}, not an object"
        raise ReviewError(f"AdmissionReview request is {what}", None, api)
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("AdmissionReview request.uid is missing", None, api)
    kind = request.get("kind")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str) or not kind["kind"]:
        raise ReviewError("AdmissionReview request.kind.kind is missing", uid, api)
    operation = _text(request.get("operation"), "operation", uid, api, required=True)
    if operation not in OPERATIONS:
        raise ReviewError(f"AdmissionReview request.operation {operation!r} is unknown", uid, api)
    obj = request.get("object")
    old = request.get("oldObject")
    if operation in ("CREATE", "UPDATE") and not isinstance(obj, dict):
        raise ReviewError(
            f"AdmissionReview request.object is missing for a {operation} of {kind['kind']}",
            uid,
            api,
        )
    user = request.get("userInfo")
    user = user if isinstance(user, dict) else {}
    groups = user.get("groups")
    groups = groups if isinstance(groups, list) else []
    resource = request.get("resource")
    resource = resource if isinstance(resource, dict) else {}
    obj = obj if isinstance(obj, dict) else None
    metadata = (obj or {}).get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = _text(request.get("name"), "name", uid, api, required=False) or str(
        metadata.get("name") or metadata.get("generateName") or ""
    )
    return AdmissionRequest(
        uid=uid,
        kind=GroupVersionKind(
            str(kind.get("group") or ""), str(kind.get("version") or ""), kind["kind"]
        ),
        operation=operation,
        namespace=_text(request.get("namespace"), "namespace", uid, api, required=False)
        or str(metadata.get("namespace") or ""),
        name=name,
        resource=str(resource.get("resource") or ""),
        sub_resource=_text(request.get("subResource"), "subResource", uid, api, required=False),
        username=str(user.get("username") or ""),
        groups=tuple(str(g) for g in groups),
        object=obj,
        old_object=old if operation == "UPDATE" and isinstance(old, dict) else None,
        dry_run=bool(request.get("dryRun")),
        api_version=api,
        metadata=metadata,
    )


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether JSON ``document`` nests more than ``limit`` objects or arrays (iteratively)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, outer = stack.pop()
        if isinstance(node, dict | list):
            depth = outer + 1
            if depth > limit:
                return True
            stack.extend(
                (child, depth) for child in (node.values() if isinstance(node, dict) else node)
            )
    return False


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def review_response(
    uid: str,
    allowed: bool,
    *,
    message: str = "",
    code: int | None = None,
    warnings: list[str] | tuple[str, ...] = (),
    api_version: str = API_VERSIONS[0],
) -> dict[str, Any]:
    """An AdmissionReview response document answering request ``uid``."""
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed or message:
        response["status"] = {
            "code": code or (200 if allowed else 403),
            "message": _clip(message, MAX_MESSAGE_CHARS),
        }
        if not allowed:
            response["status"]["reason"] = "BadRequest" if code == 400 else "Forbidden"
    if warnings:
        response["warnings"] = [_clip(w, MAX_WARNING_CHARS) for w in list(warnings)[:MAX_WARNINGS]]
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def _manifest_request(document: dict[str, Any], index: int, where: str) -> AdmissionRequest:
    kind = document.get("kind")
    api = document.get("apiVersion")
    if not isinstance(kind, str) or not kind or not isinstance(api, str) or not api:
        raise BadAdmissionReview(f"{where}: document {index + 1} has no kind or apiVersion")
    group, _, version = api.rpartition("/")
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return AdmissionRequest(
        uid=f"offline-{index + 1}",
        kind=GroupVersionKind(group, version, kind),
        operation="CREATE",
        namespace=str(metadata.get("namespace") or "default"),
        name=str(metadata.get("name") or metadata.get("generateName") or ""),
        username="attest-cli",
        object=document,
        metadata=metadata,
    )


def load_review_input(text: str, where: str) -> list[AdmissionRequest]:
    """Requests from a file: AdmissionReviews, or manifests (multi-document YAML, ``List``s)."""
    import yaml

    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise BadAdmissionReview(
            f"{where}: not valid YAML or JSON ({' '.join(str(err).split())})"
        ) from None
    if not documents:
        raise BadAdmissionReview(f"{where}: no documents")
    requests: list[AdmissionRequest] = []
    for document in documents:
        if not isinstance(document, dict):
            raise BadAdmissionReview(f"{where}: document {len(requests) + 1} is not a mapping")
        if document.get("kind") == "AdmissionReview":
            try:
                requests.append(parse_review(document))
            except ReviewError as err:
                raise BadAdmissionReview(f"{where}: {err}") from None
            continue
        items = document.get("items") if document.get("kind") == "List" else [document]
        if not isinstance(items, list):
            raise BadAdmissionReview(f"{where}: List has no items")
        for item in items:
            if not isinstance(item, dict):
                raise BadAdmissionReview(f"{where}: document {len(requests) + 1} is not a mapping")
            requests.append(_manifest_request(item, len(requests), where))
    return requests
