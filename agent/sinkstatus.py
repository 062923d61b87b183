"""Where each sink stands, for ``stickyctl status`` (and the web page): its state from what its
worker published, its counts from the queue, and its block of the text status."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

from agent import humanize
from agent.queue.readonly import QueueReader

if TYPE_CHECKING:
    from agent.sinks.base import SinkSettings

_LABEL = 16  # the width of status's labels ("last capture    ")


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def _size(n: float) -> str:
    return humanize.size(n)


def _ago(iso: str | None, now: dt.datetime) -> str:
    return humanize.ago(iso, now)


#: What a sink's published error says, when the worker did not publish its kind.
_AUTH_ERROR = re.compile(r"\((401|403)\)|credentials|password", re.IGNORECASE)
#: A sink's state as status names it (``state`` in ``sinks``).
SINK_STATES = ("ok", "unreachable", "auth", "refusing", "budget spent", "not checked", "agent not running")


def sink_state(
    reachable: bool | None, error: str | None, checked: str | None, kind: str | None = None
) -> str:
    """Given what a sink's worker last published, return its state: ``ok``, ``unreachable``,
    ``auth`` (credentials or account refused), ``refusing`` (it answers, with errors), ``budget
    spent`` or ``not checked``. ``kind`` is the worker's own word for the error, if it gave one."""
    if reachable is None and not checked:
        return "not checked"
    if reachable is False:
        return "unreachable"
    if not error:
        return "ok"
    if kind in SINK_STATES:
        return kind
    if "budget" in error.lower():
        return "budget spent"
    return "auth" if _AUTH_ERROR.search(error) else "refusing"


def sink_status(
    settings: SinkSettings, queue: QueueReader, published: dict[str, str], running: bool, now: dt.datetime
) -> dict[str, Any]:
    """Given a sink's settings, the queue and the agent's published facts, return where the sink
    stands (``stickyctl status --json``'s ``sinks.<name>``). With the agent stopped, ``state`` is
    ``agent not running`` and ``last_state`` what the facts said at the last check."""
    name = settings.name

    def fact(key: str) -> str | None:
        return published.get(f"sink.{name}.{key}") or None

    totals = queue.sink_totals(name)
    reachable = {"yes": True, "no": False}.get(fact("reachable") or "")
    error = fact("error")
    last_state = sink_state(reachable, error, fact("checked"), fact("error_kind"))
    next_retry = None
    if totals["failed"]:  # the agent gives failed images one more try by itself
        last = fact("failed_retry")
        at = float(last) + settings.retry_failed_interval if last else now.timestamp()
        next_retry = _iso(dt.datetime.fromtimestamp(max(at, now.timestamp()), dt.UTC))
    try:
        last_pass = json.loads(fact("last") or "null")
    except ValueError:
        last_pass = None
    rate = None
    if isinstance(last_pass, dict) and last_pass.get("bytes_sent") and last_pass.get("seconds"):
        rate = last_pass["bytes_sent"] / last_pass["seconds"]
    oldest = queue.oldest_waiting(name)
    success = queue.last_verified(name)
    return {
        "type": settings.type,
        "address": settings.address,
        "required": settings.required,
        "state": last_state if running else "agent not running",
        "last_state": last_state,
        "reachable": reachable,
        "reachable_since": fact("reachable_since"),
        #: When the agent last talked to the sink (reachable/last_error are as of then).
        "checked": fact("checked"),
        "last_error": error,
        "verified": totals["verified"],
        "waiting": totals["waiting"],
        "waiting_bytes": totals["waiting_bytes"],
        "uploaded": totals["uploaded"],
        "failed": totals["failed"],
        "conflict": totals["conflict"],
        "annotations": {
            "sent": totals["annotations_sent"],
            "pending": totals["annotations_pending"],
            "failed": totals["annotations_failed"],
        },
        "oldest_waiting": {**oldest, "datetime": _iso(oldest["datetime"])} if oldest else None,
        "last_success": _iso(success),
        "last_pass": last_pass if isinstance(last_pass, dict) else None,
        "throughput_bytes_per_s": rate,
        "eta_seconds": totals["waiting_bytes"] / rate if rate and totals["waiting_bytes"] else None,
        "next_failed_retry": next_retry,
        "problems": queue.sink_problems(name),
    }


