"""stickyctl commands of the sync side: sync, retry, devserver, demo."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from agent.cli import EXIT_INTERRUPTED, Context, _signal_agent, cli, pass_ctx, stop_on_sigint
from agent.config import Config
from agent.devserver import check_port_free
from agent.errors import StickyAgentError
from agent.sinks.base import SinkSettings


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve the demo Sticky Pi API on this port of 127.0.0.1 and sync to it (default: its sink's url).",
)
@pass_ctx
def demo(ctx: Context, port: int | None) -> None:
    """Run the agent AND a local double of each sink's platform, to watch images arrive (demo only).

    Every sink must be on 127.0.0.1 and name a credentials file: the demo writes the demo
    secret there, and serves the doubles (Sticky Pi devserver, Tator, Data Lake) from
    <data_dir>/../demo-server.
    """
    from agent.devserver.demo import serve_doubles
    from agent.service import Agent

    config = ctx.config()
    if not config.sinks:
        raise StickyAgentError(
            'demo needs a [[sink]] (e.g. type = "stickypi", url = "http://127.0.0.1:<port>")'
        )
    if port is not None:
        stickypi = [s for s in config.sinks if s.type == "stickypi"]
        if len(stickypi) != 1:
            raise StickyAgentError("--port needs exactly one Sticky Pi sink in the configuration")
        sinks = [
            s.model_copy(update={"url": f"http://127.0.0.1:{port}"}) if s is stickypi[0] else s
            for s in config.sinks
        ]
        config = config.model_copy(update={"sink": sinks})
    with serve_doubles(config) as served:
        for sink, double in served:
            click.echo(f"demo {sink.type} double for sink {sink.name} at {double.url}", err=True)
        click.echo("the agent starts now", err=True)
        agent = Agent(config)
        agent.install_signal_handlers()
        interrupted = stop_on_sigint(agent)
        agent.start()
        if agent.web is not None:
            click.echo(f"the trap's web page: {agent.web.url}", err=True)
        agent.run_forever()
    if interrupted:
        raise click.exceptions.Exit(EXIT_INTERRUPTED)


SINK_OPTION = click.option(
    "--sink",
    "sink_name",
    metavar="NAME",
    default=None,
    help="Only this sink (a [[sink]] name; the legacy [sync] table is 'stickypi').",
)


def _chosen_sinks(config: Config, name: str | None) -> list[SinkSettings]:
    """Given the config and ``--sink``, return the sinks meant. Raise StickyAgentError if there
    are none or the name is unknown."""
    if not config.sinks:
        raise StickyAgentError("no [[sink]] in the configuration: this trap only captures")
    return [config.sink_named(name)] if name is not None else config.sinks


@cli.command()
@SINK_OPTION
@pass_ctx
def sync(ctx: Context, sink_name: str | None) -> None:
    """Sync now: ask the running agent to probe its sinks and upload, or do one full sync here.

    Without an agent, each sink in turn (or only --sink NAME): progress on a terminal (n of N
    images, MB, ETA), then one line per sink with the counts, or the real cause of a failure
    (credentials, 401/403, what the platform answered). Ctrl-C stops it within a second or two;
    the queue keeps what was not confirmed.
    """
    import os
    import sys

    from agent.locks import running_agent_pid
    from agent.sinks import oneshot

    config = ctx.config()
    sinks = _chosen_sinks(config, sink_name)
    pid = running_agent_pid(config.storage.data_dir)
    if pid and pid > 0:
        _signal_agent(pid, signal.SIGUSR2)
        click.echo(f"asked the agent (pid {pid}) to sync now; follow it with: stickyctl status")
        return
    if not config.storage.queue_path.exists():
        raise StickyAgentError(f"no queue at {config.storage.queue_path}: nothing captured yet")
    failures: list[str] = []
    for sink in sinks:
        outcome = oneshot.run(config, sink, out=sys.stderr, tty=sys.stderr.isatty(), quiet_logs=not ctx.debug)
        if outcome.interrupted:
            p = outcome.progress
            click.echo(
                f"stickyctl: interrupted after {p.images} of {p.total_images} images; the rest stays queued",
                err=True,
            )
            if not outcome.finished:  # a request is still in flight: do not wait for its timeout
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(130)
            raise click.exceptions.Exit(130)
        try:
            line = oneshot.verdict(outcome, sink)
        except StickyAgentError as e:
            if len(sinks) == 1:
                raise
            failures.append(f"{sink.name}: {e}")
            click.echo(f"stickyctl: {sink.name}: {e}", err=True)
            continue
        click.echo(line if len(sinks) == 1 or sink._legacy else f"{sink.name}: {line}")
    if failures:
        raise StickyAgentError(f"{len(failures)} of {len(sinks)} sinks did not sync (see above)")


@cli.command()
@SINK_OPTION
@pass_ctx
def retry(ctx: Context, sink_name: str | None) -> None:
    """Put images (and annotations) that a sink kept refusing back in its queue (every sink, or
    only --sink NAME)."""
    from agent.locks import running_agent_pid
    from agent.queue import Queue
    from agent.queue.deliveries import retry_failed

    config = ctx.config()
    if sink_name is not None:
        config.sink_named(sink_name)  # an unknown name is an error, not "0 re-queued"
    queue = Queue(config.storage.queue_path, create=False)
    try:
        n = retry_failed(queue, sink_name)
    finally:
        queue.close()
    where = f" for {sink_name}" if sink_name else ""
    click.echo(f"{n} failed image(s) re-queued{where}")
    pid = running_agent_pid(config.storage.data_dir)
    if n and pid and pid > 0 and config.sinks:
        _signal_agent(pid, signal.SIGUSR2)


@cli.command()
@click.option(
    "--api",
    type=click.Choice(["stickypi", "tator", "datalake"]),
    default="stickypi",
    show_default=True,
    help="Which platform to imitate: the Sticky Pi API, Tator (REST 1.2) or a LayerNext Data Lake.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free port).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="stickypi: folder of the server's database, images and signing secret (created if needed). "
    "The Tator and Data Lake doubles keep everything in memory.",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    required=True,
    metavar="NAME:PASSWORD[:ROLE]",
    help="An account. stickypi: NAME:PASSWORD[:ROLE], ROLE read, write (default) or admin; "
    "tator: NAME:TOKEN; datalake: API_KEY:SECRET. Repeatable.",
)
@click.option(
    "--token-lifetime",
    default=86400.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds a token lives (24 h on the real server).",
)
def devserver(
    api: str, host: str, port: int, data_dir: Path | None, users: tuple[str, ...], token_lifetime: float
) -> None:
    """Serve a local Sticky Pi API (or a Tator or Data Lake double) for development and tests.

    A DEVELOPMENT TOOL, NOT FOR PRODUCTION: plain HTTP, passwords on the command
    line. It speaks the wire protocol of the real platform, quirks included (the
    Sticky Pi API answers every failed upload with a 500 and an HTML body). Stop it
    with Ctrl-C.
    """
    if api != "stickypi":
        serve_double(api, host, port, users)
        return
    from agent.devserver import parse_user
    from agent.devserver.app import serve

    if data_dir is None:
        raise click.UsageError("--data-dir is needed with --api stickypi")
    try:
        accounts = [parse_user(u) for u in users]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--user") from None
    check_port_free(host, port)
    interrupted: list[int] = []

    def on_sigint(signum: int, _frame: object) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt  # the server's loop returns on it

    signal.signal(signal.SIGINT, on_sigint)
    serve(host, port, data_dir, accounts, token_lifetime)
    if interrupted:
        raise click.exceptions.Exit(EXIT_INTERRUPTED)


def serve_double(api: str, host: str, port: int, users: tuple[str, ...]) -> None:
    """Given ``tator`` or ``datalake`` and ``A:B`` accounts, serve that double until Ctrl-C."""
    from agent.devserver.datalake import DatalakeDouble
    from agent.devserver.tator import TatorDouble

    pairs = [u.partition(":") for u in users]
    if any(not a or not sep or not b for a, sep, b in pairs):
        form = "NAME:TOKEN" if api == "tator" else "API_KEY:SECRET"
        raise click.BadParameter(f"expected {form}", param_hint="--user")
    check_port_free(host, port)
    double: TatorDouble | DatalakeDouble
    if api == "tator":
        double = TatorDouble({token: name for name, _, token in pairs}, host=host, port=port)
    else:
        double = DatalakeDouble({key: secret for key, _, secret in pairs}, host=host, port=port)
    with double:
        click.echo(f"{double.label} (development only, NOT for production) on {double.url}", err=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
