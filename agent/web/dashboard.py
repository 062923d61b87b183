"""The dashboard: is the trap capturing, what is waiting, clock, disk, battery and climate, sinks.

Its data is ``stickyctl status``'s (:func:`agent.status.collect_status`: its ``sinks`` are each
sink's state, counts and last error), plus the readings of the newest image.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from markupsafe import Markup

from agent.config import Config
from agent.status import collect_status
from agent.web.data import ImageRow, WebReader
from agent.web.layout import esc, size, when


def collect(config: Config, now: dt.datetime | None = None) -> dict[str, Any]:
    """Given the config, return the dashboard's data: the status, the newest image, the sinks."""
    now = now or dt.datetime.now(dt.UTC)
    status = collect_status(config, now)
    latest: ImageRow | None = None
    if status.get("queue") is not None:
        reader = WebReader(config.storage.queue_path)
        try:
            rows = reader.latest(1)
            latest = rows[0] if rows else None
        finally:
            reader.close()
    status["latest_image"] = latest
    status["sinks"] = sinks(status)
    status["verdict"] = verdict(status)
    return status


def sink_names(config: Config) -> list[str]:
    """Given the config, return the names of its sinks, in its order (the keys of :func:`sinks`)."""
    return [sink.name for sink in config.sinks]


def sinks(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Given collect_status data, return ``{sink name: its state}``: where it sends to, its state
    (``ok``, ``unreachable``...), images waiting / verified / failed / in conflict, the last
    error, the last success (:func:`agent.status.sink_status`)."""
    return dict(status.get("sinks") or {}) if status.get("queue") else {}


def verdict(s: dict[str, Any]) -> tuple[str, str]:
    """Given the dashboard data, return ``(level, sentence)``: ``ok``, ``warn`` or ``fail``."""
    if not s["agent"]["running"]:
        return "fail", "The agent is not running: no captures are being taken."
    if s["agent"].get("stale"):
        return "fail", "The agent has stopped reporting: it may be stuck."
    last = s.get("last_capture")
    if last and last["outcome"] != "ok":
        return "fail", f"The last capture failed ({last['outcome']}): {last.get('error') or ''}"
    if not s["clock"].get("trusted"):
        return "warn", "Capturing, but the clock is not trusted: get the trap online or fit an RTC."
    for name, sink in s.get("sinks", {}).items():
        state = sink.get("last_state")
        if state == "unreachable":
            return "warn", f"Capturing; {name} is unreachable, {sink['waiting']} images wait for it."
        if state in ("auth", "refusing"):
            what = "refuses our credentials" if state == "auth" else "answers with errors"
            return "warn", f"Capturing; {name} {what}: {sink.get('last_error') or ''}"
        refused = sink.get("failed", 0) + sink.get("conflict", 0)
        if refused:
            return "warn", f"Capturing; {refused} images were refused by {name} (see below)."
    if s.get("problems"):
        return "warn", f"Capturing; {len(s['problems'])} files are quarantined (see stickyctl status)."
    return "ok", "Capturing normally."


def _row(label: str, value: object, cls: str = "") -> Markup:
    return Markup('<tr class="{}"><th>{}</th><td>{}</td></tr>').format(cls, label, value)


def _reading(value: float | int | None, unit: str) -> str:
    return "unknown" if value is None else f"{value:g} {unit}"


def dashboard_html(s: dict[str, Any]) -> Markup:
    """Given :func:`collect` data, return the dashboard's body (re-fetched every few seconds)."""
    now = dt.datetime.fromisoformat(s["clock"]["now"])
    level, sentence = s["verdict"]
    out = [Markup('<p class="verdict {}" id="verdict">{}</p>').format(level, sentence)]
    rows = [_row("device", Markup('<span id="device">{}</span>').format(s.get("device") or "UNKNOWN"))]
    rows.append(_row("software", f"sticky-agent {s['version']}"))
    last = s.get("last_capture")
    if last:
        what = "ok" if last["outcome"] == "ok" else last["outcome"].upper()
        detail = Markup("{}, {}{}").format(
            when(last["time"], now), what, ", manual" if last["manual"] else ""
        )
        rows.append(_row("last capture", Markup('<span id="last-capture">{}</span>').format(detail)))
    else:
        rows.append(_row("last capture", Markup('<span id="last-capture">never</span>')))
    nxt = s.get("next_capture")
    rows.append(_row("next capture", when(nxt, now) if nxt else "none scheduled"))
    clock = s["clock"]
    trust = "trusted" if clock.get("trusted") else "NOT TRUSTED"
    rows.append(
        _row("clock", Markup("{} ({}, {})").format(clock["now"][:19] + " UTC", trust, clock.get("detail")))
    )
    disk = s["disk"]
    if "free_bytes" in disk:
        rows.append(_row("free disk", f"{size(disk['free_bytes'])} of {size(disk['total_bytes'])}"))
    img: ImageRow | None = s.get("latest_image")
    if img is not None:
        rows.append(_row("battery", _reading(img.battery, "%")))
        rows.append(_row("temperature", _reading(img.temperature, "°C")))
        rows.append(_row("humidity", _reading(img.humidity, "%")))
    q = s.get("queue")
    if q:
        rows.append(
            _row("queue", f"{q['total']} images, {q['waiting']} waiting ({size(q['waiting_bytes'])})")
        )
    insects = s.get("insects")
    if insects and insects.get("last_image"):
        li = insects["last_image"]
        rows.append(_row("insects", f"{li['insects']} on the card ({li['name']})"))
    out.append(Markup("<table class='facts'>{}</table>").format(Markup("").join(rows)))
    if img is not None:
        out.append(
            Markup(
                '<p><a href="/captures/{id}"><img class="latest" src="/thumb/{id}" alt="{name}"></a></p>'
            ).format(id=img.id, name=img.name)
        )
    out.append(_sinks_html(s.get("sinks", {}), now))
    errors = s.get("last_errors") or []
    if errors:
        items = Markup("").join(
            Markup("<li>{} {}: {}</li>").format(e["time"], e["outcome"], e["error"]) for e in errors
        )
        out.append(Markup("<h2>Last errors</h2><ul>{}</ul>").format(items))
    return Markup("").join(out)


_STATE_WORDS = {
    "ok": "reachable",
    "unreachable": "UNREACHABLE",
    "auth": "REFUSES OUR CREDENTIALS",
    "refusing": "answers with errors",
    "budget spent": "today's budget spent",
    "not checked": "not checked yet",
}


def _sinks_html(all_sinks: dict[str, dict[str, Any]], now: dt.datetime) -> Markup:
    if not all_sinks:
        return Markup("<h2>Sinks</h2><p>No sink configured: this trap only captures.</p>")
    rows = []
    for name, k in all_sinks.items():
        state = _STATE_WORDS.get(k.get("last_state", ""), k.get("last_state", ""))
        if k.get("state") == "agent not running":
            state = f"{state} at the last check (agent not running)"
        failed = k["failed"] + k.get("conflict", 0)
        ann = k.get("annotations") or {}
        rows.append(
            Markup(
                '<tr class="sink" data-sink="{}" data-state="{}"><td>{}{}<br><small>{} ({})</small></td>'
                "<td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"
            ).format(
                name,
                k.get("last_state", ""),
                name,
                "" if k.get("required", True) else " (not required)",
                k.get("address", ""),
                k.get("type", ""),
                state,
                k["waiting"],
                size(k["waiting_bytes"]),
                k["verified"],
                failed,
                f"{ann.get('sent', 0)} sent, {ann.get('pending', 0)} pending",
                when(k.get("last_success"), now),
                esc(k.get("last_error") or ""),
            )
        )
    return Markup(
        "<h2>Sinks</h2><table class='grid'><tr><th>sink</th><th>state</th><th>waiting</th><th>verified</th>"
        "<th>failed</th><th>annotations</th><th>last success</th><th>last error</th></tr>{}</table>"
    ).format(Markup("").join(rows))
