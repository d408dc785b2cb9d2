"""The webhook's commands: ``attest admission``, ``decisions``, ``policy``, ``exception``
and ``evidence``.

They are registered into the ``attest`` command by entry points (group
``attest.commands`` in pyproject.toml), so attest/ never imports admission/.  The
webhook's libraries (Flask, gunicorn, SQLAlchemy, psycopg, prometheus-client,
PyYAML) come with the ``admission`` extra: these modules import none of them at
load time, and :class:`ExtraGroup` (:class:`ExtraCommand`) checks for them when a command runs, so
``pip install attest`` alone still lists the commands and says what is missing.
``attest policy`` needs only what the CI side has.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import click

from attest.errors import UsageError

EXTRA = "admission"
# The import names of the extra's distributions (pyproject.toml, [project.optional-dependencies]).
EXTRA_MODULES = ("flask", "gunicorn", "sqlalchemy", "psycopg", "prometheus_client", "yaml")


def missing_modules() -> list[str]:
    """The extra's modules that cannot be imported here."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def require_extra(command: str) -> None:
    """Raise a one-line :class:`UsageError` naming the extra when any of its modules is missing."""
    missing = missing_modules()
    if missing:
        raise UsageError(
            f"attest {command} needs the {EXTRA} extra: pip install 'attest[{EXTRA}]' "
            f"(not installed: {', '.join(missing)})"
        )


class ExtraGroup(click.Group):
    """A command group that runs only when the ``admission`` extra is installed
    (``--help`` works without it)."""

    def invoke(self, ctx: click.Context) -> Any:
        require_extra(ctx.command_path.partition(" ")[2] or str(self.name))
        return super().invoke(ctx)


class ExtraCommand(click.Command):
    """A command that runs only when the ``admission`` extra is installed (``--help`` works
    without it)."""

    def invoke(self, ctx: click.Context) -> Any:
        require_extra(ctx.command_path.partition(" ")[2] or str(self.name))
        return super().invoke(ctx)
