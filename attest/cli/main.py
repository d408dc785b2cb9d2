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
from attest.errors import AttestError

# Commands other packages add to `attest` (the webhook's: admission, decisions, policy).
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
@click.option("--debug", is_flag=True, help="Show debug logs and tracebacks on errors.")
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
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every failure becomes ``attest: error: …`` and a non-zero exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("ATTEST_DEBUG") == "1"
    try:
        result = cli.main(args=args, prog_name="attest", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except click.UsageError as err:
        hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
        click.echo(f"attest: error: {_one_line(err.format_message())}{hint}", err=True)
        return 2
    except click.ClickException as err:
        click.echo(f"attest: error: {_one_line(err.format_message())}", err=True)
        return err.exit_code
    except click.Abort:
        click.echo("attest: error: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("attest: error: interrupted", err=True)
        return 130
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
        return 70
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
