"""The page frame every page shares: head, navigation, escaping helpers (no template engine)."""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup, escape

NAV = (("/", "Dashboard"), ("/aim", "Aim & focus"), ("/captures", "Captures"), ("/counts", "Counts"))


def esc(value: object) -> Markup:
    return escape("" if value is None else str(value))


def page(title: str, body: Markup | str, csrf: str, device: str | None, active: str) -> str:
    """Given a title, the body's HTML and this process's CSRF token, return the whole page."""
    nav = Markup("").join(
        Markup('<a href="{}"{}>{}</a>').format(href, Markup(' class="on"') if href == active else "", name)
        for href, name in NAV
    )
    return str(
        Markup(
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="csrf-token" content="{csrf}"><link rel="icon" href="data:,">'
            "<title>{title} · trap {device}</title>"
            '<link rel="stylesheet" href="/static/app.css"><script src="/static/app.js" defer></script>'
            "</head><body><header><strong>trap {device}</strong><nav>{nav}</nav>"
            '<span class="links"><a href="/export.csv">export.csv</a> <a href="/metrics">metrics</a></span>'
            "</header><main><h1>{title}</h1>{body}</main></body></html>"
        ).format(csrf=csrf, title=title, device=device or "?", nav=nav, body=Markup(body))
    )


def action(path: str, label: str, csrf: str, fields: dict[str, str] | None = None, cls: str = "") -> Markup:
    """Return a POST form with one button (the page's script sends it without reloading)."""
    hidden = Markup("").join(
        Markup('<input type="hidden" name="{}" value="{}">').format(k, v) for k, v in (fields or {}).items()
    )
    return Markup(
        '<form class="action {cls}" method="post" action="{path}">'
        '<input type="hidden" name="csrf" value="{csrf}">{hidden}'
        '<button type="submit">{label}</button></form>'
    ).format(cls=cls, path=path, csrf=csrf, hidden=hidden, label=label)


def when(iso: str | dt.datetime | None, now: dt.datetime) -> Markup:
    """Return a UTC time and how long ago (or until) it is, for people."""
    if not iso:
        return Markup("never")
    t = dt.datetime.fromisoformat(iso) if isinstance(iso, str) else iso
    secs = (now - t).total_seconds()
    rel = abs(secs)
    span = f"{rel:.0f} s" if rel < 120 else f"{rel / 60:.0f} min" if rel < 7200 else f"{rel / 3600:.1f} h"
    ago = f"in {span}" if secs < 0 else f"{span} ago"
    return Markup('<time datetime="{}">{:%Y-%m-%d %H:%M:%S} UTC</time> ({})').format(t.isoformat(), t, ago)


def size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
