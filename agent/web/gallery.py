"""The captures: the latest thumbnails newest first with the detector's outlines, filter by day,
and one image in full with its outlines.

Outlines are drawn by the browser as an SVG laid over the picture (the contours are in the
full image's pixels, the SVG's ``viewBox`` is the full image): nothing is re-encoded on the trap.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from markupsafe import Markup

from agent.capture.naming import thumbnail_path
from agent.web.data import ImageRow, WebReader
from agent.web.layout import action

PAGE_SIZE = 24


def outline_svg(row: ImageRow, outlines: list[list[tuple[int, int]]]) -> Markup:
    """Given an image and its outlines (full-image pixels), return an SVG overlay of them."""
    polys = Markup("").join(
        Markup('<polygon class="insect" points="{}"/>').format(" ".join(f"{x},{y}" for x, y in pts))
        for pts in outlines
    )
    return Markup(
        '<svg class="outlines" viewBox="0 0 {w} {h}" preserveAspectRatio="none" '
        'data-count="{n}" aria-label="{n} insects outlined">{polys}</svg>'
    ).format(w=row.width, h=row.height, n=len(outlines), polys=polys)


def _figure(row: ImageRow, outlines: list[list[tuple[int, int]]], src: str, link: str | None) -> Markup:
    img = Markup('<img src="{}" alt="{}" loading="lazy">').format(src, row.name)
    inner = Markup('<div class="pic">{}{}</div>').format(img, outline_svg(row, outlines))
    if link:
        inner = Markup('<a href="{}">{}</a>').format(link, inner)
    insects = "not analysed" if row.insects is None else f"{row.insects} insects"
    cap = Markup("<figcaption>{:%Y-%m-%d %H:%M:%S} UTC · {}{} · {}</figcaption>").format(
        row.datetime, insects, " · manual" if row.manual else "", row.state
    )
    return Markup('<figure class="capture" data-id="{}">{}{}</figure>').format(row.id, inner, cap)


def gallery_html(reader: WebReader, csrf: str, day: dt.date | None, before: int | None) -> Markup:
    """Return the captures page's body: day filter, capture button, thumbnails newest first."""
    days = reader.days()
    opts = Markup("").join(
        Markup('<option value="{d}"{sel}>{d} ({n})</option>').format(
            d=d.isoformat(), n=n, sel=Markup(" selected") if d == day else ""
        )
        for d, n in days
    )
    head = Markup(
        '<div class="bar"><form method="get" action="/captures" id="day-filter"><label>day (UTC) '
        '<select name="day"><option value="">all days</option>{}</select></label>'
        '<button type="submit">show</button></form>{}</div>'
    ).format(opts, action("/capture", "Capture now", csrf))
    rows = reader.latest(PAGE_SIZE, day=day, before_id=before)
    figures = Markup("").join(
        _figure(r, reader.outlines(r.id), f"/thumb/{r.id}", f"/captures/{r.id}") for r in rows
    )
    if not rows:
        figures = Markup("<p>No captures yet.</p>")
    more = Markup("")
    if len(rows) == PAGE_SIZE:
        q = f"?before={rows[-1].id}" + (f"&day={day.isoformat()}" if day else "")
        more = Markup('<p><a href="/captures{}">older</a></p>').format(q)
    return Markup('{}<div class="gallery" id="gallery">{}</div>{}').format(head, figures, more)


def image_html(reader: WebReader, row: ImageRow) -> Markup:
    """Return one image's page: the full picture with its outlines, and its facts."""
    fig = _figure(row, reader.outlines(row.id), f"/image/{row.id}.jpg", None)
    facts = [
        ("file", row.name),
        ("md5", row.md5),
        ("size", f"{row.width} x {row.height}, {row.size} bytes"),
        ("state", row.state + (f" ({row.last_error})" if row.last_error else "")),
        ("temperature / humidity", f"{row.temperature} °C / {row.humidity} %"),
        ("battery", f"{row.battery} %"),
        ("exposure / gain", f"{row.exposure_us} µs / {row.analogue_gain}"),
    ]
    table = Markup("").join(Markup("<tr><th>{}</th><td>{}</td></tr>").format(k, v) for k, v in facts)
    return Markup('<div class="full">{}</div><table class="facts">{}</table>').format(fig, table)


def image_file(data_dir: Path, row: ImageRow, kind: str | None) -> Path | None:
    """Return the original (``kind`` None) or a thumbnail of an image if it is on disk; the
    thumbnail when the original was evicted. The path always stays inside ``data_dir``."""
    original = (data_dir / row.path).resolve()
    if not original.is_relative_to(data_dir.resolve()):
        return None
    for path in ([original] if kind is None else []) + [thumbnail_path(original, kind or "thumbnail")]:
        if path.is_file():
            return path
    return None
