"""What ``attest inspect`` reports: digest, media type, platforms, config and layers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attest.oci.access import load_config, resolve_image
from attest.oci.manifest import Index, Manifest, Platform
from attest.oci.reference import ImageReference, LayoutReference
from attest.oci.store import ImageStore


@dataclass(frozen=True)
class LayerInfo:
    digest: str
    size: int
    media_type: str
    diff_id: str | None


@dataclass(frozen=True)
class ImageInfo:
    """An image as ``skopeo inspect`` / ``crane manifest`` would describe it."""

    reference: str
    name: str
    digest: str
    media_type: str
    manifests: list[dict[str, Any]] = field(default_factory=list)
    platform: str | None = None
    manifest_digest: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    layers: list[LayerInfo] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reference": self.reference,
            "name": self.name,
            "digest": self.digest,
            "mediaType": self.media_type,
        }
        if self.manifests:
            out["manifests"] = self.manifests
            out["platform"] = self.platform
            out["manifestDigest"] = self.manifest_digest
        out["config"] = self.config
        out["layers"] = [
            {
                "digest": layer.digest,
                "size": layer.size,
                "mediaType": layer.media_type,
                "diffID": layer.diff_id,
            }
            for layer in self.layers
        ]
        out["size"] = self.size
        if self.annotations:
            out["annotations"] = self.annotations
        return out


def inspect_image(
    store: ImageStore, target: ImageReference | LayoutReference, platform: Platform | None = None
) -> ImageInfo:
    """Resolve ``target`` and describe it."""
    image = resolve_image(store, target, platform)
    manifest = image.manifest.parsed
    assert isinstance(manifest, Manifest)
    config_json = load_config(store, manifest, what=str(target))
    runtime = config_json.get("config") or {}
    diff_ids = (config_json.get("rootfs") or {}).get("diff_ids") or []
    platform_text = "/".join(
        p
        for p in (
            config_json.get("os"),
            config_json.get("architecture"),
            config_json.get("variant"),
        )
        if p
    )
    config = {
        "digest": manifest.config.digest,
        "mediaType": manifest.config.media_type,
        "size": manifest.config.size,
        "created": config_json.get("created"),
        "os": config_json.get("os"),
        "architecture": config_json.get("architecture"),
        "variant": config_json.get("variant"),
        "user": runtime.get("User") or None,
        "env": runtime.get("Env") or [],
        "entrypoint": runtime.get("Entrypoint"),
        "cmd": runtime.get("Cmd"),
        "workingDir": runtime.get("WorkingDir") or None,
        "exposedPorts": sorted((runtime.get("ExposedPorts") or {}).keys()),
        "labels": runtime.get("Labels") or {},
    }
    manifests: list[dict[str, Any]] = []
    if isinstance(image.top.parsed, Index):
        for entry in image.top.parsed.manifests:
            manifests.append(
                {
                    "digest": entry.digest,
                    "mediaType": entry.media_type,
                    "size": entry.size,
                    "platform": str(entry.platform) if entry.platform else None,
                }
            )
    return ImageInfo(
        reference=str(target),
        name=target.name,
        digest=image.digest,
        media_type=image.top.media_type,
        manifests=manifests,
        platform=str(image.platform) if image.platform else (platform_text or None),
        manifest_digest=image.manifest.digest,
        config=config,
        layers=[
            LayerInfo(
                layer.digest,
                layer.size,
                layer.media_type,
                diff_ids[i] if i < len(diff_ids) else None,
            )
            for i, layer in enumerate(manifest.layers)
        ],
        annotations=dict(manifest.annotations),
    )
