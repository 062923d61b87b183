"""Leave-one-trap-out: the learned detector's post-processing chosen without the held-out trap.

Each held-out trap's model gives probability maps for that trap's cards (:func:`held_out_maps`,
through the same decoding as on the trap). The post-processing settings (thresholds, smallest
insect) are then chosen for each held-out trap on the *other* traps' held-out maps only
(:func:`choose`): the labels of the trap being scored are never used, and the settings are
chosen where the models are as unsure as they will be on a new trap, not on the cards they
learnt. The shipped model's settings are the ones best over every trap's held-out maps.
Training only: needs NumPy and OpenCV.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.detect.cards import Card
from agent.detect.evaluate import THRESHOLDS, Score, combine, score_image
from agent.detect.learned import LearnedDetector, Settings

#: Post-processing settings tried (every combination).
GRID: dict[str, tuple[float, ...]] = {
    "mask_threshold": (0.3, 0.4, 0.5, 0.6),
    "centre_threshold": (0.06, 0.1, 0.2, 0.3),
    "min_confidence": (0.0, 0.6, 0.7, 0.8),
    "min_area": (150.0, 300.0),
}


@dataclass(frozen=True)
class Maps:
    """A card's probability maps from a model that never saw its trap, and how to scale them."""

    card: int
    trap: str
    mask: np.ndarray[Any, Any]
    centre: np.ndarray[Any, Any]
    k: float
    full: tuple[int, int]


def card_maps(det: LearnedDetector, index: int, card: Card) -> Maps:
    """Given a detector and a card (its index in the card list), return its Maps, decoded and
    reduced exactly as :meth:`LearnedDetector.detect` does on the trap."""
    bgr, k, full = det.prepare(card.jpeg)
    mask, centre = det.maps(bgr)
    return Maps(index, card.trap, mask, centre, k, full)


def held_out_maps(model: Path, cards: Sequence[tuple[int, Card]], views: int | None = None) -> list[Maps]:
    """Given a model file, (index, card) pairs and the views to average (default: the model's
    setting), return each card's Maps (OpenCV's runtime)."""
    det = LearnedDetector(model, runtime="opencv", views=views)
    return [card_maps(det, i, c) for i, c in cards]


def combos(base: Settings) -> list[Settings]:
    """Given base settings, return one Settings per combination of GRID."""
    out = []
    for values in itertools.product(*GRID.values()):
        chosen: dict[str, Any] = dict(zip(GRID, values, strict=True))
        out.append(replace(base, **chosen))
    return out


def score_maps(m: Maps, card: Card, s: Settings) -> Score:
    """Given a card's Maps, the card and settings, return the card's Score with those settings."""
    found = LearnedDetector.outlines_from_maps(m.mask, m.centre, m.k, m.full, s)
    pred = [o.contour.reshape(-1, 2).astype(np.float64) for o in found]
    return score_image(card.name, pred, card.outlines)


def objective(score: Score) -> float:
    """The value settings are chosen by: F1 at IoU 0.5 plus F1 at 0.33, every insect pooled."""
    return score.f1(0.5) + score.f1(0.33)


def choose(scores: Sequence[Sequence[Score]], traps: Sequence[str], leave_out: str | None) -> int:
    """Given per-combination, per-card Scores (``scores[combo][card]``), each card's trap and a trap
    to leave out (None: none), return the index of the combination best on the other cards."""
    keep = [i for i, t in enumerate(traps) if t != leave_out]
    values = [objective(combine([row[i] for i in keep])) for row in scores]
    return int(np.argmax(values))


def table(by_trap: dict[str, list[Score]]) -> list[str]:
    """Return the leave-one-trap-out table: one line per card, per trap, and overall."""
    head = f"{'trap':<9} {'card':<34} {'people':>6} {'found':>5}"
    for t in THRESHOLDS:
        head += f"  {'P@' + format(t, 'g'):>6} {'R@' + format(t, 'g'):>6} {'F1@' + format(t, 'g'):>7}"
    lines = [head]

    def line(trap: str, s: Score) -> str:
        text = f"{trap:<9} {s.name[:34]:<34} {s.truth:>6} {s.detected:>5}"
        for t in THRESHOLDS:
            text += f"  {s.precision(t):>6.3f} {s.recall(t):>6.3f} {s.f1(t):>7.3f}"
        return text

    every: list[Score] = []
    for trap, scores in sorted(by_trap.items()):
        every.extend(scores)
        lines.extend(line(trap, s) for s in scores)
        if len(scores) > 1:
            lines.append(line(trap, combine(scores, "(trap)")))
    lines.append(line("all", combine(every, f"overall, {len(every)} cards")))
    return lines
