"""``attest decisions``: list, show, export, verify (and replay) recorded admission decisions."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

import click

from admission.cli import ExtraGroup
from admission.cli.decision_stats import stats_command
from admission.cli.options import db_option, filter_options
from admission.decisions import text
from admission.errors import DecisionStoreError
from attest.cli.common import output_option, print_json
from attest.errors import EXIT_FAILED, EXIT_NOT_COVERED, UsageError
from attest.files import atomic_write

if TYPE_CHECKING:
    from admission.decisions.replay import Replay
    from admission.decisions.store import DecisionDatabase
    from admission.decisions.verify import VerifyReport
    from attest.policy import PolicyEngine


def _open(db: str | None) -> contextlib.closing[DecisionDatabase]:
    """The existing decision database ``--db`` names, closed when the ``with`` block ends."""
    from admission.decisions.store import open_database

    return contextlib.closing(open_database(db, create=False))


@click.group("decisions", cls=ExtraGroup)
def decisions_group() -> None:
    """Review recorded admission decisions (AppSec): find, read, export, verify, replay."""


@decisions_group.command("list")
@db_option
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@output_option
def list_command(db: str | None, limit: int, output_format: str, **filters: Any) -> None:
    """List decisions, newest first."""
    from admission.decisions import query

    flt = query.filter_from_text(limit, **filters)
    with _open(db) as database:
        records = query.list_decisions(database, flt)
    if output_format == "json":
        print_json([record.to_dict() for record in records])
        return
    if not records:
        click.echo("no decisions match", err=True)
    for record in records:
        click.echo(text.summary_line(record))


@decisions_group.command("show")
@db_option
@click.argument("ident", metavar="ID")
@output_option
def show_command(db: str | None, ident: str, output_format: str) -> None:
    """Show one decision (record ID or request uid) with every reason."""
    from admission.decisions import query

    with _open(db) as database:
        record = query.get_decision(database, ident)
    if output_format == "json":
        print_json(record.to_dict())
    else:
        click.echo(text.detail(record))


@decisions_group.command("export")
@db_option
@filter_options
@click.option(
    "--output-file",
    "-f",
    "output_file",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to this file (atomically) instead of stdout.",
)
def export_command(db: str | None, output_file: str | None, **filters: Any) -> None:
    """Export matching decisions as JSON Lines, oldest first."""
    from admission.decisions import query

    flt = query.filter_from_text(None, **filters)
    with _open(db) as database:
        records = query.iter_decisions(database, flt)
        if output_file is None:
            for record in records:
                click.echo(json.dumps(record.to_dict(), separators=(",", ":")))
            return
        _write_atomically(
            output_file, (json.dumps(r.to_dict(), separators=(",", ":")) for r in records)
        )


def _write_atomically(path: str, lines: Any) -> None:
    count = 0
    with contextlib.ExitStack() as stack:
        try:
            out = stack.enter_context(atomic_write(path, prefix=".attest-export-"))
        except OSError as err:
            raise DecisionStoreError(f"{path}: cannot write ({err.strerror or err})") from None
        for line in lines:
            out.write(f"{line}\n".encode())
            count += 1
    click.echo(f"exported {count} decisions to {path}", err=True)


@decisions_group.command("verify")
@db_option
@click.option(
    "--key",
    type=click.Path(dir_okay=False),
    help="Trusted public key (PEM) that chain-head checkpoints must be signed with.",
)
@click.option(
    "--anchors",
    type=click.Path(dir_okay=False),
    help="Checkpoints kept outside the database: a log file of JSON lines (the server logs "
    "each signed head as event decision_chain_checkpoint). Needs --key.",
)
@output_option
def verify_command(
    db: str | None, key: str | None, anchors: str | None, output_format: str
) -> None:
    """Check every hash chain and signed checkpoint; report the first broken link.

    Exit 0 when every chain is intact and each replica's head is signed by a
    checkpoint (with --key: one that verifies with that key), 1 when a chain is
    broken (or an anchored head is missing or differs), 3 when the chains are
    intact but some head is not covered by a signed checkpoint (its newest records
    could have been rewritten or deleted unseen).
    """
    from admission.decisions.chain import load_trusted_key
    from admission.decisions.verify import read_anchors, verify_database

    if anchors and not key:
        raise UsageError("--anchors needs --key (the key the checkpoints are signed with)")
    trusted = load_trusted_key(key) if key else None
    anchored = read_anchors(anchors) if anchors else []
    with _open(db) as database:
        report = verify_database(database, trusted_key=trusted, anchors=anchored)
    if output_format == "json":
        print_json(report.to_dict())
    else:
        _print_verify(report)
    if not report.intact:
        raise click.exceptions.Exit(EXIT_FAILED)
    if report.uncovered:
        raise click.exceptions.Exit(EXIT_NOT_COVERED)


def _print_verify(report: VerifyReport) -> None:
    for replica in report.replicas:
        when = f" at {replica.signed_at}" if replica.signed_at else ""
        click.echo(
            f"replica {replica.replica}: {replica.records} records, head #{replica.head_seq}, "
            f"signed up to #{replica.signed_seq}{when} ({replica.checkpoints} checkpoints)"
        )
    click.echo(f"signatures checked with {report.key_source}")
    if report.anchors:
        click.echo(f"{report.anchors} anchored checkpoints checked against the database")
    for problem in report.first_broken():
        where = f"record {problem.record_id} " if problem.record_id is not None else ""
        click.echo(f"BROKEN: replica {problem.replica} #{problem.seq}: {where}{problem.what}")
    extra = len(report.problems) - len(report.first_broken())
    if extra > 0:
        click.echo(f"({extra} more problems after the first broken link; see --output json)")
    for replica in report.uncovered:
        click.echo(
            f"NOT SIGNED: replica {replica.replica}: the head #{replica.head_seq} is not covered "
            f"by a signed checkpoint (records from #{replica.signed_seq + 1} could have been "
            "rewritten or deleted without trace)"
        )
    if not report.intact:
        click.echo("chain BROKEN")
    elif report.uncovered:
        click.echo("chain intact, but NOT covered by a signed checkpoint")
    else:
        click.echo("chain intact")


def _replay_engine(
    bundle: str | None, config: str | None, package: str | None, opa_url: str | None
) -> tuple[PolicyEngine, str]:
    """The engine and package to replay with: --bundle, else --config's bundle, else built-in."""
    from admission.config import DEFAULT_BUNDLE, load_config
    from attest.policy import load_bundle, make_engine

    if bundle and config:
        raise UsageError("give --bundle or --config, not both")
    if config:
        loaded = load_config(config)
        bundle, package = loaded.bundle, package or loaded.package
        opa_url = opa_url or loaded.opa_url
    engine = make_engine(load_bundle(bundle or str(DEFAULT_BUNDLE)), opa_url=opa_url)
    return engine, package or "attest.admission"


