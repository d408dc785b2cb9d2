"""Entry point of the ``attest`` command: the click group, and one-line error reporting."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from importlib.metadata import EntryPoint, entry_points

import click

from attest import __version__
from attest.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AttestError,
)

# Commands other packages add to `attest` (the webhook's: admission, decisions, policy,
# exception, evidence).
PLUGIN_GROUP = "attest.commands"


def _plugins() -> dict[str, EntryPoint]:
    """The installed ``attest.commands`` entry points, by command name."""
    return {entry.name: entry for entry in entry_points(group=PLUGIN_GROUP)}


class _LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use: ours from
    ``_LAZY_COMMANDS``, other packages' from their ``attest.commands`` entry points."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_LAZY_COMMANDS) | set(_plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            if cmd_name in _LAZY_COMMANDS:
                module_name, attribute = _LAZY_COMMANDS[cmd_name]
                command = getattr(importlib.import_module(module_name), attribute)
                self.add_command(command, cmd_name)
            elif (plugin := _plugins().get(cmd_name)) is not None:
                self.add_command(plugin.load(), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--debug",
    is_flag=True,
    help="Show debug logs and tracebacks on errors (accepted after any subcommand too).",
)
@click.version_option(__version__, "--version", prog_name="attest", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """attest: SBOMs, cosign-compatible signatures, SLSA provenance and admission for container images.

    IMAGE arguments accept registry references (nginx, host:5000/app:tag, name@sha256:…),
    oci:PATH[:TAG] image layouts and oci-archive:FILE.tar[:TAG] archives.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="attest: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        logging.getLogger("urllib3").setLevel(logging.ERROR)


@cli.command()
def version() -> None:
    """Print the version of attest."""
    click.echo(f"attest {__version__}")


# Command name -> (module, attribute). Modules load only when their command runs, so
# `attest version` or `attest inspect` never pay for the signing, SBOM or database stacks.
_LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("attest.cli.inspect", "inspect_command"),
    "sbom": ("attest.cli.sbom", "sbom_command"),
    "keygen": ("attest.cli.sign", "keygen_command"),
    "sign": ("attest.cli.sign", "sign_command"),
    "verify": ("attest.cli.sign", "verify_command"),
    "provenance": ("attest.cli.attestations", "provenance_command"),
    "attest": ("attest.cli.attestations", "attest_command"),
    "verify-attestation": ("attest.cli.attestations", "verify_attestation_command"),
    "verify-blob-attestation": ("attest.cli.attestations", "verify_blob_attestation_command"),
    "pipeline": ("attest.cli.pipeline", "pipeline_command"),
    "tree": ("attest.cli.attached", "tree_command"),
    "download": ("attest.cli.attached", "download_command"),
    "copy": ("attest.cli.attached", "copy_command"),
    "clean": ("attest.cli.attached", "clean_command"),
    "promote": ("attest.cli.promote", "promote_command"),
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


# cosign's (pflag's) boolean flags: a bare ``--name`` is true and never takes the next
# word as its value, so ``--insecure-ignore-tlog IMAGE`` works as in cosign; see
# attest.cli.common.cosign_bool_option, which accepts only these names.
COSIGN_BOOL_FLAGS = ("--insecure-ignore-tlog", "--tlog-upload")


def normalise_args(args: list[str]) -> list[str]:
    """Bare cosign boolean flags spelt ``--name=true``, then :func:`hoist_debug`."""
    end = args.index("--") if "--" in args else len(args)
    spelt = [f"{a}=true" if a in COSIGN_BOOL_FLAGS else a for a in args[:end]]
    return hoist_debug([*spelt, *args[end:]])


def hoist_debug(args: list[str]) -> list[str]:
    """``--debug`` anywhere before ``--`` (``attest verify IMG --debug``) moved to the group,
    the one place it is defined, so every command and subcommand accepts it."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug", *(a for a in args[:end] if a != "--debug"), *args[end:]]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every failure becomes ``attest: error: …`` and a non-zero exit code
    (the codes are defined once, in :mod:`attest.errors`)."""
    args = normalise_args(list(sys.argv[1:] if argv is None else argv))
    debug = args[:1] == ["--debug"] or os.environ.get("ATTEST_DEBUG") == "1"
    try:
        result = cli.main(args=args, prog_name="attest", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except click.UsageError as err:
        hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
        click.echo(f"attest: error: {_one_line(err.format_message())}{hint}", err=True)
        return EXIT_USAGE
    except click.ClickException as err:
        click.echo(f"attest: error: {_one_line(err.format_message())}", err=True)
        return err.exit_code
    except click.Abort:
        click.echo("attest: error: aborted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("attest: error: interrupted", err=True)
        return EXIT_INTERRUPTED
    except AttestError as err:
        if debug:
            traceback.print_exc()
        click.echo(f"attest: error: {_one_line(str(err))}", err=True)
        return err.exit_code
    except BrokenPipeError:
        return 0
    except Exception as err:  # a bug: still one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(
            f"attest: error: internal error: {type(err).__name__}: {_one_line(str(err))} "
            "(run with --debug for a traceback)",
            err=True,
        )
        return EXIT_INTERNAL
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
