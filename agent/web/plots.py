"""The counts page: insects on the card and new insects per hour over the last days, with the
temperature and humidity, drawn on the trap as SVG (no charting library, nothing to download).

Each hour's bar carries its figures as ``data-`` attributes, so what the plot shows can be
checked against the queue and the CSV export.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from markupsafe import Markup

from agent.web.data import ImageRow

W, H = 960, 420
LEFT, RIGHT, TOP = 48, 48, 16
PANEL = 170  # height of each of the two panels
GAP = 34


@dataclass
class Hour:
    start: dt.datetime
    images: int = 0
    new_insects: int = 0
    #: Insects on the card on the hour's last analysed image.
    on_card: int | None = None
    temperatures: list[float] = field(default_factory=list)
    humidities: list[float] = field(default_factory=list)

    @property
    def temperature(self) -> float | None:
        return sum(self.temperatures) / len(self.temperatures) if self.temperatures else None

    @property
    def humidity(self) -> float | None:
        return sum(self.humidities) / len(self.humidities) if self.humidities else None


def hourly(rows: Iterable[ImageRow], start: dt.datetime, end: dt.datetime) -> list[Hour]:
    """Given images in time order, return one :class:`Hour` per hour from ``start`` to ``end``."""
    first = start.replace(minute=0, second=0, microsecond=0)
    n = max(1, int((end - first).total_seconds() // 3600) + 1)
    hours = [Hour(first + dt.timedelta(hours=i)) for i in range(n)]
    for r in rows:
        i = int((r.datetime - first).total_seconds() // 3600)
        if not 0 <= i < n:
            continue
        h = hours[i]
        h.images += 1
        h.new_insects += r.new_insects or 0
        if r.insects is not None:
            h.on_card = r.insects
        if r.temperature is not None:
            h.temperatures.append(r.temperature)
        if r.humidity is not None:
            h.humidities.append(r.humidity)
    return hours


def _scale(lo: float, hi: float, top: float, height: float) -> tuple[float, float]:
    """Return (offset, factor) mapping [lo, hi] to [top + height, top]."""
    span = (hi - lo) or 1.0
    return top + height + lo * height / span, -height / span


def _line(points: list[tuple[float, float]], cls: str) -> Markup:
    if not points:
        return Markup("")
    d = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    # a dot per hour too: a single hour (a new trap) has no line to draw
    dots = Markup("").join(Markup('<circle cx="{:.1f}" cy="{:.1f}" r="3"/>').format(x, y) for x, y in points)
    return Markup('<g class="{0}"><polyline points="{1}"/>{2}</g>').format(cls, d, dots)


def counts_svg(hours: list[Hour]) -> Markup:
    """Given hourly figures, return the two-panel SVG: counts above, climate below."""
    n = len(hours)
    bw = (W - LEFT - RIGHT) / n
    x = [LEFT + (i + 0.5) * bw for i in range(n)]
    top_max = max([1] + [h.new_insects for h in hours] + [h.on_card or 0 for h in hours])
    off, k = _scale(0, top_max, TOP, PANEL)
    parts = [
        Markup(
            '<text class="title" x="{}" y="{}">insects on the card (line), new per hour (bars)</text>'
        ).format(LEFT, TOP - 4)
    ]
    for i, h in enumerate(hours):
        height = h.new_insects * -k
        parts.append(
            Markup(
                '<rect class="bar" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" data-hour="{}" '
                'data-new="{}" data-on-card="{}" data-images="{}">'
                "<title>{:%Y-%m-%d %H}:00 UTC: {} new, {} on card</title></rect>"
            ).format(
                x[i] - bw * 0.4,
                off + h.new_insects * k,
                bw * 0.8,
                height,
                h.start.isoformat(),
                h.new_insects,
                "" if h.on_card is None else h.on_card,
                h.images,
                h.start,
                h.new_insects,
                "?" if h.on_card is None else h.on_card,
            )
        )
    parts.append(
        _line([(x[i], off + h.on_card * k) for i, h in enumerate(hours) if h.on_card is not None], "on-card")
    )
    parts += _axis(0, top_max, off, k, LEFT, "")
    top2 = TOP + PANEL + GAP
    temps = [h.temperature for h in hours if h.temperature is not None]
    hums = [h.humidity for h in hours if h.humidity is not None]
    parts.append(
        Markup(
            '<text class="title" x="{}" y="{}">temperature °C (red, left), humidity % (blue, right)</text>'
        ).format(LEFT, top2 - 4)
    )
    if temps:
        lo, hi = min(temps) - 1, max(temps) + 1
        o2, k2 = _scale(lo, hi, top2, PANEL)
        parts.append(
            _line(
                [(x[i], o2 + h.temperature * k2) for i, h in enumerate(hours) if h.temperature is not None],
                "temp",
            )
        )
        parts += _axis(lo, hi, o2, k2, LEFT, "°")
    if hums:
        o3, k3 = _scale(0, 100, top2, PANEL)
        parts.append(
            _line(
                [(x[i], o3 + h.humidity * k3) for i, h in enumerate(hours) if h.humidity is not None], "hum"
            )
        )
        parts += _axis(0, 100, o3, k3, W - RIGHT, "%", right=True)
    for i, h in enumerate(hours):  # a tick and label at each UTC midnight
        if h.start.hour == 0 or i == 0:
            parts.append(
                Markup(
                    '<line class="day" x1="{x:.1f}" x2="{x:.1f}" y1="{a}" y2="{b}"/>'
                    '<text class="tick" x="{x:.1f}" y="{t}">{d:%m-%d}</text>'
                ).format(x=x[i] - bw / 2, a=TOP, b=top2 + PANEL, t=top2 + PANEL + 14, d=h.start)
            )
    return Markup(
        '<svg class="plot" id="counts-plot" viewBox="0 0 {} {}" role="img" '
        'aria-label="insect counts per hour">{}</svg>'
    ).format(W, H, Markup("").join(parts))


def _axis(
    lo: float, hi: float, off: float, k: float, x: float, unit: str, right: bool = False
) -> list[Markup]:
    out = [
        Markup('<line class="axis" x1="{0}" x2="{0}" y1="{1:.1f}" y2="{2:.1f}"/>').format(
            x, off + lo * k, off + hi * k
        )
    ]
    for v in (lo, (lo + hi) / 2, hi):
        tx = x + 4 if right else x - 4
        anchor = "start" if right else "end"
        out.append(
            Markup('<text class="tick" x="{:.1f}" y="{:.1f}" text-anchor="{}">{:g}{}</text>').format(
                tx, off + v * k + 4, anchor, round(v, 1), unit
            )
        )
    return out


def counts_html(hours: list[Hour], days: int) -> Markup:
    choices = Markup(" ").join(
        Markup('<a href="/counts?days={0}"{1}>{0} day{2}</a>').format(
            d, Markup(' class="on"') if d == days else "", "" if d == 1 else "s"
        )
        for d in (1, 3, 7, 14)
    )
    total_new = sum(h.new_insects for h in hours)
    last = next((h.on_card for h in reversed(hours) if h.on_card is not None), None)
    summary = Markup(
        '<p id="counts-summary">{} new insects in the last {} day(s); {} on the card now.</p>'
    ).format(total_new, days, "?" if last is None else last)
    return Markup("<p>{}</p>{}{}").format(choices, summary, counts_svg(hours))