_REACH = {
    "ok": "reachable",
    "unreachable": "UNREACHABLE",
    "auth": "REFUSES OUR CREDENTIALS",
    "refusing": "answers, with an error",
    "budget spent": "reachable, today's data budget spent",
    "not checked": "not checked yet",
}


def _label(text: str) -> str:
    return f"{text:<{_LABEL - 1}} "


def format_sink(name: str, k: dict[str, Any], now: dt.datetime, running: bool) -> list[str]:
    """Given one sink's status, return its block: where it is and its state first, then its
    backlog, what it holds, the last pass and its problems (indented under it)."""
    where = f"{k['address']} " if k["address"] != name else ""
    where += f"({k['type']}{', not required' if not k['required'] else ''})"
    reach = _REACH.get(k["last_state"], k["last_state"])
    if running:
        since = f" since {_ago(k['reachable_since'], now)}" if k.get("reachable_since") else ""
        lines = [f"{_label('sink ' + name)}{where}: {reach}{since}"]
        if k.get("last_error"):
            lines.append(f"{_label('  problem')}{k['last_error']}")
    else:  # what was published is stale: say so, with its age, never as the current state
        checked = k.get("checked") or k.get("reachable_since")
        seen = "never checked"
        if checked:
            age = (now - dt.datetime.fromisoformat(checked)).total_seconds()
            seen = f"{reach} at the last check, {humanize.duration(age)} ago"
        lines = [f"{_label('sink ' + name)}{where}: agent not running; {seen}"]
        if k.get("last_error"):
            lines.append(f"{_label('  last problem')}{k['last_error']}")
    oldest = k.get("oldest_waiting")
    tail = f", oldest {_ago(oldest['datetime'], now)}" if oldest and k["waiting"] else ""
    lines.append(f"{_label('  backlog')}{k['waiting']} images, {_size(k['waiting_bytes'])}{tail}")
    ann = k["annotations"]
    held = f"{k['verified']} images verified, annotations {ann['sent']} sent, {ann['pending']} pending"
    if ann["failed"]:
        held += f", {ann['failed']} failed"
    lines.append(f"{_label('  holds')}{held}")
    last = k.get("last_pass")
    if last:
        what = "ok" if last.get("outcome") == "ok" else f"{last.get('outcome')}: {last.get('error')}"
        lines.append(
            f"{_label('  last sync')}{_ago(last.get('started'), now)}, {what}, "
            f"{last.get('images_sent', 0)} images ({_size(last.get('bytes_sent', 0))}), "
            f"{last.get('annotations_sent', 0)} annotations in {last.get('seconds', 0):.1f}s"
        )
    if k.get("throughput_bytes_per_s"):
        rate = f"{_size(k['throughput_bytes_per_s'])}/s"
        if k.get("eta_seconds"):
            rate += f", ~{k['eta_seconds'] / 60:.0f} min to drain at that rate"
        lines.append(f"{_label('  throughput')}{rate}")
    if k.get("failed"):
        when = _ago(k["next_failed_retry"], now) if running else "when the agent runs"
        lines.append(f"{_label('  failed images')}{k['failed']}: one more try by themselves, next {when}")
    if k.get("conflict"):
        lines.append(
            f"{_label('  conflicts')}{k['conflict']}: the sink holds another image under the same "
            "name; never overwritten"
        )
    for p in k.get("problems", []):
        lines.append(f"    {p['state'].upper():<11} {p['name']}: {p['reason']}")
    return lines
