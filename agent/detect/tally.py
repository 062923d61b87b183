"""New insects per capture: match one capture's insects with the previous capture's.

Insects stay on a sticky card, so the insects of a capture that were not on the previous
capture's card are the new ones: the capture rate entomologists study. Each insect is
reduced to its centroid and area; the card may have moved a little between captures (the
trap knocked, the card reseated), so the shift that lines up the most insects is found
first (a vote over all pairs' displacements within ``SEARCH``), then insects are paired
one to one, nearest first, if their centroids are within ``max(TOLERANCE, SIZE_TOLERANCE
x the insect's size)`` after the shift and their areas within a factor ``AREA_RATIO``.

A sudden drop to near zero (at most ``DROP`` of the previous count, which had at least
``MIN_CARD`` insects) is a new card: every insect on it is new.

Pure Python: the trap computes it from the stored annotations, without NumPy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: Pixels (of the full picture) an insect may move, at least, and per pixel of its size.
TOLERANCE = 12.0
SIZE_TOLERANCE = 0.5
#: Largest card shift looked for, in pixels of a 2592-wide picture.
SEARCH = 150.0
#: Areas of the same insect on two captures differ by at most this factor.
AREA_RATIO = 2.5
#: A new card: the count falls to this share of the previous one or less...
DROP = 0.25
#: ...from at least this many insects.
MIN_CARD = 5
_BIN = 8.0


@dataclass(frozen=True)
class Blob:
    """One insect: its centroid and area (full-resolution pixels)."""

    x: float
    y: float
    area: float

    @property
    def size(self) -> float:
        return math.sqrt(max(self.area, 1.0))


@dataclass(frozen=True)
class Tally:
    """A capture's count: insects on the card, new since the previous capture, whether the card changed."""

    on_card: int
    new: int
    new_card: bool
    matched: int
    shift: tuple[float, float]


def blob(points: Sequence[Sequence[float]]) -> Blob:
    """Given a polygon's (x, y) vertices, return its Blob (shoelace centroid; vertex mean if degenerate)."""
    a = cx = cy = 0.0
    n = len(points)
    for i in range(n):
        x0, y0 = points[i][0], points[i][1]
        x1, y1 = points[(i + 1) % n][0], points[(i + 1) % n][1]
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if abs(a) < 1e-9:
        return Blob(sum(p[0] for p in points) / n, sum(p[1] for p in points) / n, 0.0)
    return Blob(cx / (3 * a), cy / (3 * a), abs(a) / 2)


def blobs_of_annotations(annotations: Iterable[dict[str, Any]]) -> list[Blob]:
    """Given ``/put_uid_annotations`` dicts (``contour`` as ``[[[x, y]], ...]``), return their Blobs."""
    out = []
    for a in annotations:
        pts = [p[0] for p in a.get("contour", [])]
        if len(pts) >= 3:
            out.append(blob(pts))
    return out


def _shift(prev: Sequence[Blob], cur: Sequence[Blob], search: float) -> tuple[float, float]:
    """Return the (dx, dy) from prev to cur that most pairs agree on (0, 0 if none)."""
    votes: Counter[tuple[int, int]] = Counter()
    pairs: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for c in cur:
        for p in prev:
            dx, dy = c.x - p.x, c.y - p.y
            if abs(dx) > search or abs(dy) > search:
                continue
            key = (round(dx / _BIN), round(dy / _BIN))
            votes[key] += 1
            pairs.setdefault(key, []).append((dx, dy))
    if not votes:
        return 0.0, 0.0
    (kx, ky), best = votes.most_common(1)[0]
    if votes.get((0, 0), 0) >= best:  # ties go to "the card did not move"
        kx, ky = 0, 0
    near = [d for i in (-1, 0, 1) for j in (-1, 0, 1) for d in pairs.get((kx + i, ky + j), [])]
    dx = sorted(d[0] for d in near)[len(near) // 2]
    dy = sorted(d[1] for d in near)[len(near) // 2]
    return dx, dy


def match(prev: Sequence[Blob], cur: Sequence[Blob], shift: tuple[float, float]) -> int:
    """Given two captures' Blobs and the card's shift, return how many pair up one to one."""
    dx, dy = shift
    candidates = []
    for i, c in enumerate(cur):
        for j, p in enumerate(prev):
            d = math.hypot(c.x - p.x - dx, c.y - p.y - dy)
            tol = max(TOLERANCE, SIZE_TOLERANCE * max(c.size, p.size))
            ratio = max(c.area, 1.0) / max(p.area, 1.0)
            if d <= tol and 1 / AREA_RATIO <= ratio <= AREA_RATIO:
                candidates.append((d, i, j))
    candidates.sort()
    used_c: set[int] = set()
    used_p: set[int] = set()
    for _, i, j in candidates:
        if i not in used_c and j not in used_p:
            used_c.add(i)
            used_p.add(j)
    return len(used_c)


def tally(prev: Sequence[Blob], cur: Sequence[Blob], width: int = 2592) -> Tally:
    """Given the previous capture's and this capture's insects, return this capture's Tally.

    ``width`` is the picture's long side (the search for a card shift scales with it).
    """
    if len(prev) >= MIN_CARD and len(cur) <= DROP * len(prev):
        return Tally(len(cur), len(cur), True, 0, (0.0, 0.0))
    shift = _shift(prev, cur, SEARCH * width / 2592)
    matched = match(prev, cur, shift)
    return Tally(len(cur), len(cur) - matched, False, matched, shift)
