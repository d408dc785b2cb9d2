"""``attest inspect``: show an image's digest, platforms, config and layers."""

from __future__ import annotations

import click

from attest.cli.common import (
    OutputFormat,
    make_registry_options,
    output_option,
    platform_option,
    print_json,
    registry_options,
)
from attest.oci.access import open_store, parse_image_target
from attest.oci.inspect import ImageInfo, inspect_image
from attest.oci.manifest import Platform


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _print_text(info: ImageInfo) -> None:
    config = info.config
    click.echo(f"Name:        {info.name}")
    click.echo(f"Digest:      {info.digest}")
    click.echo(f"MediaType:   {info.media_type}")
    if info.manifests:
        click.echo("Platforms:")
        for entry in info.manifests:
            marker = "*" if entry["digest"] == info.manifest_digest else " "
            click.echo(f"  {marker} {entry['platform'] or '-':<20} {entry['digest']}")
        click.echo(f"Manifest:    {info.manifest_digest} ({info.platform})")
    else:
        click.echo(f"Platform:    {info.platform or '-'}")
    click.echo(f"Created:     {config.get('created') or '-'}")
    click.echo(f"Config:      {config['digest']} ({config['size']} bytes)")
    if config.get("user"):
        click.echo(f"User:        {config['user']}")
    if config.get("entrypoint"):
        click.echo(f"Entrypoint:  {config['entrypoint']}")
    if config.get("cmd"):
        click.echo(f"Cmd:         {config['cmd']}")
    for key, value in sorted(config.get("labels", {}).items()):
        click.echo(f"Label:       {key}={value}")
    click.echo(f"Layers:      {len(info.layers)} ({_human_size(info.size)})")
    for layer in info.layers:
        click.echo(f"  {layer.digest}  {_human_size(layer.size):>10}  {layer.media_type}")


@click.command("inspect")
@click.argument("image")
@platform_option
@output_option
@registry_options
def inspect_command(
    image: str,
    platform: Platform | None,
    output_format: OutputFormat,
    insecure: bool,
    registry_auth: tuple[str, ...],
    timeout: float,
) -> None:
    """Show IMAGE's digest, media type, platforms, config and layers."""
    target = parse_image_target(image)
    with open_store(target, make_registry_options(insecure, registry_auth, timeout)) as store:
        info = inspect_image(store, target, platform)
    if output_format == "json":
        print_json(info.to_dict())
    else:
        _print_text(info)
