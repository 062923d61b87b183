"""What ``stickyctl status`` reports: is the trap capturing, and what is waiting in its queue
(each sink's part: :mod:`agent.sinkstatus`).

:func:`collect_status` gathers plain data (for ``--json``); :func:`format_status`
renders it for a technician's terminal. Both stay cheap at 100,000 queued
images: a handful of indexed queries, no file walks, no image library.
"""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Any

from agent import __version__, humanize
from agent.capture.clock import clock_state
from agent.config import Config
from agent.device import device_id
from agent.errors import StickyAgentError
from agent.locks import running_agent_pid
from agent.queue.readonly import QueueReader
from agent.sinkstatus import format_sink, sink_state, sink_status

__all__ = ["collect_status", "format_status", "problems", "sink_state", "sink_status", "verdict"]

#: Less free space than this is a full disk even with ``min_free_disk_mb = 0`` (as the queue's).
FULL_DISK_BYTES = 1_000_000

#: The agent publishes a heartbeat every few seconds; older than this means it is stuck.
STALE_HEARTBEAT_S = 60
MAX_LINE = humanize.MAX_LINE
_LABEL = 16  # "last capture    ": the width of the labels


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def collect_status(config: Config, now: dt.datetime | None = None) -> dict[str, Any]:
    """Given the config, return the trap's status as JSON-ready data. Never raises for a
    missing queue or device id: those are reported in the data."""
    now = now or dt.datetime.now(dt.UTC)
    data_dir = config.storage.data_dir
    out: dict[str, Any] = {
        "version": __version__,
        "config": str(config.source or ""),
        "schedule": schedule_text(config),
    }
    try:
        out["device"] = device_id(config.device.id)
    except StickyAgentError as e:
        out["device"] = None
        out["device_error"] = str(e)
    pid = running_agent_pid(data_dir) if data_dir.exists() else None
    out["agent"] = {"running": pid is not None, "pid": pid}
    try:
        usage = shutil.disk_usage(data_dir if data_dir.exists() else data_dir.parent)
        out["disk"] = {
            "path": str(data_dir),
            "free_bytes": usage.free,
            "total_bytes": usage.total,
            "full": usage.free < max(config.retention.min_free_disk_mb * 1e6, FULL_DISK_BYTES),
            "min_free_bytes": int(config.retention.min_free_disk_mb * 1e6),
        }
    except OSError as e:
        out["disk"] = {"path": str(data_dir), "error": str(e)}
    clock = clock_state(now)
    sync = clock.last_sync
    out["clock"] = {
        "now": _iso(now),
        "ntp_synchronised": clock.synchronised,
        "last_sync": _iso(dt.datetime.fromtimestamp(sync, dt.UTC)) if sync else None,
        "source": clock.source,
        "rtc_device": clock.rtc_device,
        "trusted": clock.trusted,
        "detail": clock.detail,
    }
    queue_path = config.storage.queue_path
    if not queue_path.exists():
        out["queue"] = None
        out["queue_error"] = f"no queue at {queue_path} yet: the agent has not run"
        return out
    queue = QueueReader(queue_path)
    try:
        published = queue.published()
        heartbeat = _parse(published.get("heartbeat"))
        out["agent"].update(
            started=published.get("agent_started") if pid else None,
            heartbeat=_iso(heartbeat),
            stale=bool(pid and heartbeat and (now - heartbeat).total_seconds() > STALE_HEARTBEAT_S),
        )
        out["next_capture"] = published.get("next_capture") if pid else None
        attempts = queue.attempts(limit=20)
        out["last_capture"] = {**attempts[0], "time": _iso(attempts[0]["time"])} if attempts else None
        ok = queue.attempts(limit=1, outcome="ok")
        out["last_image_time"] = _iso(ok[0]["time"]) if ok else None
        out["captures_24h"] = queue.attempt_counts(now - dt.timedelta(hours=24))
        totals = queue.totals_by_state()
        queue.settle([sink.name for sink in config.sinks])  # one pass for every sink
        sinks = {
            sink.name: sink_status(sink, queue, published, running=pid is not None, now=now)
            for sink in config.sinks
        }
        if len(sinks) == 1:  # the one sink's backlog is the trap's
            (only,) = sinks.values()
            waiting, waiting_bytes = only["waiting"], only["waiting_bytes"]
        else:
            waiting, waiting_bytes = queue.waiting_anywhere(list(sinks))
        out["queue"] = {
            "path": str(queue_path),
            "states": {s: {"count": n, "bytes": b} for s, (n, b) in sorted(totals.items())},
            "total": sum(n for n, _ in totals.values()),
            #: Images on disk still on their way to at least one sink.
            "waiting": waiting,
            "waiting_bytes": waiting_bytes,
        }
        out["last_errors"] = [
            {"time": _iso(a["time"]), "outcome": a["outcome"], "error": a["error"]}
            for a in attempts
            if a["outcome"] != "ok"
        ][:5]
        if published.get("last_quarantine"):
            out["last_quarantine"] = published["last_quarantine"]
        out["problems"] = queue.problems()
        out["sinks"] = sinks
        oldest = [o for o in (v["oldest_waiting"] for v in out["sinks"].values()) if o]
        out["oldest_waiting"] = min(oldest, key=lambda o: o["datetime"] or "") if oldest else None
        out["sync"] = _link_status(config, published, now) if config.sinks else None
        out["insects"] = _insects(queue, now) if config.detector.type != "none" else None
    finally:
        queue.close()
    return out


