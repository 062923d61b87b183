"""What ``stickyctl status`` reports: is the trap capturing, and what is waiting in its queue.

:func:`collect_status` gathers plain data (for ``--json``); :func:`format_status`
renders it for a technician's terminal. Both stay cheap at 100,000 queued
images: a handful of indexed queries, no file walks, no image library.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from typing import Any

from agent import __version__
from agent.clock import clock_state
from agent.config import Config
from agent.device import device_id
from agent.errors import StickyAgentError
from agent.locks import running_agent_pid
from agent.queue.readonly import QueueReader
from agent.queue.states import WAITING_STATES

#: The agent publishes a heartbeat every few seconds; older than this means it is stuck.
STALE_HEARTBEAT_S = 60


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def collect_status(config: Config, now: dt.datetime | None = None) -> dict[str, Any]:
    """Given the config, return the trap's status as JSON-ready data. Never raises for a
    missing queue or device id: those are reported in the data."""
    now = now or dt.datetime.now(dt.UTC)
    data_dir = config.storage.data_dir
    out: dict[str, Any] = {"version": __version__, "config": str(config.source or "")}
    try:
        out["device"] = device_id(config.device.id)
    except StickyAgentError as e:
        out["device"] = None
        out["device_error"] = str(e)
    pid = running_agent_pid(data_dir) if data_dir.exists() else None
    out["agent"] = {"running": pid is not None, "pid": pid}
    try:
        usage = shutil.disk_usage(data_dir if data_dir.exists() else data_dir.parent)
        out["disk"] = {"path": str(data_dir), "free_bytes": usage.free, "total_bytes": usage.total}
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
        waiting = [totals[s] for s in WAITING_STATES if s in totals]
        out["queue"] = {
            "path": str(queue_path),
            "states": {s: {"count": n, "bytes": b} for s, (n, b) in sorted(totals.items())},
            "total": sum(n for n, _ in totals.values()),
            "waiting": sum(n for n, _ in waiting),
            "waiting_bytes": sum(b for _, b in waiting),
        }
        oldest = queue.oldest_waiting()
        out["oldest_waiting"] = {**oldest, "datetime": _iso(oldest["datetime"])} if oldest else None
        out["last_errors"] = [
            {"time": _iso(a["time"]), "outcome": a["outcome"], "error": a["error"]}
            for a in attempts
            if a["outcome"] != "ok"
        ][:5]
        if published.get("last_quarantine"):
            out["last_quarantine"] = published["last_quarantine"]
        out["sync"] = _sync_status(config, queue, published, out["queue"]) if config.sync else None
        out["insects"] = _insects(queue, now) if config.detector.type != "none" else None
    finally:
        queue.close()
    return out


def _insects(queue: QueueReader, now: dt.datetime) -> dict[str, Any]:
    counts = queue.insect_counts(now - dt.timedelta(hours=24))
    last = counts["last_image"]
    return {
        "last_image": {**last, "datetime": _iso(last["datetime"])} if last else None,
        "new_24h": counts["new_since"],
        "images_24h": counts["images_since"],
    }


def _sync_status(
    config: Config, queue: QueueReader, published: dict[str, str], totals: dict[str, Any]
) -> dict[str, Any]:
    assert config.sync is not None
    last = json.loads(published["sync_last"]) if published.get("sync_last") else None
    rate = None
    if last and last.get("bytes_sent") and last.get("seconds"):
        rate = last["bytes_sent"] / last["seconds"]
    budget_used = (
        int(published.get("budget_used", "0"))
        if published.get("budget_day") == (dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"))
        else 0
    )
    budget = config.sync.daily_budget_mb
    return {
        "url": config.sync.url,
        "reachable": {"yes": True, "no": False}.get(published.get("sync_reachable", "")),
        "reachable_since": published.get("sync_reachable_since"),
        "error": published.get("sync_error"),
        "last_pass": last,
        "throughput_bytes_per_s": rate,
        "eta_seconds": totals["waiting_bytes"] / rate if rate and totals["waiting_bytes"] else None,
        "budget_left_bytes": None if budget is None else max(0, int(budget * 1e6) - budget_used),
        "annotations": queue.annotation_totals(),
        "problems": queue.problems(),
    }


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _ago(iso: str | None, now: dt.datetime) -> str:
    if not iso:
        return "never"
    t = dt.datetime.fromisoformat(iso)
    secs = (now - t).total_seconds()
    if secs < 0:
        return f"{t:%Y-%m-%d %H:%M:%S} UTC (in {-secs:.0f}s)"
    if secs < 120:
        return f"{t:%Y-%m-%d %H:%M:%S} UTC ({secs:.0f}s ago)"
    if secs < 7200:
        return f"{t:%Y-%m-%d %H:%M:%S} UTC ({secs / 60:.0f} min ago)"
    return f"{t:%Y-%m-%d %H:%M:%S} UTC ({secs / 3600:.1f} h ago)"


def _format_sync(sync: dict[str, Any], queue: dict[str, Any], now: dt.datetime) -> list[str]:
    reach = {True: "reachable", False: "UNREACHABLE", None: "not tried yet"}[sync["reachable"]]
    since = f" since {_ago(sync['reachable_since'], now)}" if sync.get("reachable_since") else ""
    lines = [f"api             {sync['url']} {reach}{since}"]
    if sync.get("error"):
        lines.append(f"sync problem    {sync['error']}")
    last = sync.get("last_pass")
    if last:
        what = "ok" if last["outcome"] == "ok" else f"{last['outcome']}: {last.get('error')}"
        lines.append(
            f"last sync       {_ago(last['started'], now)}, {what}, {last['images_sent']} images "
            f"({_size(last['bytes_sent'])}), {last.get('annotations_sent', 0)} annotations "
            f"in {last['seconds']:.1f}s"
        )
    rate = sync.get("throughput_bytes_per_s")
    if rate:
        lines.append(f"throughput      {_size(rate)}/s")
    lines.append(f"backlog         {queue['waiting']} images, {_size(queue['waiting_bytes'])}")
    if sync.get("eta_seconds"):
        lines.append(f"time to drain   ~{sync['eta_seconds'] / 60:.0f} min at the last sync's rate")
    if sync.get("budget_left_bytes") is not None:
        lines.append(f"budget left     {_size(sync['budget_left_bytes'])} today (UTC)")
    if sync.get("annotations"):
        lines.append(
            "annotations     " + ", ".join(f"{n} {k}" for k, n in sorted(sync["annotations"].items()))
        )
    for p in sync.get("problems", []):
        lines.append(f"  {p['state'].upper():<11} {p['name']}: {p['reason']}")
    return lines


def format_status(s: dict[str, Any]) -> str:
    """Given :func:`collect_status` data, return the text a technician reads."""
    now = dt.datetime.fromisoformat(s["clock"]["now"])
    lines = [
        f"device          {s['device'] or 'UNKNOWN: ' + s.get('device_error', '')}",
        f"software        sticky-agent {s['version']}",
    ]
    agent = s["agent"]
    if agent["running"]:
        state = f"running (pid {agent['pid']})"
        if agent.get("stale"):
            state += f", NO HEARTBEAT since {agent.get('heartbeat')}: the agent may be stuck"
    else:
        state = "NOT RUNNING: no scheduled captures (start it: systemctl start sticky-agent)"
    lines.append(f"agent           {state}")
    clock = s["clock"]
    trust = "trusted" if clock.get("trusted") else "NOT TRUSTED"
    source = clock.get("source")
    lines.append(f"clock           {clock['now']} ({trust}, source {source}: {clock.get('detail')})")
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
        lines.append(f"queue           {q['total']} images, {q['waiting']} waiting to sync")
        for state_name, t in q["states"].items():
            lines.append(f"  {state_name:<13} {t['count']:>8}  {_size(t['bytes'])}")
        oldest = s.get("oldest_waiting")
        if oldest:
            lines.append(f"oldest waiting  {oldest['name']} ({_ago(oldest['datetime'], now)})")
    disk = s["disk"]
    if "free_bytes" in disk:
        lines.append(f"free disk       {_size(disk['free_bytes'])} of {_size(disk['total_bytes'])}")
    else:
        lines.append(f"free disk       UNKNOWN: {disk.get('error')}")
    if s.get("last_quarantine"):
        lines.append(f"quarantined     {s['last_quarantine']}")
    if s.get("sync"):
        lines.extend(_format_sync(s["sync"], s["queue"], now))
    insects = s.get("insects")
    if insects:
        last = insects["last_image"]
        lines.append(
            "insects         "
            + (
                f"{last['insects']} on the card{' (new card)' if last['new_card'] else ''}, "
                + ("new: unknown yet" if last["new"] is None else f"{last['new']} new")
                + f" on the last image ({last['name']}), "
                if last
                else "no image annotated yet, "
            )
            + f"{insects['new_24h']} new on {insects['images_24h']} images in the last 24 h"
        )
    errors = s.get("last_errors") or []
    if errors:
        lines.append("last errors")
        lines.extend(f"  {e['time']} {e['outcome']}: {e['error']}" for e in errors)
    return "\n".join(lines)
