"""Doctor checks of this machine: configuration, device id, data folder, the agent's record."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from agent import humanize
from agent.config import Config, load_config
from agent.doctor.checks import SERVICE, Check, _one_line, fail, ok, warn
from agent.errors import (
    ConfigError,
    StickyAgentError,
)


def check_config(path: Path, environ: Mapping[str, str] | None) -> tuple[Check, Config | None]:
    try:
        config = load_config(path, environ=environ)
    except ConfigError as e:
        if e.problems:
            detail = f"{path}: " + "; ".join(e.problems)
            hint = "fix the keys named above (`stickyctl config check` lists them; examples in config/)"
        else:
            detail = _one_line(e)
            hint = (
                "pass --config FILE, or install one: sudo install -m 644 config/pi.toml "
                "/etc/sticky-agent/agent.toml (hardware/install.sh does)"
            )
        return fail("config", detail, hint), None
    detail = (
        f"{path} valid (camera {config.camera.type}, flash {config.flash.type}, "
        f"sensors {config.sensors.type}, sync {'on' if config.sync else 'off'})"
    )
    return ok("config", detail), config


def check_device(config: Config) -> Check:
    from agent.device import device_id

    try:
        return ok("device id", device_id(config.device.id))
    except StickyAgentError as e:
        return fail("device id", _one_line(e), 'set [device] id = "<8 lower-case hex digits>"')


def check_data_dir(config: Config) -> list[Check]:
    try:
        return _check_data_dir(config)
    except PermissionError as e:
        return [
            fail(
                "data dir",
                f"cannot look into {config.storage.data_dir}: {e.strerror or e}",
                f"run the doctor as root (sudo stickyctl doctor) or as the agent's user ({SERVICE})",
            )
        ]


def _check_data_dir(config: Config) -> list[Check]:
    from agent.capture.retention import free_mb

    data_dir = config.storage.data_dir
    out: list[Check] = []
    if data_dir.exists():
        if not data_dir.is_dir():
            return [
                fail(
                    "data dir",
                    f"{data_dir} exists but is not a folder",
                    "move it away or fix storage.data_dir",
                )
            ]
        try:
            with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-"):
                pass
            out.append(ok("data dir", f"{data_dir} writable"))
        except OSError as e:
            out.append(
                fail(
                    "data dir",
                    f"cannot write in {data_dir}: {e.strerror or e}",
                    f"run stickyctl as the agent's user (sudo -u {SERVICE} stickyctl doctor), or give "
                    f"that user the folder: sudo chown -R {SERVICE}: {data_dir}",
                )
            )
    else:
        parent = data_dir.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            out.append(ok("data dir", f"{data_dir} does not exist yet; the agent will create it"))
        else:
            why = "is not a folder" if not parent.is_dir() else "is not writable"
            out.append(
                fail(
                    "data dir",
                    f"{data_dir} does not exist and cannot be created: {parent} {why}",
                    f"create it for the agent's user: sudo install -d -o {SERVICE} -g {SERVICE} {data_dir}"
                    if parent.is_dir()
                    else "fix storage.data_dir",
                )
            )
    try:
        free = free_mb(data_dir)
    except OSError as e:
        out.append(fail("free space", f"cannot measure: {e}", "check the file system of storage.data_dir"))
        return out
    minimum = config.retention.min_free_disk_mb
    detail = f"{free:,.0f} MB free (retention.min_free_disk_mb = {minimum:g})"
    hint = (
        "get the trap online so synced images can be deleted (retention), delete old data, or use a "
        "larger SD card"
    )
    if free < minimum:
        out.append(fail("free space", detail + ": captures are refused", hint))
    elif free < 2 * minimum:
        out.append(warn("free space", detail + ": less than twice the minimum", hint))
    else:
        out.append(ok("free space", detail))
    return out


def _agent_pid(config: Config) -> int | None:
    from agent.locks import running_agent_pid

    try:
        pid = running_agent_pid(config.storage.data_dir)
    except OSError:
        return None
    return pid if pid and pid > 0 else None


def _last_capture(config: Config) -> tuple[str, str | None, str] | None:
    """Return the running agent's last capture attempt (outcome, error, time), if recorded."""
    from agent.queue import Queue

    if not config.storage.queue_path.exists():
        return None
    queue = Queue(config.storage.queue_path, create=False)
    try:
        attempts = queue.attempts(limit=1)
    finally:
        queue.close()
    if not attempts:
        return None
    a = attempts[0]
    return a.outcome, a.error, humanize.when(a.started_at)
