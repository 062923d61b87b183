"""``stickyctl export --csv``: one row per image, the same CSV as the web page's ``/export.csv``."""

from __future__ import annotations

import datetime as dt
import sys

import click

from agent.cli import Context, cli, pass_ctx
from agent.errors import StickyAgentError


@cli.command()
@click.option("--csv", "as_csv", is_flag=True, help="CSV, one row per image (the only format so far).")
@click.option("--since", default=None, help="Only images from this UTC day on (YYYY-MM-DD).")
@pass_ctx
def export(ctx: Context, as_csv: bool, since: str | None) -> None:
    """Export the queue: device, time, climate, battery, place, insects, sync state, md5 per image."""
    from agent.web.dashboard import sink_names
    from agent.web.data import WebReader
    from agent.web.export import csv_lines

    if not as_csv:
        raise click.UsageError("choose the format: stickyctl export --csv")
    config = ctx.config()
    try:
        start = dt.datetime.combine(dt.date.fromisoformat(since), dt.time(), dt.UTC) if since else None
    except ValueError:
        raise click.BadParameter(f"--since must be a day like 2026-05-31, got {since!r}") from None
    if not config.storage.queue_path.exists():
        raise StickyAgentError(f"no queue at {config.storage.queue_path} yet: the agent has not run")
    names = sink_names(config)
    reader = WebReader(config.storage.queue_path)
    try:
        for line in csv_lines(reader.rows(start, sinks=names), names):
            sys.stdout.write(line)
    finally:
        reader.close()
