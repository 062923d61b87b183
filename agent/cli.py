"""``stickyctl``: run the agent, capture now, and see what the trap is doing.

Every error prints ``stickyctl: error: <what and how to fix>`` and exits
non-zero; ``--debug`` shows tracebacks. Heavy modules (imaging, scheduler,
hardware) are imported only by the commands that need them, so ``status`` stays
quick on a Pi Zero.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from agent import __version__
from agent.config import Config, load_config, resolve_config_path
from agent.errors import StickyAgentError

log = logging.getLogger("agent")

EXIT_ERROR = 1
EXIT_USAGE = 2


def setup_logging(level: str, debug: bool) -> None:
    """Log one line per event to stderr; under systemd (journal) without our own timestamps."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(
        level=logging.DEBUG if debug else getattr(logging, level.upper()),
        format=fmt,
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


class Context:
    def __init__(self, config_path: Path | None, debug: bool) -> None:
        self.config_path = config_path
        self.debug = debug
        self._config: Config | None = None

    @property
    def path(self) -> Path:
        return resolve_config_path(self.config_path)

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.path)
            setup_logging(self._config.log.level, self.debug)
        return self._config


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Configuration file [default: $STICKY_AGENT_CONFIG or /etc/sticky-agent/agent.toml].",
)
@click.option("--debug", is_flag=True, help="Verbose logs and full tracebacks.")
@click.version_option(__version__, prog_name="sticky-agent")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, debug: bool) -> None:
    """Sticky Pi trap agent: scheduled flash captures into a local queue."""
    ctx.obj = Context(config_path, debug)


@cli.command()
@pass_ctx
def run(ctx: Context) -> None:
    """Run the agent: capture on schedule until SIGTERM/SIGINT."""
    from agent.service import Agent

    agent = Agent(ctx.config())
    agent.install_signal_handlers()
    agent.start()
    agent.run_forever()


@cli.command()
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the result.")
@pass_ctx
def capture(ctx: Context, timeout: float) -> None:
    """Take one picture now (marked manual, b=1), through the same pipeline.

    If the agent is running, it is asked to take the picture (it holds the camera
    and flash); otherwise this process takes it.
    """
    from agent.locks import running_agent_pid

    config = ctx.config()
    pid = running_agent_pid(config.storage.data_dir)
    if pid and pid > 0:
        result = _capture_via_agent(config, pid, timeout)
    else:
        from agent.service import Pipeline

        pipeline = Pipeline.build(config)
        try:
            r = pipeline.capturer.capture(manual=True)
            result = {
                "outcome": r.outcome,
                "path": str(config.storage.data_dir / r.image.path) if r.image else None,
                "md5": r.image.md5 if r.image else None,
                "error": r.error,
            }
        finally:
            pipeline.close()
    if result["outcome"] != "ok":
        raise StickyAgentError(f"capture {result['outcome']}: {result['error']}")
    click.echo(f"{result['path']}  md5 {result['md5']}")


