"""The aim-and-focus page: the live view, its sharpness, exposure and gain, flash and lens."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from agent.web.layout import action


def aim_html(csrf: str, state: dict[str, Any]) -> Markup:
    """Given the CSRF token and the preview's state, return the page's body (the script keeps
    the figures up to date and shows the stream while the preview runs)."""
    lens = state.get("lens_position")
    focus = Markup("")
    if state.get("focusable"):
        focus = Markup(
            '<form class="action" method="post" action="/preview/lens" id="lens-form">'
            '<input type="hidden" name="csrf" value="{}"><label>lens position (dioptres) '
            '<input type="number" name="value" id="lens-input" min="0" max="15" step="0.25" value="{}">'
            "</label>"
            '<button type="submit">move lens</button></form>'
        ).format(csrf, "" if lens is None else f"{lens:g}")
    return Markup(
        "<p>Start the preview, then turn the lens (or set its position) until the sharpness is "
        "highest. The preview pauses around scheduled captures and stops by itself.</p>"
        '<div class="bar">{start}{stop}{flash_on}{flash_off}{capture}</div>{focus}'
        '<div class="preview">'
        '<img id="preview-img" alt="live view (start the preview)" data-src="/preview.mjpg">'
        '<table class="facts live">'
        '<tr><th>preview</th><td id="pv-state">{running}</td></tr>'
        '<tr><th>sharpness</th><td id="pv-sharpness" class="big">{sharp}</td></tr>'
        '<tr><th>exposure</th><td id="pv-exposure">-</td></tr>'
        '<tr><th>analogue gain</th><td id="pv-gain">-</td></tr>'
        '<tr><th>lens position</th><td id="pv-lens">{lens}</td></tr>'
        '<tr><th>flash</th><td id="pv-flash">{flash}</td></tr>'
        "</table></div>"
    ).format(
        start=action("/preview/start", "Start preview", csrf, cls="pv-start"),
        stop=action("/preview/stop", "Stop preview", csrf, cls="pv-stop"),
        flash_on=action("/preview/flash", "Flash on", csrf, {"on": "1"}, cls="pv-flash-on"),
        flash_off=action("/preview/flash", "Flash off", csrf, {"on": "0"}, cls="pv-flash-off"),
        capture=action("/capture", "Capture now", csrf),
        focus=focus,
        running="running" if state["running"] else "stopped",
        sharp="-" if state.get("sharpness") is None else state["sharpness"],
        lens="-" if lens is None else f"{lens:g}",
        flash="on" if state.get("flash") else "off",
    )
