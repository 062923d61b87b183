"""stickyctl commands of the sync side: sync, retry, devserver, demo."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from agent.cli import EXIT_INTERRUPTED, Context, _signal_agent, cli, pass_ctx, stop_on_sigint
from agent.errors import StickyAgentError


def check_port_free(host: str, port: int) -> None:
    """Given an address, return if a server can listen there; raise StickyAgentError naming it if not."""
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server does
        try:
            sock.bind((host, port))
        except OSError as e:
            raise StickyAgentError(
                f"cannot listen on {host}:{port}: {e.strerror or e} (another program, or another demo, "
                "uses it? stop it, or choose another port with --port)"
            ) from None


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve the demo API on this port of 127.0.0.1 and sync to it (default: the [sync] url's).",
)
@pass_ctx
def demo(ctx: Context, port: int | None) -> None:
    """Run the agent AND a local development API server, to watch images arrive (demo only).

    Needs a [sync] url on 127.0.0.1; writes the credentials file it names (demo:demo-password)
    and serves the API from <data_dir>/../demo-server.
    """
    from urllib.parse import urlsplit

    from agent.devserver import parse_user
    from agent.devserver.app import DevServer
    from agent.service import Agent

    config = ctx.config()
    url = urlsplit(config.sync.url) if config.sync else None
    if config.sync is None or url is None or url.hostname not in ("127.0.0.1", "localhost"):
        raise StickyAgentError('demo needs [sync] url = "http://127.0.0.1:<port>" in the configuration')
    if port is not None and port != url.port:
        sync_config = config.sync.model_copy(update={"url": f"{url.scheme}://127.0.0.1:{port}"})
        config = config.model_copy(update={"sync": sync_config})
        url = urlsplit(sync_config.url)
    assert config.sync is not None
    port = url.port or 80
    check_port_free("127.0.0.1", port)
    creds = config.sync.credentials
    if creds is None:
        raise StickyAgentError('demo needs [sync] credentials = "<file>" in the configuration')
    creds.parent.mkdir(parents=True, exist_ok=True)
    creds.write_text("demo:demo-password\n")
    creds.chmod(0o600)
    server_dir = config.storage.data_dir.parent / "demo-server"
    server = DevServer(server_dir, [parse_user("demo:demo-password")], host="127.0.0.1", port=port)
    try:
        server.start()
    except SystemExit:  # the HTTP server's own "port in use" exit, if another program won the race
        raise StickyAgentError(
            f"cannot listen on 127.0.0.1:{port}: choose another port with --port"
        ) from None
    click.echo(f"demo API server at {server.url} (data in {server_dir}); the agent starts now", err=True)
    agent = Agent(config)
    agent.install_signal_handlers()
    interrupted = stop_on_sigint(agent)
    try:
        agent.start()
        if agent.web is not None:
            click.echo(f"the trap's web page: {agent.web.url}", err=True)
        agent.run_forever()
    finally:
        server.stop()
    if interrupted:
        raise click.exceptions.Exit(EXIT_INTERRUPTED)


@cli.command()
@pass_ctx
def sync(ctx: Context) -> None:
    """Sync now: ask the running agent to probe the API and upload, or do one full sync here.

    Without an agent: progress on a terminal (n of N images, MB, ETA), then one line with the
    counts, or the real cause of a failure (credentials, 401/403, what the server answered).
    Ctrl-C stops it within a second or two; the queue keeps what was not confirmed.
    """
    import os
    import sys

    from agent.locks import running_agent_pid
    from agent.sinks import oneshot

    config = ctx.config()
    if config.sync is None:
        raise StickyAgentError("no [sync] table in the configuration: this trap only captures")
    pid = running_agent_pid(config.storage.data_dir)
    if pid and pid > 0:
        _signal_agent(pid, signal.SIGUSR2)
        click.echo(f"asked the agent (pid {pid}) to sync now; follow it with: stickyctl status")
        return
    if not config.storage.queue_path.exists():
        raise StickyAgentError(f"no queue at {config.storage.queue_path}: nothing captured yet")
    outcome = oneshot.run(config, out=sys.stderr, tty=sys.stderr.isatty(), quiet_logs=not ctx.debug)
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
    click.echo(oneshot.verdict(outcome, config.sync.url))


@cli.command()
@pass_ctx
def retry(ctx: Context) -> None:
    """Put images (and annotations) that the server kept refusing back in the queue."""
    from agent.locks import running_agent_pid
    from agent.queue import Queue
    from agent.queue.syncrows import retry_failed

    config = ctx.config()
    queue = Queue(config.storage.queue_path, create=False)
    try:
        n = retry_failed(queue)
    finally:
        queue.close()
    click.echo(f"{n} failed image(s) re-queued")
    pid = running_agent_pid(config.storage.data_dir)
    if n and pid and pid > 0 and config.sync is not None:
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