def schedule_text(config: Config) -> str:
    """Given the config, return when it captures: ``every 20 min``, ``on cron "*/20 * * * *"``,
    with ``, 20:00-06:00 only`` for a window."""
    capture = config.capture
    text = f'on cron "{capture.cron}"' if capture.cron else f"every {humanize.duration(capture.interval)}"
    if capture.window is not None:
        text += f", {capture.window.start:%H:%M}-{capture.window.end:%H:%M} only"
    return text


def _insects(queue: QueueReader, now: dt.datetime) -> dict[str, Any]:
    counts = queue.insect_counts(now - dt.timedelta(hours=24))
    last, previous = counts["last_image"], counts.get("previous_image")
    new = last["new"] if last else None  # tracked by the detection worker (agent.detect.tally)
    if new is None and last and previous:  # untracked: what the latest adds (insects stay on)
        new = max(0, last["insects"] - previous["insects"])
    return {
        "last_image": {**last, "datetime": _iso(last["datetime"])} if last else None,
        "previous_image": {**previous, "datetime": _iso(previous["datetime"])} if previous else None,
        "new_since_previous": new,
        "new_24h": counts["new_since"],
        "images_24h": counts["images_since"],
    }


def _link_status(config: Config, published: dict[str, str], now: dt.datetime) -> dict[str, Any]:
    """Return what every sink shares (one link): the bandwidth cap and today's budget left."""
    today = now.astimezone(dt.UTC).strftime("%Y-%m-%d")
    used = int(published.get("budget_used", "0")) if published.get("budget_day") == today else 0
    budget = config.sync.daily_budget_mb
    return {
        "sinks": len(config.sinks),
        "bandwidth_kbps": config.sync.bandwidth_kbps,
        "budget_left_bytes": None if budget is None else max(0, int(budget * 1e6) - used),
    }


def _size(n: float) -> str:
    return humanize.size(n)


def _ago(iso: str | None, now: dt.datetime) -> str:
    return humanize.ago(iso, now)


def problems(s: dict[str, Any]) -> list[str]:
    """Given :func:`collect_status` data, return what needs a technician, most urgent first."""
    out: list[str] = []
    agent = s["agent"]
    if s.get("device") is None:
        out.append("no device id")
    if not agent["running"]:
        out.append("agent NOT RUNNING")
    elif agent.get("stale"):
        out.append("agent stuck (no heartbeat)")
    last = s.get("last_capture")
    if last and last["outcome"] != "ok":
        out.append(f"last capture {last['outcome'].upper()}")
    if not s["clock"].get("trusted"):
        out.append("clock NOT TRUSTED")
    disk = s["disk"]
    if "free_bytes" not in disk:
        out.append("free disk unknown")
    elif disk["free_bytes"] < disk.get("min_free_bytes", 0):
        out.append(f"disk full ({_size(disk['free_bytes'])} free)")
    for name, k in (s.get("sinks") or {}).items():
        state = k.get("last_state")
        if state == "unreachable":
            out.append(f"{name} unreachable")
        elif state == "auth":
            out.append(f"{name} refuses our credentials")
        elif state == "refusing":
            out.append(f"{name} answers with errors")
        refused = k.get("failed", 0) + k.get("conflict", 0)
        if refused:
            out.append(f"{refused} image(s) refused by {name}")
    if s.get("problems"):
        out.append(f"{len(s['problems'])} file(s) quarantined")
    return out


def verdict(s: dict[str, Any]) -> str:
    """Given :func:`collect_status` data, return the first line: ``OK: capturing every 20 min,
    0 waiting`` or ``PROBLEM: agent NOT RUNNING; clock NOT TRUSTED``."""
    found = problems(s)
    if found:
        text = "PROBLEM: " + "; ".join(found)
        while len(text) > MAX_LINE and len(found) > 1:
            found = found[:-1]
            text = "PROBLEM: " + "; ".join(found) + " (more below)"
        return text
    q = s.get("queue") or {}
    tail = f"{q.get('waiting', 0)} waiting" if s.get("sinks") else f"{q.get('total', 0)} images stored"
    return f"OK: capturing {s.get('schedule', '')}, {tail}"


