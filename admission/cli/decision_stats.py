"""``attest decisions stats``: the aggregates of :mod:`admission.decisions.stats` as JSON or a table.

Registered on the ``decisions`` group by :mod:`admission.cli.decisions`; the database
libraries load when the command runs (``attest --help`` works without the extra).
"""

from __future__ import annotations

import contextlib
from typing import Any

import click

from admission.cli.options import db_option, filter_options
from admission.decisions import BUCKETS
from attest.cli.common import output_option, print_json


@click.command("stats")
@db_option
@filter_options
@click.option(
    "--bucket",
    type=click.Choice(BUCKETS),
    default="day",
    show_default=True,
    help="Time bucket of the timeline.",
)
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, help="Deny reasons listed."
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    help="Processes reading the database (default: one per core, at most 4).",
)
@output_option
def stats_command(
    db: str | None, bucket: str, top: int, jobs: int | None, output_format: str, **filters: Any
) -> None:
    """Aggregates of matching decisions: results, compliance rate, deny reasons, gaps, exceptions.

    The same numbers as `attest evidence` (without the chain verification), for scripts
    (--output json) and dashboards.
    """
    from admission.decisions import query
    from admission.decisions.parallel import collect_stats, default_jobs
    from admission.decisions.store import open_database

    flt = query.filter_from_text(None, **filters)
    with contextlib.closing(open_database(db, create=False)) as database:
        stats = collect_stats(database, flt, bucket=bucket, jobs=jobs or default_jobs())
    data = stats.to_dict(top=top)
    if output_format == "json":
        data["images"] = stats.image_list()
        print_json(data)
        return
    click.echo("\n".join(stats_lines(data)))


def stats_lines(data: dict[str, Any]) -> list[str]:
    """The table form of ``DecisionStats.to_dict()``."""
    compliance = data["compliance"]
    rate = "n/a" if compliance["rate"] is None else f"{compliance['rate'] * 100:.1f}%"
    lines = [
        f"decisions: {data['records']} ({data['first'] or '-'} – {data['last'] or '-'})",
        "results:   " + ", ".join(f"{k} {v}" for k, v in data["results"].items()),
        f"compliance: {rate} ({compliance['compliant']} of {compliance['admitted']} admissions met "
        "every gate without warn mode or exception)",
        f"admitted images: {data['admittedImages']}",
        "",
        f"{'NAMESPACE':<30} {'DECISIONS':>9} {'ADMITTED':>9} {'COMPLIANT':>9} {'RATE':>7}",
    ]
    for name, counts in data["namespaces"].items():
        ns_rate = counts["complianceRate"]
        lines.append(
            f"{name or '-':<30} {counts['total']:>9} {counts['admitted']:>9} {counts['compliant']:>9} "
            f"{'n/a' if ns_rate is None else f'{ns_rate * 100:.1f}%':>7}"
        )
    lines += ["", "gaps:"]
    for gap, entry in data["gaps"].items():
        lines.append(f"  {gap}: {entry['admissions']} admissions, {len(entry['images'])} images")
    lines += ["", "top deny reasons:"]
    lines += [f"  {d['count']:>8}  {d['reason']}" for d in data["denyReasons"]] or ["  none"]
    lines += ["", "exceptions used:"]
    lines += [
        f"  {e['id']}: {e['uses']} uses, signed by {e['signer']}, expires {e['expires']}"
        for e in data["exceptions"]
    ] or ["  none"]
    if data["truncated"]:
        lines.append(f"truncated (counted, not listed): {data['truncated']}")
    return lines
