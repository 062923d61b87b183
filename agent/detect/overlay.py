"""Outlines drawn on a picture, for a look by eye (``stickyctl detect run --overlay``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.detect import Outline

#: Outline colour (BGR): magenta stands out on yellow, white and green cards.
COLOUR = (255, 0, 255)


def draw_overlay(jpeg: bytes, outlines: list[Outline], out: Path, max_side: int = 2600) -> None:
    """Given a JPEG, its outlines (full-resolution pixels) and a path, write the picture with them drawn.

    The picture is reduced to ``max_side`` (long side) to keep the file small; each outline is
    drawn with its number. Raise DetectorError if the JPEG cannot be decoded, OSError if
    ``out`` cannot be written.
    """
    import cv2
    import numpy as np

    from agent.detect import DetectorError

    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise DetectorError("OpenCV could not decode the image")
    h, w = bgr.shape[:2]
    k = min(1.0, max_side / max(w, h))
    if k < 1:
        bgr = cv2.resize(bgr, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    thick = max(1, round(max(bgr.shape[:2]) / 1000))
    for i, o in enumerate(outlines, 1):
        c = np.round(o.contour.astype(np.float64) * k).astype(np.int32)
        cv2.polylines(bgr, [c], True, COLOUR, thick, cv2.LINE_AA)
        x, y = c.reshape(-1, 2).min(0)
        cv2.putText(
            bgr, str(i), (int(x), max(int(y) - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, COLOUR, 1
        )
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise DetectorError("OpenCV could not encode the overlay")
    out.write_bytes(data.tobytes())
