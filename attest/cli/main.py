"""Entry point of the ``attest`` command: the click group, and one-line error reporting."""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from attest import __version__
from attest.errors import AttestError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def _register() -> None:
    from attest.cli.admission import admission_group
    from attest.cli.attestations import (
        attest_command,
        provenance_command,
        verify_attestation_command,
        verify_blob_attestation_command,
    )
    from attest.cli.decisions import decisions_group
    from attest.cli.inspect import inspect_command
    from attest.cli.pipeline import pipeline_command
    from attest.cli.policy import policy_group
    from attest.cli.sbom import sbom_command
    from attest.cli.sign import keygen_command, sign_command, verify_command

    cli.add_command(decisions_group)
    cli.add_command(inspect_command)
    cli.add_command(sbom_command)
    cli.add_command(policy_group)
    cli.add_command(admission_group)
    for command in (keygen_command, sign_command, verify_command):
        cli.add_command(command)
    for command in (
        provenance_command,
        attest_command,
        verify_attestation_command,
        verify_blob_attestation_command,
        pipeline_command,
    ):
        cli.add_command(command)


_register()


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