def _replay_lines(result: Replay, detailed: bool) -> list[str]:
    recorded, replayed = result.recorded, result.replayed
    mark = "CHANGED" if result.changed else "same"
    lines = [
        f"{result.record_id:>6}  {recorded.result} → {replayed.result}  [{mark}]"
        + (
            f"  +{len(result.added_deny)}/-{len(result.removed_deny)} deny, "
            f"+{len(result.added_warn)}/-{len(result.removed_warn)} warn"
            if result.changed
            else ""
        )
    ]
    if not detailed:
        return lines
    lines = [
        f"Decision {result.record_id} replayed under bundle {replayed.bundle_hash} "
        f"({replayed.engine}); recorded under {recorded.bundle_hash or '-'}",
        f"  result: {recorded.result} → {replayed.result} ({mark})",
    ]
    for title, messages in (
        ("new deny", result.added_deny),
        ("deny no longer", result.removed_deny),
        ("new warn", result.added_warn),
        ("warn no longer", result.removed_warn),
        ("unchanged deny", tuple(m for m in replayed.deny if m in recorded.deny)),
        ("carried over (not from Rego)", result.carried),
    ):
        if messages:
            lines.append(f"  {title}:")
            lines.extend(f"    - {message}" for message in messages)
    return lines


@decisions_group.command("replay")
@db_option
@click.argument("idents", metavar="[ID]...", nargs=-1)
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--bundle", "bundle_path", metavar="PATH", help="Rego bundle (file or directory).")
@click.option("--config", metavar="FILE", help="Admission config whose policy bundle to use.")
@click.option("--package", help="Rego package (default: the config's, else attest.admission).")
@click.option("--opa-url", help="Evaluate on a remote OPA server instead of embedded regopy.")
@output_option
def replay_command(
    db: str | None,
    idents: tuple[str, ...],
    limit: int,
    bundle_path: str | None,
    config: str | None,
    package: str | None,
    opa_url: str | None,
    output_format: str,
    **filters: Any,
) -> None:
    """Re-evaluate recorded decisions' policy input under a policy bundle; show the difference.

    Without --bundle or --config the built-in policies are used. Give decision
    IDs, or filters (as for list) to replay the newest matching decisions.
    Exits 1 when any replayed result or message differs from the record.
    """
    from admission.decisions import query
    from admission.decisions.replay import replay

    flt = query.filter_from_text(limit, **filters)
    engine, package_name = _replay_engine(bundle_path, config, package, opa_url)
    with contextlib.closing(engine), _open(db) as database:
        records = (
            [query.get_decision(database, ident) for ident in idents]
            if idents
            else query.list_decisions(database, flt)
        )
        results = [replay(record, engine, package_name) for record in records]
    if output_format == "json":
        print_json([result.to_dict() for result in results])
    else:
        for result in results:
            click.echo("\n".join(_replay_lines(result, detailed=len(results) == 1)))
        changed = sum(result.changed for result in results)
        click.echo(f"{changed} of {len(results)} decisions would change", err=True)
    if any(result.changed for result in results):
        raise click.exceptions.Exit(1)


decisions_group.add_command(stats_command)