def _fit(lines: list[str]) -> list[str]:
    """Given lines, return them with every one of at most MAX_LINE characters: a longer one
    continues on lines indented under its value."""
    out: list[str] = []
    for line in lines:
        labelled = len(line) > _LABEL and line[:_LABEL].endswith("  ")
        out.extend(humanize.fit(line, _LABEL if labelled else 4))
    return out


def format_status(s: dict[str, Any]) -> str:
    """Given :func:`collect_status` data, return the text a technician reads: a verdict line, then
    one line per fact, each of at most MAX_LINE characters."""
    now = dt.datetime.fromisoformat(s["clock"]["now"])
    lines = [
        verdict(s),
        f"device          {s['device'] or 'UNKNOWN: ' + s.get('device_error', '')}",
        f"software        sticky-agent {s['version']}",
    ]
    agent = s["agent"]
    if agent["running"]:
        state = f"running (pid {agent['pid']}), capturing {s.get('schedule', '')}"
        if agent.get("stale") and s["disk"].get("full"):
            state += f", no heartbeat written since {humanize.when(agent.get('heartbeat'))}: the disk is full"
        elif agent.get("stale"):
            state += f", NO HEARTBEAT since {humanize.when(agent.get('heartbeat'))}: the agent may be stuck"
    else:
        state = "NOT RUNNING: no scheduled captures (start it: systemctl start sticky-agent)"
    lines.append(f"agent           {state}")
    clock = s["clock"]
    trust = "trusted" if clock.get("trusted") else "NOT TRUSTED"
    lines.append(
        f"clock           {humanize.when(clock['now'])} ({trust}, source {clock.get('source')}: "
        f"{clock.get('detail')})"
    )
    syncing = bool(s.get("sinks"))
    if s.get("queue") is None:
        lines.append(f"queue           {s.get('queue_error')}")
    else:
        last = s.get("last_capture")
        if last:
            what = last["outcome"].upper() if last["outcome"] != "ok" else "ok"
            extra = f": {last['error']}" if last.get("error") else ""
            manual = ", manual" if last["manual"] else ""
            lines.append(f"last capture    {_ago(last['time'], now)}, {what}{manual}{extra}")
        else:
            lines.append("last capture    never")
        lines.append(f"last image      {_ago(s.get('last_image_time'), now)}")
        nxt = s.get("next_capture")
        lines.append(f"next capture    {_ago(nxt, now) if nxt else 'none scheduled'}")
        c24 = s.get("captures_24h", {})
        lines.append(
            "last 24 h       "
            + ", ".join(f"{n} {k}" for k, n in sorted(c24.items()))
            + ("" if c24 else "no capture attempts")
        )
        q = s["queue"]
        waiting = f", {q['waiting']} waiting to sync" if syncing else ""
        lines.append(f"queue           {q['total']} images{waiting}")
        for state_name, t in q["states"].items():
            lines.append(f"  {state_name:<13} {t['count']:>8}  {_size(t['bytes'])}")
        oldest = s.get("oldest_waiting")
        if oldest and syncing:
            lines.append(f"oldest waiting  {oldest['name']}, {_ago(oldest['datetime'], now)}")
    disk = s["disk"]
    if "free_bytes" in disk:
        lines.append(f"free disk       {_size(disk['free_bytes'])} of {_size(disk['total_bytes'])}")
        if disk.get("full"):
            lines.append(
                "                DISK FULL: no image and no queue row can be written; the agent "
                "keeps running and captures resume by themselves when space returns"
            )
    else:
        lines.append(f"free disk       UNKNOWN: {disk.get('error')}")
    if s.get("last_quarantine"):
        lines.append(f"quarantined     {s['last_quarantine']}")
    for p in s.get("problems") or []:
        lines.append(f"  {p['state'].upper():<13} {p['name']}: {p['reason']}")
    link = s.get("sync") or {}
    if link.get("budget_left_bytes") is not None:
        lines.append(f"budget left     {_size(link['budget_left_bytes'])} today (UTC), all sinks together")
    for name, k in (s.get("sinks") or {}).items():
        lines.extend(format_sink(name, k, now, bool(s["agent"]["running"])))
    insects = s.get("insects")
    if insects:
        lines.append("insects         " + _insect_text(insects))
    errors = s.get("last_errors") or []
    if errors:
        lines.append("last errors")
        lines.extend(f"  {humanize.when(e['time'])} {e['outcome']}: {e['error']}" for e in errors)
    return "\n".join(_fit(lines))


def _insect_text(insects: dict[str, Any]) -> str:
    last = insects["last_image"]
    if not last:
        return "no image annotated yet"
    card = ", a new card" if last.get("new_card") else ""
    text = f"{last['insects']} on the latest image ({last['name']}{card})"
    new = insects.get("new_since_previous")
    if new is not None:
        text += f", {new} new since the previous one"
    if last.get("new") is not None:  # tracked figures: the capture rate
        text += f"; {insects['new_24h']} new on {insects['images_24h']} images in the last 24 h"
    return text
