"""Options and output helpers shared by every command group."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import click

from attest.oci.manifest import Platform
from attest.oci.transport import RegistryOptions

F = TypeVar("F", bound=Callable[..., Any])


def option_group(*options: Callable[[Any], Any]) -> Callable[[F], F]:
    """One decorator applying click ``options`` in the order given (the first is listed first)."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


registry_options = option_group(
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
)
"""``--insecure``, ``--registry-auth`` and ``--timeout`` (see :func:`registry_options_from`)."""


def keyless_signing_options(*, token_help: str, trust_config_help: str) -> Callable[[F], F]:
    """``--identity-token`` and ``--trust-config`` of keyless Sigstore signing."""
    return option_group(
        click.option("--identity-token", help=token_help),
        click.option("--trust-config", type=click.Path(dir_okay=False), help=trust_config_help),
    )


def authority_options(
    *, key_help: str, identity_help: str, issuer_help: str, trusted_root_help: str
) -> Callable[[F], F]:
    """Who must have signed: ``--key``, or a keyless certificate identity and OIDC issuer
    (exact or a regular expression), and ``--trusted-root`` (see ``attest.cli.sign.build_policy``).
    """
    return option_group(
        click.option("--key", type=click.Path(dir_okay=False), help=key_help),
        click.option("--certificate-identity", "identity", help=identity_help),
        click.option(
            "--certificate-identity-regexp",
            "identity_regexp",
            help="Regular expression the whole certificate identity must match.",
        ),
        click.option("--certificate-oidc-issuer", "issuer", help=issuer_help),
        click.option(
            "--certificate-oidc-issuer-regexp",
            "issuer_regexp",
            help="Regular expression the whole OIDC issuer must match.",
        ),
        click.option("--trusted-root", type=click.Path(dir_okay=False), help=trusted_root_help),
        cosign_bool_option(
            "--insecure-ignore-tlog",
            default=False,
            help="Accept --key signatures without a verified transparency-log entry "
            "(cosign's flag; by default one is required).",
        ),
    )


def cosign_bool_option(name: str, *, default: bool, help: str) -> Callable[[F], F]:
    """A boolean option spelt as cosign (pflag) spells them: ``--name``, ``--name=false``.

    A bare ``--name`` means true (and, as in cosign, never takes the next word: the
    CLI entry point spells it ``--name=true``); ``--name=false`` sets it off.
    """
    from attest.cli.main import COSIGN_BOOL_FLAGS

    assert name in COSIGN_BOOL_FLAGS, f"{name}: add it to attest.cli.main.COSIGN_BOOL_FLAGS"
    return click.option(
        name,
        type=click.BOOL,
        default=default,
        is_flag=False,
        flag_value=True,
        show_default=True,
        metavar="[=BOOL]",
        help=help,
    )


def tlog_signing_options(func: F) -> F:
    """``--tlog-upload`` and ``--rekor-url``: where a key-based signature is logged (cosign's flags)."""
    return option_group(
        cosign_bool_option(
            "--tlog-upload",
            default=True,
            help="Log --key signatures in a Rekor transparency log, as cosign does; "
            "--tlog-upload=false opts out.",
        ),
        click.option(
            "--rekor-url",
            help="Rekor (v1 API) to log --key signatures in (default: the --trust-config's "
            "signing config, else Sigstore's public https://rekor.sigstore.dev).",
        ),
    )(func)


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

OutputFormat = Literal["text", "json"]

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
