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
from typing import TYPE_CHECKING

import click

from agent import __version__
from agent.config import Config, load_config, resolve_config_path
from agent.errors import QueueError, StickyAgentError

if TYPE_CHECKING:
    from types import FrameType

    from agent.queue import Image
    from agent.service import Agent

log = logging.getLogger("agent")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


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
    interrupted = stop_on_sigint(agent)
    agent.start()
    agent.run_forever()
    if interrupted:  # Ctrl-C: stopped cleanly, and says so to the shell (SIGTERM: 0, for systemd)
        raise click.exceptions.Exit(EXIT_INTERRUPTED)


def stop_on_sigint(agent: Agent) -> list[int]:
    """Given an agent with its signal handlers, make SIGINT stop it as before and also record it
    in the returned list, so the command can exit 130 after the clean stop."""
    seen: list[int] = []

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        agent.request_stop(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    return seen


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
        outcome, image, error = _capture_via_agent(config, pid, timeout)
    else:
        from agent.service import Pipeline

        pipeline = Pipeline.build(config)
        try:
            r = pipeline.capturer.capture(manual=True)
            outcome, image, error = r.outcome, r.image, r.error
        finally:
            pipeline.close()
    if outcome != "ok" or image is None:
        raise StickyAgentError(f"capture {outcome}: {error}")
    click.echo(f"{config.storage.data_dir / image.path}  md5 {image.md5}")


def _capture_via_agent(config: Config, pid: int, timeout: float) -> tuple[str, Image | None, str | None]:
    """Ask the running agent for a manual capture; return its outcome, image and error."""
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
                    return a.outcome, image, a.error
            time.sleep(0.2)
    finally:
        queue.close()
    raise StickyAgentError(
        f"asked the running agent (pid {pid}) for a capture, no result within {timeout:g}s; "
        "check its log (journalctl -u sticky-agent)"
    )


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
@click.option(
    "--state",
    default=None,
    help="Only images in this file state (captured, evicted, quarantined, missing, discarded) or "
    "delivery state (waiting, uploaded, verified, failed, conflict: at --sink, or at any sink).",
)
@click.option("--sink", "sink", default=None, help="Only this sink's delivery column (and --state there).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def queue_ls(ctx: Context, limit: int, state: str | None, sink: str | None, as_json: bool) -> None:
    """List the most recent images, newest first: the file's state and where it stands with
    each sink (an image on disk that a sink has not seen yet is waiting for it)."""
    from agent.queue.readonly import QueueReader
    from agent.queue.states import DeliveryState, ImageState

    config = ctx.config()
    known = [s.value for s in ImageState] + [s.value for s in DeliveryState]
    if state is not None and state not in known:
        raise click.BadParameter(f"unknown state {state!r}; one of {', '.join(known)}")
    names = [s.name for s in config.sinks]
    if sink is not None and sink not in names:
        raise click.BadParameter(f"no sink named {sink!r} (sinks: {', '.join(names) or 'none configured'})")
    if state in {s.value for s in DeliveryState} and not names:
        raise click.BadParameter(f"{state!r} is a delivery state, and no sink is configured")
    path = config.storage.queue_path
    if not path.exists():
        raise QueueError(f"no queue database at {path} (has the agent run yet?)")
    reader = QueueReader(path)
    try:  # streamed: a 100000-row listing is written as it is read
        rows = reader.iter_images(limit=max(0, limit), state=state, sinks=names, sink=sink)
        if as_json:
            sep = "\n"
            click.echo("[", nl=False)
            for it in rows:
                click.echo(sep + "  " + json.dumps(it), nl=False)
                sep = ",\n"
            click.echo("\n]")
            return
        empty, shown = True, [sink] if sink else names
        for it in rows:
            if empty:
                columns = "".join(f"  {n:<10}" for n in shown)
                click.echo(f"{'image':<33}  {'file':<11} {'size':>11}{columns}")
            empty = False
            click.echo(_queue_line(it, shown))
        if empty:
            click.echo("no images in the queue" if state is None else f"no {state} images in the queue")
    finally:
        reader.close()


def _queue_line(it: dict[str, object], sinks: list[str]) -> str:
    """Given a listed image, return its line: name, file state, size, one state per sink
    (``-``: never sent there), then ``manual`` and the errors, each named by its sink."""
    deliveries = it["deliveries"]
    assert isinstance(deliveries, dict)
    cells, errors = [], []
    for name in sinks:
        d = deliveries.get(name) or {"state": "-", "attempts": 0, "last_error": None}
        tries = f"({d['attempts']})" if d["attempts"] and d["state"] != "verified" else ""
        cells.append(f"  {d['state'] + tries:<10}")
        if d["last_error"] and d["state"] != "verified":
            errors.append(f"{name}: {d['last_error']}")
    if it["last_error"]:
        errors.insert(0, str(it["last_error"]))
    manual = " manual" if it["manual"] else ""
    err = "  " + "; ".join(errors) if errors else ""
    return f"{it['name']!s:<33}  {it['state']!s:<11} {it['size']!s:>9} B{''.join(cells)}{manual}{err}"


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
    from agent.config import config_warnings

    for warning in config_warnings(config):
        click.echo(f"WARNING {warning}")


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


# Commands of other concerns register themselves on ``cli`` when imported.
from agent.cli import detect, export, sync  # noqa: E402, F401

#: Modules of extras that a command may need, and how to get them.
OPTIONAL_MODULES = {
    "numpy": "on a Raspberry Pi: sudo apt install python3-numpy (never pip's numpy there); "
    "elsewhere: pip install 'sticky-agent[detect]'",
    "cv2": "on a Raspberry Pi: sudo apt install python3-opencv (never pip's OpenCV there); "
    "elsewhere: pip install 'sticky-agent[detect]'",
    "werkzeug": "the development server is an extra: pip install 'sticky-agent[dev]'",
}


def interrupted() -> int:
    """After Ctrl-C: let a second one end the process at once (no traceback while cleaning up) and
    return the shell's exit code for SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    click.echo("", err=True)
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``stickyctl``; return the exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Not standalone: click returns an Exit's code (Ctrl-C's 130 after a clean stop) as rv.
        rv = cli.main(args=argv, prog_name="stickyctl", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.Abort as e:
        if isinstance(e.__context__, KeyboardInterrupt):
            return interrupted()
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
    except ModuleNotFoundError as e:
        root = (e.name or "").partition(".")[0]
        if debug or root not in OPTIONAL_MODULES:
            raise
        click.echo(
            f"stickyctl: error: this needs {root}, which is not installed: {OPTIONAL_MODULES[root]}", err=True
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        return interrupted()
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    # Run as ``python -m agent``: use the importable module, on whose group the other
    # command modules registered themselves (not this ``__main__`` copy).
    from agent.__main__ import main as _main

    sys.exit(_main())
