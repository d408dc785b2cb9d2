"""Options and output helpers shared by every command group."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from attest.oci.manifest import Platform
from attest.oci.registry import RegistryOptions

F = TypeVar("F", bound=Callable[..., Any])


def registry_options(func: F) -> F:
    """``--insecure``, ``--registry-auth`` and ``--timeout``, collected into ``registry``."""
    options = [
        click.option(
            "--insecure",
            is_flag=True,
            help="Skip TLS certificate checks for non-loopback registries (loopback registries use plain HTTP anyway).",
        ),
        click.option(
            "--registry-auth",
            "registry_auth",
            multiple=True,
            type=click.Path(dir_okay=True),
            help="Docker config.json with registry credentials (default: $DOCKER_CONFIG or ~/.docker/config.json).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=120.0,
            show_default=True,
            help="Seconds allowed for all registry work of this command.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_registry_options(
    insecure: bool, registry_auth: tuple[str, ...], timeout: float
) -> RegistryOptions:
    return RegistryOptions(insecure=insecure, auth_files=tuple(registry_auth), timeout=timeout)


def registry_options_from(options: Mapping[str, Any]) -> RegistryOptions:
    """The :class:`RegistryOptions` of a command's ``**options`` (see :func:`registry_options`)."""
    return make_registry_options(options["insecure"], options["registry_auth"], options["timeout"])


def parse_platform(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> Platform | None:
    if value is None:
        return None
    try:
        return Platform.parse(value)
    except Exception as err:  # InvalidReference
        raise click.BadParameter(str(err)) from None


platform_option = click.option(
    "--platform",
    callback=parse_platform,
    metavar="OS/ARCH[/VARIANT]",
    help="Platform to select from a multi-platform image (default linux/amd64).",
)

output_option = click.option(
    "--output",
    "-o",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)


def print_json(data: Any) -> None:
    """Pretty JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def info(message: str) -> None:
    """A progress or status line on stderr (stdout stays machine-readable)."""
    click.echo(message, err=True)


def is_tty(stream: Any = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())