def _capture_via_agent(config: Config, pid: int, timeout: float) -> dict[str, Any]:
    from agent.queue import Queue

    queue = Queue(config.storage.queue_path, create=False)
    try:
        before = queue.attempts(limit=1)
        last_id = before[0].id if before else 0
        _signal_agent(pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for a in queue.attempts(limit=5):
                if a.id > last_id and a.manual:
                    image = next((i for i in queue.images(limit=5) if i.id == a.image_id), None)
                    return {
                        "outcome": a.outcome,
                        "path": str(config.storage.data_dir / image.path) if image else None,
                        "md5": image.md5 if image else None,
                        "error": a.error,
                    }
            time.sleep(0.2)
    finally:
        queue.close()
    raise StickyAgentError(
        f"asked the running agent (pid {pid}) for a capture, no result within {timeout:g}s; "
        "check its log (journalctl -u sticky-agent)"
    )


@cli.command()
@pass_ctx
def demo(ctx: Context) -> None:
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
    creds = config.sync.credentials
    if creds is None:
        raise StickyAgentError('demo needs [sync] credentials = "<file>" in the configuration')
    creds.parent.mkdir(parents=True, exist_ok=True)
    creds.write_text("demo:demo-password\n")
    creds.chmod(0o600)
    server_dir = config.storage.data_dir.parent / "demo-server"
    server = DevServer(server_dir, [parse_user("demo:demo-password")], host="127.0.0.1", port=url.port or 80)
    server.start()
    click.echo(f"demo API server at {server.url} (data in {server_dir}); the agent starts now", err=True)
    agent = Agent(config)
    agent.install_signal_handlers()
    try:
        agent.start()
        agent.run_forever()
    finally:
        server.stop()


@cli.command()
@pass_ctx
def sync(ctx: Context) -> None:
    """Sync now: ask the running agent to probe the API and upload, or do one full sync here."""
    from agent.locks import running_agent_pid

    config = ctx.config()
    if config.sync is None:
        raise StickyAgentError("no [sync] table in the configuration: this trap only captures")
    pid = running_agent_pid(config.storage.data_dir)
    if pid and pid > 0:
        _signal_agent(pid, signal.SIGUSR2)
        click.echo(f"asked the agent (pid {pid}) to sync now; follow it with: stickyctl status")
        return
    from agent.queue import Queue
    from agent.sync.stickypi import make_sink
    from agent.sync.worker import SyncWorker

    queue = Queue(config.storage.queue_path, create=False)
    sync_config = config.sync
    worker = SyncWorker(config, queue, lambda: make_sink(sync_config))
    try:
        while worker.cycle() == 0.0:
            pass
    finally:
        worker.stop()
        queue.close()
    if not worker.reachable:
        raise StickyAgentError(f"the API at {sync_config.url} is unreachable; the queue is kept")
    published = Queue(config.storage.queue_path, create=False).published()
    if published.get("sync_error"):
        raise StickyAgentError(f"sync stopped: {published['sync_error']}")
    click.echo(f"synced with {sync_config.url}; see stickyctl status")


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


def _signal_agent(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except PermissionError:
        raise StickyAgentError(
            f"the agent (pid {pid}) runs as another user; run this command as that user "
            "(sudo -u sticky-agent stickyctl ...) or as root"
        ) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Show whether the trap is capturing and what waits in its queue."""
    from agent.status import collect_status, format_status

    data = collect_status(ctx.config())
    click.echo(json.dumps(data, indent=2) if as_json else format_status(data))


@cli.group()
def queue() -> None:
    """Look into the local queue."""


@queue.command("ls")
@click.option("--limit", default=20, show_default=True, help="How many images.")
@click.option("--state", default=None, help="Only images in this state (captured, missing, ...).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def queue_ls(ctx: Context, limit: int, state: str | None, as_json: bool) -> None:
    """List the most recent images and their states, newest first."""
    from agent.queue import ImageState, Queue

    config = ctx.config()
    try:
        wanted = ImageState(state) if state else None
    except ValueError:
        names = ", ".join(s.value for s in ImageState)
        raise click.BadParameter(f"unknown state {state!r}; one of {names}") from None
    q = Queue(config.storage.queue_path, create=False)
    try:
        rows = q.images(limit=limit, state=wanted)
    finally:
        q.close()
    items = [
        {
            "name": Path(r.path).name,
            "datetime": r.datetime.isoformat(),
            "state": r.state,
            "size": r.size,
            "md5": r.md5,
            "manual": bool(r.manual),
            "attempts": r.attempts,
            "last_error": r.last_error,
        }
        for r in rows
    ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no images in the queue")
    for it in items:
        err = f"  {it['last_error']}" if it["last_error"] else ""
        manual = " manual" if it["manual"] else ""
        click.echo(f"{it['name']}  {it['state']:<11} {it['size']:>9} B{manual}{err}")


@cli.group("config")
def config_group() -> None:
    """Check the configuration."""


@config_group.command("check")
@pass_ctx
def config_check(ctx: Context) -> None:
    """Validate the configuration file and print what it resolves to."""
    config = ctx.config()
    click.echo(f"{ctx.path}: OK")
    click.echo(f"  camera {config.camera.type}, flash {config.flash.type}, sensors {config.sensors.type}")
    every = f"cron {config.capture.cron!r}" if config.capture.cron else f"{config.capture.interval:g}s"
    click.echo(f"  capture every {every}, data in {config.storage.data_dir}")


@cli.command()
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
    required=True,
    help="Folder of the server's database, images and signing secret (created if needed).",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    required=True,
    metavar="NAME:PASSWORD[:ROLE]",
    help="An account; ROLE is read, write (default) or admin. Repeatable.",
)
@click.option(
    "--token-lifetime",
    default=86400.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds a token lives (24 h on the real server).",
)
def devserver(host: str, port: int, data_dir: Path, users: tuple[str, ...], token_lifetime: float) -> None:
    """Serve a local Sticky Pi API for development, demos and tests.

    A DEVELOPMENT TOOL, NOT FOR PRODUCTION: plain HTTP, passwords on the command
    line. It speaks the wire protocol of the real Sticky Pi server, quirks
    included (every failed upload is a 500 with an HTML body). Stop it with Ctrl-C.
    """
    from agent.devserver import parse_user
    from agent.devserver.app import serve

    try:
        accounts = [parse_user(u) for u in users]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--user") from None
    serve(host, port, data_dir, accounts, token_lifetime)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def doctor(ctx: Context, as_json: bool) -> None:
    """Check the trap: config, disk, camera, flash, sensors, clock, API, service (exit 1 on a FAIL)."""
    from agent.doctor import as_json as results_json
    from agent.doctor import failed, format_results, run_checks

    setup_logging("warning", ctx.debug)
    results = run_checks(ctx.path)
    click.echo(results_json(results) if as_json else format_results(results))
    if failed(results):
        raise StickyAgentError(f"{len(failed(results))} check(s) failed; each FAIL line says how to fix it")


@cli.group("detect")
def detect_group() -> None:
    """Find insects with the built-in detector, and score it against people's outlines."""


_detect_params = click.option(
    "--params",
    "params_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Detector parameters (JSON) [the ones shipped with the agent].",
)
_detect_max_side = click.option(
    "--max-side",
    type=click.IntRange(320, 8192),
    default=1296,
    show_default=True,
    help="Long side, in pixels, images are reduced to before detection.",
)


@detect_group.command("eval")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_detect_params
@_detect_max_side
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def detect_eval(paths: tuple[Path, ...], params_path: Path | None, max_side: int, as_json: bool) -> None:
    """Score the detector on Sticky Pi annotated SVGs (files or folders): P, R, F1 at IoU 0.5 and 0.25."""
    from agent.detect import DetectorError
    from agent.detect.builtin import BuiltinDetector
    from agent.detect.evaluate import evaluate

    detector = BuiltinDetector(params_path=params_path, max_side=max_side)
    try:
        report = evaluate(detector, paths)
    except (OSError, ValueError) as e:
        raise DetectorError(str(e)) from None
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())


@detect_group.command("run")
@click.argument(
    "images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@_detect_params
@_detect_max_side
@click.option("--json", "as_json", is_flag=True, help="The annotations the sync would push, as JSON.")
def detect_run(images: tuple[Path, ...], params_path: Path | None, max_side: int, as_json: bool) -> None:
    """Detect the insects on JPEG images and print how many, or (--json) their outlines."""
    import hashlib

    from agent.detect import to_annotations
    from agent.detect.builtin import BuiltinDetector

    detector = BuiltinDetector(params_path=params_path, max_side=max_side)
    results: list[dict[str, Any]] = []
    for path in images:
        data = path.read_bytes()
        t0 = time.perf_counter()
        outlines = detector.detect(data)
        results.append(
            {
                "file": str(path),
                "md5": hashlib.md5(data).hexdigest(),
                "algo_name": detector.name,
                "algo_version": detector.version,
                "n_objects": len(outlines),
                "seconds": round(time.perf_counter() - t0, 3),
                "annotations": to_annotations(outlines),
            }
        )
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(f"detector {detector.name} {detector.version}")
    for r in results:
        click.echo(f"{Path(r['file']).name}: {r['n_objects']} insects ({r['seconds']:.2f} s)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stickyctl``; return the exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="stickyctl", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.Abort:
        click.echo("stickyctl: aborted", err=True)
        return EXIT_ERROR
    except click.ClickException as e:
        click.echo(f"stickyctl: error: {e.format_message()} (see stickyctl --help)", err=True)
        return EXIT_USAGE
    except StickyAgentError as e:
        if debug:
            raise
        click.echo(f"stickyctl: error: {e}", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
