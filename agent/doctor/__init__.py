"""``stickyctl doctor``: is this trap ready to work unattended? One line per check.

Each check prints ``OK|WARN|FAIL <check>: <detail>``, and a failure a ``fix:`` line. The
checks: the configuration, the device id, the data folder (writable, free space against
``retention.min_free_disk_mb``), the camera (open it, take one frame, close it; no flash),
the flash pin (claimed and released, not lit), the button and status LED pins when enabled,
each sensor, the clock, each sink's credentials and the sink itself (every ``[[sink]]``), and
the systemd service. Hardware the running agent holds is not touched: its state comes from
the agent's own record instead. WARN is fine to leave; any FAIL makes the exit code 1.

Every check catches its own errors: a check that crashes is a FAIL, never a traceback.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from agent import humanize
from agent.doctor.checks import Check, Probes, _one_line, fail
from agent.doctor.hardware import (
    UNITS,
    check_button_and_led,
    check_camera,
    check_flash,
    check_sensors,
    expected_quantities,
)
from agent.doctor.local import _agent_pid, check_config, check_data_dir, check_device
from agent.doctor.sinks import check_sinks
from agent.doctor.system import check_clock, check_service

__all__ = [
    "UNITS",
    "Check",
    "Probes",
    "as_json",
    "expected_quantities",
    "failed",
    "format_results",
    "run_checks",
]


def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> Iterator[Check]:
    try:
        result = fn()
    except Exception as e:  # a check must never crash the doctor
        yield fail(name, f"the check itself failed: {type(e).__name__}: {_one_line(e)}", "run with --debug")
        return
    yield from (result if isinstance(result, list) else [result])


def run_checks(config_path: Path, probes: Probes | None = None) -> list[Check]:
    """Given the configuration file, run every check and return their outcomes, in order."""
    probes = probes or Probes()
    # lgpio (gpiozero's pin factory on Pi OS) makes its notification pipes in the working
    # folder, which may be read-only or someone's home: use the temporary folder instead.
    os.environ.setdefault("LG_WD", tempfile.gettempdir())
    first, config = check_config(config_path, probes.environ)
    results = [first]
    agent_pid = _agent_pid(config) if config is not None else None
    if config is not None:
        cfg = config
        results += _guarded("device id", lambda: check_device(cfg))
        results += _guarded("data dir", lambda: check_data_dir(cfg))
        results += _guarded("camera", lambda: check_camera(cfg, agent_pid))
        results += _guarded("flash", lambda: check_flash(cfg, agent_pid))
        results += _guarded("button", lambda: check_button_and_led(cfg, agent_pid))
        results += _guarded("sensors", lambda: check_sensors(cfg, agent_pid))
    results += _guarded("clock", lambda: check_clock(probes))
    if config is not None:
        cfg = config
        results += _guarded("sinks", lambda: check_sinks(cfg, probes.environ))
    results += _guarded("service", lambda: check_service(probes, agent_pid))
    return results


def format_results(results: list[Check]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("OK", "WARN", "FAIL")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    verdict = "not ready: fix the FAIL lines" if counts["FAIL"] else "ready"
    lines = [part for r in results for part in r.line().splitlines()]
    lines.append(f"doctor: {summary}: {verdict}")
    return "\n".join(out for line in lines for out in humanize.fit(line, 5))  # under "FAIL "


def by_sink(results: list[Check]) -> dict[str, dict[str, object]]:
    """Given the checks, return ``{sink name: {status, detail, hint, credentials}}``: each sink's
    own check (``sink <name>``) with its credentials check's status, or the credentials failure
    when the sink could not be opened."""
    out: dict[str, dict[str, object]] = {}
    rank = {"OK": 0, "WARN": 1, "FAIL": 2}
    for r in results:
        kind, _, name = r.check.partition(" ")
        if kind not in ("sink", "credentials") or not name:
            continue
        entry = out.setdefault(name, {"status": "OK", "detail": None, "hint": None, "credentials": None})
        if kind == "credentials":
            entry["credentials"] = r.status
        if kind == "sink" or r.status != "OK":
            entry["detail"], entry["hint"] = r.detail, r.hint
        if rank[r.status] > rank[str(entry["status"])]:
            entry["status"] = r.status
    return out


def as_json(results: list[Check]) -> str:
    return json.dumps(
        {
            "ok": not any(r.status == "FAIL" for r in results),
            "checks": [asdict(r) for r in results],
            "sinks": by_sink(results),
        },
        indent=2,
        ensure_ascii=False,
    )


def failed(results: list[Check]) -> list[Check]:
    """Return the failed checks: the doctor exits 1 if there is one (WARN is allowed)."""
    return [r for r in results if r.status == "FAIL"]
